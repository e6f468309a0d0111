"""Cores by token, for a server that many callers share.

One core per API token (and one anonymous core): each has its own resolver, metadata
cache and block cache, so an embargoed entry or block fetched for one caller is never
served from a cache to another.  The pool validates each token once, remembers a
rejection briefly, and keeps a bounded number of cores open.

A core is an async context (its block cache runs background tasks in a task group, which
must be entered and left by one task), so each lives in a host task of `run`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup, TaskStatus

from dandifs.concurrency import SingleFlight
from dandifs.core.core import Core
from dandifs.errors import InvalidToken, Unavailable

CoreOpener = Callable[[str | None], AbstractAsyncContextManager[Core]]
"""A core for a token (None: anonymous); entering it raises InvalidToken if the archive says no."""

REJECTION_MEMORY_SECONDS = 60.0


@dataclass
class _Hosted:
    core: Core
    closed: anyio.Event


class CorePool:
    """Cores by token: the anonymous one while running, the last `capacity` token ones.

    Opening a core (validating its token) blocks only the callers with that token: one
    caller opens it, the others wait for that one attempt.
    """

    def __init__(self, open_core: CoreOpener, *, capacity: int = 64) -> None:
        self._open = open_core
        self._capacity = capacity
        self._anonymous: _Hosted | None = None
        self._by_token: OrderedDict[str, _Hosted] = OrderedDict()
        self._opening: SingleFlight[str | None, _Hosted] = SingleFlight()
        self._rejected: OrderedDict[str, float] = OrderedDict()
        self._tasks: TaskGroup | None = None
        self._stopping = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the cores until `aclose`; returns once every core has closed."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            await self._stopping.wait()
            for hosted in self._alive():
                hosted.closed.set()
        self._tasks = None

    async def _host(self, token: str | None, *, task_status: TaskStatus[_Hosted]) -> None:
        async with self._open(token) as core:
            hosted = _Hosted(core, anyio.Event())
            task_status.started(hosted)
            await hosted.closed.wait()

    async def get(self, token: str | None) -> Core:
        """The core for `token` (None: anonymous), opened on first use."""
        hosted = self._anonymous if token is None else self._by_token.get(token)
        if hosted is None:
            if token is not None and self._recently_rejected(token):
                raise InvalidToken("the archive rejected this API token")
            hosted = await self._opening.run(token, lambda: self._start(token))
        if token is not None and token in self._by_token:
            self._by_token.move_to_end(token)
        return hosted.core

    async def _start(self, token: str | None) -> _Hosted:
        if self._tasks is None or self._stopping.is_set():
            raise Unavailable("the server is shutting down")
        try:
            hosted: _Hosted = await self._tasks.start(self._host, token)
        except InvalidToken:
            self._remember_rejected(token)
            raise
        if token is None:
            self._anonymous = hosted
        else:
            self._by_token[token] = hosted
            self._evict()
        return hosted

    def _recently_rejected(self, token: str) -> bool:
        """Rejections are remembered briefly: a token created a minute ago may be new."""
        rejected_at = self._rejected.get(token)
        if rejected_at is None:
            return False
        if time.monotonic() - rejected_at < REJECTION_MEMORY_SECONDS:
            return True
        del self._rejected[token]
        return False

    def _remember_rejected(self, token: str | None) -> None:
        if token is None:
            return
        self._rejected[token] = time.monotonic()
        while len(self._rejected) > self._capacity:
            self._rejected.popitem(last=False)

    def _evict(self) -> None:
        while len(self._by_token) > self._capacity:
            _, oldest = self._by_token.popitem(last=False)
            oldest.closed.set()

    def _alive(self) -> list[_Hosted]:
        alive = list(self._by_token.values())
        if self._anonymous is not None:
            alive.append(self._anonymous)
        return alive

    def cores(self) -> list[Core]:
        """The cores open now (a change made through one is told to the others)."""
        return [hosted.core for hosted in self._alive()]

    def requests_made(self) -> int:
        """Requests sent by the cores alive now (read without the loop: counters only)."""
        return sum(hosted.core.requests_made for hosted in self._alive())

    async def aclose(self) -> None:
        """Close every core (`run` returns when they are closed)."""
        self._stopping.set()
