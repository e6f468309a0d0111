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
from dandifs.core import Core, CoreConfig, Phase, open_core

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
    """The cache directory's layout under `tmp_path` (uploads in `uploads/`)."""
    return CoreConfig.in_directory(tmp_path, disk_bytes=256 << 20, memory_bytes=64 << 20)


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


def test_uploads_complete_right_under_s3_faults(local_archive, dandiset, tmp_path):
    small = random.Random(4).randbytes(3_000_000)
    large = random.Random(5).randbytes(70 * 1024 * 1024)  # two parts
    draft = f"/dandisets/{dandiset}/draft"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            with local_archive.s3_faults(error_rate=0.3, reset_rate=0.2, seed=3):
                await write_file(core, f"{draft}/faulty-small.bin", small)
                await write_file(core, f"{draft}/faulty-large.bin", large, chunk=8 << 20)
                assert await core.drain_uploads(300)
                faults = local_archive.s3_stats()["faults"]
            assert core.uploads() == []
        assert sum(faults.values()) > 0, "no fault was injected: the test proves nothing"
        found = await assets(local_archive, dandiset)
        assert found["faulty-small.bin"].digest == etag_of(small, tmp_path)
        assert found["faulty-large.bin"].digest == etag_of(large, tmp_path)

    run(main)


def test_a_refused_upload_is_reported_and_its_bytes_stay(local_archive, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import dandi_cli_env

    def uploads(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dandifs", "uploads", *args, "--cache-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=300, env=dandi_cli_env(local_archive),
        )

    async def main() -> str:
        async with ArchiveClient(local_archive.api_url, token=local_archive.token) as archive:
            doomed = (await archive.create_dandiset("deleted under a writer", {"description": "x"})).identifier
        async with opened(local_archive, tmp_path) as core:
            path = f"/dandisets/{doomed}/draft/lost.txt"
            writer = await core.create(path)
            await writer.write(0, b"these bytes must survive")
            async with ArchiveClient(local_archive.api_url, token=local_archive.token) as archive:
                await archive.delete_dandiset(doomed)
            with pytest.raises(errors.UploadFailed, match="kept"):
                await writer.sync()
            await writer.close()
            [record] = core.uploads()
            assert record.phase is Phase.FAILED and record.reason
            assert Path(record.spool).read_bytes() == b"these bytes must survive"
            entry = await core.stat(path)
            assert entry.upload is not None and entry.upload.phase is Phase.FAILED
            return record.id

    record_id = run(main)
    [listed] = json.loads(uploads("--json").stdout)
    assert listed["id"] == record_id and listed["phase"] == "failed" and listed["reason"]
    again = uploads("retry", record_id, "-i", local_archive.api_url)
    assert again.returncode == 1 and "failed" in again.stderr
    spool = Path(json.loads(uploads("--json").stdout)[0]["spool"])
    assert spool.read_bytes() == b"these bytes must survive"
    assert uploads("discard", record_id).returncode == 0
    assert json.loads(uploads("--json").stdout) == [] and not spool.exists()


KILLED_WRITER = """
import os, random, sys, trio
from pathlib import Path
from dandifs.core import CacheConfig, CoreConfig, open_core
from dandifs.upload.journal import Journal

api, token, spool_dir, path, size = sys.argv[1:6]
spool_dir = Path(spool_dir)

async def main():
    config = CoreConfig(cache=CacheConfig(memory_bytes=16 << 20), spool_dir=spool_dir)
    async with open_core(api, token=token, config=config) as core:
        data = random.Random(9).randbytes(int(size))
        writer = await core.create(path)
        for offset in range(0, len(data), 8 << 20):
            await writer.write(offset, data[offset : offset + (8 << 20)])
        await writer.close()
        journal = Journal(spool_dir / "journal.sqlite")
        while True:
            records = journal.all()
            if records and records[0].parts:
                os._exit(9)  # as kill -9: nothing is closed or flushed
            await trio.sleep(0.005)

trio.run(main)
"""


def test_an_upload_killed_half_way_is_finished_once_by_the_next_cores_without_resending_parts(
    local_archive, dandiset, tmp_path
):
    import subprocess
    import sys

    from dandifs.upload.journal import Journal

    size = 3 * 64 * 1024 * 1024 - 12345  # three parts of dandischema's 64 MiB
    data = random.Random(9).randbytes(size)
    path = f"/dandisets/{dandiset}/draft/killed.bin"
    spool_dir = tmp_path / "uploads"
    with local_archive.s3_faults(latency_ms=300):
        done = subprocess.run(
            [sys.executable, "-c", KILLED_WRITER, local_archive.api_url, local_archive.token,
             str(spool_dir), path, str(size)],
            timeout=600,
        )
    assert done.returncode == 9
    journal = Journal(spool_dir / "journal.sqlite")
    [left] = journal.all()
    journal.close()
    assert left.parts_total == 3 and 1 <= len(left.parts) <= 3
    assert "killed.bin" not in run(lambda: assets(local_archive, dandiset))
    puts_before = local_archive.s3_stats()["requests"].get("PUT", 0)

    async def main() -> None:
        # Two cores on the same cache directory (a mount beside a server): one sends it.
        async with opened(local_archive, tmp_path) as core, opened(local_archive, tmp_path) as other:
            entry = await core.stat(path)
            assert entry.upload is not None and entry.size == size
            assert await core.drain_uploads(300) and await other.drain_uploads(300)
            for _ in range(600):
                if not core.uploads():
                    break
                await trio.sleep(0.5)
            assert core.uploads() == [] and other.uploads() == []
            assert (await other.stat(path)).upload is None

    run(main)
    puts = local_archive.s3_stats()["requests"].get("PUT", 0) - puts_before
    assert puts == 3 - len(left.parts)
    asset = run(lambda: assets(local_archive, dandiset))["killed.bin"]
    assert asset.digest == etag_of(data, tmp_path) and asset.size == size
    assert not Path(left.spool).exists()


def test_a_zarr_written_into_a_draft_becomes_one_zarr_asset_and_one_chunk_changes_alone(
    local_archive, dandiset, tmp_path
):
    import json

    from zarr_checksum import compute_zarr_checksum
    from zarr_checksum.generators import yield_files_local

    draft = f"/dandisets/{dandiset}/draft"
    store = {
        ".zgroup": json.dumps({"zarr_format": 2}).encode(),
        "data/.zarray": json.dumps({"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<i4",
                                    "compressor": None, "fill_value": 0, "order": "C",
                                    "filters": None}).encode(),
        "data/0": bytes(range(8)),
        "data/1": bytes(range(8, 16)),
    }
    local = tmp_path / "local.zarr"

    def write_local() -> None:
        for key, data in store.items():
            (local / key).parent.mkdir(parents=True, exist_ok=True)
            (local / key).write_bytes(data)

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await core.mkdir(f"{draft}/written.zarr")
            await core.mkdir(f"{draft}/written.zarr/data")
            for key, data in store.items():  # as zarr-python 3: a `.partial`, then a rename
                partial = f"{draft}/written.zarr/{key}.1f2e3d.partial"
                await write_file(core, partial, data)
                await core.rename(partial, f"{draft}/written.zarr/{key}")
            assert {e.name for e in await core.listdir(f"{draft}/written.zarr")} == {".zgroup", "data"}
            assert await core.drain_uploads(120)
            assert core.uploads() == []
            found = await assets(local_archive, dandiset)
            assert "written.zarr" in found and found["written.zarr"].zarr is not None
            assert not [p for p in found if p.startswith("written.zarr/")]
            write_local()
            expected = str(compute_zarr_checksum(yield_files_local(str(local))))
            assert found["written.zarr"].digest == expected
            for key, data in store.items():
                assert await read_all(core, f"{draft}/written.zarr/{key}") == data

            puts = local_archive.s3_stats()["requests"].get("PUT", 0)
            store["data/1"] = bytes(range(100, 108))
            await write_file(core, f"{draft}/written.zarr/data/1", store["data/1"])
            assert await core.drain_uploads(120)
            assert local_archive.s3_stats()["requests"].get("PUT", 0) - puts == 1
            assert await read_all(core, f"{draft}/written.zarr/data/1") == store["data/1"]

            await core.unlink(f"{draft}/written.zarr/data/0")
            assert await core.drain_uploads(120)
            with pytest.raises(errors.NotFound):
                await core.stat(f"{draft}/written.zarr/data/0")
        write_local()
        (local / "data" / "0").unlink()
        asset = (await assets(local_archive, dandiset))["written.zarr"]
        assert asset.digest == str(compute_zarr_checksum(yield_files_local(str(local))))

    run(main)


def test_an_aborted_writer_leaves_nothing_and_the_archive_file_as_it_was(
    local_archive, dandiset, tmp_path
):
    draft = f"/dandisets/{dandiset}/draft"

    async def main() -> None:
        async with opened(local_archive, tmp_path) as core:
            await write_file(core, f"{draft}/kept.txt", b"the archive's bytes")
            assert await core.drain_uploads(60)
            writer = await core.open_write(f"{draft}/kept.txt", truncate=True)
            await writer.write(0, b"half a PUT")
            writer.abort()
            fresh = await core.create(f"{draft}/never.txt")
            await fresh.write(0, b"half")
            fresh.abort()
            assert core.uploads() == []
            with pytest.raises(errors.NotFound):
                await core.stat(f"{draft}/never.txt")
            assert await read_all(core, f"{draft}/kept.txt") == b"the archive's bytes"
        found = await assets(local_archive, dandiset)
        assert "never.txt" not in found and found["kept.txt"].size == len(b"the archive's bytes")

    run(main)


def test_a_full_spool_disk_is_no_space_and_what_fit_stays_readable(local_archive, dandiset, tmp_path):
    import subprocess

    cache = tmp_path / "small-disk"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(cache)])
    if mounted.returncode != 0:
        pytest.skip("SKIPPED LOUDLY: cannot mount a tmpfs here (not root?): the full-disk case is untested")
    draft = f"/dandisets/{dandiset}/draft"

    async def main() -> None:
        async with opened(local_archive, cache) as core:
            writer = await core.create(f"{draft}/too-big.bin")
            await writer.write(0, b"x" * 1_000_000)
            with pytest.raises(errors.NoSpace, match="no room in the spool"):
                for offset in range(1_000_000, 4_000_000, 500_000):
                    await writer.write(offset, b"y" * 500_000)
            assert await writer.read(0, 10) == b"x" * 10
            writer.abort()
            with pytest.raises(errors.NameRefused):
                await core.create(f"{draft}/bad\x01name.txt")

    try:
        run(main)
    finally:
        subprocess.run(["umount", "-l", str(cache)])
