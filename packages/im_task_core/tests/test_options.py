"""Task options are validated when a task is decorated, with errors that say what to change."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from im_task import ConfigurationError, task
from im_task.options import OPTION_NAMES, TaskOptions
from im_task.retry import RetryOptions


def work() -> None:
    """A task body; never run by these tests."""


NOW = dt.datetime.now(dt.timezone.utc)


def test_every_documented_option_is_known() -> None:
    assert set(OPTION_NAMES) == {
        "queue",
        "countdown",
        "eta",
        "name",
        "target",
        "retry_options",
        "headers",
        "url",
        "dispatch_deadline",
        "transactional",
        "includeheaders",
        "logname",
        "raise_if_exists",
        "parent",
    }


def test_unknown_option_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"Unknown task option\(s\) 'queu'.*queue, countdown"):
        task(queu="q")(work)
    with pytest.raises(ConfigurationError, match="'bogus'"):
        task(work, bogus=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"countdown": -1}, r"countdown must be >= 0"),
        ({"countdown": "5"}, r"countdown must be a number of seconds"),
        ({"countdown": True}, r"countdown must be a number of seconds"),
        ({"countdown": float("nan")}, r"countdown must be a number of seconds"),
        ({"countdown": float("inf")}, r"countdown must be a number of seconds"),
        ({"countdown": 30 * 86400 + 1}, r"more than 30 days"),
        ({"countdown": dt.timedelta(days=31)}, r"more than 30 days"),
        ({"eta": NOW, "countdown": 5}, r"either countdown or eta, not both"),
        ({"eta": "2030-01-01"}, r"eta must be a datetime"),
        ({"eta": 12345}, r"eta must be a datetime"),
        ({"name": ""}, r"Task name '' is invalid"),
        ({"name": "a" * 501}, r"is invalid: use 1 to 500"),
        ({"name": "has space"}, r"Task name 'has space' is invalid"),
        ({"name": "dot.ted"}, r"is invalid"),
        ({"name": "slash/ed"}, r"is invalid"),
        ({"name": "ünïcode"}, r"is invalid"),
        ({"name": 42}, r"Task name 42 is invalid"),
        ({"headers": {"X-AppEngine-QueueName": "q"}}, r"'X-AppEngine-QueueName' cannot be set.*set by the queue"),
        ({"headers": {"X_AppEngine_TaskRetryCount": "0"}}, r"'X_AppEngine_TaskRetryCount' cannot be set"),
        ({"headers": {"X-CloudTasks-TaskRetryCount": "0"}}, r"'X-CloudTasks-TaskRetryCount' cannot be set"),
        ({"headers": {"Bad Header": "1"}}, r"Header name 'Bad Header' is not valid"),
        ({"headers": {"X-Ok:": "1"}}, r"Header name 'X-Ok:' is not valid"),
        ({"headers": {"x-appengine-taskname": "t"}}, r"cannot be set on a task"),
        ({"headers": {"X-Google-Foo": "1"}}, r"'X-Google-Foo' cannot be set"),
        ({"headers": {"HOST": "evil.example"}}, r"'HOST' cannot be set"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, r"'Transfer-Encoding' cannot be set.*belong to the connection"),
        ({"headers": {"transfer_encoding": "chunked"}}, r"'transfer_encoding' cannot be set"),
        ({"headers": {"Content-Length": "0"}}, r"'Content-Length' cannot be set.*belong to the connection"),
        ({"headers": {"Connection": "close"}}, r"'Connection' cannot be set"),
        ({"headers": {"Keep-Alive": "timeout=5"}}, r"'Keep-Alive' cannot be set"),
        ({"headers": {"Proxy-Authorization": "Basic eA=="}}, r"'Proxy-Authorization' cannot be set"),
        ({"headers": {"Proxy-Connection": "keep-alive"}}, r"'Proxy-Connection' cannot be set"),
        ({"headers": {"TE": "trailers"}}, r"'TE' cannot be set"),
        ({"headers": {"Trailer": "X-Checksum"}}, r"'Trailer' cannot be set"),
        ({"headers": {"Upgrade": "websocket"}}, r"'Upgrade' cannot be set"),
        ({"headers": {"X-Ok": "a\r\nX-Injected: 1"}}, r"line break"),
        ({"headers": {"X-Ok": 1}}, r"must map str to str"),
        ({"headers": {"": "v"}}, r"must map str to str"),
        ({"headers": [("X-Ok", "1")]}, r"headers must be a dict"),
        ({"queue": ""}, r"Queue name '' is invalid"),
        ({"queue": "under_score"}, r"Queue name 'under_score' is invalid"),
        ({"queue": "q" * 101}, r"is invalid: use 1 to 100"),
        ({"queue": "has space"}, r"is invalid"),
        ({"queue": []}, r"non-empty list of names"),
        ({"queue": ["ok", "not ok"]}, r"Queue name 'not ok' is invalid"),
        ({"queue": ["ok", 3]}, r"Queue name 3 is invalid"),
        ({"queue": b"bytes"}, r"queue must be a queue name"),
        ({"queue": 5}, r"queue must be a queue name"),
        ({"dispatch_deadline": 14.9}, r"between 15 seconds and 30 minutes"),
        ({"dispatch_deadline": dt.timedelta(minutes=30, seconds=1)}, r"between 15 seconds and 30 minutes"),
        ({"dispatch_deadline": "60"}, r"dispatch_deadline must be a number of seconds"),
        ({"retry_options": {"task_retry_limt": 3}}, r"Unknown retry_options 'task_retry_limt'"),
        ({"retry_options": {"task_retry_limit": -1}}, r"task_retry_limit must be a whole number >= 0"),
        ({"retry_options": {"task_retry_limit": 1.5}}, r"task_retry_limit must be a whole number"),
        ({"retry_options": {"task_retry_limit": True}}, r"task_retry_limit must be a whole number"),
        ({"retry_options": {"max_doublings": -2}}, r"max_doublings must be a whole number"),
        ({"retry_options": {"task_age_limit": -1}}, r"task_age_limit must be a finite number"),
        ({"retry_options": {"min_backoff_seconds": float("nan")}}, r"min_backoff_seconds must be a finite"),
        ({"retry_options": {"max_backoff_seconds": float("inf")}}, r"max_backoff_seconds must be a finite"),
        ({"retry_options": {"min_backoff_seconds": "1"}}, r"min_backoff_seconds must be a finite"),
        (
            {"retry_options": {"min_backoff_seconds": 10, "max_backoff_seconds": 1}},
            r"min_backoff_seconds \(10\) is larger than max_backoff_seconds \(1\)",
        ),
        ({"retry_options": 3}, r"retry_options must be a dict"),
        ({"transactional": True, "name": "once"}, r"transactional task cannot have a name"),
        ({"transactional": 1}, r"transactional must be True or False"),
        ({"transactional": "yes"}, r"transactional must be True or False"),
        ({"includeheaders": 1}, r"includeheaders must be True or False"),
        ({"url": "tasks/run"}, r"url must be a path starting with '/'"),
        ({"url": "/with space"}, r"url must be a path"),
        ({"url": 5}, r"url must be a path"),
        ({"target": ""}, r"target must be a non-empty string"),
        ({"target": 3}, r"target must be a non-empty string"),
        ({"logname": "  "}, r"logname must be a non-empty string"),
    ],
)
def test_bad_option_values_are_refused_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        task(**options)
    with pytest.raises(ConfigurationError, match=message):
        task(work, **options)


def test_an_eta_more_than_30_days_ahead_is_refused() -> None:
    # Made when the test runs: an eta made at import falls within 30 days once a minute has passed.
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30, minutes=1)
    with pytest.raises(ConfigurationError, match=r"more than 30 days ahead"):
        task(eta=eta)
    with pytest.raises(ConfigurationError, match=r"more than 30 days ahead"):
        task(work, eta=eta)


def test_configuration_error_is_a_value_error_of_the_library() -> None:
    from im_task import Error

    with pytest.raises(ConfigurationError) as info:
        task(countdown=-1)
    assert isinstance(info.value, Error)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "options",
    [
        {"name": "a" * 500},
        {"name": "A-z_09"},
        {"queue": "q" * 100},
        {"queue": ["a", "b-2"]},
        {"queue": ("a",)},
        {"countdown": 0},
        {"countdown": 30 * 86400},
        {"countdown": dt.timedelta(hours=1)},
        {"eta": NOW + dt.timedelta(days=29)},
        {"eta": NOW - dt.timedelta(days=1)},
        {"dispatch_deadline": 15},
        {"dispatch_deadline": dt.timedelta(minutes=30)},
        {"headers": {"X-Custom": "1", "Authorization": "Bearer x"}},
        {"retry_options": {"task_retry_limit": 0, "task_age_limit": 60, "min_backoff_seconds": 0}},
        {"retry_options": RetryOptions(max_doublings=2)},
        {"transactional": True},
        {"includeheaders": False},
        {"url": "/custom/path"},
        {"target": "worker"},
        {"logname": "reports/daily"},
    ],
)
def test_good_option_values_are_accepted(options: dict[str, Any]) -> None:
    assert task(**options)(work).func is work


def test_none_means_not_set_for_every_option() -> None:
    flags = {"transactional", "includeheaders", "raise_if_exists"}
    assert TaskOptions.from_kwargs(dict.fromkeys(set(OPTION_NAMES) - flags)) == TaskOptions()
    for flag in flags:
        with pytest.raises(ConfigurationError, match=f"{flag} must be True or False, not None"):
            task(**{flag: None})


def test_values_are_normalised() -> None:
    opts = TaskOptions.from_kwargs(
        {
            "countdown": dt.timedelta(seconds=90),
            "dispatch_deadline": 60,
            "queue": ["a", "b"],
            "retry_options": {"task_retry_limit": 2},
        }
    )
    assert opts.countdown == 90.0
    assert opts.dispatch_deadline == dt.timedelta(seconds=60)
    assert opts.queue == ("a", "b")
    assert opts.retry_options == RetryOptions(task_retry_limit=2)


def test_naive_eta_is_taken_as_utc_and_aware_eta_is_converted() -> None:
    naive = (NOW + dt.timedelta(days=1)).replace(tzinfo=None)
    assert TaskOptions.from_kwargs({"eta": naive}).eta == naive.replace(tzinfo=dt.timezone.utc)
    plus_two = dt.timezone(dt.timedelta(hours=2))
    aware = (NOW + dt.timedelta(days=1)).astimezone(plus_two)
    eta = TaskOptions.from_kwargs({"eta": aware}).eta
    assert eta == aware
    assert eta is not None
    assert eta.utcoffset() == dt.timedelta(0)


def test_queue_list_picks_among_the_names_and_nothing_else() -> None:
    opts = TaskOptions.from_kwargs({"queue": ["a", "b", "c"]})
    rng = random.Random(1234)
    picked = {opts.pick_queue("default", rng.choice) for _ in range(200)}
    assert picked == {"a", "b", "c"}
    assert TaskOptions.from_kwargs({"queue": "one"}).pick_queue("default", rng.choice) == "one"
    assert TaskOptions().pick_queue("fallback", rng.choice) == "fallback"


def test_schedule_time() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert TaskOptions().schedule_time(now) is None
    assert TaskOptions(countdown=0).schedule_time(now) is None
    assert TaskOptions(countdown=30).schedule_time(now) == now + dt.timedelta(seconds=30)
    eta = NOW + dt.timedelta(hours=1)
    assert TaskOptions(eta=eta).schedule_time(now) == eta


def test_countdown_given_over_a_base_clears_its_eta_and_the_other_way_round() -> None:
    eta = NOW + dt.timedelta(hours=1)
    with_eta = TaskOptions.from_kwargs({"eta": eta, "queue": "q"})
    changed = TaskOptions.from_kwargs({"countdown": 5}, base=with_eta)
    assert (changed.countdown, changed.eta, changed.queue) == (5.0, None, "q")
    back = TaskOptions.from_kwargs({"eta": eta}, base=changed)
    assert (back.countdown, back.eta) == (None, eta)
    with pytest.raises(ConfigurationError, match="not both"):
        TaskOptions.from_kwargs({"eta": eta, "countdown": 1}, base=with_eta)


def test_options_are_frozen() -> None:
    opts = TaskOptions.from_kwargs({"queue": "q"})
    with pytest.raises(AttributeError):
        opts.queue = "other"  # type: ignore[misc]


def test_using_a_none_countdown_keeps_the_eta() -> None:
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    base = TaskOptions.from_kwargs({"eta": eta})
    assert TaskOptions.from_kwargs({"countdown": None}, base=base).eta == eta
    assert TaskOptions.from_kwargs({"countdown": 5}, base=base).eta is None
