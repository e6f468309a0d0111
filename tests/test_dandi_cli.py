"""The real `dandi` command (dandi-cli) against the local archive: ls, download, upload.

dandi-cli verifies every download against the archive's digests (dandi-etag and SHA-256), so
a completed download is itself a check of the digests the archive reports; the tests then
compare the bytes with the demo sources.  Uploads go into a dandiset created for the test and
deleted afterwards, so the shared session archive keeps its demo contents.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import LocalArchive, dandi_cli_env

from dandifs.localarchive.demodata import build_demo_data
from dandifs.localarchive.spec import DemoDandiset

DANDI = Path(sys.executable).with_name("dandi")
TIMEOUT = 300


def dandi(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """Run `dandi`; fail with its output (and what it asked the archive) if it fails."""
    result = subprocess.run(
        [str(DANDI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )
    if result.returncode != 0:
        pytest.fail(f"dandi {' '.join(args)} exited {result.returncode}:\n"
                    f"{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def api_client(archive: LocalArchive) -> httpx.Client:
    headers = {"Authorization": f"token {archive.token}"}
    return httpx.Client(base_url=archive.api_url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def api(local_archive: LocalArchive) -> Iterator[httpx.Client]:
    with api_client(local_archive) as client:
        yield client


@pytest.fixture(params=["local_archive", "plain_archive"])
def either_archive(request: pytest.FixtureRequest) -> LocalArchive:
    """The HTTPS archive and the plain-HTTP one: dandi-cli's reads must work over both."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def demo(local_archive) -> dict[str, DemoDandiset]:
    data = build_demo_data(Path(local_archive.data_dir) / "demo-cache")
    return {d.identifier: d for d in data.dandisets}


RECORDINGS = Path(os.environ.get(
    "DANDIFS_REAL_ARCHIVE_RECORDINGS", str(Path(__file__).parent / "data" / "real-archive" / "recordings")))
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def request_kind(method: str, path: str, status: int) -> tuple[str, str, int]:
    """A request with its ids and query left out, to compare runs on different data."""
    path = UUID.sub("{id}", path.split("?", 1)[0])
    path = re.sub(r"/0\.\d{6}\.\d{4}/", "/{version}/", re.sub(r"/\d{6}/", "/{dandiset}/", path))
    return method, path, status


def recorded_kinds(name: str) -> set[tuple[str, str, int]]:
    recording = json.loads((RECORDINGS / f"{name}.json").read_text())
    return {request_kind(r["method"], r["path"], r["status"]) for r in recording["requests"]}


@contextlib.contextmanager
def archive_requests(local_archive) -> Iterator[set[tuple[str, str, int]]]:
    """The kinds of API requests the archive logged while the block ran."""
    start = local_archive.log_path.stat().st_size
    seen: set[tuple[str, str, int]] = set()
    yield seen
    with open(local_archive.log_path, "rb") as log:
        log.seek(start)
        for line in log.read().decode(errors="replace").splitlines():
            if match := ACCESS_LINE.search(line):
                seen.add(request_kind(match["method"], match["path"], int(match["status"])))


def published_version(api: httpx.Client, identifier: str) -> str:
    dandiset = api.get(f"/dandisets/{identifier}/").json()
    return dandiset["most_recent_published_version"]["version"]


def test_ls_recursive_lists_every_asset(either_archive, demo) -> None:
    url = f"{either_archive.api_url}/dandisets/000001/versions/draft/"
    out = dandi(["ls", "-r", "-f", "yaml", url], dandi_cli_env(either_archive))
    listed = yaml.safe_load(out)
    paths = sorted(item["path"] for item in listed if "asset_id" in item)
    assert paths == sorted(asset.path for asset in demo["000001"].draft)


def test_download_published_version_is_byte_identical(either_archive, demo,
                                                      tmp_path: Path) -> None:
    with api_client(either_archive) as api:
        version = published_version(api, "000001")
        with archive_requests(either_archive) as requested:
            dandi(["download", "-o", str(tmp_path),
                   f"{either_archive.api_url}/dandisets/000001/versions/{version}/"],
                  dandi_cli_env(either_archive))
        # dandi-cli asks the local archive what it asked the real one (access logs compared).
        assert requested == recorded_kinds("dandi_cli_download_published_request_sequence")
        root = tmp_path / "000001"
        for asset in demo["000001"].published:
            assert (root / asset.path).read_bytes() == asset.source.read_bytes(), asset.path
        downloaded = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        assert downloaded == {a.path for a in demo["000001"].published} | {"dandiset.yaml"}
        on_disk = yaml.safe_load((root / "dandiset.yaml").read_text())
        assert on_disk == api.get(f"/dandisets/000001/versions/{version}/").json()
        assert on_disk["version"] == version
        assert on_disk["identifier"].endswith(":000001")


def write_nwb(path: Path) -> None:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    path.parent.mkdir(parents=True, exist_ok=True)
    nwb = NWBFile(
        session_description="uploaded by the dandi-cli test",
        identifier=str(uuid.uuid4()),
        session_start_time=datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
        session_id="upload1",
        subject=Subject(subject_id="upload01", species="Mus musculus", sex="F", age="P60D"),
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


@pytest.fixture
def scratch_dandiset(api: httpx.Client) -> Iterator[str]:
    response = api.post("/dandisets/", json={"name": "dandi-cli upload test",
                                              "metadata": {"description": "scratch"}})
    assert response.status_code == 200, response.text
    identifier = response.json()["identifier"]
    try:
        yield identifier
    finally:
        api.delete(f"/dandisets/{identifier}/")


def test_upload_then_list_and_download(local_archive, archive_env, api, scratch_dandiset,
                                       tmp_path: Path) -> None:
    root = tmp_path / scratch_dandiset
    root.mkdir()
    (root / "dandiset.yaml").write_text(f"identifier: '{scratch_dandiset}'\n")
    path = "sub-upload01/sub-upload01_ses-upload1.nwb"
    write_nwb(root / path)
    with archive_requests(local_archive) as requested:
        dandi(["upload", "-i", local_archive.api_url, path], archive_env, cwd=root)
    assert requested == recorded_kinds("dandi_cli_upload_second_file_request_sequence")

    listing = api.get(f"/dandisets/{scratch_dandiset}/versions/draft/assets/",
                      params={"path": path}).json()
    assert [item["path"] for item in listing["results"]] == [path]
    asset = listing["results"][0]
    assert asset["size"] == (root / path).stat().st_size
    metadata = api.get(f"/dandisets/{scratch_dandiset}/versions/draft/assets/"
                       f"{asset['asset_id']}/").json()
    assert metadata["schemaKey"] == "Asset"
    assert metadata["encodingFormat"] == "application/x-nwb"
    assert metadata["wasAttributedTo"][0]["identifier"] == "upload01"  # extracted by dandi-cli
    download = httpx.get(f"{local_archive.api_url}/assets/{asset['asset_id']}/download/",
                         follow_redirects=True, timeout=30)
    assert download.status_code == 200
    assert download.content == (root / path).read_bytes()


def test_dandi_api_client_iterates_dandisets_versions_assets(local_archive, demo) -> None:
    from dandi.dandiapi import DandiAPIClient

    with DandiAPIClient(local_archive.api_url) as client:
        identifiers = {d.identifier for d in client.get_dandisets()}
        assert {"000001", "000002"} <= identifiers
        dandiset = client.get_dandiset("000001")
        versions = [v.identifier for v in dandiset.get_versions()]
        assert versions[0] == "draft" and len(versions) >= 2
        published = client.get_dandiset("000001", versions[-1])
        assets = {a.path: a for a in published.get_assets()}
        assert set(assets) == {a.path for a in demo["000001"].published}
        first = next(iter(assets.values()))
        assert first.get_raw_metadata()["path"] == first.path
        draft_zarrs = [a for a in client.get_dandiset("000002", "draft").get_assets()
                       if a.path.endswith(".zarr")]
        assert draft_zarrs and draft_zarrs[0].zarr


def test_download_zarr_asset_is_identical_to_its_source(local_archive, archive_env, demo,
                                                        tmp_path: Path) -> None:
    """dandi-cli lists the zarr's files and fetches each through the download redirect."""
    zarr = next(a for a in demo["000002"].draft if a.source.is_dir())
    url = f"{local_archive.api_url}/dandisets/000002/versions/draft/assets/?path={zarr.path}"
    with archive_requests(local_archive) as requested:
        dandi(["download", "-o", str(tmp_path), url], archive_env)
    assert requested == recorded_kinds("dandi_cli_download_zarr_request_sequence")
    target = tmp_path / Path(zarr.path).name
    source_files = {p.relative_to(zarr.source).as_posix(): p
                    for p in zarr.source.rglob("*") if p.is_file()}
    got = {p.relative_to(target).as_posix(): p for p in target.rglob("*") if p.is_file()}
    assert got.keys() == source_files.keys()
    assert all(got[k].read_bytes() == source_files[k].read_bytes() for k in got)


def test_upload_zarr_directory(local_archive, archive_env, api, scratch_dandiset,
                               tmp_path: Path) -> None:
    """dandi-cli creates the zarr, uploads its files, finalizes and checks our checksum."""
    import numpy as np
    import zarr
    from zarr_checksum import compute_zarr_checksum
    from zarr_checksum.generators import yield_files_local

    root = tmp_path / scratch_dandiset
    root.mkdir()
    (root / "dandiset.yaml").write_text(f"identifier: '{scratch_dandiset}'\n")
    path = "sub-upload01/sub-upload01_sample.zarr"
    array = zarr.open_array(str(root / path), mode="w", shape=(40, 40), chunks=(10, 10),
                            dtype="uint16", zarr_format=2)
    array[:] = np.arange(1600, dtype="uint16").reshape(40, 40)
    dandi(["upload", "-i", local_archive.api_url, path], archive_env, cwd=root)

    listing = api.get(f"/dandisets/{scratch_dandiset}/versions/draft/assets/",
                      params={"path": path}).json()
    assert [item["path"] for item in listing["results"]] == [path]
    zarr_id = listing["results"][0]["zarr"]
    remote = api.get(f"/zarr/{zarr_id}/").json()
    local = compute_zarr_checksum(yield_files_local(root / path))
    assert (remote["status"], remote["checksum"], remote["file_count"]) == (
        "Complete", str(local), local.count)
