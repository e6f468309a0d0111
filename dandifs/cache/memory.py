"""An in-memory LRU of blocks, bounded by the bytes it holds rather than by a count."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Data = bytes | memoryview


class MemoryStore(Generic[Key]):
    """Least-recently-used blocks up to `capacity` bytes.

    A block larger than the whole capacity is not kept at all, so the bound always holds.
    `on_evict` hears about every block that leaves, so that callers can drop bookkeeping
    tied to it.
    """

    def __init__(self, capacity: int, *, on_evict: Callable[[Key], None] | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"memory capacity must not be negative, not {capacity}")
        self.capacity = capacity
        self._blocks: OrderedDict[Key, Data] = OrderedDict()
        self._bytes = 0
        self._on_evict = on_evict

    @property
    def bytes(self) -> int:
        return self._bytes

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

    def put(self, key: Key, data: Data) -> None:
        self.discard(key)
        if len(data) > self.capacity:
            return
        self._blocks[key] = data
        self._bytes += len(data)
        while self._bytes > self.capacity:
            oldest, dropped = self._blocks.popitem(last=False)
            self._bytes -= len(dropped)
            if self._on_evict is not None:
                self._on_evict(oldest)

    def discard(self, key: Key) -> None:
        data = self._blocks.pop(key, None)
        if data is not None:
            self._bytes -= len(data)
