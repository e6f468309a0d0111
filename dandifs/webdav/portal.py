"""The bridge from WsgiDAV's worker threads to the one async core.

WsgiDAV is synchronous and runs each request on a cheroot worker thread; the resolver,
archive client and block cache are async and live on one trio event loop.  `CorePortal`
runs that loop on a background thread and lets any worker thread call into it and wait,
so both front ends share one core (one cache, one connection pool) instead of two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")


class CorePortal:
    """A trio event loop on its own thread, callable from any other thread."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None

    def start(self) -> CorePortal:
        self._portal = self._stack.enter_context(start_blocking_portal(backend="trio"))
        return self

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `await fn(*args)` on the core loop and return its result (or raise its error)."""
        if self._portal is None:
            raise RuntimeError("the core portal is not running")
        return self._portal.call(fn, *args)

    def start_task(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Future:
        """Start `fn(*args, task_status=...)` on the loop; returns once it has started."""
        if self._portal is None:
            raise RuntimeError("the core portal is not running")
        future, _ = self._portal.start_task(fn, *args)
        return future

    def stop(self) -> None:
        """Stop the loop (tasks still running on it are cancelled)."""
        self._stack.close()
        self._portal = None

    def __enter__(self) -> CorePortal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
