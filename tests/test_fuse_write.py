"""Writing to a draft through a real mount: what `cp`, `rm`, `mv`, `mkdir`, h5py and pynwb do
there becomes what `dandi ls` and `dandi download` see, byte for byte.

The module runs its own empty local archive (its owner's token is `OWNER_TOKEN`), so the
assets it makes never reach the session archive.  A written file's upload is waited for
with fsync (`settle`): on a handle that did not write it waits for the upload of what was
last written there, and reports its result, so the tests never sleep for an upload.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h5py
import httpx
import numpy as np
import pytest
import yaml

from conftest import LocalArchive, TrustBundle, dandi_cli_env, start_local_archive, stop_local_archive
from fuse_support import MountProcess, dandi_download, require_fuse, version_path
from localarchive_app import (
    OWNER,
    OWNER_TOKEN,
    add_asset,
    create_dandiset,
    upload_blob,
    wait_for,
    wait_valid,
)

MiB = 1 << 20
DANDI = Path(sys.executable).with_name("dandi")
UPLOAD = "user.dandifs.upload"


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, trusted_cas: TrustBundle
) -> Iterator[LocalArchive]:
    run_dir = tmp_path_factory.mktemp("write-archive")
    process, ready = start_local_archive(
        run_dir / "data", run_dir / "ready.json", run_dir / "archive.log",
        "--seed", "none", "--token", OWNER_TOKEN, "--tls",
    )
    trusted_cas.add(ready["ca_file"])
    try:
        yield LocalArchive.from_ready(ready, run_dir / "archive.log")
    finally:
        stop_local_archive(process)


@pytest.fixture(scope="module")
def api(archive: LocalArchive) -> Iterator[httpx.Client]:
    """The archive's server root, as the flows in `localarchive_app` address it (`/api/...`)."""
    with httpx.Client(base_url=archive.api_url.removesuffix("/api"), timeout=30) as client:
        yield client


def no_token(archive: LocalArchive) -> dict[str, str]:
    """Environment entries that leave a mount of `archive` without a token."""
    host_port = urlsplit(archive.api_url).netloc.upper()
    return {"DANDI_API_KEY": "", f"{host_port}_API_KEY": ""}


@pytest.fixture(scope="module")
def mount(archive: LocalArchive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountProcess]:
    require_fuse()
    base = tmp_path_factory.mktemp("write-mount")
    process = MountProcess(base / "mnt", archive.api_url, base / "cache",
                           env={**no_token(archive), "DANDI_API_KEY": OWNER_TOKEN}).start()
    yield process
    process.stop()


@pytest.fixture()
def dandiset(api: httpx.Client, request: pytest.FixtureRequest) -> str:
    """A new empty dandiset per test, so each test sees only its own assets."""
    return create_dandiset(api, request.node.name[:100])


@pytest.fixture()
def draft(mount: MountProcess, dandiset: str) -> Path:
    return version_path(mount.mountpoint, dandiset, "draft")


# -- helpers -----------------------------------------------------------------------------------


def write_nwb(path: Path, *, seed: int, samples: int = 200_000) -> Path:
    """A real NWB file (pynwb) with a time series of `samples` random values."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description=f"written by a test (seed {seed})",
        identifier=f"test-{seed}",
        session_start_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        subject=Subject(subject_id=f"s{seed}", species="Mus musculus", sex="F", age="P90D"),
    )
    data = np.random.default_rng(seed).standard_normal(samples).astype("float32")
    nwb.add_acquisition(TimeSeries(name="signal", data=data, unit="V", rate=1000.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def settle(path: Path) -> None:
    """Wait for the upload of what was written at `path` (fsync reports its result)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def assets(api: httpx.Client, dandiset: str, version: str = "draft") -> dict[str, dict[str, Any]]:
    """The archive's assets of a version by path, each with its full metadata."""
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"/api/dandisets/{dandiset}/versions/{version}/assets/?metadata=1&page_size=1000"
    while url:
        page = api.get(url, headers=OWNER)
        assert page.status_code == 200, page.text
        body = page.json()
        for record in body["results"]:
            found[record["path"]] = record
        url = body["next"]
    return found


def dandi_etag(path: Path) -> str:
    from dandischema.digests.dandietag import DandiETag

    return DandiETag.from_file(path).as_str()


def dandi_etag_of(data: bytes) -> str:
    from dandischema.digests.dandietag import DandiETag

    etag = DandiETag(len(data))
    for part in etag.get_parts():
        etag.update(data[part.offset: part.offset + part.size], part)
    return etag.as_str()


def digest_of(record: dict[str, Any]) -> str:
    return record["metadata"]["digest"]["dandi:dandi-etag"]


def dandi_ls(archive: LocalArchive, dandiset: str) -> set[str]:
    """The paths `dandi ls` lists in a draft."""
    url = f"{archive.api_url}/dandisets/{dandiset}/versions/draft/"
    result = subprocess.run([str(DANDI), "ls", "-r", "-f", "yaml", url],
                            env=dandi_cli_env(archive), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return {item["path"] for item in yaml.safe_load(result.stdout) or [] if "asset_id" in item}


def download_draft(archive: LocalArchive, dandiset: str, target: Path) -> Path:
    return dandi_download(archive.api_url, dandiset, "draft", target, dandi_cli_env(archive))


def published_dandiset(api: httpx.Client) -> tuple[str, str]:
    """A dandiset with one published version holding `sub-1/sub-1_ses-1.nwb`."""
    dandiset = create_dandiset(api, "published, never written")
    blob = upload_blob(api, dandiset, np.random.default_rng(9).bytes(1 * MiB))
    assert add_asset(api, dandiset, "sub-1/sub-1_ses-1.nwb", blob_id=blob).status_code == 200
    wait_valid(api, dandiset)
    assert api.post(f"/api/dandisets/{dandiset}/versions/draft/publish/",
                    headers=OWNER).status_code == 202
    wait_for(lambda: api.get(f"/api/dandisets/{dandiset}/").json()["most_recent_published_version"])
    record = api.get(f"/api/dandisets/{dandiset}/").json()["most_recent_published_version"]
    return dandiset, record["version"]


# -- cp, overwrite, rm -------------------------------------------------------------------------


def test_cp_of_an_nwb_file_is_an_asset_dandi_download_returns_byte_identical(
    archive, api, mount, draft, dandiset, tmp_path
) -> None:
    source = write_nwb(tmp_path / "source.nwb", seed=1)
    (draft / "sub-01").mkdir()
    target = draft / "sub-01" / "sub-01_ses-1.nwb"
    invalidations = mount.stats()["fuse"]["kernel_invalidations"]
    subprocess.run(["cp", str(source), str(target)], check=True)
    state = os.getxattr(target, UPLOAD).decode()  # close(2) started the upload
    assert state in {"spooled", "hashing", "validating", "registering"} or state.startswith(
        "uploading"), state
    settle(target)
    # The kernel is told to drop what it cached of the file once the archive has it.
    wait_for(lambda: mount.stats()["fuse"]["kernel_invalidations"] > invalidations)
    # Done: an asset like any other, no upload to show any more.
    assert UPLOAD not in os.listxattr(target) and "user.dandi.asset_id" in os.listxattr(target)

    record = assets(api, dandiset)["sub-01/sub-01_ses-1.nwb"]
    assert digest_of(record) == dandi_etag(source)
    assert record["size"] == source.stat().st_size
    assert record["metadata"]["encodingFormat"] == "application/x-nwb"
    downloaded = download_draft(archive, dandiset, tmp_path / "download")
    assert (downloaded / "sub-01" / "sub-01_ses-1.nwb").read_bytes() == source.read_bytes()
    assert target.read_bytes() == source.read_bytes()  # the mount reads the asset back too
    assert os.getxattr(target, "user.dandi.digest").decode() == dandi_etag(source)

    def validated() -> dict[str, Any]:
        return api.get(f"/api/dandisets/{dandiset}/versions/draft/assets/{record['asset_id']}"
                       "/validation/", headers=OWNER).json()

    wait_for(lambda: validated()["status"] not in ("Pending", "Validating"))
    expected = [f"{error.get('field') or '-'}: {error.get('message')}"
                for error in validated()["validation_errors"]]
    assert os.getxattr(target, "user.dandi.validation").decode().splitlines() == expected


def test_cp_p_through_the_mount_gives_the_asset_metadata_dandi_upload_gives(
    archive, api, draft, dandiset, tmp_path
) -> None:
    from test_upload_metadata import comparable

    root = tmp_path / dandiset
    (root / "sub-10").mkdir(parents=True)
    (root / "dandiset.yaml").write_text(f"identifier: '{dandiset}'\n")
    uploaded = write_nwb(root / "sub-10" / "sub-10_ses-1.nwb", seed=20)
    result = subprocess.run(
        [str(DANDI), "upload", "--validation", "skip", "-i", archive.api_url,
         "sub-10/sub-10_ses-1.nwb"],
        env=dandi_cli_env(archive), cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (draft / "sub-11").mkdir()
    subprocess.run(["cp", "-p", str(uploaded), str(draft / "sub-11" / "sub-10_ses-1.nwb")],
                   check=True)
    settle(draft / "sub-11" / "sub-10_ses-1.nwb")
    found = assets(api, dandiset)
    sent = found["sub-10/sub-10_ses-1.nwb"]["metadata"]
    ours = {**found["sub-11/sub-10_ses-1.nwb"]["metadata"], "path": sent["path"]}
    assert ours["wasAttributedTo"][0]["schemaKey"] == "Participant"  # extracted from the file
    assert comparable(ours) == comparable(sent)


def test_a_second_copy_of_the_same_bytes_sends_no_part_to_s3(
    archive, api, draft, dandiset, tmp_path
) -> None:
    source = write_nwb(tmp_path / "same.nwb", seed=2)
    shutil.copyfile(source, draft / "first.nwb")
    settle(draft / "first.nwb")
    archive.reset_s3_stats()
    shutil.copyfile(source, draft / "second.nwb")
    settle(draft / "second.nwb")
    assert archive.s3_stats()["requests"].get("PUT", 0) == 0  # the archive had the blob
    found = assets(api, dandiset)
    assert found["first.nwb"]["blob"] == found["second.nwb"]["blob"]


def test_a_file_of_several_parts_sends_each_part_once(archive, api, draft, dandiset, tmp_path) -> None:
    from dandischema.digests.dandietag import DandiETag

    source = tmp_path / "parts.bin"
    source.write_bytes(np.random.default_rng(21).bytes(150 * MiB))
    parts = len(list(DandiETag(source.stat().st_size).get_parts()))
    assert parts > 1
    archive.reset_s3_stats()
    subprocess.run(["cp", str(source), str(draft / "parts.bin")], check=True)
    settle(draft / "parts.bin")
    assert archive.s3_stats()["requests"].get("PUT", 0) == parts
    assert digest_of(assets(api, dandiset)["parts.bin"]) == dandi_etag(source)


def test_overwrite_replaces_the_asset_at_that_path(archive, api, draft, dandiset, tmp_path) -> None:
    first, second = write_nwb(tmp_path / "a.nwb", seed=3), write_nwb(tmp_path / "b.nwb", seed=4)
    target = draft / "data.nwb"
    shutil.copyfile(first, target)
    settle(target)
    before = assets(api, dandiset)["data.nwb"]
    subprocess.run(["cp", str(second), str(target)], check=True)
    settle(target)
    after = assets(api, dandiset)
    assert set(after) == {"data.nwb"}
    assert after["data.nwb"]["asset_id"] != before["asset_id"]
    assert digest_of(after["data.nwb"]) == dandi_etag(second)
    assert target.read_bytes() == second.read_bytes()
    assert dandi_ls(archive, dandiset) == {"data.nwb"}


def test_rm_removes_the_asset(archive, api, draft, dandiset, tmp_path) -> None:
    source = write_nwb(tmp_path / "gone.nwb", seed=5)
    shutil.copyfile(source, draft / "keep.nwb")
    shutil.copyfile(source, draft / "gone.nwb")
    settle(draft / "keep.nwb")
    settle(draft / "gone.nwb")
    subprocess.run(["rm", str(draft / "gone.nwb")], check=True)
    assert set(assets(api, dandiset)) == {"keep.nwb"}
    assert sorted(os.listdir(draft)) == ["dandiset.yaml", "keep.nwb"]
    assert dandi_ls(archive, dandiset) == {"keep.nwb"}


# -- mv, mkdir, cp -r --------------------------------------------------------------------------


def test_mv_of_a_file_keeps_its_blob_and_its_inode(archive, api, draft, dandiset, tmp_path) -> None:
    source = write_nwb(tmp_path / "m.nwb", seed=6)
    shutil.copyfile(source, draft / "old.nwb")
    settle(draft / "old.nwb")
    blob = assets(api, dandiset)["old.nwb"]["blob"]
    inode = os.stat(draft / "old.nwb").st_ino
    (draft / "sub-02").mkdir()
    subprocess.run(["mv", str(draft / "old.nwb"), str(draft / "sub-02" / "new.nwb")], check=True)
    assert os.stat(draft / "sub-02" / "new.nwb").st_ino == inode
    assert not (draft / "old.nwb").exists()
    found = assets(api, dandiset)
    assert set(found) == {"sub-02/new.nwb"} and found["sub-02/new.nwb"]["blob"] == blob
    assert dandi_ls(archive, dandiset) == {"sub-02/new.nwb"}


def test_mv_of_a_folder_moves_every_asset_under_it(archive, api, draft, dandiset, tmp_path) -> None:
    (draft / "sub-03" / "ses-1").mkdir(parents=True)
    for seed, name in ((7, "sub-03/ses-1/a.nwb"), (8, "sub-03/b.nwb")):
        shutil.copyfile(write_nwb(tmp_path / f"{seed}.nwb", seed=seed), draft / name)
        settle(draft / name)
    inode = os.stat(draft / "sub-03" / "ses-1" / "a.nwb").st_ino
    os.rename(draft / "sub-03", draft / "sub-04")
    assert os.stat(draft / "sub-04" / "ses-1" / "a.nwb").st_ino == inode
    assert set(assets(api, dandiset)) == {"sub-04/ses-1/a.nwb", "sub-04/b.nwb"}
    assert sorted(os.listdir(draft)) == ["dandiset.yaml", "sub-04"]
    assert dandi_ls(archive, dandiset) == {"sub-04/ses-1/a.nwb", "sub-04/b.nwb"}


def test_a_file_written_under_a_hidden_name_and_renamed_becomes_one_asset(
    archive, api, draft, dandiset, tmp_path
) -> None:
    """rsync's way: write `.name.XXXXXX`, set its times, rename it over `name`."""
    source = write_nwb(tmp_path / "r.nwb", seed=18)
    temporary = draft / ".r.nwb.Xy12Ab"
    shutil.copyfile(source, temporary)
    os.utime(temporary, (1_700_000_000, 1_700_000_000))
    assert assets(api, dandiset) == {}  # hidden names stay on this machine
    os.rename(temporary, draft / "r.nwb")
    settle(draft / "r.nwb")
    found = assets(api, dandiset)
    assert set(found) == {"r.nwb"} and digest_of(found["r.nwb"]) == dandi_etag(source)
    assert sorted(os.listdir(draft)) == ["dandiset.yaml", "r.nwb"]


def test_vim_edits_a_draft_file_in_place(archive, api, draft, dandiset) -> None:
    path = draft / "notes.txt"
    path.write_text("first line\n")
    settle(path)
    subprocess.run(["vim", "-u", "NONE", "-i", "NONE", "-N", "-es", "-c", "normal Goadded line",
                    "-c", "wq", str(path)], check=True, timeout=60)
    settle(path)
    assert path.read_text() == "first line\nadded line\n"
    assert set(assets(api, dandiset)) == {"notes.txt"}  # no swap or backup file uploaded
    assert assets(api, dandiset)["notes.txt"]["size"] == len("first line\nadded line\n")


def test_mv_into_another_dandiset_is_a_copy_and_a_delete(
    archive, api, mount, draft, dandiset, tmp_path
) -> None:
    other = create_dandiset(api, "the other end of a move")
    other_draft = version_path(mount.mountpoint, other, "draft")
    source = write_nwb(tmp_path / "x.nwb", seed=22)
    shutil.copyfile(source, draft / "moving.nwb")
    settle(draft / "moving.nwb")
    with pytest.raises(OSError) as refused:
        os.rename(draft / "moving.nwb", other_draft / "moving.nwb")
    assert refused.value.errno == errno.EXDEV  # so mv copies and deletes by itself:
    archive.reset_s3_stats()
    subprocess.run(["mv", str(draft / "moving.nwb"), str(other_draft)], check=True)
    settle(other_draft / "moving.nwb")
    assert assets(api, dandiset) == {}
    assert digest_of(assets(api, other)["moving.nwb"]) == dandi_etag(source)
    assert archive.s3_stats()["requests"].get("PUT", 0) == 0  # the archive had the blob


def test_mkdir_and_cp_r_of_a_folder(archive, api, draft, dandiset, tmp_path) -> None:
    local = tmp_path / "sub-05"
    (local / "ses-1").mkdir(parents=True)
    write_nwb(local / "ses-1" / "x.nwb", seed=10)
    write_nwb(local / "y.nwb", seed=11)
    (draft / "empty").mkdir()
    assert (draft / "empty").is_dir() and os.listdir(draft / "empty") == []
    assert "on this machine" in os.getxattr(draft / "empty", UPLOAD).decode()
    subprocess.run(["cp", "-r", str(local), str(draft)], check=True)
    for name in ("sub-05/ses-1/x.nwb", "sub-05/y.nwb"):
        settle(draft / name)
    found = assets(api, dandiset)
    assert set(found) == {"sub-05/ses-1/x.nwb", "sub-05/y.nwb"}
    assert digest_of(found["sub-05/y.nwb"]) == dandi_etag(local / "y.nwb")
    assert dandi_ls(archive, dandiset) == set(found)
    os.rmdir(draft / "empty")
    with pytest.raises(OSError) as refused:
        os.rmdir(draft / "sub-05")
    assert refused.value.errno == errno.ENOTEMPTY
    downloaded = download_draft(archive, dandiset, tmp_path / "download")
    for name in found:
        assert (downloaded / name).read_bytes() == (local / name.removeprefix("sub-05/")).read_bytes()


# -- what may not be written -------------------------------------------------------------------


def test_writes_to_a_published_version_fail_with_erofs_and_change_nothing(
    archive, api, mount
) -> None:
    dandiset, version = published_dandiset(api)
    root = version_path(mount.mountpoint, dandiset, version)
    existing = root / "sub-1" / "sub-1_ses-1.nwb"
    before = assets(api, dandiset, version), assets(api, dandiset)
    attempts = {
        "open for writing": lambda: open(existing, "r+b"),
        "create": lambda: open(root / "new.nwb", "wb"),
        "mkdir": lambda: os.mkdir(root / "new-folder"),
        "unlink": lambda: os.unlink(existing),
        "rename": lambda: os.rename(existing, root / "renamed.nwb"),
        "truncate": lambda: os.truncate(existing, 0),
        "utime": lambda: os.utime(existing, (0, 0)),
        "symlink": lambda: os.symlink("x", root / "link"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.EROFS, what
    for name in ("dandiset.yaml",):  # rendered in drafts too, never written
        with pytest.raises(OSError) as refused:
            open(version_path(mount.mountpoint, dandiset, "draft") / name, "wb")
        assert refused.value.errno == errno.EROFS
    assert (assets(api, dandiset, version), assets(api, dandiset)) == before
    assert "read-only" in mount.log().lower() or "published" in mount.log().lower()


def test_without_a_token_a_draft_is_read_only_and_writes_fail_with_eacces(
    archive, api, dandiset, tmp_path
) -> None:
    base = tmp_path / "anonymous"
    with MountProcess(base / "mnt", archive.api_url, base / "cache", env=no_token(archive)) as anonymous:
        draft = version_path(anonymous.mountpoint, dandiset, "draft")
        assert os.stat(draft).st_mode & 0o777 == 0o555
        for attempt in (lambda: open(draft / "new.nwb", "wb"), lambda: os.mkdir(draft / "d")):
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno == errno.EACCES
        assert "new.nwb" in anonymous.log()
    assert assets(api, dandiset) == {}


def test_symlinks_and_hard_links_are_refused_with_a_reason(draft, mount, tmp_path) -> None:
    shutil.copyfile(write_nwb(tmp_path / "l.nwb", seed=12), draft / "l.nwb")
    for attempt in (lambda: os.symlink("l.nwb", draft / "s.nwb"),
                    lambda: os.link(draft / "l.nwb", draft / "h.nwb")):
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.EPERM
    assert "no symbolic links" in mount.log() and "no hard links" in mount.log()


# -- HDF5 libraries writing in place -----------------------------------------------------------


def test_h5py_rewrites_a_file_in_place_and_the_archive_has_the_result(
    archive, api, draft, dandiset, tmp_path
) -> None:
    path = draft / "inplace.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(100_000, dtype="int64"), chunks=(10_000,))
        f.attrs["state"] = "first"
    settle(path)
    with h5py.File(path, "r+") as f:  # seeks back and rewrites chunks and the superblock
        f["values"][20_000:30_000] = -1
        f.attrs["state"] = "second"
        f.create_dataset("more", data=np.ones(50_000))
    settle(path)
    downloaded = download_draft(archive, dandiset, tmp_path / "download") / "inplace.h5"
    assert downloaded.read_bytes() == path.read_bytes()
    with h5py.File(downloaded, "r") as f:
        expected = np.arange(100_000, dtype="int64")
        expected[20_000:30_000] = -1
        assert (f["values"][:] == expected).all()
        assert f.attrs["state"] == "second" and f["more"].shape == (50_000,)
    assert set(assets(api, dandiset)) == {"inplace.h5"}


def test_pynwb_writes_straight_into_the_draft(archive, api, draft, dandiset, tmp_path) -> None:
    from pynwb import NWBHDF5IO

    (draft / "sub-06").mkdir()
    path = write_nwb(draft / "sub-06" / "sub-06_ses-1.nwb", seed=13)
    settle(path)
    downloaded = download_draft(archive, dandiset, tmp_path / "download")
    expected = np.random.default_rng(13).standard_normal(200_000).astype("float32")
    with NWBHDF5IO(str(downloaded / "sub-06" / "sub-06_ses-1.nwb"), "r") as io:
        nwb = io.read()
        assert nwb.identifier == "test-13" and nwb.subject.subject_id == "s13"
        assert (nwb.acquisition["signal"].data[:] == expected).all()
    assert digest_of(assets(api, dandiset)["sub-06/sub-06_ses-1.nwb"]) == dandi_etag(path)


def test_cp_r_of_a_zarr_folder_is_one_zarr_asset_dandi_download_reads_back(
    archive, api, draft, dandiset, tmp_path
) -> None:
    import zarr

    local = tmp_path / "image.zarr"
    values = np.arange(64 * 64, dtype="uint16").reshape(64, 64)
    zarr.create_array(str(local), shape=values.shape, chunks=(16, 16), dtype="uint16",
                      zarr_format=2)[:] = values
    (draft / "sub-08").mkdir()
    subprocess.run(["cp", "-r", str(local), str(draft / "sub-08")], check=True)
    for path in sorted(p for p in (draft / "sub-08" / "image.zarr").rglob("*") if p.is_file()):
        settle(path)
    found = assets(api, dandiset)
    assert set(found) == {"sub-08/image.zarr"}  # one Zarr asset, not one per chunk
    downloaded = download_draft(archive, dandiset, tmp_path / "download") / "sub-08" / "image.zarr"
    assert (zarr.open_array(str(downloaded), mode="r")[:] == values).all()


def test_zarr_python_writes_a_zarr_into_the_draft_and_dandi_download_reads_it_back(
    archive, api, draft, dandiset, tmp_path
) -> None:
    import zarr

    (draft / "sub-07").mkdir()
    store = draft / "sub-07" / "image.zarr"
    values = np.arange(64 * 64, dtype="uint16").reshape(64, 64)
    array = zarr.create_array(str(store), shape=values.shape, chunks=(16, 16), dtype="uint16",
                              zarr_format=2)
    array[:] = values
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        settle(path)
    found = assets(api, dandiset)
    assert set(found) == {"sub-07/image.zarr"}  # one Zarr asset, not one per chunk
    downloaded = download_draft(archive, dandiset, tmp_path / "download") / "sub-07" / "image.zarr"
    assert (zarr.open_array(str(downloaded), mode="r")[:] == values).all()


# -- fsync, xattrs, truncate, unmount ----------------------------------------------------------


def test_df_shows_the_spool_disks_free_space_and_an_anonymous_mount_none(
    archive, mount, tmp_path
) -> None:
    mounted, spool = os.statvfs(mount.mountpoint), os.statvfs(mount.cache_dir)
    assert mounted.f_blocks * mounted.f_frsize == pytest.approx(
        spool.f_blocks * spool.f_frsize, rel=0.01)
    assert mounted.f_bavail > 0
    base = tmp_path / "anonymous"
    with MountProcess(base / "mnt", archive.api_url, base / "cache", env=no_token(archive)) as anonymous:
        assert os.statvfs(anonymous.mountpoint).f_blocks == 0


def test_a_full_spool_disk_is_enospc_and_leaves_no_asset(archive, api, dandiset, tmp_path) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)]).returncode:
        pytest.skip("SKIPPED LOUDLY: cannot mount a tmpfs here (not root?): ENOSPC is untested")
    try:
        with MountProcess(tmp_path / "mnt", archive.api_url, small / "cache",
                          env={**no_token(archive), "DANDI_API_KEY": OWNER_TOKEN},
                          log_path=tmp_path / "mnt.log") as full:
            draft = version_path(full.mountpoint, dandiset, "draft")
            assert os.statvfs(full.mountpoint).f_blocks * MiB <= 4 * MiB  # df: the small disk
            fd = os.open(draft / "too-big.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                with pytest.raises(OSError) as refused:
                    for _ in range(16):
                        os.write(fd, b"x" * MiB)
                assert refused.value.errno == errno.ENOSPC
                with pytest.raises(OSError) as unsynced:
                    os.fsync(fd)
                assert unsynced.value.errno == errno.EIO
            finally:
                os.close(fd)  # gives up what was written: no file cut short goes to the archive
            assert "no room in the spool" in full.log() and "not uploaded" in full.log()
            assert not (draft / "too-big.bin").exists()
    finally:
        subprocess.run(["umount", "-l", str(small)])
    assert "too-big.bin" not in assets(api, dandiset)


def test_fsync_of_the_writing_handle_returns_once_the_archive_has_the_asset(
    api, draft, dandiset, tmp_path
) -> None:
    data = np.random.default_rng(14).bytes(3 * MiB)
    fd = os.open(draft / "synced.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        state = os.getxattr(draft / "synced.bin", UPLOAD).decode()
        assert state in {"writing", "spooled"}, state
        os.fsync(fd)
        record = assets(api, dandiset)["synced.bin"]  # there before close
        assert record["size"] == len(data)
    finally:
        os.close(fd)
    assert (draft / "synced.bin").read_bytes() == data


def test_fsync_reports_an_upload_the_archive_refuses_and_the_bytes_stay(
    api, mount, dandiset
) -> None:
    draft = version_path(mount.mountpoint, dandiset, "draft")
    data = np.random.default_rng(16).bytes(1 * MiB)
    fd = os.open(draft / "refused.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        deleted = api.delete(f"/api/dandisets/{dandiset}/", headers=OWNER)
        assert deleted.status_code == 204, deleted.text
        with pytest.raises(OSError) as refused:
            os.fsync(fd)
        assert refused.value.errno == errno.EIO
    finally:
        os.close(fd)
    state = os.getxattr(draft / "refused.bin", UPLOAD).decode()
    assert state.startswith("failed: "), state
    assert (draft / "refused.bin").read_bytes() == data  # kept on this machine
    assert "failed" in mount.log() and "refused.bin" in mount.log()


def test_truncate_and_times_of_a_draft_file(api, draft, dandiset) -> None:
    path = draft / "cut.bin"
    path.write_bytes(b"x" * 100_000)
    os.truncate(path, 1000)
    assert path.stat().st_size == 1000
    with open(path, "r+b") as f:
        f.truncate(10)
        f.seek(0, os.SEEK_END)
        f.write(b"end")
    os.utime(path, (1_700_000_000, 1_700_000_000))  # accepted, not refused
    settle(path)
    assert path.read_bytes() == b"x" * 10 + b"end"
    assert assets(api, dandiset)["cut.bin"]["size"] == 13


def test_cp_p_keeps_the_time_as_the_assets_blob_date_modified(api, draft, dandiset, tmp_path) -> None:
    from datetime import datetime, timezone

    source = write_nwb(tmp_path / "dated.nwb", seed=19)
    os.utime(source, (1_600_000_000, 1_600_000_000))
    subprocess.run(["cp", "-p", str(source), str(draft / "dated.nwb")], check=True)  # chown too
    settle(draft / "dated.nwb")
    modified = assets(api, dandiset)["dated.nwb"]["metadata"]["blobDateModified"]
    assert datetime.fromisoformat(modified) == datetime.fromtimestamp(1_600_000_000, timezone.utc)


def test_an_empty_file_stays_local_and_never_becomes_an_empty_asset(api, draft, dandiset) -> None:
    subprocess.run(["touch", str(draft / "touched.nwb")], check=True)
    assert (draft / "touched.nwb").stat().st_size == 0
    assert os.getxattr(draft / "touched.nwb", UPLOAD).decode().startswith("empty")
    assert assets(api, dandiset) == {}


def test_sigterm_waits_for_the_running_upload(archive, api, dandiset, tmp_path) -> None:
    base = tmp_path / "stopping"
    process = MountProcess(base / "mnt", archive.api_url, base / "cache",
                           env={**no_token(archive), "DANDI_API_KEY": OWNER_TOKEN}).start()
    data = np.random.default_rng(15).bytes(8 * MiB)
    try:
        # Each S3 request takes a second, so the upload is still running at the signal.
        with archive.s3_faults(latency_ms=1000):
            (version_path(process.mountpoint, dandiset, "draft") / "late.bin").write_bytes(data)
            assert process.stop(signal.SIGTERM, timeout=300) == 0
    finally:
        process.stop()
    assert "waiting up to" in process.log()
    assert assets(api, dandiset)["late.bin"]["size"] == len(data)


def test_kill_9_in_the_middle_of_an_upload_and_the_next_mount_finishes_it(
    archive, api, dandiset, tmp_path
) -> None:
    base = tmp_path / "killed"
    env = {**no_token(archive), "DANDI_API_KEY": OWNER_TOKEN}
    data = np.random.default_rng(17).bytes(8 * MiB)
    first = MountProcess(base / "mnt", archive.api_url, base / "cache", env=env).start()
    try:
        with archive.s3_faults(latency_ms=1000):  # the upload is still running at the kill
            (version_path(first.mountpoint, dandiset, "draft") / "resumed.bin").write_bytes(data)
            first.stop(signal.SIGKILL)
    finally:
        first.stop()
    assert "resumed.bin" not in assets(api, dandiset)  # never a partial asset
    with MountProcess(base / "mnt", archive.api_url, base / "cache", env=env) as second:
        wait_for(lambda: "resumed.bin" in assets(api, dandiset))
        assert "resuming the upload" in second.log()
    record = assets(api, dandiset)["resumed.bin"]
    assert record["size"] == len(data)
    assert digest_of(record) == dandi_etag_of(data)
