"""The core's write side against the local archive: files written into a draft become
assets with the dandi-etag dandischema computes, names change as the archive's API does
them, and nothing written is lost or registered half-made."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from dandischema.digests.dandietag import DandiETag

from dandifs import errors
from dandifs.archive import ArchiveClient
from dandifs.core import CacheConfig, Core, CoreConfig, Phase, open_core

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


def etag_of(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "etag-source"
    path.write_bytes(data)
    return DandiETag.from_file(path).as_str()


@pytest.fixture(scope="module")
def dandiset(local_archive: Any) -> str:
    """A fresh dandiset of the demo user, so writes touch no other test's data."""

    async def make() -> str:
        async with ArchiveClient(local_archive.api_url, token=local_archive.token) as archive:
            created = await archive.create_dandiset("core write test", {"description": "writes"})
            return created.identifier

    return run(make)


def config(tmp_path: Path) -> CoreConfig:
    return CoreConfig(cache=CacheConfig(memory_bytes=64 << 20), spool_dir=tmp_path / "uploads")


def opened(local_archive: Any, tmp_path: Path, **kwargs: Any):
    token = None if kwargs.get("anonymous") else local_archive.token
    return open_core(local_archive.api_url, token=token, config=config(tmp_path), **kwargs)


async def assets(local_archive: Any, dandiset: str) -> dict[str, Any]:
    async with ArchiveClient(local_archive.api_url, token=local_archive.token) as archive:
        return {
            asset.path: asset
            for asset in await archive.list_assets(dandiset, "draft", metadata=True)
        }


async def write_file(core: Core, path: str, data: bytes, *, chunk: int = 1 << 20) -> None:
    writer = await core.create(path)
    for offset in range(0, len(data), chunk):
        await writer.write(offset, data[offset : offset + chunk])
    await writer.close()


async def read_all(core: Core, path: str) -> bytes:
    entry = await core.stat(path)
    reader = await core.open(entry)
    try:
        return await reader.read(0, entry.size)
    finally:
        await reader.aclose()


def test_a_written_file_is_listed_at_once_and_becomes_an_asset_with_its_dandi_etag(
    local_archive, dandiset, tmp_path
):
    data = random.Random(1).randbytes(3_000_000)
    path = f"/dandisets/{dandiset}/draft/sub-01/written.bin"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await core.mkdir(f"/dandisets/{dandiset}/draft/sub-01")
            writer = await core.create(path)
            await writer.write(0, data[:1000])
            entry = await core.stat(path)
            assert entry.upload is not None and entry.upload.phase is Phase.WRITING
            assert entry.size == 1000
            await writer.write(1000, data[1000:])
            names = [e.name for e in await core.listdir(f"/dandisets/{dandiset}/draft/sub-01")]
            assert names == ["written.bin"]
            await writer.sync()  # waits for the upload
            await writer.close()
            assert await core.drain_uploads(60)
            entry = await core.stat(path)
            assert entry.upload is None and entry.asset_id is not None
            assert await read_all(core, path) == data
        found = await assets(local_archive, dandiset)
        asset = found["sub-01/written.bin"]
        assert asset.size == len(data)
        assert asset.digest == etag_of(data, tmp_path)

    run(main)


def test_seeking_writes_give_the_etag_of_the_final_bytes(local_archive, dandiset, tmp_path):
    data = bytearray(random.Random(2).randbytes(2_000_000))
    path = f"/dandisets/{dandiset}/draft/seeking.h5"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            writer = await core.create(path)
            await writer.write(0, bytes(data))
            await writer.write(100, b"rewritten superblock")  # h5py goes back to offset 0 area
            data[100:120] = b"rewritten superblock"
            await writer.close()
            assert await core.drain_uploads(60)
        asset = (await assets(local_archive, dandiset))["seeking.h5"]
        assert asset.digest == etag_of(bytes(data), tmp_path)

    run(main)


def test_an_archive_file_opened_for_writing_changes_only_where_written(
    local_archive, dandiset, tmp_path
):
    data = random.Random(3).randbytes(500_000)
    path = f"/dandisets/{dandiset}/draft/edited.bin"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await write_file(core, path, data)
            assert await core.drain_uploads(60)
        before = (await assets(local_archive, dandiset))["edited.bin"]
        async with opened(local_archive, tmp_path / "second") as core:
            untouched = await core.open_write(path)  # h5py "r+" that only reads
            assert await untouched.read(10, 5) == data[10:15]
            await untouched.close()
            assert core.uploads() == []
            writer = await core.open_write(path)
            await writer.write(len(data), b"appended")
            await writer.close()
            assert await core.drain_uploads(60)
        after = (await assets(local_archive, dandiset))["edited.bin"]
        assert after.asset_id != before.asset_id
        assert after.digest == etag_of(data + b"appended", tmp_path)

    run(main)


def test_names_change_as_the_archive_does_them(local_archive, dandiset, tmp_path):
    draft = f"/dandisets/{dandiset}/draft"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await core.mkdir(f"{draft}/folder")
            await write_file(core, f"{draft}/folder/a.txt", b"alpha")
            await write_file(core, f"{draft}/folder/b.txt", b"beta")
            assert await core.drain_uploads(60)
            blob_before = (await assets(local_archive, dandiset))["folder/a.txt"].blob
            requests = core.requests_made
            await core.copy(f"{draft}/folder/a.txt", f"{draft}/copied.txt")
            await core.rename(f"{draft}/folder", f"{draft}/renamed")
            await core.rename(f"{draft}/renamed/b.txt", f"{draft}/renamed/c.txt")
            await core.unlink(f"{draft}/renamed/a.txt")
            assert core.requests_made - requests < 30  # no byte moved: only API calls
            with pytest.raises(errors.NotEmpty):
                await core.rmdir(f"{draft}/renamed")
            await core.mkdir(f"{draft}/empty")
            await core.rmdir(f"{draft}/empty")
            with pytest.raises(errors.NotFound):
                await core.stat(f"{draft}/empty")
            names = {e.name for e in await core.listdir(f"{draft}/renamed")}
            assert names == {"c.txt"}
        found = await assets(local_archive, dandiset)
        assert "copied.txt" in found and found["copied.txt"].blob == blob_before
        assert "renamed/c.txt" in found
        assert not [p for p in found if p.startswith("folder/") or p == "renamed/a.txt"]

    run(main)


def test_refusals_say_why_and_change_nothing(local_archive, dandiset, published, tmp_path):
    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            with pytest.raises(errors.ReadOnly, match="published"):
                await core.create(f"/dandisets/000001/{published}/new.txt")
            with pytest.raises(errors.ReadOnly, match="dandiset.yaml"):
                await core.create(f"/dandisets/{dandiset}/draft/dandiset.yaml")
            with pytest.raises(errors.NotFound):
                await core.create(f"/dandisets/{dandiset}/draft/no-such-folder/x.txt")
        async with opened(local_archive, tmp_path / "anon", anonymous=True) as core:
            with pytest.raises(errors.AuthenticationRequired):
                await core.create(f"/dandisets/{dandiset}/draft/x.txt")
            assert not core.writable(f"/dandisets/{dandiset}/draft/x.txt")

    run(main)


def test_empty_and_hidden_files_stay_here_until_renamed(local_archive, dandiset, tmp_path):
    draft = f"/dandisets/{dandiset}/draft"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await write_file(core, f"{draft}/empty.txt", b"")
            await write_file(core, f"{draft}/.partial.tmp", b"rsync writes here first")
            assert core.uploads() == []
            assert (await core.stat(f"{draft}/empty.txt")).upload.phase is Phase.EMPTY
            assert (await core.stat(f"{draft}/.partial.tmp")).upload.phase is Phase.LOCAL
            await core.rename(f"{draft}/.partial.tmp", f"{draft}/final.txt")
            assert await core.drain_uploads(60)
        found = await assets(local_archive, dandiset)
        assert "empty.txt" not in found and ".partial.tmp" not in found
        assert found["final.txt"].size == len(b"rsync writes here first")

    run(main)
