"""Read-ahead across the files of a Zarr: chunk files fetched before they are opened.

A Zarr array is thousands of small objects, one per chunk; zarr-python opens and reads
them one by one (a few at a time), so through a filesystem every chunk costs a round trip
of its own.  Readers walk chunks in key order (C order of the chunk grid: `0/0/0`, `0/0/1`,
... with numbers compared as numbers), so when a file of a Zarr is opened right after the
one before it in that order, the next files are fetched whole in the background, a window
that starts at one file and doubles while the walk goes on (up to `max_files`).  An open
that skips files (more than a few readers at once reorder) is a jump: it stops the walk
until the next open confirms a new one, so a lone random chunk costs nothing extra.  A
region or a plane is runs of neighbouring chunks, each as long as the one before it, so a
run is fetched ahead only as far as the last run went: fetching the full window past the
end of each run (the files of the gap before the next run) had cost a region three times
the chunks it read.  A run that goes on past that length lifts the limit.

Where the runs begin follows a pattern too: rows of a box one row of the grid apart, planes
one plane apart, so the steps between run starts repeat with a period (the rows of a
plane).  When a jump lands where that pattern said the next run would begin, the pattern is
confirmed and the rest of this run and the next `RUNS_AHEAD` runs are fetched at once: a
region's reads then find nearly every chunk on its way, instead of two reads per run
waiting for S3.  A prediction that missed fetches nothing until one hits again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cachetools import LRUCache

from dandifs.resolve.entry import Entry

OUT_OF_ORDER_FILES = 4  # how far behind the front an open may be and still go on a walk
MAX_FILES = 64
RUNS_AHEAD = 2  # runs of a confirmed pattern fetched ahead of the one being read
STARTS_KEPT = 64  # run starts a walk remembers to find its pattern in
NOTHING_CROSSED = 1 << 16
WALKS_KEPT = 64  # Zarrs whose walk state is remembered at once


@dataclass
class _Walk:
    """How a reader moves through one Zarr's files (`order`: their URLs in key order)."""

    order: Sequence[Entry]
    positions: dict[str, int] = field(default_factory=dict)
    window: int = 0
    ahead_until: int = 0  # files before this index are fetched or being fetched
    front: int = -1  # the farthest file opened in this walk
    run_start: int = 0  # where the walk's current run began (its last jump)
    last_start: int = -1  # where the run before it began
    last_run: int = 0  # how many files the run before it went (0: none yet)
    late_until: int = 0  # opens of the run before up to here are late ones, not a walk
    run_before_last: int = 0  # how many files the run before the last one went
    starts: list[int] = field(default_factory=list)  # where recent runs began, oldest first
    predicted: int = -1  # where the pattern of `starts` says the next run begins
    asked: set[int] = field(default_factory=set)  # files already asked for
    crossed: int = 0  # the shallowest boundary (see `boundary`) this run went over


class ZarrReadAhead:
    """Which files of a Zarr to fetch ahead when one of them is opened."""

    def __init__(self, *, max_files: int = MAX_FILES) -> None:
        self.max_files = max_files
        self._walks: LRUCache[str, _Walk] = LRUCache(maxsize=WALKS_KEPT)

    def knows(self, entry: Entry) -> bool:
        """Whether the order of `entry`'s Zarr is known, `entry` in it."""
        walk = self._walks.get(entry.zarr_id or "")
        return walk is not None and (entry.content_url or "") in walk.positions

    def learn(self, zarr_id: str, order: Sequence[Entry]) -> None:
        """The files of Zarr `zarr_id` in key order (a new order replaces the last)."""
        # Found by URL: the order's entries are as cached, the opened one as presented
        # (their paths may differ: `latest/` and a version id name the same file).
        known = self._walks.get(zarr_id)
        if known is not None and known.order is order:
            return  # several opens learnt it at once: keep the walk going
        positions = {file.content_url or "": index for index, file in enumerate(order)}
        self._walks[zarr_id] = _Walk(order, positions)

    def opened(self, entry: Entry) -> Sequence[Entry]:
        """`entry` (a file of a Zarr whose order is known) was opened: the files to fetch
        ahead now, none already asked for."""
        walk = self._walks.get(entry.zarr_id or "")
        index = walk.positions.get(entry.content_url or "") if walk else None
        if walk is None or index is None or not self.max_files:
            return ()
        if 0 <= walk.last_start <= index < min(walk.run_start, walk.late_until):
            # a late open of the run before (readers at once reorder opens): it was longer
            walk.last_run = max(walk.last_run, index - walk.last_start + 1)
            return ()
        behind = walk.front - max(walk.window, OUT_OF_ORDER_FILES)
        if walk.front >= 0 and behind <= index <= walk.front:
            # a late open of this run: the window is already past it (but the run may
            # have begun here, before the open that entered it)
            if index < walk.run_start and walk.starts and walk.starts[-1] == walk.run_start:
                walk.run_start = walk.starts[-1] = index
                steps = next_steps(walk.starts, 1)
                walk.predicted = index + steps[0] if steps else -1
            return ()
        ahead: list[int] = []
        if walk.front >= 0 and walk.front < index <= walk.front + 1 + OUT_OF_ORDER_FILES:
            walk.window = min(max(walk.window * 2, 1), self.max_files)  # the walk goes on
            walk.crossed = min(walk.crossed, *(boundary(walk.order, i) for i in range(walk.front, index)))
        else:  # a jump: nothing ahead until the next open shows a walk (or the pattern did)
            if walk.front >= 0:
                walk.run_before_last = walk.last_run
                walk.last_start, walk.last_run = walk.run_start, walk.front - walk.run_start + 1
                walk.late_until = walk.front + 1 + OUT_OF_ORDER_FILES
            if index < walk.front:
                walk.asked.clear()  # a new pass: what the last one fetched may be gone
            walk.window = 0
            walk.crossed = NOTHING_CROSSED
            walk.run_start = index
            walk.ahead_until = index + 1
            ahead = self._pattern(walk, index)
            walk.run_start = walk.starts[-1]  # where the pattern says it began, if it did
        walk.front = index
        stop = min(walk.front + 1 + walk.window, len(walk.order))
        if walk.last_run:  # as far as the last run went, then twice as far as this one has
            so_far = walk.front - walk.run_start + 1
            limit = walk.last_run if so_far <= walk.last_run else 2 * so_far
            stop = min(stop, walk.run_start + limit)
        for i in range(walk.front, stop - 1):  # no further than the walk has gone in the tree
            if boundary(walk.order, i) < walk.crossed:
                stop = i + 1
                break
        start = max(walk.ahead_until, walk.front + 1)
        if start < stop:
            walk.ahead_until = stop
            ahead[:0] = range(start, stop)
        files = [walk.order[i] for i in dict.fromkeys(ahead) if i not in walk.asked]
        walk.asked.update(ahead)
        return files

    def _pattern(self, walk: _Walk, index: int) -> list[int]:
        """A run begins at `index`: if the pattern of run starts said so, the files of this
        run and of the next `RUNS_AHEAD` runs it predicts (each as long as the recent runs)."""
        length = max(walk.last_run, walk.run_before_last)
        # readers at once reorder opens: the run may be entered a file or two after its start
        confirmed = 0 <= walk.predicted <= index < walk.predicted + min(length, OUT_OF_ORDER_FILES + 1)
        begin = walk.predicted if confirmed else index
        walk.starts = [*walk.starts[1 - STARTS_KEPT:], begin]
        steps = next_steps(walk.starts, RUNS_AHEAD + 1)
        walk.predicted = begin + steps[0] if steps else -1
        if not confirmed:
            return []
        files = list(range(begin, begin + length))
        for step in steps[:RUNS_AHEAD]:
            begin += step
            files += range(begin, begin + length)
        return [i for i in files if 0 <= i < len(walk.order) and i != index]


def boundary(order: Sequence[Entry], index: int) -> int:
    """How deep the step from file `index` to the next one goes in the key tree: the number
    of leading key parts the two share (`0/8/7/7` -> `0/9/0/0`: 1, a new z-plane; `0/8/7/6`
    -> `0/8/7/7`: 3, the same folder)."""
    if index + 1 >= len(order):
        return 0
    here, there = order[index].path.split("/"), order[index + 1].path.split("/")
    shared = 0
    for a, b in zip(here, there):
        if a != b:
            break
        shared += 1
    return shared


def next_steps(starts: Sequence[int], count: int) -> list[int]:
    """The next `count` steps between run starts, continuing the shortest period with which
    the steps so far repeat (none with fewer than two starts)."""
    steps = [b - a for a, b in zip(starts, starts[1:])]
    for period in range(1, len(steps) + 1):
        if all(steps[i] == steps[i - period] for i in range(period, len(steps))):
            return [steps[len(steps) - period + i % period] for i in range(count)]
    return []
