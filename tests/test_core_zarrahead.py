"""Read-ahead across a Zarr's files: the key order readers walk, which files an open fetches
ahead (pure), and through a real mount what zarr-python's reads then cost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dandifs.core.zarrahead import INITIAL_FILES, MAX_FILES, ZarrReadAhead
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
    assert asked[0] == list(range(1, 1 + INITIAL_FILES))
    # Nothing is asked twice, and each open keeps the window in front of the reader.
    flat = [index for batch in asked for index in batch]
    assert len(flat) == len(set(flat))
    assert max(flat) == 11 + MAX_FILES
    assert [len(batch) for batch in asked[-3:]] == [1, 1, 1]


def test_a_jump_starts_again_from_the_small_window() -> None:
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    fetched_ahead(ahead, order, list(range(8)))
    assert fetched_ahead(ahead, order, [300]) == [list(range(301, 301 + INITIAL_FILES))]


def test_readers_a_little_out_of_order_are_still_a_walk() -> None:
    order = files(500)
    ahead = ZarrReadAhead()
    ahead.learn("z", order)
    asked = fetched_ahead(ahead, order, [0, 2, 1, 4, 3, 5])
    flat = [index for batch in asked for index in batch]
    assert len(flat) == len(set(flat)) and max(flat) > 5 + INITIAL_FILES


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


def test_one_chunk_read_on_its_own_costs_at_most_the_small_window(
    local_archive, tmp_path: Path
) -> None:
    with MountProcess(tmp_path / "mnt", local_archive.api_url, tmp_path / "cache").start() as mount:
        chunk = version_path(mount.mountpoint, "000002", "draft") / ZARR_PATH / "0" / "7" / "3" / "5"
        chunk.stat()  # resolve first: API requests only
        before = s3_requests_once_quiet(local_archive)
        assert chunk.read_bytes()
        after = s3_requests_once_quiet(local_archive)
    assert 1 <= after - before <= 1 + INITIAL_FILES
