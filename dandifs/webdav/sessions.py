"""What the WebDAV front end needs from the async core, per caller.

One `Session` per API token (and one shared anonymous session): each has its own
resolver, metadata cache and block cache, so an embargoed entry or block fetched for one
user is never served from a cache to another.  `Sessions` validates each token once and
keeps a bounded number of sessions alive.

A session is an async context (its block cache runs background tasks in a task group,
which must be entered and left by one task), so each lives in a host task of `run`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from dandifs.errors import InvalidToken, Unavailable
from dandifs.resolve.entry import Entry


class Reader(Protocol):
    async def read(self, offset: int, size: int) -> bytes: ...

    async def aclose(self) -> None: ...


class Session(Protocol):
    """The core as seen by one caller (async; runs on the core's event loop)."""

    @property
    def requests_made(self) -> int:
        """Archive and S3 requests this session has sent so far."""
        ...

    async def stat(self, path: str) -> Entry: ...

    async def listdir(self, path: str) -> list[Entry]: ...

    async def open_reader(self, entry: Entry) -> Reader:
        """A reader of a file entry's bytes (with its own read-ahead)."""
        ...

    async def locate(self, url: str) -> str:
        """Where an archive download URL leads (a presigned S3 URL), resolved with the token."""
        ...

    async def metadata(self, entry: Entry) -> dict[str, Any]:
        """The archive's metadata record for an entry (asset or version), for people to read."""
        ...


SessionOpener = Callable[[str | None], AbstractAsyncContextManager[Session]]
"""A session for a token (None: anonymous); entering it raises InvalidToken if the archive says no."""


REJECTION_MEMORY_SECONDS = 60.0


@dataclass
class _Hosted:
    session: Session
    closed: anyio.Event


@dataclass
class _Opening:
    """A session being opened: later callers for the same token wait for it."""

    done: anyio.Event
    hosted: _Hosted | None = None
    error: BaseException | None = None


class Sessions:
    """Sessions by token: the anonymous one while running, the last `capacity` token ones.

    Opening a session (validating its token) blocks only the callers with that token:
    one caller opens it, the others wait for that one attempt.
    """

    def __init__(self, open_session: SessionOpener, *, capacity: int = 64) -> None:
        self._open = open_session
        self._capacity = capacity
        self._anonymous: _Hosted | None = None
        self._by_token: OrderedDict[str, _Hosted] = OrderedDict()
        self._opening: dict[str | None, _Opening] = {}
        self._rejected: OrderedDict[str, float] = OrderedDict()
        self._tasks: TaskGroup | None = None
        self._stopping = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the sessions until `aclose`; returns once every session has closed."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            await self._stopping.wait()
            for hosted in self._alive():
                hosted.closed.set()
        self._tasks = None

    async def _host(self, token: str | None, *, task_status: TaskStatus[_Hosted]) -> None:
        async with self._open(token) as session:
            hosted = _Hosted(session, anyio.Event())
            task_status.started(hosted)
            await hosted.closed.wait()

    async def get(self, token: str | None) -> Session:
        hosted = self._anonymous if token is None else self._by_token.get(token)
        if hosted is None:
            if token is not None and self._recently_rejected(token):
                raise InvalidToken("the archive rejected this API token")
            hosted = await self._open_once(token)
        if token is not None and token in self._by_token:
            self._by_token.move_to_end(token)
        return hosted.session

    async def _open_once(self, token: str | None) -> _Hosted:
        opening = self._opening.get(token)
        if opening is not None:
            await opening.done.wait()
            if opening.error is not None:
                raise opening.error
            assert opening.hosted is not None
            return opening.hosted
        opening = self._opening[token] = _Opening(anyio.Event())
        try:
            if self._tasks is None or self._stopping.is_set():
                raise Unavailable("the server is shutting down")
            opening.hosted = await self._tasks.start(self._host, token)
        except InvalidToken as exc:
            self._remember_rejected(token)
            opening.error = exc
            raise
        except BaseException as exc:
            opening.error = exc
            raise
        finally:
            del self._opening[token]
            opening.done.set()
        if token is None:
            self._anonymous = opening.hosted
        else:
            self._by_token[token] = opening.hosted
            self._evict()
        return opening.hosted

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

    def requests_made(self) -> int:
        """Requests sent by the sessions alive now (read without the loop: counters only)."""
        return sum(hosted.session.requests_made for hosted in self._alive())

    async def aclose(self) -> None:
        """Close every session (`run` returns when they are closed)."""
        self._stopping.set()
