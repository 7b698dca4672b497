"""Headers: the case-insensitive mapping, parsing task headers of both families, and making them."""

from __future__ import annotations

import datetime as dt

import pytest

from im_task.headers import (
    APPENGINE,
    CLOUDTASKS,
    Headers,
    TaskHeaders,
    delivery_headers,
    forwardable_headers,
    is_hop_by_hop_header,
    make_task_headers,
)


def test_headers_are_case_insensitive_and_keep_the_given_names() -> None:
    headers = Headers({"Content-Type": "text/plain", "X-AppEngine-QueueName": "q"})
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "text/plain"
    assert headers.get("x-appengine-queuename") == "q"
    assert headers.get("missing") is None
    assert "X-APPENGINE-QUEUENAME" in headers
    assert 3 not in headers  # type: ignore[comparison-overlap]
    assert list(headers) == ["Content-Type", "X-AppEngine-QueueName"]
    assert len(headers) == 2
    assert dict(headers) == {"Content-Type": "text/plain", "X-AppEngine-QueueName": "q"}
    assert repr(headers) == "Headers({'Content-Type': 'text/plain', 'X-AppEngine-QueueName': 'q'})"
    with pytest.raises(KeyError):
        headers["nope"]


def test_headers_from_pairs_last_one_wins() -> None:
    headers = Headers([("A", "1"), ("a", "2")])
    assert headers["A"] == "2"
    assert len(headers) == 1
    assert Headers() == {}


def test_headers_are_read_only() -> None:
    headers = Headers({"A": "1"})
    with pytest.raises(TypeError):
        headers["A"] = "2"  # type: ignore[index]


def test_parse_app_engine_headers() -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, 678900, tzinfo=dt.timezone.utc)
    parsed = TaskHeaders.parse(
        {
            "x-appengine-queuename": "mail",
            "X-AppEngine-TaskName": "t1",
            "X-APPENGINE-TASKRETRYCOUNT": "3",
            "X-AppEngine-TaskExecutionCount": "2",
            "X-AppEngine-TaskETA": f"{eta.timestamp():.6f}",
        }
    )
    assert parsed == TaskHeaders(
        queue_name="mail", task_name="t1", retry_count=3, execution_count=2, eta=eta, family=APPENGINE
    )


def test_parse_cloud_tasks_headers_shortening_full_names() -> None:
    parsed = TaskHeaders.parse(
        {
            "X-CloudTasks-QueueName": "projects/p/locations/europe-west1/queues/bg",
            "X-CloudTasks-TaskName": "projects/p/locations/europe-west1/queues/bg/tasks/123",
            "X-CloudTasks-TaskRetryCount": "1",
        }
    )
    assert parsed is not None
    assert (parsed.queue_name, parsed.task_name, parsed.retry_count, parsed.family) == ("bg", "123", 1, CLOUDTASKS)
    assert (parsed.execution_count, parsed.eta) == (0, None)


def test_app_engine_family_is_preferred_when_both_are_present() -> None:
    parsed = TaskHeaders.parse(
        {
            **make_task_headers(queue_name="ct", task_name="x", family=CLOUDTASKS),
            **make_task_headers(queue_name="ae", task_name="y"),
        }
    )
    assert parsed is not None
    assert (parsed.queue_name, parsed.family) == ("ae", APPENGINE)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-AppEngine-QueueName": "q"},
        {"X-AppEngine-TaskName": "t"},
        {"X-AppEngine-QueueName": "q", "X-AppEngine-TaskName": ""},
        {"X-AppEngine-QueueName": "q", "X-CloudTasks-TaskName": "t"},
        {"X-Appengine-Queue": "q", "X-Appengine-Task": "t"},
    ],
)
def test_parse_needs_queue_and_task_name_of_one_family(headers: dict[str, str]) -> None:
    assert TaskHeaders.parse(headers) is None


@pytest.mark.parametrize(
    ("retry", "eta", "expected_retry", "expected_eta"),
    [
        ("-3", "nan-ish", -1, None),  # a count that is no whole number reads -1: the endpoint refuses it
        ("many", "", -1, None),
        ("1.5", "", -1, None),
        ("", "1e400", 0, None),  # absent: 0
        (" 2 ", "0", 2, dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)),
    ],
)
def test_parse_reads_bad_numbers_as_refusable(retry: str, eta: str, expected_retry: int, expected_eta: object) -> None:
    parsed = TaskHeaders.parse(
        {"X-AppEngine-QueueName": "q", "X-AppEngine-TaskName": "t", "X-AppEngine-TaskRetryCount": retry}
        | {"X-AppEngine-TaskETA": eta}
    )
    assert parsed is not None
    assert (parsed.retry_count, parsed.eta) == (expected_retry, expected_eta)


def test_make_task_headers() -> None:
    assert make_task_headers(queue_name="q", task_name="t") == {
        "X-AppEngine-QueueName": "q",
        "X-AppEngine-TaskName": "t",
        "X-AppEngine-TaskRetryCount": "0",
        "X-AppEngine-TaskExecutionCount": "0",
    }
    eta = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    full = make_task_headers(
        queue_name="q",
        task_name="t",
        retry_count=2,
        execution_count=1,
        eta=eta,
        family=CLOUDTASKS,
        previous_response=500,
        retry_reason="INTERNAL",
    )
    assert full == {
        "X-CloudTasks-QueueName": "q",
        "X-CloudTasks-TaskName": "t",
        "X-CloudTasks-TaskRetryCount": "2",
        "X-CloudTasks-TaskExecutionCount": "1",
        "X-CloudTasks-TaskETA": f"{eta.timestamp():.6f}",
        "X-CloudTasks-TaskPreviousResponse": "500",
        "X-CloudTasks-TaskRetryReason": "INTERNAL",
    }


def test_make_and_parse_round_trip() -> None:
    eta = dt.datetime(2031, 1, 1, 0, 0, 0, 250000, tzinfo=dt.timezone.utc)
    for family in (APPENGINE, CLOUDTASKS):
        made = make_task_headers(
            queue_name="q", task_name="t", retry_count=5, execution_count=4, eta=eta, family=family
        )
        assert TaskHeaders.parse(made) == TaskHeaders("q", "t", 5, 4, eta, family)


CONNECTION_HEADERS = [
    "Connection",
    "Keep-Alive",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "transfer_encoding",
    "Upgrade",
    "Content-Length",
    "HOST",
]


@pytest.mark.parametrize("name", CONNECTION_HEADERS)
def test_connection_headers_are_hop_by_hop_and_never_forwarded(name: str) -> None:
    assert is_hop_by_hop_header(name)
    own = {name: "1", "X-Tenant": "acme"}
    assert forwardable_headers(own) == {"X-Tenant": "acme"}
    queue = make_task_headers(queue_name="q", task_name="t")
    assert name not in delivery_headers(own, queue)


@pytest.mark.parametrize("name", ["X-Tenant", "Authorization", "Content-Type", "Te-Custom", "X-Proxy-Id", "Tea"])
def test_other_headers_are_not_hop_by_hop(name: str) -> None:
    assert not is_hop_by_hop_header(name)
    assert forwardable_headers({name: "1"}) == {name: "1"}
