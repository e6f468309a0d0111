"""Read-ahead across a Zarr's files: the key order readers walk, which files an open fetches
ahead (pure), and through a real mount what zarr-python's reads then cost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import itertools

from dandifs.core.zarrahead import MAX_FILES, ZarrReadAhead, next_steps
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.resolve.zarrs import key_order
from fuse_support import MountProcess, require_fuse, version_path
from test_fuse_index_prefetch import s3_requests_once_quiet

ZARR_PATH = "sub-mouse04/sub-mouse04_sample.ome.zarr"


def test_chunk_keys_sort_with_numbers_as_numbers() -> None:
    keys = ["0/10/0", "0/2/1", "0/2/0", "1/0/0", "0/1/0", ".zattrs", "0/0/0"]
    assert sorted(keys, key=key_order) == [
        "0/0/0", "0/1/0", "0/2/0", "0/2/1", "0/10/0", "1/0/0", ".zattrs"
    ]
    assert sorted(["0.10", "0.2", "0.0"], key=key_order) == ["0.0", "0.2", "0.10"]


def files(count: int, zarr_id: str = "z") -> tuple[Entry, ...]:
    return tuple(
        Entry(path=f"a.zarr/0/{i}", kind=EntryKind.FILE, zarr_id=zarr_id, content_url=f"s3/{i}")
        for i in range(count)
    )


def fetched_ahead(ahead: ZarrReadAhead, order: tuple[Entry, ...], opened: list[int]) -> list[list[int]]:
    return [
        [order.index(entry) for entry in ahead.opened(order[index])] for index in opened
    ]


def test_a_walk_fetches_ahead_in_a_window_that_doubles_up_to_its_cap() -> None:
    order = files(500)
    ahead = ZarrReadAhead()
    assert not ahead.knows(order[0])
    ahead.learn("z", order)
    assert ahead.knows(order[0])
    asked = fetched_ahead(ahead, order, list(range(12)))
    assert asked[:3] == [[], [2], [3, 4]]  # the second open confirms the walk
    # Nothing is asked twice, and each open keeps the window in front of the reader.
    flat = [index for batch in asked for index in batch]
    assert len(flat) == len(set(flat))
    assert max(flat) == 11 + MAX_FILES
    assert [len(batch) for batch in asked[-3:]] == [1, 1, 1]


def test_a_jump_fetches_nothing_until_the_next_open_confirms_a_walk() -> None:
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    fetched_ahead(ahead, order, list(range(8)))
    assert fetched_ahead(ahead, order, [300, 301, 302]) == [[], [302], [303, 304]]


def test_runs_of_neighbours_cost_at_most_one_file_past_each_run() -> None:
    """A region of a 3-D array: runs of two chunks along x, one run per (z, y)."""
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    runs = [[start, start + 1] for start in range(0, 400, 40)]
    asked = fetched_ahead(ahead, order, [index for run in runs for index in run])
    wanted = {index for run in runs for index in run}
    wasted = {index for batch in asked for index in batch} - wanted
    assert len(wasted) <= len(runs)


def test_a_region_fetches_no_gap_between_its_runs() -> None:
    """A region of a 3-D array: runs of nine chunks along x, 32 files apart (one row of
    chunks in y).  Once a run has shown its length, no file of the gaps is fetched."""
    order = files(6 * 1024)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    runs = [[z * 1024 + y * 32 + x for x in range(12, 21)] for z in range(6) for y in range(12, 21)]
    asked = fetched_ahead(ahead, order, [index for run in runs for index in run])
    wanted = {index for run in runs for index in run}
    fetched = {index for batch in asked for index in batch}
    assert len(fetched - wanted) <= MAX_FILES, "at most the first run's window is wasted"
    assert len(fetched & wanted) >= 0.75 * len(wanted)


def test_a_walk_after_opening_the_metadata_at_the_end_of_the_order() -> None:
    """zarr-python opens `.zarray` (sorted after the chunks) before the chunks themselves."""
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    asked = fetched_ahead(ahead, order, [499, 0, 1, 2, 3])
    assert asked[:3] == [[], [], [2]] and asked[3] == [3, 4]


def test_a_walk_after_two_arrays_metadata_opened_crosswise() -> None:
    """zarr-python opens the metadata of a group's arrays concurrently, in any order: here
    level 1's `.zarray` (end of the order), level 0's, level 1's `.zattrs`, level 0's, then
    level 0's chunks.  The stray open between them must not make the whole walk through
    level 0 look like late opens of an earlier run."""
    order = files(1156)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    walk = list(range(1026, 1154))
    asked = fetched_ahead(ahead, order, [1154, 1024, 1155, 1025, *walk])
    fetched = {index for batch in asked for index in batch}
    assert len(fetched & set(walk)) >= len(walk) - 2 * 4


def grid(shape: tuple[int, int, int]) -> tuple[Entry, ...]:
    """The chunk files of a 3-D array's grid, as `0/z/y/x` keys in key order."""
    return tuple(
        Entry(path=f"a.zarr/0/{z}/{y}/{x}", kind=EntryKind.FILE, zarr_id="z",
              content_url=f"s3/{z}/{y}/{x}")
        for z, y, x in itertools.product(*map(range, shape))
    )


def opened_in_box(shape: tuple[int, int, int], box: list[range]) -> list[int]:
    """The files a box of the grid opens, in C order, with neighbours now and then swapped
    (readers at once reorder their opens)."""
    indexes = [(z * shape[1] + y) * shape[2] + x for z, y, x in itertools.product(*box)]
    for i in range(0, len(indexes) - 1, 7):
        indexes[i], indexes[i + 1] = indexes[i + 1], indexes[i]
    return indexes


def walked(shape: tuple[int, int, int], box: list[range]) -> tuple[int, int, int]:
    """(files opened, of them found asked for ahead, files asked for outside the box)."""
    order = grid(shape)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    opens = opened_in_box(shape, box)
    asked: set[int] = set()
    found = 0
    for index in opens:
        found += index in asked
        asked.update(order.index(entry) for entry in ahead.opened(order[index]))
    return len(opens), found, len(asked - set(opens))


def test_steps_between_run_starts_continue_their_period() -> None:
    assert next_steps([0, 8, 16, 64, 72, 80, 128], 4) == [8, 8, 48, 8]
    assert next_steps([5, 37], 2) == [32, 32]
    assert next_steps([5], 1) == []


def test_a_region_finds_nearly_every_run_on_its_way_once_its_pattern_shows() -> None:
    """A box 9 x 9 x 6 chunks in a 32 x 32 x 20 grid: 54 runs of 9 files, 32 files apart
    within a plane, 1,024 apart between planes.  Only the first plane waits for S3."""
    opened, found, wasted = walked((20, 32, 32), [range(7, 13), range(12, 21), range(12, 21)])
    assert opened == 486
    assert found >= opened - 81 // 2, (found, opened)
    assert wasted <= 3 * 9 + 32, wasted  # two runs past the first plane and the last, one row


def test_a_plane_fetches_nothing_past_its_end() -> None:
    """One z-plane of chunks is one long run; the window goes on through its rows but not
    into the next plane, which the walk never entered."""
    opened, found, wasted = walked((16, 8, 8), [range(8, 9), range(8), range(8)])
    assert found >= opened - 4 and wasted == 0, (found, wasted)


def test_a_walk_through_planes_goes_on_once_it_crossed_into_one() -> None:
    opened, found, wasted = walked((16, 8, 8), [range(16), range(8), range(8)])
    assert found >= opened - 8 and wasted == 0, (found, wasted)


def test_learning_the_same_order_again_keeps_the_walk() -> None:
    order = files(100)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    fetched_ahead(ahead, order, [0, 1, 2])
    ahead.learn("z", order)
    assert fetched_ahead(ahead, order, [3]) != [[]]


def test_readers_a_little_out_of_order_are_still_a_walk() -> None:
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    asked = fetched_ahead(ahead, order, [0, 2, 1, 4, 3, 5, 7, 6, 8])
    flat = [index for batch in asked for index in batch]
    assert len(flat) == len(set(flat)) and max(flat) > 8 + 4


def test_files_of_an_unknown_order_or_outside_it_fetch_nothing() -> None:
    order = files(10)
    ahead = ZarrReadAhead()
    assert ahead.opened(order[0]) == ()
    ahead.learn("z", order)
    stranger = Entry(path="a.zarr/x", kind=EntryKind.FILE, zarr_id="z", content_url="s3/x")
    assert not ahead.knows(stranger) and ahead.opened(stranger) == ()
    assert fetched_ahead(ahead, order, [9]) == [[]]  # the last file: nothing after it
    off = ZarrReadAhead(max_files=0)
    off.learn("z", order)
    assert off.opened(order[0]) == ()


# -- through a mount ---------------------------------------------------------------------------


def read_whole_zarr(mountpoint: Path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(version_path(mountpoint, "000002", "draft") / ZARR_PATH), mode="r")
    return {name: array[...] for name, array in group.arrays()}


def block_stats(mountpoint: Path) -> dict[str, int]:
    return json.loads(os.getxattr(mountpoint, "user.dandifs.stats"))["blocks"]


@pytest.fixture(scope="module")
def reference(local_archive, tmp_path_factory) -> dict[str, np.ndarray]:
    """The Zarr as zarr-python reads it from a mount without read-ahead."""
    require_fuse()
    base = tmp_path_factory.mktemp("zarr-reference")
    options = ["zarr_readahead=0"]
    with MountProcess(base / "mnt", local_archive.api_url, base / "cache", options).start() as mount:
        arrays = read_whole_zarr(mount.mountpoint)
        stats = block_stats(mount.mountpoint)
    assert stats["readahead_hits"] == 0  # off means off
    assert sum(array.size for array in arrays.values()) > 0
    return arrays


def test_zarr_python_reading_a_whole_zarr_finds_its_chunk_files_fetched_ahead(
    local_archive, reference, tmp_path: Path
) -> None:
    with MountProcess(tmp_path / "mnt", local_archive.api_url, tmp_path / "cache").start() as mount:
        arrays = read_whole_zarr(mount.mountpoint)
        stats = block_stats(mount.mountpoint)
    assert sorted(arrays) == sorted(reference)
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, reference[name], err_msg=name)
    chunk_reads = stats["hits"] + stats["misses"]
    assert chunk_reads > 1000
    # Nearly every chunk file was in memory or on its way when zarr-python opened it.
    assert stats["readahead_hits"] >= 0.9 * chunk_reads, stats
    assert stats["misses"] <= 0.1 * chunk_reads, stats


def test_one_chunk_read_on_its_own_costs_one_request(
    local_archive, tmp_path: Path
) -> None:
    with MountProcess(tmp_path / "mnt", local_archive.api_url, tmp_path / "cache").start() as mount:
        chunk = version_path(mount.mountpoint, "000002", "draft") / ZARR_PATH / "0" / "7" / "3" / "5"
        chunk.stat()  # resolve first: API requests only
        before = s3_requests_once_quiet(local_archive)
        assert chunk.read_bytes()
        after = s3_requests_once_quiet(local_archive)
    assert after - before == 1
