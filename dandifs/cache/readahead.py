"""When and how far to read ahead of one open handle: a pure decision per read.

- The first read fetches only its own blocks (an HDF5 open starts with tiny scattered reads).
- A read that starts where the previous one ended, or up to `tolerance` bytes after it, is
  sequential.  The window opens at `initial_blocks` (or at the size of the read, if larger:
  the next read of that size must not wait) and doubles each time the reader enters a new
  block, up to `max_blocks`.
- A read up to `tolerance` bytes before where the previous one ended changes nothing: the
  kernel delivers its own read-ahead slightly out of order, and readers re-read headers.
- Any other read is random: the window closes, unless the read is at least `large_read`
  bytes (a kernel read-ahead request, a whole HDF5 chunk): then the window opens at the
  read's size at once, since the read that follows it would otherwise wait a round trip
  (`jumped` tells the caller so: that read is likely to come at once).
- The window is topped up once the reader has used half of it or one request's worth
  (`step_blocks`), whichever is less, in whole requests, so a steady stream becomes a
  steady flow of full-sized GETs rather than one small GET per block.
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
    step_blocks: int = 1 << 30
    large_read: int = 0  # bytes; 0: every random read is treated alike
    window: int = 0
    jumped: bool = False  # the last read-ahead asked for follows a large random read
    _expected_offset: int | None = None
    _last_block: int = -1
    _ahead: int = 0  # first block not yet asked for by read-ahead

    def after_read(self, offset: int, size: int) -> range:
        """The blocks to fetch in the background now that `[offset, offset + size)` is read."""
        self.jumped = False
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
            if self.large_read and size >= self.large_read and self.max_blocks > 0:
                self.window = min(len(blocks), self.max_blocks)
                self._ahead = min(last + 1 + self.window, self.layout.block_count)
                self.jumped = self._ahead > last + 1
                return range(last + 1, self._ahead)
            return range(0)
        if self.window == 0:
            # At least one more read of this size ahead, or the next read waits anyway.
            self.window = min(max(self.initial_blocks, len(blocks)), self.max_blocks)
        elif last > self._last_block:
            self.window = min(self.window * 2, self.max_blocks)
        self._last_block = last
        start = max(self._ahead, last + 1)
        free = last + 1 + self.window - start
        if free < min(self.step_blocks, -(-self.window // 2)) or start >= self.layout.block_count:
            return range(0)
        if free >= self.step_blocks:
            free -= free % self.step_blocks  # whole requests only: no stray small GETs
        stop = min(start + free, self.layout.block_count)
        self._ahead = stop
        return range(start, stop)
