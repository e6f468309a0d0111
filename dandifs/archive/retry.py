"""The one retry policy for every request to the archive and to S3.

Transient failures (429 and 5xx gateway answers, refused or reset connections, timeouts,
bodies shorter than announced) are retried with exponential back-off and jitter; a
`Retry-After` from the server replaces the back-off (capped, so a confused server cannot park
a reader for an hour).  Attempts and total time are both bounded; when they run out the
caller gets `errors.Unavailable`, whose message names the URL and the last failure.

Time comes from `anyio.current_time()`, i.e. trio's clock, so tests drive the back-off with
`trio.testing.MockClock(autojump_threshold=0)` and run instantly.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio

from dandifs.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses that mean "not now" rather than "no": the request may succeed if repeated."""


class TransientFailure(Exception):
    """One attempt failed in a way that may pass; `description` ends up in the final error."""

    def __init__(self, description: str, *, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.  Delay after the n-th failure: `base * multiplier**(n-1)`, capped at
    `max_delay`, scaled by a jitter factor in [1 - jitter, 1]."""

    max_attempts: int = 8
    total_time: float = 90.0
    base_delay: float = 0.25
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def backoff(self, failures: int) -> float:
        """The pause after `failures` consecutive failures (1-based), jitter included."""
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (failures - 1))
        return ceiling * (1.0 - self.jitter * self.random())

    def delay_after(self, failures: int, retry_after: float | None) -> float:
        """What to wait: the server's `Retry-After` (capped) when given, else the back-off."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff(failures)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date.

    Unparseable values give None (fall back to back-off); dates in the past give 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


class Attempts:
    """The retry budget of one logical operation (one request, or one streamed range).

    Call `failed()` after each transient failure: it sleeps before the next attempt, or
    raises `Unavailable` once attempts or time are used up.
    """

    def __init__(
        self, policy: RetryPolicy, what: str, *, on_failure: Callable[[], None] | None = None
    ) -> None:
        self.policy = policy
        self.what = what
        self.on_failure = on_failure
        self.failures = 0
        self.started = anyio.current_time()

    def restart(self) -> None:
        """Start a fresh budget (after progress, so one long transfer is not one attempt)."""
        self.failures = 0
        self.started = anyio.current_time()

    @property
    def deadline(self) -> float:
        return self.started + self.policy.total_time

    def elapsed(self) -> float:
        return anyio.current_time() - self.started

    def give_up(self, last: str, retry_after: float | None) -> Unavailable:
        tries = "attempt" if self.failures == 1 else "attempts"
        return Unavailable(
            f"{self.what}: still failing after {self.failures} {tries} in "
            f"{self.elapsed():.1f} s (last failure: {last}); try again later",
            retry_after=retry_after,
        )

    async def failed(self, failure: TransientFailure) -> None:
        self.failures += 1
        if self.on_failure is not None:
            self.on_failure()
        delay = self.policy.delay_after(self.failures, failure.retry_after)
        out_of_attempts = self.failures >= self.policy.max_attempts
        out_of_time = anyio.current_time() + delay > self.deadline
        if out_of_attempts or out_of_time:
            raise self.give_up(failure.description, failure.retry_after)
        log.debug(
            "%s: %s; retry %d in %.2f s", self.what, failure.description, self.failures, delay
        )
        await anyio.sleep(delay)


async def call_with_retries(
    policy: RetryPolicy,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    on_failure: Callable[[], None] | None = None,
) -> T:
    """Run `attempt` until it returns, retrying `TransientFailure` under `policy`.

    Every other exception passes straight through.  `total_time` limits when a new attempt
    may start, not how long one may run: a slow but healthy transfer (a large part upload)
    is never cut off, while a stalled one is ended by the HTTP timeouts.
    """
    attempts = Attempts(policy, what, on_failure=on_failure)
    while True:
        try:
            return await attempt()
        except TransientFailure as failure:
            await attempts.failed(failure)
