"""Through a real mount: opening an NWB file fetches the nodes under its chunk index's root
in the background, so that a slice read a moment later no longer waits for the B-tree leaf
it needs, compared with a mount where `index_prefetch=0` turns this off.

Which blocks were fetched when is read from the mount's debug log (one line per ranged GET
of the block cache); how many S3 requests were made, from the local archive's S3 proxy.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest

from dandifs.core.opener import INDEX_PREFETCH_BLOCKS
from dandifs.fuse.options import MountOptions, OptionError, apply_options
from fuse_support import MountProcess, require_fuse, version_path

NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
DATASET = "acquisition/ElectricalSeries/data"
ONE_SLICE = (slice(500_000, 510_000), slice(0, 8))
QUIET_SECONDS = 0.5  # no S3 request for this long: background fetches are over
SETTLE_TIMEOUT = 15.0
FETCHED = re.compile(r"fetched \S+ bytes \d+-\d+ \(blocks (\d+)-(\d+)")


@dataclass
class Phase:
    """What one step cost: S3 requests, and the blocks the mount fetched."""

    requests: int
    blocks: set[int]


def s3_requests_once_quiet(local_archive) -> int:
    """The S3 proxy's request count, once it has stopped moving."""
    count = local_archive.s3_stats()["total_requests"]
    quiet_since = time.monotonic()
    deadline = quiet_since + SETTLE_TIMEOUT
    while time.monotonic() - quiet_since < QUIET_SECONDS:
        assert time.monotonic() < deadline, "S3 requests never stopped"
        time.sleep(0.05)
        now = local_archive.s3_stats()["total_requests"]
        if now != count:
            count, quiet_since = now, time.monotonic()
    return count


def fetched_blocks(log_text: str) -> set[int]:
    return {
        index
        for first, last in FETCHED.findall(log_text)
        for index in range(int(first), int(last) + 1)
    }


def open_then_slice(
    local_archive, mount: MountProcess, path: Path
) -> tuple[Phase, Phase, np.ndarray]:
    """Open the file with h5py, wait until the mount is quiet, read one slice; what the
    open (with what follows it in the background) and the slice each cost."""
    start = s3_requests_once_quiet(local_archive)
    log_start = len(mount.log())
    with h5py.File(path, "r") as nwb:
        dataset = nwb[DATASET]
        opened = s3_requests_once_quiet(local_archive)
        log_opened = len(mount.log())
        values = dataset[ONE_SLICE]
    sliced = s3_requests_once_quiet(local_archive)
    log = mount.log()
    return (
        Phase(opened - start, fetched_blocks(log[log_start:log_opened])),
        Phase(sliced - opened, fetched_blocks(log[log_opened:])),
        values,
    )


def test_the_open_fetches_the_leaf_the_slice_would_wait_for(local_archive, tmp_path) -> None:
    require_fuse()
    record = httpx.get(f"{local_archive.api_url}/dandisets/000001/", timeout=30).json()
    published = record["most_recent_published_version"]["version"]
    runs = {}
    for name, options in (("without", ["debug,index_prefetch=0"]), ("with", ["debug"])):
        base = tmp_path / name
        with MountProcess(base / "mnt", local_archive.api_url, base / "cache", options) as mount:
            path = version_path(mount.mountpoint, "000001", published) / NWB
            runs[name] = open_then_slice(local_archive, mount, path)
    open_without, slice_without, values_without = runs["without"]
    open_with, slice_with, values_with = runs["with"]
    np.testing.assert_array_equal(values_with, values_without)
    assert values_with.shape == (10_000, 8) and values_with.any()

    # Without: the slice fetches the leaf's block, then the chunk's.  With: the open has
    # already fetched the blocks of the nodes under the root (this file's root has four
    # leaves in three blocks), the leaf's among them, and the slice fetches the chunk only.
    assert open_without.blocks and slice_without.blocks, runs
    node_blocks = open_with.blocks - open_without.blocks
    assert len(node_blocks) == 3, runs
    leaf_blocks = slice_without.blocks & node_blocks
    assert len(leaf_blocks) == 1, runs
    assert not slice_with.blocks & node_blocks, runs
    # (the chunk's own blocks are not compared, nor how many GETs carry them: how far the
    # slice's read-ahead goes, and in how many pieces, follows the rate measured on the
    # connection, which a loaded machine changes)


def test_index_prefetch_option_is_a_count_of_blocks() -> None:
    options = MountOptions(mountpoint=Path("/mnt"))
    assert options.index_prefetch == INDEX_PREFETCH_BLOCKS == 16
    assert apply_options(options, "index_prefetch=0").index_prefetch == 0
    assert apply_options(options, "index-prefetch=4").index_prefetch == 4
    for bad in ("index_prefetch=-1", "index_prefetch=many", "index_prefetch"):
        with pytest.raises(OptionError, match="index_prefetch"):
            apply_options(options, bad)
