"""Through a real mount: a warm re-read of a published version after a remount makes no
network request at all (metadata from the kept answers, bytes from the disk block cache)."""

from __future__ import annotations

import json
import os

import h5py
import httpx
import numpy as np

from fuse_support import MountProcess, require_fuse, version_path

NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
DATASET = "acquisition/ElectricalSeries/data"
ONE_SLICE = (slice(500_000, 510_000), slice(0, 8))


def read_slice(mount: MountProcess, version: str) -> np.ndarray:
    with h5py.File(version_path(mount.mountpoint, "000001", version) / NWB, "r") as nwb:
        return nwb[DATASET][ONE_SLICE]


def archive_requests(mount: MountProcess) -> dict[str, int]:
    return json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))["archive"]


def test_a_remount_rereads_a_published_slice_with_no_request(local_archive, tmp_path):
    require_fuse()
    record = httpx.get(f"{local_archive.api_url}/dandisets/000001/", timeout=30).json()
    published = record["most_recent_published_version"]["version"]
    cache = tmp_path / "cache"

    with MountProcess(tmp_path / "first", local_archive.api_url, cache) as mount:
        first = read_slice(mount, published)
        assert archive_requests(mount)["api_requests"] > 0
    assert (cache / "metadata" / "answers.sqlite3").exists()

    s3_before = local_archive.s3_stats()["total_requests"]
    with MountProcess(tmp_path / "second", local_archive.api_url, cache) as mount:
        again = read_slice(mount, published)
        requests = archive_requests(mount)
        assert (requests["api_requests"], requests["object_requests"]) == (0, 0), mount.log()
    assert local_archive.s3_stats()["total_requests"] == s3_before
    np.testing.assert_array_equal(again, first)
    assert first.shape == (10_000, 8)
