"""When and how far to read ahead of one open handle: a pure decision per read.

The first read fetches only its own blocks (an HDF5 open starts with tiny scattered reads).
A read that starts where the previous one ended, or up to `tolerance` bytes after it, is
sequential; one up to `tolerance` bytes before it changes nothing (the kernel delivers its
own read-ahead slightly out of order, and readers re-read headers): the window starts at
`initial_blocks` and doubles each time the reader enters a new block, up to `max_blocks`.
Any other read is random and resets the window to nothing.  The window is topped up only
once the reader has used half of what was asked for, so a steady stream turns into a few
large GETs rather than one small GET per block.
"""

from __future__ import annotations

from dataclasses import dataclass

from dandifs.cache.blocks import BlockLayout


@dataclass
class ReadAheadPolicy:
    layout: BlockLayout
    initial_blocks: int
    max_blocks: int
    tolerance: int
    window: int = 0
    _expected_offset: int | None = None
    _last_block: int = -1
    _ahead: int = 0  # first block not yet asked for by read-ahead

    def after_read(self, offset: int, size: int) -> range:
        """The blocks to fetch in the background now that `[offset, offset + size)` is read."""
        blocks = self.layout.span(offset, size)
        if not blocks:
            return range(0)
        expected = self._expected_offset
        if expected is not None and expected - self.tolerance <= offset < expected:
            # A little backward (the kernel's read-ahead arrives out of order, or a re-read):
            # neither a new stream nor progress.
            self._expected_offset = max(expected, offset + size)
            return range(0)
        sequential = expected is not None and expected <= offset <= expected + self.tolerance
        self._expected_offset = offset + size
        last = blocks.stop - 1
        if not sequential or self.max_blocks <= 0:
            self.window, self._last_block, self._ahead = 0, last, last + 1
            return range(0)
        if self.window == 0:
            self.window = min(self.initial_blocks, self.max_blocks)
        elif last > self._last_block:
            self.window = min(self.window * 2, self.max_blocks)
        self._last_block = last
        start = max(self._ahead, last + 1)
        stop = min(last + 1 + self.window, self.layout.block_count)
        if start - (last + 1) > self.window // 2 or start >= stop:
            return range(0)
        self._ahead = stop
        return range(start, stop)
