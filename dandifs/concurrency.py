"""Async patterns every layer shares: one outcome many tasks wait on, single flight,
concurrent calls that fail as one error, and the error inside an exception group.

Each is written once here: the resolver's lookups, the block cache's fetches and the
WebDAV server's token sessions all share work the same way, and every place that runs
tasks in a group reports a failure the same way (a domain error, not a group of them).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import anyio

if sys.version_info < (3, 11):  # trio brings the backport there
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class LeaderCancelled(Exception):
    """The task doing the shared work was cancelled; a waiter was not, and tries again."""


class Outcome(Generic[T]):
    """The value or error of one piece of work, awaited by any number of tasks.

    Every waiter gets its own copy of an error (its own traceback), and a cancellation
    of the task that did the work reaches a waiter as `LeaderCancelled`, never as a
    cancellation that is not the waiter's own.
    """

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def succeed(self, value: T) -> None:
        self.value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    async def wait(self) -> T:
        await self._done.wait()
        if self.error is not None:
            if isinstance(self.error, Exception):
                raise copy_error(self.error)
            raise LeaderCancelled()
        return self.value  # type: ignore[return-value]


def copy_error(error: Exception) -> Exception:
    """A fresh exception of the same kind, so each waiter gets its own traceback."""
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error
    return copy


class SingleFlight(Generic[K, T]):
    """Concurrent calls for the same key share one execution and its outcome.

    If the execution's own task is cancelled, the callers waiting on it run the work
    again (one of them leads the retry); an error is raised to every caller.
    """

    def __init__(self, on_shared_wait: Callable[[], None] | None = None) -> None:
        self._running: dict[K, Outcome[T]] = {}
        self._on_shared_wait = on_shared_wait

    def running(self, key: K) -> bool:
        return key in self._running

    async def run(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        while True:
            outcome = self._running.get(key)
            if outcome is None:
                return await self._lead(key, work)
            if self._on_shared_wait is not None:
                self._on_shared_wait()
            try:
                return await outcome.wait()
            except LeaderCancelled:
                continue

    async def _lead(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        outcome: Outcome[T] = Outcome()
        self._running[key] = outcome
        try:
            value = await work()
        except BaseException as exc:
            outcome.fail(exc)
            raise
        finally:
            del self._running[key]
        outcome.succeed(value)
        return value


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group (nested or not) that is not a cancellation."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])


def unwrapped(error: BaseException) -> BaseException:
    """`error` itself, or for an exception group the first error inside that is not a
    cancellation: task groups wrap what their tasks raise, callers map single errors."""
    return first_error(error) if isinstance(error, BaseExceptionGroup) else error


async def gather(*works: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run independent calls concurrently; results in order.

    A failure is raised as itself (the first one), not wrapped in an exception group.
    """
    results: list[Any] = [None] * len(works)

    async def run(index: int) -> None:
        results[index] = await works[index]()

    try:
        async with anyio.create_task_group() as group:
            for index in range(len(works)):
                group.start_soon(run, index)
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    return results
