"""Retry policies: a queue's defaults and a task's own ``retry_options``.

The numbers and the backoff curve are those of Google Cloud Tasks: the delay
doubles ``max_doublings`` times from ``min_backoff`` and then grows linearly,
never beyond ``max_backoff``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from im_task.errors import ConfigurationError

__all__ = ["RetryOptions", "RetryPolicy"]


@dataclass(frozen=True)
class RetryOptions:
    """A task's own retry options, in App Engine's ``TaskRetryOptions`` terms.

    Every field is optional; an unset field falls back to the queue's policy.

    Attributes:
        task_retry_limit: Retries allowed after the first attempt. Once a task's
            retry count passes it (and, with ``task_age_limit`` set too, the
            task is that old), it is given up: the endpoint logs it and answers
            200 on every queue, the local queue stops retrying it.
        task_age_limit: Seconds after the first attempt past which the task is
            not retried any more (once ``task_retry_limit`` is passed too, when
            it is set); 0 means no limit. Enforced by queues that honour
            per-task options, such as the local queue.
        min_backoff_seconds: Smallest delay before a retry.
        max_backoff_seconds: Largest delay before a retry.
        max_doublings: How many times the delay doubles before growing linearly.
    """

    task_retry_limit: int | None = None
    task_age_limit: float | None = None
    min_backoff_seconds: float | None = None
    max_backoff_seconds: float | None = None
    max_doublings: int | None = None

    def __post_init__(self) -> None:
        for name in ("task_retry_limit", "max_doublings"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigurationError(f"retry_options {name} must be a whole number >= 0, not {value!r}.")
        for name in ("task_age_limit", "min_backoff_seconds", "max_backoff_seconds"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value)
            ):
                raise ConfigurationError(
                    f"retry_options {name} must be a finite number of seconds >= 0, not {value!r}."
                )
        low, high = self.min_backoff_seconds, self.max_backoff_seconds
        if low is not None and high is not None and low > high:
            raise ConfigurationError(
                f"retry_options min_backoff_seconds ({low}) is larger than max_backoff_seconds ({high})."
            )

    def to_dict(self) -> dict[str, int | float]:
        """The options that are set, by field name: what :meth:`coerce` reads back (JSON-safe).

        Example:
            >>> RetryOptions(task_retry_limit=3).to_dict()
            {'task_retry_limit': 3}
        """
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def coerce(cls, value: RetryOptions | Mapping[str, Any] | None) -> RetryOptions | None:
        """Builds retry options from a mapping, or passes through an instance or None.

        Args:
            value: ``None``, a ``RetryOptions``, or a mapping with its field names.

        Returns:
            The retry options, or None.

        Raises:
            ConfigurationError: For an unknown key or a bad value.
        """
        if value is None or isinstance(value, RetryOptions):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"retry_options must be a dict such as {{'task_retry_limit': 3}}, not {type(value).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown retry_options {', '.join(map(repr, unknown))}; use {', '.join(sorted(known))}."
            )
        return cls(**value)


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's retry policy, with Cloud Tasks' defaults.

    Attributes:
        max_attempts: Attempts in all, the first included; ``None`` for no limit.
        min_backoff: Seconds before the first retry.
        max_backoff: Largest delay between attempts, in seconds.
        max_doublings: How many times the delay doubles before growing linearly.
        max_retry_duration: Seconds after the first attempt past which the task
            is not retried (once ``max_attempts`` is reached too); ``None`` or
            0 for no limit.
    """

    max_attempts: int | None = 100
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16
    max_retry_duration: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (not isinstance(self.max_attempts, int) or self.max_attempts < 1):
            raise ConfigurationError(f"max_attempts must be a whole number >= 1 or None, not {self.max_attempts!r}.")
        if not 0 <= self.min_backoff <= self.max_backoff:
            raise ConfigurationError(
                f"Backoff must satisfy 0 <= min_backoff <= max_backoff; got {self.min_backoff} and {self.max_backoff}."
            )
        if not isinstance(self.max_doublings, int) or self.max_doublings < 0:
            raise ConfigurationError(f"max_doublings must be a whole number >= 0, not {self.max_doublings!r}.")

    def with_task_options(self, options: RetryOptions | None) -> RetryPolicy:
        """Returns this policy with a task's own retry options laid over it."""
        if options is None:
            return self
        changes: dict[str, Any] = {}
        if options.task_retry_limit is not None:
            changes["max_attempts"] = options.task_retry_limit + 1
        if options.task_age_limit is not None:
            changes["max_retry_duration"] = options.task_age_limit
        if options.min_backoff_seconds is not None:
            changes["min_backoff"] = options.min_backoff_seconds
        if options.max_backoff_seconds is not None:
            changes["max_backoff"] = options.max_backoff_seconds
        if options.max_doublings is not None:
            changes["max_doublings"] = options.max_doublings
        low = changes.get("min_backoff", self.min_backoff)
        high = changes.get("max_backoff", self.max_backoff)
        if low > high:  # the task's own bound wins over the queue's
            if "min_backoff" in changes:
                changes["max_backoff"] = low
            else:
                changes["min_backoff"] = high
        return replace(self, **changes)

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before a given retry.

        Args:
            retry_number: 1 for the first retry, 2 for the second, and so on.

        Returns:
            The delay: doubling from ``min_backoff`` ``max_doublings`` times,
            then growing by the last doubled step each retry, capped at
            ``max_backoff``.
        """
        if retry_number < 1:
            raise ValueError(f"retry_number starts at 1, not {retry_number}.")
        doublings = min(retry_number - 1, self.max_doublings)
        delay = self.min_backoff * 2**doublings
        linear_steps = retry_number - 1 - doublings
        if linear_steps:
            delay += linear_steps * self.min_backoff * 2**self.max_doublings
        return float(min(delay, self.max_backoff))

    def gives_up(self, attempts: int, first_attempt_age: float) -> bool:
        """Whether a task that failed ``attempts`` times is not to be tried again.

        As on Cloud Tasks, retrying stops only when every limit that is set
        is reached: with both ``max_attempts`` and ``max_retry_duration``, the
        task is retried until it has made that many attempts *and* is that old.

        Args:
            attempts: Attempts made so far, the failed one included.
            first_attempt_age: Seconds since the first attempt.

        Returns:
            True when the limits that are set are all used up; never when none is set.
        """
        limits = []
        if self.max_attempts is not None:
            limits.append(attempts >= self.max_attempts)
        if self.max_retry_duration:  # 0 means no limit, as on Cloud Tasks
            limits.append(first_attempt_age >= self.max_retry_duration)
        return bool(limits) and all(limits)
