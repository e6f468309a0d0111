"""Bounded metadata caches with a lifetime per item, and single-flight lookups.

Each cached value carries its own expiry because one cache holds things of different
lifetimes: a published version's listing (hours), a draft's (seconds), a "not found"
(seconds).  Size is bounded by an LRU so that walking a huge archive cannot exhaust memory.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from dandifs.concurrency import SingleFlight
from dandifs.counters import Counters
from dandifs.errors import NotFound

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


@dataclass
class CacheStats(Counters):
    """What the caches did, for benchmarks and tests."""

    archive_calls: int = 0
    """Calls made to the archive client (one call may walk several pages)."""
    disk_hits: int = 0
    """Archive calls answered instead from answers kept on disk (published versions)."""
    hits: int = 0
    misses: int = 0
    negative_hits: int = 0
    expired: int = 0
    shared_waits: int = 0
    """Lookups that waited for an identical lookup already in flight instead of asking."""

    def count_shared_wait(self) -> None:
        self.shared_waits += 1


@dataclass(frozen=True)
class _Absent:
    """A cached "not found": the message is replayed to the next caller."""

    message: str


class TTLStore(Generic[K, V]):
    """An LRU map whose items expire at their own time (monotonic clock)."""

    def __init__(
        self,
        maxsize: int,
        stats: CacheStats,
        clock: Clock = time.monotonic,
        weigh: Callable[[V], int] | None = None,
    ) -> None:
        def size_of(item: tuple[float, V | _Absent]) -> int:
            value = item[1]
            return 1 if weigh is None or isinstance(value, _Absent) else max(1, weigh(value))

        self._items: LRUCache[K, tuple[float, V | _Absent]] = LRUCache(
            maxsize=maxsize, getsizeof=size_of
        )
        self._stats = stats
        self._clock = clock

    def lookup(self, key: K) -> tuple[bool, V | _Absent | None]:
        """`(True, value)` if a live item is cached (a value or an `_Absent`), else `(False, None)`."""
        item = self._items.get(key)
        if item is None:
            return False, None
        expires, value = item
        if self._clock() >= expires:
            self._items.pop(key, None)
            self._stats.expired += 1
            return False, None
        return True, value

    def get(self, key: K) -> V | None:
        """The live value for `key`; None if missing, expired or cached as absent."""
        found, value = self.lookup(key)
        return value if found and not isinstance(value, _Absent) else None  # type: ignore[return-value]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._store(key, value, ttl)

    def put_absent(self, key: K, message: str, ttl: float) -> None:
        self._store(key, _Absent(message), ttl)

    def _store(self, key: K, value: V | _Absent, ttl: float) -> None:
        if ttl <= 0:
            return
        try:
            self._items[key] = (self._clock() + ttl, value)
        except ValueError:
            # Heavier than the whole cache: serve it this once, keep nothing.
            self._items.pop(key, None)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)

    def forget_where(self, predicate: Callable[[K], bool]) -> None:
        """Forget every key for which `predicate` is true."""
        for key in [key for key in self._items.keys() if predicate(key)]:
            self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class MetadataCache(Generic[K, V]):
    """`TTLStore` + `SingleFlight` + negative caching: the resolver's one lookup pattern.

    `get(key, fetch, ttl)` answers from the cache when it can; otherwise runs `fetch` once
    for all concurrent callers, caches the value for `ttl(value)` seconds, and caches a
    `NotFound` for `negative_ttl` seconds (re-raised to later callers without a request).

    A `forget` is a change the cache must never undo: a fetch that was already under way
    (its answer may predate the change) is not cached, and callers after the `forget` do
    not join it but fetch anew.  Without this a draft listing fetched just before an
    upload registered its asset was cached after the upload's `forget`, and the new file
    was "not found" until the listing expired.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        negative_ttl: float,
        stats: CacheStats,
        clock: Clock = time.monotonic,
        weigh: Callable[[V], int] | None = None,
    ) -> None:
        self.store: TTLStore[K, V] = TTLStore(maxsize, stats, clock, weigh)
        self._flights: SingleFlight[tuple[K, int], V] = SingleFlight(
            on_shared_wait=stats.count_shared_wait
        )
        self._negative_ttl = negative_ttl
        self._stats = stats
        self._epoch = 0
        """Counts `forget` calls: a fill caches its answer only if none came meanwhile."""

    async def get(
        self,
        key: K,
        fetch: Callable[[], Awaitable[V]],
        ttl: Callable[[V], float] | float,
    ) -> V:
        found, value = self.store.lookup(key)
        if found:
            if isinstance(value, _Absent):
                self._stats.negative_hits += 1
                raise NotFound(value.message)
            self._stats.hits += 1
            return value  # type: ignore[return-value]
        epoch = self._epoch
        return await self._flights.run((key, epoch), lambda: self._fill(key, fetch, ttl, epoch))

    async def _fill(
        self, key: K, fetch: Callable[[], Awaitable[V]], ttl: Callable[[V], float] | float,
        epoch: int,
    ) -> V:
        self._stats.misses += 1
        try:
            value = await fetch()
        except NotFound as exc:
            if epoch == self._epoch:
                self.store.put_absent(key, str(exc), self._negative_ttl)
            raise
        if epoch == self._epoch:
            self.store.put(key, value, ttl(value) if callable(ttl) else ttl)
        return value

    def peek(self, key: K) -> V | None:
        return self.store.get(key)

    def put(self, key: K, value: V, ttl: float) -> None:
        self.store.put(key, value, ttl)

    def forget(self, key: K) -> None:
        self._epoch += 1
        self.store.forget(key)

    def forget_where(self, predicate: Callable[[K], bool]) -> None:
        self._epoch += 1
        self.store.forget_where(predicate)
