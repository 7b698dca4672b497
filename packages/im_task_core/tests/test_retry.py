"""Retry policies: the Cloud Tasks backoff curve, task retry options laid over a queue's policy, giving up."""

from __future__ import annotations

import pytest

from im_task import ConfigurationError
from im_task.retry import RetryOptions, RetryPolicy


def test_cloud_tasks_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.min_backoff, policy.max_backoff, policy.max_doublings) == (100, 0.1, 3600, 16)
    assert policy.max_retry_duration is None


def test_backoff_doubles_then_grows_linearly_then_is_capped() -> None:
    policy = RetryPolicy(min_backoff=10, max_backoff=300, max_doublings=3)
    delays = [policy.backoff(n) for n in range(1, 12)]
    # Doubling: 10, 20, 40, 80 (three doublings); then linear steps of 80: 160, 240; then the 300 cap.
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300, 300, 300, 300]
    assert all(isinstance(d, float) for d in delays)


def test_backoff_matches_the_cloud_tasks_documentation_example() -> None:
    # min 10 s, max 300 s, max doublings 3: "10s, 20s, 40s, 80s, 160s, 240s, 300s, 300s, ..."
    policy = RetryPolicy(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [policy.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_backoff_without_doublings_is_linear() -> None:
    policy = RetryPolicy(min_backoff=5, max_backoff=1000, max_doublings=0)
    assert [policy.backoff(n) for n in range(1, 5)] == [5, 10, 15, 20]


def test_backoff_with_equal_bounds_is_constant() -> None:
    policy = RetryPolicy(min_backoff=7, max_backoff=7)
    assert {policy.backoff(n) for n in range(1, 50)} == {7}


def test_backoff_is_monotonic_and_never_above_the_cap() -> None:
    policy = RetryPolicy()
    delays = [policy.backoff(n) for n in range(1, 200)]
    assert delays == sorted(delays)
    assert max(delays) == 3600
    assert delays[0] == 0.1


def test_backoff_counts_retries_from_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().backoff(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number >= 1"),
        ({"max_attempts": 1.5}, "max_attempts must be"),
        ({"min_backoff": -1}, "0 <= min_backoff <= max_backoff"),
        ({"min_backoff": 10, "max_backoff": 5}, "0 <= min_backoff <= max_backoff"),
        ({"max_doublings": -1}, "max_doublings must be"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_gives_up_on_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n, 0) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert not RetryPolicy(max_attempts=None).gives_up(10_000, 10**9)


def test_gives_up_on_age() -> None:
    policy = RetryPolicy(max_attempts=None, max_retry_duration=60)
    assert not policy.gives_up(5, 59.9)
    assert policy.gives_up(5, 60)


def test_gives_up_only_when_both_limits_are_reached_as_on_cloud_tasks() -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_duration=3600)
    assert not policy.gives_up(5, 60)  # enough attempts, but younger than an hour
    assert not policy.gives_up(2, 7200)  # old enough, but too few attempts
    assert policy.gives_up(5, 3600)


def test_a_zero_retry_duration_means_no_limit() -> None:
    assert not RetryPolicy(max_attempts=None, max_retry_duration=0).gives_up(10_000, 10**9)
    assert RetryPolicy(max_attempts=2, max_retry_duration=0).gives_up(2, 0)
    zero_age = RetryPolicy(max_attempts=3).with_task_options(RetryOptions(task_age_limit=0))
    assert not zero_age.gives_up(1, 0)
    assert zero_age.gives_up(3, 0)


def test_with_task_options_lays_the_task_over_the_queue() -> None:
    queue = RetryPolicy(max_attempts=10, min_backoff=1, max_backoff=100, max_doublings=4)
    assert queue.with_task_options(None) is queue
    assert queue.with_task_options(RetryOptions()) == queue
    task = queue.with_task_options(
        RetryOptions(
            task_retry_limit=2, task_age_limit=30, min_backoff_seconds=2, max_backoff_seconds=50, max_doublings=1
        )
    )
    assert task == RetryPolicy(max_attempts=3, min_backoff=2, max_backoff=50, max_doublings=1, max_retry_duration=30)
    assert [task.gives_up(n, 0) for n in (1, 2, 3)] == [False, False, False]  # not 30 s old yet
    assert task.gives_up(3, 30)


def test_with_task_options_keeps_bounds_consistent_the_task_winning() -> None:
    queue = RetryPolicy(min_backoff=1, max_backoff=10)
    raised_min = queue.with_task_options(RetryOptions(min_backoff_seconds=60))
    assert (raised_min.min_backoff, raised_min.max_backoff) == (60, 60)
    lowered_max = RetryPolicy(min_backoff=30, max_backoff=100).with_task_options(RetryOptions(max_backoff_seconds=5))
    assert (lowered_max.min_backoff, lowered_max.max_backoff) == (5, 5)


def test_retry_limit_zero_means_one_attempt() -> None:
    policy = RetryPolicy().with_task_options(RetryOptions(task_retry_limit=0))
    assert policy.max_attempts == 1
    assert policy.gives_up(1, 0)


def test_retry_options_coerce() -> None:
    assert RetryOptions.coerce(None) is None
    given = RetryOptions(task_retry_limit=1)
    assert RetryOptions.coerce(given) is given
    assert RetryOptions.coerce({"task_age_limit": 5, "max_doublings": 2}) == RetryOptions(
        task_age_limit=5, max_doublings=2
    )
    with pytest.raises(ConfigurationError, match="Unknown retry_options 'limit'; use max_backoff_seconds"):
        RetryOptions.coerce({"limit": 1})
