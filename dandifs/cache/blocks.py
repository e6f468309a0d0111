"""Block arithmetic: which fixed-size blocks hold a byte range, and how to group them.

Pure functions of a block size and an object size, so that every other part of the cache
talks in block indices and only this module converts between bytes and blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class BlockLayout:
    """An object of `object_size` bytes cut into blocks of `block_size` (the last may be short)."""

    block_size: int
    object_size: int

    def __post_init__(self) -> None:
        if self.block_size <= 0:
            raise ValueError(f"block size must be positive, not {self.block_size}")
        if self.object_size < 0:
            raise ValueError(f"object size must not be negative, not {self.object_size}")

    @property
    def block_count(self) -> int:
        return -(-self.object_size // self.block_size)

    def block_of(self, offset: int) -> int:
        """The index of the block holding byte `offset`."""
        return offset // self.block_size

    def bounds(self, index: int) -> tuple[int, int]:
        """Byte range `[start, end)` of block `index`."""
        if not 0 <= index < self.block_count:
            raise IndexError(f"block {index} is outside 0..{self.block_count - 1}")
        start = index * self.block_size
        return start, min(start + self.block_size, self.object_size)

    def block_length(self, index: int) -> int:
        start, end = self.bounds(index)
        return end - start

    def span(self, offset: int, size: int) -> range:
        """The blocks holding bytes `[offset, offset + size)`, clipped to the object."""
        end = min(offset + size, self.object_size)
        if offset < 0 or size < 0:
            raise ValueError(f"bad byte range: offset {offset}, size {size}")
        if offset >= end:
            return range(0)
        return range(self.block_of(offset), self.block_of(end - 1) + 1)

    def byte_range(self, blocks: range) -> tuple[int, int]:
        """Byte range `[start, end)` covered by a contiguous run of blocks."""
        return self.bounds(blocks.start)[0], self.bounds(blocks.stop - 1)[1]


def runs(indices: Iterable[int], max_length: int) -> Iterator[range]:
    """Group sorted, distinct block indices into contiguous runs of at most `max_length`.

    Adjacent missing blocks become one ranged GET; a gap or the length cap starts a new one.
    """
    if max_length <= 0:
        raise ValueError(f"run length must be positive, not {max_length}")
    start = previous = None
    for index in indices:
        if start is not None and previous is not None:
            if index == previous + 1 and index - start < max_length:
                previous = index
                continue
            yield range(start, previous + 1)
        start = previous = index
    if start is not None and previous is not None:
        yield range(start, previous + 1)


def split(blocks: range, max_length: int) -> Iterator[range]:
    """Cut a contiguous run into pieces of at most `max_length` blocks."""
    if max_length <= 0:
        raise ValueError(f"run length must be positive, not {max_length}")
    for start in range(blocks.start, blocks.stop, max_length):
        yield range(start, min(start + max_length, blocks.stop))
