"""A mount while the archive changes under it: open files, and a version compared with `dandi download`.

The module runs its own empty local archive (its owner's token is `OWNER_TOKEN`), so the
dandisets it creates, renames in and publishes never reach the session archive's listings.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import LocalArchive, TrustBundle, empty_archive, server_root_client
from fuse_support import MountProcess, dandi_download, require_fuse, version_path
from localarchive_app import (
    OWNER,
    PUBLISHABLE_METADATA,
    OWNER_TOKEN,
    add_asset,
    create_dandiset,
    upload_blob,
    wait_for,
    wait_valid,
)

MiB = 1 << 20


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, trusted_cas: TrustBundle
) -> Iterator[LocalArchive]:
    yield from empty_archive(tmp_path_factory, trusted_cas, "changing-archive", OWNER_TOKEN)


@pytest.fixture(scope="module")
def api(archive: LocalArchive) -> Iterator[httpx.Client]:
    yield from server_root_client(archive)


@pytest.fixture(scope="module")
def mount(archive: LocalArchive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountProcess]:
    require_fuse()
    base = tmp_path_factory.mktemp("changing-mount")
    process = MountProcess(base / "mnt", archive.api_url, base / "cache",
                           env={"DANDI_API_KEY": OWNER_TOKEN}).start()
    yield process
    process.stop()


def rename_asset(api: httpx.Client, dandiset: str, asset: dict[str, Any], path: str) -> dict:
    """dandi-cli's rename: PUT the asset with the same blob and a new `metadata.path`."""
    response = api.put(
        f"/api/dandisets/{dandiset}/versions/draft/assets/{asset['asset_id']}/", headers=OWNER,
        json={"metadata": {**asset["metadata"], "path": path}, "blob_id": asset["blob"]},
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- an open file keeps its bytes ------------------------------------------------------------


def embargoed_dandiset(api: httpx.Client, name: str) -> str:
    response = api.post("/api/dandisets/?embargo=true", headers=OWNER,
                        json={"name": name, "metadata": PUBLISHABLE_METADATA})
    assert response.status_code == 200, response.text
    return response.json()["identifier"]


@pytest.mark.parametrize("embargoed", [False, True], ids=["open", "embargoed"])
def test_an_open_draft_file_reads_on_after_its_asset_is_renamed_and_deleted(
    api, mount, embargoed
) -> None:
    data = random.Random(2).randbytes(12 * MiB)
    name = "Renamed under an open file"
    dandiset = embargoed_dandiset(api, name) if embargoed else create_dandiset(api, name)
    blob = upload_blob(api, dandiset, data)
    asset = add_asset(api, dandiset, "sub-1/sub-1_ses-1.nwb", blob_id=blob).json()
    asset["blob"] = blob
    folder = version_path(mount.mountpoint, dandiset, "draft") / "sub-1"
    fd = os.open(folder / "sub-1_ses-1.nwb", os.O_RDONLY)
    try:
        assert os.pread(fd, 1 * MiB, 0) == data[: 1 * MiB]
        moved = rename_asset(api, dandiset, asset, "sub-1/sub-1_ses-1_renamed.nwb")
        assert moved["asset_id"] != asset["asset_id"]
        # Once the mount no longer knows the old name, the kernel's attributes of the open
        # file have timed out too (they live shorter than the draft's cached listing), so
        # the next read makes the kernel ask the mount for them first.
        wait_for(lambda: not (folder / "sub-1_ses-1.nwb").exists(), timeout=60)
        assert os.pread(fd, 1 * MiB, 5 * MiB) == data[5 * MiB: 6 * MiB]
        assert os.fstat(fd).st_size == len(data)
        deleted = api.delete(
            f"/api/dandisets/{dandiset}/versions/draft/assets/{moved['asset_id']}/", headers=OWNER)
        assert deleted.status_code == 204, deleted.text
        wait_for(lambda: not (folder / "sub-1_ses-1_renamed.nwb").exists(), timeout=60)
        assert os.pread(fd, 1 * MiB, 9 * MiB) == data[9 * MiB: 10 * MiB]
        assert os.pread(fd, 1 * MiB, len(data) - MiB // 2) == data[-MiB // 2:]
    finally:
        os.close(fd)


# -- a published version equals its `dandi download` -----------------------------------------

LONG_DESCRIPTION = (
    "Extracellular recordings with 64-channel silicon probes and two-photon calcium imaging "
    "from CA1 of head-fixed mice (Ünïcödé — “quotes” 日本語) running on a virtual linear track.\n\n"
    + "Each session has the raw voltage or imaging frames, sorted units or segmented cells, "
    "and the animal's position and running speed. " * 4
)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*")) if path.is_file()
    }


def test_a_published_version_with_a_long_description_equals_its_dandi_download(
    api, archive, mount, tmp_path
) -> None:
    metadata = {**PUBLISHABLE_METADATA, "description": LONG_DESCRIPTION}
    dandiset = create_dandiset(api, "Ünïcödé — a dandiset whose name and description fold "
                               "across lines in dandiset.yaml", metadata)
    blob = upload_blob(api, dandiset, random.Random(3).randbytes(3 * MiB))
    assert add_asset(api, dandiset, "sub-1/sub-1_ses-1.nwb", blob_id=blob).status_code == 200
    wait_valid(api, dandiset)
    assert api.post(f"/api/dandisets/{dandiset}/versions/draft/publish/",
                    headers=OWNER).status_code == 202
    wait_for(lambda: api.get(f"/api/dandisets/{dandiset}/").json()["most_recent_published_version"])
    version = api.get(f"/api/dandisets/{dandiset}/").json()["most_recent_published_version"]["version"]

    downloaded = tree_bytes(dandi_download(archive.api_url, dandiset, version, tmp_path, {}))
    mounted = tree_bytes(version_path(mount.mountpoint, dandiset, version))
    assert set(mounted) == set(downloaded) == {"dandiset.yaml", "sub-1/sub-1_ses-1.nwb"}
    assert yaml.safe_load(downloaded["dandiset.yaml"])["description"] == LONG_DESCRIPTION
    assert mounted == downloaded
