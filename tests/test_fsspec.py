"""The archive through fsspec (`dandifs://`), as programs use it without a mount: h5py and
pynwb on file objects, zarr-python on a store, ls/find/glob/du/cat/get.

Every comparison is against what the real `dandi download` wrote for the same version, and
S3 requests are counted at the local archive's S3 proxy.
"""

from __future__ import annotations

import errno
import filecmp
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
import h5py
import numpy as np
import pytest

from dandifs.fsspec import PROTOCOL, DandiFileSystem
from dandifs.fsspec.errors import python_error
from dandifs.fuse.errnos import errno_for
from fuse_support import dandi_download, require_fuse
from test_core_one_opener import HEADER_BYTES, first_read_through_the_mount
from test_error_tables import domain_errors, instance
from test_fuse_clients import (
    LARGE_NWB,
    ONE_SLICE,
    ONE_SLICE_DATASET,
    ZARR_PATH,
    _asset_record,
    assert_same_datasets,
    assert_zarr_like_the_download,
    downloaded_000001,  # noqa: F401 - fixtures
    downloaded_000002,  # noqa: F401
    relative_files,
)
from test_fuse_index_prefetch import NWB, s3_requests_once_quiet

MiB = 1 << 20
REPOSITORY = Path(__file__).resolve().parent.parent
DRAFT_NWB = "sub-mouse04/sub-mouse04_ses-20240201_ophys.nwb"

fsspec.register_implementation(PROTOCOL, DandiFileSystem, clobber=True)


@pytest.fixture(scope="module")
def fs(local_archive):
    filesystem = DandiFileSystem(local_archive.api_url, anonymous=True)
    yield filesystem
    filesystem.close()


@pytest.fixture(scope="module")
def token_fs(local_archive):
    filesystem = DandiFileSystem(local_archive.api_url, token=local_archive.token)
    yield filesystem
    filesystem.close()


def root(version: str, dandiset: str = "000001") -> str:
    return f"dandisets/{dandiset}/{version}"


def below(prefix: str, names: list[str]) -> list[str]:
    return sorted(name.removeprefix(prefix + "/") for name in names)


# -- names -------------------------------------------------------------------------------


def test_ls_shows_the_tree_of_the_mount(fs, published) -> None:
    assert fs.ls("", detail=False) == ["dandisets"]
    assert fs.ls(f"{PROTOCOL}://", detail=False) == ["dandisets"]
    listed = fs.ls("dandisets", detail=False)  # other tests add dandisets of their own
    assert listed == sorted(listed) and {"dandisets/000001", "dandisets/000002"} <= set(listed)
    versions = fs.ls("dandisets/000001", detail=True)
    assert [info["name"] for info in versions] == [
        "dandisets/000001/draft", "dandisets/000001/latest", f"dandisets/000001/{published}"
    ]
    assert {info["type"] for info in versions} == {"directory"}
    latest = fs.info("dandisets/000001/latest")
    assert (latest["type"], latest["version"]) == ("directory", published)
    assert below(root("latest"), fs.find(root("latest"))) == below(
        root(published), fs.find(root(published))
    )


def test_ls_of_files_has_archive_sizes_and_times(fs, published, local_archive) -> None:
    listed = {info["name"]: info for info in fs.ls(f"{root(published)}/sub-mouse01")}
    info = listed[f"{root(published)}/{LARGE_NWB}"]
    record = _asset_record(local_archive.api_url, "000001", published, LARGE_NWB)
    assert (info["type"], info["size"]) == ("file", record["size"])
    modified = np.datetime64(record["modified"].replace("Z", "")).astype("datetime64[us]")
    assert int(info["mtime"] * 1e6) == modified.astype(int)
    assert info["asset_id"] == record["asset_id"] and info["immutable"] is True
    assert fs.info(f"{root(published)}/{LARGE_NWB}") == info
    assert fs.ls(f"{root(published)}/{LARGE_NWB}") == [info]  # ls of a file: the file
    assert fs.modified(f"{root(published)}/{LARGE_NWB}").timestamp() == info["mtime"]
    assert fs.ukey(f"{root(published)}/{LARGE_NWB}") == info["etag"]


def test_find_glob_and_du_agree_with_the_download(fs, published, downloaded_000001) -> None:
    files = relative_files(downloaded_000001)
    found = fs.find(root(published), detail=True)
    assert {name.removeprefix(root(published) + "/"): info["size"] for name, info in found.items()} == files
    nwb = fs.glob(f"{root(published)}/sub-*/*.nwb")
    assert below(root(published), nwb) == sorted(path for path in files if path.endswith(".nwb"))
    assert fs.du(root(published)) == sum(files.values())
    assert fs.isdir(root(published)) and fs.isfile(f"{root(published)}/dandiset.yaml")
    assert not fs.exists(f"{root(published)}/no-such-file")


# -- bytes -------------------------------------------------------------------------------


def test_cat_file_reads_a_text_file_and_its_ranges(fs, published, downloaded_000001) -> None:
    path = f"{root(published)}/dandiset.yaml"
    expected = (downloaded_000001 / "dandiset.yaml").read_bytes()
    assert fs.cat_file(path) == expected
    assert fs.cat_file(path, 10, 50) == expected[10:50]
    assert fs.cat_file(path, -20) == expected[-20:]
    assert fs.cat_file(path, 5, -5) == expected[5:-5]
    assert fs.cat_file(path, len(expected) + 10) == b""
    with fs.open(path, "r") as text:  # fsspec's text mode over the same file
        assert text.read() == expected.decode()


def test_cat_ranges_reads_ranges_of_several_files(fs, published, downloaded_000001) -> None:
    large = (downloaded_000001 / LARGE_NWB).read_bytes()
    yaml = (downloaded_000001 / "dandiset.yaml").read_bytes()
    paths = [f"{root(published)}/{LARGE_NWB}"] * 3 + [f"{root(published)}/dandiset.yaml"]
    starts = [0, 100 * MiB, -1000, 3]
    ends = [8, 100 * MiB + 4096, None, 30]
    assert fs.cat_ranges(paths, starts, ends) == [
        large[:8], large[100 * MiB : 100 * MiB + 4096], large[-1000:], yaml[3:30]
    ]
    missing = f"{root(published)}/sub-mouse01/none.nwb"
    answers = fs.cat_ranges([paths[0], missing], 0, 8)
    assert answers[0] == large[:8] and isinstance(answers[1], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges([paths[0], missing], 0, 8, on_error="raise")


def test_an_open_file_seeks_tells_and_reads_into(fs, published, downloaded_000001) -> None:
    expected = (downloaded_000001 / LARGE_NWB).read_bytes()
    with fs.open(f"{root(published)}/{LARGE_NWB}") as remote:
        assert remote.size == len(expected)
        assert remote.read(8) == expected[:8] and remote.tell() == 8
        remote.seek(-100, os.SEEK_END)
        assert remote.read() == expected[-100:]
        remote.seek(123_456_789)
        buffer = bytearray(1_000_000)
        assert remote.readinto(buffer) == len(buffer) and bytes(buffer) == expected[123_456_789:124_456_789]
    assert remote.closed


def test_get_copies_a_folder_like_the_download(fs, downloaded_000002, tmp_path) -> None:
    fs.get(f"{root('draft', '000002')}/sub-mouse04", str(tmp_path / "copy"), recursive=True)
    files = relative_files(downloaded_000002 / "sub-mouse04")
    assert relative_files(tmp_path / "copy") == files and len(files) > 1000
    _, mismatch, failed = filecmp.cmpfiles(
        tmp_path / "copy", downloaded_000002 / "sub-mouse04", list(files), shallow=False
    )
    assert (mismatch, failed) == ([], [])


# -- HDF5 / NWB --------------------------------------------------------------------------


def test_h5py_reads_every_nwb_file_of_a_version_like_the_download(
    fs, published, downloaded_000001
) -> None:
    nwb_files = [path for path in relative_files(downloaded_000001) if path.endswith(".nwb")]
    assert len(nwb_files) >= 3
    for relative in nwb_files:
        with fs.open(f"{root(published)}/{relative}") as remote, h5py.File(
            remote, "r"
        ) as opened, h5py.File(downloaded_000001 / relative, "r") as local:
            assert_same_datasets(opened, local, relative)


def test_pynwb_reads_a_published_and_a_draft_file_like_the_download(
    fs, published, downloaded_000001, downloaded_000002
) -> None:
    from pynwb import NWBHDF5IO

    cases = [
        (f"{root(published)}/{LARGE_NWB}", downloaded_000001 / LARGE_NWB),
        (f"{root('draft', '000002')}/{DRAFT_NWB}", downloaded_000002 / DRAFT_NWB),
    ]
    for path, local_path in cases:
        with fs.open(path) as remote, h5py.File(remote, "r") as handle, NWBHDF5IO(
            file=handle, mode="r"
        ) as remote_io, NWBHDF5IO(str(local_path), "r") as local_io:
            mine, theirs = remote_io.read(), local_io.read()
            assert (mine.identifier, mine.session_description) == (
                theirs.identifier, theirs.session_description
            )
            assert sorted(mine.acquisition) == sorted(theirs.acquisition) and mine.acquisition
            for name, series in theirs.acquisition.items():
                window = (slice(0, 500),) + (slice(None),) * (series.data.ndim - 1)
                np.testing.assert_array_equal(mine.acquisition[name].data[window], series.data[window])
    with fs.open(cases[0][0]) as remote, h5py.File(remote, "r") as handle:
        np.testing.assert_array_equal(
            handle[ONE_SLICE_DATASET][ONE_SLICE],
            h5py.File(cases[0][1], "r")[ONE_SLICE_DATASET][ONE_SLICE],
        )


def test_an_nwb_open_costs_the_same_s3_requests_as_through_the_mount(
    local_archive, published, tmp_path
) -> None:
    """The same opener: its ends and chunk-index nodes, whichever front end opens it."""
    require_fuse()
    through_mount, mount_header = first_read_through_the_mount(local_archive, published, tmp_path)
    # A core of its own (another cache size), so no block is cached yet.
    fresh = DandiFileSystem(local_archive.api_url, anonymous=True, memory_size=64 * MiB)
    try:
        path = f"{root(published)}/{NWB}"
        fresh.info(path)  # resolve the path first: API requests, not S3 ones
        before = s3_requests_once_quiet(local_archive)
        with fresh.open(path) as remote:
            header = remote.read(HEADER_BYTES)
        through_fsspec = s3_requests_once_quiet(local_archive) - before
    finally:
        fresh.close()
    assert header == mount_header == b"\x89HDF\r\n\x1a\n"
    assert through_mount >= 2
    assert through_fsspec == through_mount


# -- Zarr --------------------------------------------------------------------------------


def test_zarr_python_reads_the_zarr_asset_like_the_download(
    fs, local_archive, downloaded_000002
) -> None:
    import zarr

    url = f"{PROTOCOL}://{root('draft', '000002')}/{ZARR_PATH}"
    store = zarr.storage.FsspecStore.from_url(
        url, storage_options={"instance": local_archive.api_url, "anonymous": True}, read_only=True
    )
    assert_zarr_like_the_download(zarr.open_group(store=store, mode="r"), downloaded_000002)
    mapped = fs.get_mapper(f"{root('draft', '000002')}/{ZARR_PATH}")
    assert_zarr_like_the_download(zarr.open_group(mapped, mode="r"), downloaded_000002)


def test_xarray_takes_an_ome_zarr_level_with_the_axes_it_names(fs, downloaded_000002) -> None:
    """OME-Zarr levels carry no xarray dimension names (`_ARRAY_DIMENSIONS`), so
    `xarray.open_zarr` cannot open them; the axes come from the multiscales metadata."""
    import xarray
    import zarr

    group = zarr.open_group(fs.get_mapper(f"{root('draft', '000002')}/{ZARR_PATH}"), mode="r")
    multiscale = group.attrs["multiscales"][0]
    axes = [axis["name"] for axis in multiscale["axes"]]
    level = multiscale["datasets"][-1]["path"]
    remote = xarray.DataArray(group[level], dims=axes)
    local = zarr.open_group(str(downloaded_000002 / ZARR_PATH), mode="r")[level]
    xarray.testing.assert_equal(remote, xarray.DataArray(local[...], dims=axes))


# -- embargo, errors ---------------------------------------------------------------------


def test_an_embargoed_dandiset_is_read_with_the_token_and_unseen_without(
    fs, token_fs, local_archive, tmp_path
) -> None:
    assert "dandisets/000003" in token_fs.ls("dandisets", detail=False)
    assert "dandisets/000003" not in fs.ls("dandisets", detail=False)
    with pytest.raises(FileNotFoundError):
        fs.info("dandisets/000003/draft")
    instance_key = f"{urlsplit(local_archive.api_url).netloc.upper()}_API_KEY"  # dandi-cli's name
    local = dandi_download(
        local_archive.api_url, "000003", "draft", tmp_path, {instance_key: local_archive.token}
    )
    files = relative_files(local)
    found = token_fs.find(root("draft", "000003"), detail=True)
    assert {below(root("draft", "000003"), [name])[0]: info["size"] for name, info in found.items()} == files
    for relative in (path for path in files if path.endswith(".nwb")):
        path = f"{root('draft', '000003')}/{relative}"
        assert token_fs.info(path).get("embargoed") is True
        with token_fs.open(path) as remote, h5py.File(remote, "r") as opened, h5py.File(
            local / relative, "r"
        ) as expected:
            assert_same_datasets(opened, expected, relative)
        with pytest.raises(FileNotFoundError):
            fs.cat_file(path, 0, 8)


@pytest.mark.parametrize("kind", domain_errors(), ids=lambda kind: kind.__name__)
def test_every_domain_error_maps_to_the_errno_the_mount_answers(kind) -> None:
    error = instance(kind)
    mapped = python_error(error, "dandisets/x")
    assert isinstance(mapped, OSError) and mapped.errno == errno_for(error)
    assert mapped.filename == "dandisets/x" and str(error) in str(mapped)


def test_errors_reach_callers_as_pythons_own(fs, published, local_archive) -> None:
    yaml = f"{root(published)}/dandiset.yaml"
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root(published)}/sub-mouse09/x.nwb")
    with pytest.raises(FileNotFoundError):
        fs.ls("dandisets/12345")
    with pytest.raises(NotADirectoryError):
        fs.ls(f"{yaml}/x")
    with pytest.raises(IsADirectoryError):
        fs.open(root(published))
    with pytest.raises(IsADirectoryError):
        fs.cat_file(root(published))
    for write in (
        lambda: fs.open(f"{root('draft')}/new.txt", "wb"),
        lambda: fs.pipe_file(f"{root('draft')}/new.txt", b"x"),
        lambda: fs.mkdir(f"{root('draft')}/new"),
        lambda: fs.rm(yaml),
        lambda: fs.mv(yaml, f"{root('draft')}/moved.yaml"),
    ):
        with pytest.raises(PermissionError) as refused:
            write()
        assert refused.value.errno == errno.EROFS
    with pytest.raises(PermissionError) as rejected:
        DandiFileSystem(local_archive.api_url, token="0" * 40)
    assert "token= option" in str(rejected.value)


# -- lifetime, registration --------------------------------------------------------------


def test_filesystems_of_other_threads_share_one_core_until_the_last_closes(local_archive) -> None:
    options = {"instance": local_archive.api_url, "anonymous": True, "memory_size": 16 * MiB}
    first = fsspec.filesystem(PROTOCOL, **options)
    made: list[DandiFileSystem] = []
    thread = threading.Thread(target=lambda: made.append(fsspec.filesystem(PROTOCOL, **options)))
    thread.start()
    thread.join()
    [second] = made
    assert second is not first  # fsspec makes one object per thread ...
    running = first._running
    assert second._running is running  # ... over one core
    first.close()
    assert second.ls("dandisets", detail=False) and not running.stopped
    with pytest.raises(ValueError):
        first.ls("dandisets")
    second.close()
    assert running.stopped
    assert fsspec.filesystem(PROTOCOL, **options) is not first  # closed ones are not reused


def _list_into(fs: DandiFileSystem, sink) -> None:
    sink.send(fs.ls("dandisets", detail=False))


def test_a_forked_child_and_a_pickled_copy_read_through_cores_of_their_own(fs) -> None:
    """A child forked with the filesystem in its memory cannot use the parent's loop
    thread (it was not copied): it opens its own core; so does a pickled copy."""
    expected = fs.ls("dandisets", detail=False)
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(target=_list_into, args=(fs, sender))  # inherited, not pickled
    child.start()
    assert receiver.poll(60), "the forked child did not answer"
    assert receiver.recv() == expected
    child.join(30)
    assert child.exitcode == 0
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(DandiFileSystem.ls, (fs, "dandisets", False)) == expected


def test_the_entry_point_registers_the_protocol_and_exit_closes_the_core(
    local_archive, published, downloaded_000001, tmp_path
) -> None:
    """The entry point pyproject.toml declares, as an install writes it: `fsspec.open(
    "dandifs://...")` needs no import of dandifs, and a program that never closes the
    filesystem still exits."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    specs = project["entry-points"]["fsspec.specs"]
    assert specs == {PROTOCOL: "dandifs.fsspec:DandiFileSystem"}
    dist_info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[fsspec.specs]\n" + "".join(f"{name} = {value}\n" for name, value in specs.items())
    )
    program = (
        "import fsspec, json, sys\n"
        f"with fsspec.open('{PROTOCOL}://{root(published)}/dandiset.yaml', instance=sys.argv[1],"
        " anonymous=True) as f:\n"
        "    data = f.read()\n"
        f"cls = fsspec.get_filesystem_class('{PROTOCOL}')\n"
        "print(json.dumps([cls.__module__, len(data)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, local_archive.api_url],
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPOSITORY}"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    module, size = json.loads(result.stdout)
    assert module == "dandifs.fsspec.filesystem"
    assert size == (downloaded_000001 / "dandiset.yaml").stat().st_size
