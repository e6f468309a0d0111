"""An in-memory LRU of blocks, bounded by the bytes it holds rather than by a count, together
with the other block bytes the process holds on the cache's behalf.

The bound covers three things, so that it bounds what the cache costs the process and not
just the blocks it can hand out:

- `bytes`: blocks in the LRU;
- `reserved`: bytes promised to fetches under way (their buffers are being filled);
- `held_out`: blocks the LRU no longer has that something else still keeps alive (the
  disk store's queue of blocks waiting to be written), marked with `hold`.

Storing a block or reserving bytes evicts least-recently-used blocks until the three fit.
Eviction cannot free reserved or held bytes, so a caller that must not pass the bound asks
`room_for` first and waits; one that may not wait (a read) reserves anyway, and the total
is then over the bound until its bytes are stored or released.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Data = bytes | memoryview


class MemoryStore(Generic[Key]):
    """Least-recently-used blocks, reserved bytes and held blocks, up to `capacity` bytes.

    A block larger than the whole capacity is not kept at all.  `on_evict` hears about every
    block that leaves, so that callers can drop bookkeeping tied to it.
    """

    def __init__(self, capacity: int, *, on_evict: Callable[[Key], None] | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"memory capacity must not be negative, not {capacity}")
        self.capacity = capacity
        self._blocks: OrderedDict[Key, Data] = OrderedDict()
        self._bytes = 0
        self._reserved = 0
        self._held: dict[Key, int] = {}  # held block -> its size
        self._held_bytes = 0  # every held block, in the LRU or not
        self._held_out = 0  # held blocks the LRU does not have
        self._on_evict = on_evict
        self._peak = 0

    @property
    def bytes(self) -> int:
        """Bytes of the blocks in the LRU."""
        return self._bytes

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def held_bytes(self) -> int:
        """Bytes of every held block, whether the LRU has it or not."""
        return self._held_bytes

    @property
    def held_out(self) -> int:
        """Bytes of held blocks that the LRU no longer has."""
        return self._held_out

    @property
    def total(self) -> int:
        """Everything the bound covers: blocks, reservations, held blocks outside the LRU."""
        return self._bytes + self._reserved + self._held_out

    @property
    def peak(self) -> int:
        """The highest `total` seen after any step."""
        return self._peak

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, key: object) -> bool:
        return key in self._blocks

    def get(self, key: Key) -> Data | None:
        """The block, marked most recently used; None if absent."""
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
        return data

    def peek(self, key: Key) -> Data | None:
        """The block, leaving its place in the LRU as it was; None if absent."""
        return self._blocks.get(key)

    def put(self, key: Key, data: Data, *, reserved: int = 0) -> None:
        """Keep the block, first releasing the `reserved` bytes that were promised to it."""
        self._reserved -= reserved
        self.discard(key)
        if len(data) > self.capacity:
            return
        self._blocks[key] = data
        self._bytes += len(data)
        if key in self._held:
            self._held_out -= self._held[key]
        self._evict()

    def discard(self, key: Key) -> None:
        data = self._blocks.pop(key, None)
        if data is not None:
            self._left(key, data)

    # -- reservations ----------------------------------------------------------------------

    def room_for(self, count: int) -> bool:
        """Whether reserving `count` more bytes keeps the total within the bound once blocks
        are evicted (always so when nothing is reserved or held: a lone fetch larger than the
        bound must still be able to start)."""
        pinned = self._reserved + self._held_bytes
        return pinned == 0 or pinned + count <= self.capacity

    def reserve(self, count: int) -> None:
        """Promise `count` bytes to a fetch, evicting blocks to make room."""
        self._reserved += count
        self._evict()

    def release(self, count: int) -> None:
        """Give back reserved bytes that were not stored."""
        self._reserved -= count

    # -- blocks kept alive elsewhere ---------------------------------------------------------

    def hold(self, key: Key, size: int) -> None:
        """Count the block's `size` bytes as long as something else keeps it (until `unhold`),
        also after the LRU let it go."""
        if key in self._held:
            return
        self._held[key] = size
        self._held_bytes += size
        if key not in self._blocks:
            self._held_out += size
            self._evict()

    def unhold(self, key: Key) -> None:
        size = self._held.pop(key, None)
        if size is None:
            return
        self._held_bytes -= size
        if key not in self._blocks:
            self._held_out -= size

    def held(self) -> list[Key]:
        return list(self._held)

    # -- eviction ----------------------------------------------------------------------------

    def _evict(self) -> None:
        while self.total > self.capacity and self._blocks:
            oldest, dropped = self._blocks.popitem(last=False)
            self._left(oldest, dropped)
            if self._on_evict is not None:
                self._on_evict(oldest)
        self._peak = max(self._peak, self.total)

    def _left(self, key: Key, data: Data) -> None:
        self._bytes -= len(data)
        if key in self._held:
            self._held_out += self._held[key]
