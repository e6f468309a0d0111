"""What the WebDAV front end needs from the async core, per caller.

One `Session` per API token (and one shared anonymous session): each has its own
resolver and metadata cache, so an embargoed entry resolved for one user is never served
from a cache to another.  `Sessions` validates tokens once and keeps a bounded number
of sessions alive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from dandifs.errors import InvalidToken
from dandifs.resolve.entry import Entry


class Session(Protocol):
    """The core as seen by one caller (async; runs on the core's event loop)."""

    @property
    def requests_made(self) -> int:
        """Archive and S3 requests this session has sent so far."""
        ...

    async def stat(self, path: str) -> Entry: ...

    async def listdir(self, path: str) -> list[Entry]: ...

    async def read(self, entry: Entry, start: int, end: int) -> bytes:
        """Bytes `[start, end)` of a file entry."""
        ...

    async def locate(self, url: str) -> str:
        """Where an archive download URL leads (a presigned S3 URL), resolved with the token."""
        ...

    async def metadata(self, entry: Entry) -> dict[str, Any]:
        """The archive's metadata record for an entry (asset or version), for people to read."""
        ...

    async def aclose(self) -> None: ...


SessionOpener = Callable[[str | None], Awaitable[Session]]
"""Builds a session for a token (None: anonymous); raises InvalidToken if the archive says no."""


class Sessions:
    """Sessions by token: the anonymous one forever, the last `capacity` token sessions."""

    def __init__(self, open_session: SessionOpener, *, capacity: int = 64) -> None:
        self._open = open_session
        self._capacity = capacity
        self._anonymous: Session | None = None
        self._by_token: OrderedDict[str, Session] = OrderedDict()
        self._rejected: OrderedDict[str, None] = OrderedDict()
        self._lock = anyio.Lock()

    async def get(self, token: str | None) -> Session:
        async with self._lock:
            if token is None:
                if self._anonymous is None:
                    self._anonymous = await self._open(None)
                return self._anonymous
            if token in self._rejected:
                raise InvalidToken("the archive rejected this API token")
            session = self._by_token.get(token)
            if session is None:
                try:
                    session = await self._open(token)
                except InvalidToken:
                    self._remember_rejected(token)
                    raise
                self._by_token[token] = session
                await self._evict()
            self._by_token.move_to_end(token)
            return session

    def _remember_rejected(self, token: str) -> None:
        self._rejected[token] = None
        while len(self._rejected) > self._capacity:
            self._rejected.popitem(last=False)

    async def _evict(self) -> None:
        while len(self._by_token) > self._capacity:
            _, oldest = self._by_token.popitem(last=False)
            await oldest.aclose()

    def requests_made(self) -> int:
        """Requests sent by the sessions alive now (read without the lock: a counter)."""
        alive = list(self._by_token.values())
        if self._anonymous is not None:
            alive.append(self._anonymous)
        return sum(session.requests_made for session in alive)

    async def aclose(self) -> None:
        sessions = list(self._by_token.values())
        if self._anonymous is not None:
            sessions.append(self._anonymous)
        self._by_token.clear()
        self._anonymous = None
        for session in sessions:
            await session.aclose()
