"""The mount as real programs use it: h5py, pynwb, zarr-python, cp, find, ls, getfattr.

Every comparison is against what the real `dandi download` wrote for the same version, so
the mount is held to the archive's own client, byte for byte.
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import subprocess
import time
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
from conftest import published_version

from fuse_support import (
    MountProcess,
    dandi_download,
    libc_listing_with_seek,
    require_fuse,
    version_path,
)

LARGE_NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
ONE_SLICE_DATASET = "acquisition/ElectricalSeries/data"
ONE_SLICE = (slice(500_000, 510_000), slice(0, 8))
ZARR_PATH = "sub-mouse04/sub-mouse04_sample.ome.zarr"


@pytest.fixture(scope="module")
def mount(local_archive, tmp_path_factory) -> MountProcess:
    require_fuse()
    base = tmp_path_factory.mktemp("fuse-clients")
    process = MountProcess(base / "mnt", local_archive.api_url, base / "cache").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def downloaded_000001(local_archive, published, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("download-000001")
    return dandi_download(local_archive.api_url, "000001", published, target, {})


@pytest.fixture(scope="module")
def downloaded_000002(local_archive, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("download-000002")
    return dandi_download(local_archive.api_url, "000002", "draft", target, {})


def relative_files(root: Path) -> dict[str, int]:
    """Every file under `root` (following no symlinks) with its size."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = path.stat().st_size
    return found


# -- the tree ----------------------------------------------------------------------------------


def test_version_tree_equals_the_dandi_download(mount, published, downloaded_000001) -> None:
    root = version_path(mount.mountpoint, "000001", published)
    assert relative_files(root) == relative_files(downloaded_000001)


def test_find_and_ls_lR_list_every_file(mount, published, downloaded_000001) -> None:
    root = version_path(mount.mountpoint, "000001", published)
    found = subprocess.run(
        ["find", ".", "-type", "f"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(path.removeprefix("./") for path in found) == sorted(
        relative_files(downloaded_000001)
    )
    listing = subprocess.run(
        ["ls", "-lR", str(root)], capture_output=True, text=True, check=True
    ).stdout
    for path, size in relative_files(downloaded_000001).items():
        name = Path(path).name
        lines = [line for line in listing.splitlines() if line.endswith(" " + name)]
        assert lines, f"ls -lR does not show {path}"
        assert lines[0].startswith("-r--r--r--") and f" {size} " in lines[0]


def test_cp_r_of_a_version_equals_the_dandi_download(
    mount, published, downloaded_000001, tmp_path
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(
        ["cp", "-r", str(version_path(mount.mountpoint, "000001", published)), str(copy)],
        check=True,
    )
    files = relative_files(downloaded_000001)
    assert relative_files(copy) == files
    _, mismatch, errors = filecmp.cmpfiles(copy, downloaded_000001, list(files), shallow=False)
    assert (mismatch, errors) == ([], [])


def test_published_files_are_read_only_with_archive_times(mount, published, local_archive) -> None:
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    info = path.stat()
    assert oct(info.st_mode & 0o777) == oct(0o444)
    asset = _asset_record(local_archive.api_url, "000001", published, LARGE_NWB)
    assert info.st_size == asset["size"]
    modified = np.datetime64(asset["modified"].replace("Z", "")).astype("datetime64[s]")
    assert int(info.st_mtime) == modified.astype(int)


# -- HDF5 / NWB ------------------------------------------------------------------------------


def _datasets(handle: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    handle.visititems(
        lambda name, item: found.setdefault(name, item) if isinstance(item, h5py.Dataset) else None
    )
    return found


def test_h5py_reads_every_dataset_of_every_nwb_file_like_the_download(
    mount, published, downloaded_000001
) -> None:
    root = version_path(mount.mountpoint, "000001", published)
    nwb_files = [path for path in relative_files(downloaded_000001) if path.endswith(".nwb")]
    assert len(nwb_files) >= 3
    for relative in nwb_files:
        with h5py.File(root / relative, "r") as mounted, h5py.File(
            downloaded_000001 / relative, "r"
        ) as local:
            assert_same_datasets(mounted, local, relative)


def assert_same_datasets(opened: h5py.File, local: h5py.File, label: str) -> None:
    """The same datasets, with the same values in the first 2000 of each dimension."""
    opened_sets, local_sets = _datasets(opened), _datasets(local)
    assert sorted(opened_sets) == sorted(local_sets), label
    for name, local_set in local_sets.items():
        window = tuple(slice(0, 2000) for _ in local_set.shape)
        expected = local_set[window] if local_set.shape else local_set[()]
        actual = opened_sets[name][window] if local_set.shape else opened_sets[name][()]
        np.testing.assert_array_equal(actual, expected, err_msg=f"{label}:{name}")


def test_h5py_reads_the_canonical_slice_of_the_large_file(mount, published, downloaded_000001) -> None:
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    with h5py.File(path, "r") as mounted, h5py.File(downloaded_000001 / LARGE_NWB, "r") as local:
        for rows in (ONE_SLICE[0], slice(0, 1000), slice(1_799_000, 1_800_000)):
            window = (rows, slice(None))
            np.testing.assert_array_equal(
                mounted[ONE_SLICE_DATASET][window], local[ONE_SLICE_DATASET][window]
            )


def test_h5py_reads_through_a_mount_of_a_plain_http_archive(
    plain_archive, downloaded_000001, tmp_path
) -> None:
    """The mount over an archive without TLS, whose S3 URLs say http: the canonical slice."""
    require_fuse()
    version = published_version(plain_archive.api_url, "000001")
    with MountProcess(tmp_path / "mnt", plain_archive.api_url, tmp_path / "cache") as plain:
        path = version_path(plain.mountpoint, "000001", version) / LARGE_NWB
        assert os.getxattr(path, "user.dandi.s3_url").decode().startswith(
            f"{plain_archive.s3_url}/")
        with h5py.File(path, "r") as mounted, h5py.File(downloaded_000001 / LARGE_NWB) as local:
            np.testing.assert_array_equal(
                mounted[ONE_SLICE_DATASET][ONE_SLICE], local[ONE_SLICE_DATASET][ONE_SLICE]
            )


def test_pynwb_opens_the_large_file_and_reads_a_slice(mount, published, downloaded_000001) -> None:
    from pynwb import NWBHDF5IO

    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    with NWBHDF5IO(str(path), "r") as mounted_io, NWBHDF5IO(
        str(downloaded_000001 / LARGE_NWB), "r"
    ) as local_io:
        mounted, local = mounted_io.read(), local_io.read()
        assert mounted.identifier == local.identifier
        assert mounted.session_description == local.session_description
        assert mounted.subject.subject_id == local.subject.subject_id
        assert sorted(mounted.acquisition) == sorted(local.acquisition)
        series = mounted.acquisition["ElectricalSeries"]
        np.testing.assert_array_equal(
            series.data[ONE_SLICE], local.acquisition["ElectricalSeries"].data[ONE_SLICE]
        )


# -- Zarr --------------------------------------------------------------------------------------


def test_zarr_python_reads_the_zarr_asset_like_the_download(mount, downloaded_000002) -> None:
    import zarr

    mounted = zarr.open_group(str(version_path(mount.mountpoint, "000002", "draft") / ZARR_PATH), mode="r")
    assert_zarr_like_the_download(mounted, downloaded_000002)
    chunk_files = relative_files(downloaded_000002 / ZARR_PATH)
    assert len(chunk_files) >= 1000
    assert relative_files(version_path(mount.mountpoint, "000002", "draft") / ZARR_PATH) == chunk_files


def assert_zarr_like_the_download(group, downloaded: Path) -> None:
    """The same arrays with the same values, and the same attributes, as the download's."""
    import zarr

    local = zarr.open_group(str(downloaded / ZARR_PATH), mode="r")
    local_arrays = dict(local.arrays())
    assert sorted(dict(group.arrays())) == sorted(local_arrays) and local_arrays
    for name, array in local_arrays.items():
        np.testing.assert_array_equal(group[name][...], array[...], err_msg=name)
    assert dict(group.attrs) == dict(local.attrs)


# -- names -------------------------------------------------------------------------------------


def test_latest_is_a_symlink_to_the_published_version(mount, published) -> None:
    latest = mount.mountpoint / "dandisets" / "000001" / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == published
    assert sorted(os.listdir(latest)) == sorted(
        os.listdir(version_path(mount.mountpoint, "000001", published))
    )
    assert "latest" in os.listdir(mount.mountpoint / "dandisets" / "000001")


def test_names_that_never_exist_answer_enoent(mount, published) -> None:
    root = version_path(mount.mountpoint, "000001", published)
    for missing in (root / ".git", root / "sub-mouse01" / ".DS_Store", root / "no-such-file",
                    mount.mountpoint / "dandisets" / "999999", mount.mountpoint / "nothing"):
        with pytest.raises(FileNotFoundError):
            missing.stat()


# -- extended attributes -----------------------------------------------------------------------


def _asset_record(api_url: str, dandiset: str, version: str, path: str) -> dict:
    page = httpx.get(
        f"{api_url}/dandisets/{dandiset}/versions/{version}/assets/",
        params={"path": path, "metadata": "true"},
        timeout=30,
    ).json()
    [record] = [item for item in page["results"] if item["path"] == path]
    return record


def test_xattrs_name_the_asset(mount, published, local_archive) -> None:
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    record = _asset_record(local_archive.api_url, "000001", published, LARGE_NWB)
    full = httpx.get(f"{local_archive.api_url}/assets/{record['asset_id']}/", timeout=30).json()
    assert set(os.listxattr(path)) == {
        "user.dandi.asset_id", "user.dandi.digest", "user.dandi.s3_url", "user.dandi.metadata"
    }
    assert os.getxattr(path, "user.dandi.asset_id").decode() == record["asset_id"]
    assert os.getxattr(path, "user.dandi.digest").decode() == full["digest"]["dandi:dandi-etag"]
    s3_url = os.getxattr(path, "user.dandi.s3_url").decode()
    assert s3_url in full["contentUrl"]
    metadata = json.loads(os.getxattr(path, "user.dandi.metadata"))
    assert metadata["path"] == LARGE_NWB and metadata["identifier"] == record["asset_id"]
    with pytest.raises(OSError) as missing:
        os.getxattr(path, "user.dandi.nonexistent")
    assert missing.value.errno == errno.ENODATA


# -- writes ------------------------------------------------------------------------------------


def test_writes_are_refused_with_erofs_and_a_log_line(mount, published) -> None:
    root = version_path(mount.mountpoint, "000001", published)
    attempts = [
        lambda: open(root / LARGE_NWB, "r+b"),
        lambda: open(root / "new-file.txt", "w"),
        lambda: os.mkdir(root / "new-folder"),
        lambda: os.unlink(root / LARGE_NWB),
        lambda: os.rename(root / LARGE_NWB, root / "renamed.nwb"),
        lambda: os.setxattr(root / LARGE_NWB, "user.note", b"x"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.EROFS, refused.value  # with or without a token
    draft_file = mount.mountpoint / "dandisets" / "000001" / "draft" / "new-file.txt"
    with pytest.raises(OSError) as refused:
        open(draft_file, "w")  # this mount has no token: drafts are read-only for it
    assert refused.value.errno == errno.EACCES
    time.sleep(0.2)
    log = mount.log()
    assert "published versions never change" in log and "EROFS" in log
    assert "new-file.txt: writing to a draft needs an API token" in log and "EACCES" in log


def test_the_root_reports_mount_statistics(mount, published) -> None:
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    before = json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))
    with open(path, "rb") as handle:
        handle.seek(123_456_789)
        handle.read(4096)
    after = json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))
    assert "user.dandifs.stats" in os.listxattr(mount.mountpoint)
    assert set(after) == {"archive", "metadata", "blocks", "fuse"}
    assert after["fuse"]["inodes"] > 1
    assert after["archive"]["requests"] >= before["archive"]["requests"]
    reads = after["blocks"]["misses"] + after["blocks"]["memory_hits"] + after["blocks"]["disk_hits"]
    assert reads > 0


def test_readdir_offsets_neither_repeat_nor_skip(mount, downloaded_000002) -> None:
    zarr_root = version_path(mount.mountpoint, "000002", "draft") / ZARR_PATH
    biggest = max((Path(folder) for folder, _, _ in os.walk(zarr_root)),
                  key=lambda folder: len(os.listdir(folder)))
    expected = sorted(os.listdir(downloaded_000002 / ZARR_PATH / biggest.relative_to(zarr_root)))
    assert len(expected) > 10
    names, rest, again = libc_listing_with_seek(biggest, len(expected) // 2)
    names = [name for name in names if name not in (".", "..")]
    assert sorted(names) == expected and len(names) == len(set(names))
    assert again == rest and rest


def test_statfs_answers_without_claiming_a_full_disk(mount) -> None:
    info = os.statvfs(mount.mountpoint)
    assert info.f_namemax == 255 and info.f_bsize == 1 << 20
    assert info.f_blocks == info.f_bfree == info.f_bavail == 0
    df = subprocess.run(["df", str(mount.mountpoint)], capture_output=True, text=True)
    assert df.returncode == 0 and "100%" not in df.stdout
