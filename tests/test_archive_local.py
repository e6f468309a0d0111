"""The archive client against the local archive (real REST server, SeaweedFS behind a proxy
that can add faults), with the seeded demo: 000001 (published + draft, NWB), 000002 (Zarr),
000003 (embargoed)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio
from conftest import start_local_archive, stop_local_archive
from conftest import test_data_dir as shared_test_data_dir

from dandifs import errors
from dandifs.archive import ArchiveClient, BlobExists, RetryPolicy, UploadedPart, UploadStarted
from dandifs.model import Asset

T = TypeVar("T")

QUICK = RetryPolicy(max_attempts=10, total_time=60, base_delay=0.02, max_delay=0.5)
MIB = 1 << 20
DANDI_PART = 64 * MIB


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


def dandi_etag(data: bytes) -> str:
    """The multipart ETag of `data` (dandi-api.md §8.1; demo files are below 10,000 parts)."""
    parts = [data[i : i + DANDI_PART] for i in range(0, len(data), DANDI_PART)] or [b""]
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


def anonymous(local_archive: Any, **kwargs: Any) -> ArchiveClient:
    return ArchiveClient(local_archive.api_url, anonymous=True, **kwargs)


def owner(local_archive: Any, **kwargs: Any) -> ArchiveClient:
    return ArchiveClient(local_archive.api_url, token=local_archive.token, **kwargs)


async def smallest_blob(archive: ArchiveClient, dandiset: str, version: str) -> Asset:
    """The smallest blob asset, with its metadata (the demo also has a 230 MB file)."""
    assets = await archive.list_assets(dandiset, version)
    blob = min((asset for asset in assets if asset.blob is not None), key=lambda a: a.size)
    return await archive.get_asset(dandiset, version, blob.asset_id)


def s3_url(asset: Asset, local_archive: Any) -> str:
    return next(url for url in asset.content_urls if url.startswith(local_archive.s3_url))


# -- metadata ---------------------------------------------------------------------------


def test_dandisets_versions_and_assets(local_archive):
    async def main() -> None:
        async with anonymous(local_archive) as archive:
            identifiers = [d.identifier for d in await archive.list_dandisets()]
            assert {"000001", "000002"} <= set(identifiers)
            assert "000003" not in identifiers  # embargoed: hidden from the public

            dandiset = await archive.get_dandiset("000001")
            published = dandiset.most_recent_published_version
            assert published is not None and dandiset.draft_version is not None
            versions = [v.version for v in await archive.list_versions("000001")]
            assert versions[0] == "draft" and published.version in versions
            newest_first = await archive.list_versions("000001", order="-created")
            assert newest_first[0].version == published.version

            info = await archive.get_version("000001", published.version)
            assert info.metadata["identifier"].endswith(":000001")
            assert info.metadata["version"] == published.version
            raw = await archive.get_version_metadata("000001", "draft")
            assert raw["version"] == "draft" and raw["name"] == dandiset.draft_version.name

            for version in (published.version, "draft"):
                assets = await archive.list_assets("000001", version)
                summary = next(
                    v for v in await archive.list_versions("000001") if v.version == version
                )
                assert len(assets) == summary.asset_count > 0
                assert sum(a.size for a in assets) == summary.size
                assert any(a.path.endswith(".nwb") for a in assets)

            assets = await archive.list_assets("000001", "draft", metadata=True, order="path")
            assert [a.path for a in assets] == sorted(a.path for a in assets)
            chosen = assets[-1]
            assert chosen.metadata is not None and chosen.digest
            by_path = await archive.get_asset_by_path("000001", "draft", chosen.path)
            assert by_path.asset_id == chosen.asset_id and by_path.digest == chosen.digest
            detail = await archive.get_asset("000001", "draft", chosen.asset_id)
            assert detail.path == chosen.path and detail.metadata["contentSize"] == chosen.size
            nwb = await archive.list_assets("000001", "draft", glob="*.nwb")
            assert nwb and all(a.path.endswith(".nwb") for a in nwb)
            with pytest.raises(errors.NotFound):
                await archive.get_asset_by_path("000001", "draft", chosen.path + "-missing")
            with pytest.raises(errors.NotFound):
                await archive.get_dandiset("999999")
            assert archive.stats.api_requests > 0

    run(main)


def test_folder_listing_covers_every_asset(local_archive):
    async def walk(archive: ArchiveClient, prefix: str, found: dict[str, int]) -> None:
        for child in await archive.list_asset_paths("000001", "draft", prefix):
            if child.is_folder:
                before = dict(found)
                await walk(archive, child.path, found)
                inside = {p: s for p, s in found.items() if p not in before}
                assert child.aggregate_files == len(inside)
                assert child.aggregate_size == sum(inside.values())
            else:
                found[child.path] = child.aggregate_size

    async def main() -> None:
        async with anonymous(local_archive) as archive:
            found: dict[str, int] = {}
            await walk(archive, "", found)
            assets = await archive.list_assets("000001", "draft")
            assert found == {a.path: a.size for a in assets}
            with pytest.raises(errors.NotFound):
                await archive.list_asset_paths("000001", "draft", "no/such/folder")

    run(main)


def test_zarr_files(local_archive):
    async def main() -> None:
        async with anonymous(local_archive) as archive:
            zarrs = await archive.list_assets("000002", "draft", zarr_only=True)
            assert zarrs and all(a.zarr for a in zarrs)
            zarr = await archive.get_zarr(zarrs[0].zarr)
            files = await archive.list_zarr_files(zarr.zarr_id)
            assert len(files) == zarr.file_count > 0
            assert sum(f.size for f in files) == zarr.size == zarrs[0].size
            assert [f.key for f in files] == sorted(f.key for f in files)
            folder = next(f.key for f in files if "/" in f.key).split("/")[0] + "/"
            under = await archive.list_zarr_files(zarr.zarr_id, prefix=folder)
            assert under == [f for f in files if f.key.startswith(folder)]
            after = await archive.list_zarr_files(zarr.zarr_id, after=files[0].key)
            assert after == files[1:]
            # A Zarr object is read by its S3 URL: the zarr prefix URL + key.
            prefix_url = s3_url(
                await archive.get_asset("000002", "draft", zarrs[0].asset_id), local_archive
            )
            key = files[0]
            data = await archive.objects.read_range(prefix_url + key.key, 0, key.size)
            assert hashlib.md5(data).hexdigest() == key.etag

    run(main)


# -- object bytes -----------------------------------------------------------------------


def test_ranged_reads_equal_slices_of_the_whole_object(local_archive):
    async def main() -> None:
        async with anonymous(local_archive) as archive:
            asset = await smallest_blob(archive, "000001", "draft")
            url = s3_url(asset, local_archive)
            info = await archive.objects.stat(url)
            assert info.size == asset.size and info.etag == asset.digest
            whole = await archive.objects.read_range(url, 0, asset.size, etag=asset.digest)
            assert dandi_etag(whole) == asset.digest

            rng = random.Random(7)
            for _ in range(25):
                start = rng.randrange(asset.size)
                end = min(asset.size + 100, start + rng.choice([1, 100, 4096, 65536, MIB]))
                assert (
                    await archive.objects.read_range(url, start, end, etag=info.etag)
                    == whole[start:end]
                )
            assert await archive.objects.read_range(url, asset.size, asset.size + 10) == b""

            via_api = archive.download_url(asset.asset_id)
            assert await archive.objects.read_range(via_api, 10, 1000) == whole[10:1000]
            assert (await archive.objects.stat(via_api)).etag == asset.digest

    run(main)


def test_etag_mismatch_is_stale(local_archive):
    async def main() -> None:
        async with anonymous(local_archive) as archive:
            asset = await smallest_blob(archive, "000001", "draft")
            with pytest.raises(errors.Stale):
                await archive.objects.read_range(
                    s3_url(asset, local_archive), 0, 100, etag="0" * 32 + "-1"
                )

    run(main)


def test_reads_stay_byte_correct_under_s3_faults(local_archive):
    async def main() -> None:
        async with anonymous(local_archive, policy=QUICK) as archive:
            asset = await smallest_blob(archive, "000001", "draft")
            url = s3_url(asset, local_archive)
            whole = await archive.objects.read_range(url, 0, asset.size)
            failed_before = archive.stats.failed_attempts
            rng = random.Random(11)
            ranges = []
            for _ in range(60):
                start = rng.randrange(asset.size)
                ranges.append((start, min(asset.size, start + rng.choice([1000, 100_000, MIB]))))

            async def read(start: int, end: int) -> None:
                assert (
                    await archive.objects.read_range(url, start, end, etag=asset.digest)
                    == whole[start:end]
                )

            with local_archive.s3_faults(
                error_rate=0.2, reset_rate=0.05, truncate_rate=0.05, seed=5
            ):
                async with trio.open_nursery() as nursery:
                    for start, end in ranges:
                        nursery.start_soon(read, start, end)
                assert await archive.objects.read_range(url, 0, asset.size) == whole
                proxy_faults = local_archive.s3_stats()["faults"]
            assert archive.stats.failed_attempts > failed_before  # faults really happened
            assert proxy_faults

    run(main)


def test_total_s3_failure_is_unavailable_after_bounded_attempts(local_archive):
    """The budget is counted in GETs S3 answered (its back-off times are checked under a
    mock clock in test_archive_http)."""
    policy = RetryPolicy(
        max_attempts=6, total_time=30, base_delay=0.05, max_delay=1, max_retry_after=1
    )

    async def main() -> None:
        async with anonymous(local_archive, policy=policy) as archive:
            asset = await smallest_blob(archive, "000001", "draft")
            url = s3_url(asset, local_archive)
            before = local_archive.s3_stats()["faults"].get("error", 0)
            failed_before = archive.stats.failed_attempts
            with (
                local_archive.s3_faults(error_rate=1.0),
                pytest.raises(errors.Unavailable) as caught,
            ):
                await archive.objects.read_range(url, 0, 100)
            answered = local_archive.s3_stats()["faults"].get("error", 0) - before
            assert answered == policy.max_attempts
            assert archive.stats.failed_attempts - failed_before == policy.max_attempts
            message = str(caught.value)
            assert url in message and f"after {answered} attempts" in message
            assert "HTTP 5" in message

    run(main)


# -- access -----------------------------------------------------------------------------


def test_embargoed_dandiset_needs_the_token(local_archive):
    async def main() -> None:
        async with anonymous(local_archive) as archive:
            with pytest.raises(errors.AuthenticationRequired):
                await archive.get_dandiset("000003")
            with pytest.raises(errors.AuthenticationRequired):
                await archive.list_assets("000003", "draft")
        async with owner(local_archive) as archive:
            mine = [d.identifier for d in await archive.list_dandisets(embargoed=True)]
            assert "000003" in mine
            assert (await archive.get_dandiset("000003")).embargoed
            asset = await smallest_blob(archive, "000003", "draft")
            data = await archive.objects.read_range(
                archive.download_url(asset.asset_id), 0, asset.size
            )
            assert dandi_etag(data) == asset.digest
            # The bare S3 URL of an embargoed blob is private, token or not (it never goes to S3).
            with pytest.raises(errors.PermissionDenied):
                await archive.objects.read_range(s3_url(asset, local_archive), 0, 10)

    run(main)


def test_wrong_token_is_invalid_token(local_archive):
    async def main() -> None:
        async with ArchiveClient(local_archive.api_url, token="0" * 40) as archive:
            with pytest.raises(errors.InvalidToken, match="rejected the API token"):
                await archive.list_dandisets()
            with pytest.raises(errors.InvalidToken):
                await archive.check_token()
        async with owner(local_archive) as archive:
            await archive.check_token()
            assert (await archive.current_user())["username"]
        async with anonymous(local_archive) as archive:
            with pytest.raises(errors.AuthenticationRequired):
                await archive.check_token()

    run(main)


def test_discovery_through_info(local_archive):
    async def main() -> None:
        async with ArchiveClient(local_archive.api_url, anonymous=True, discover=True) as archive:
            assert archive.instance.api_url.endswith("/api")
            assert (await archive.get_dandiset("000001")).identifier == "000001"

    run(main)


def test_published_versions_are_read_only(local_archive):
    async def main() -> None:
        async with owner(local_archive) as archive:
            published = (await archive.get_dandiset("000001")).most_recent_published_version
            assert published is not None
            with pytest.raises(errors.ReadOnly, match="only drafts"):
                await archive.update_version("000001", "renamed", {}, version=published.version)

    run(main)


# -- writes -----------------------------------------------------------------------------


def test_blob_upload_round_trip(local_archive, tmp_path):
    data = random.Random(3).randbytes(300_000)
    etag = dandi_etag(data)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)

    async def main() -> None:
        async with owner(local_archive) as archive:
            dandiset = await archive.create_dandiset(
                "archive client upload test", {"description": "x"}
            )
            try:
                started = await archive.initialize_upload(dandiset.identifier, len(data), etag)
                assert isinstance(started, UploadStarted)
                done = []
                offset = 0
                for part in started.parts:
                    part_etag = await archive.objects.put_file(
                        part.upload_url, source, offset, part.size
                    )
                    assert part_etag == hashlib.md5(data[offset : offset + part.size]).hexdigest()
                    offset += part.size
                    done.append(
                        UploadedPart(part_number=part.part_number, size=part.size, etag=part_etag)
                    )
                completion = await archive.complete_upload(started.upload_id, done)
                assert (
                    await archive.objects.complete_multipart(
                        completion.complete_url, completion.body
                    )
                    == etag
                )
                blob = await archive.validate_upload(started.upload_id)
                assert (blob.etag, blob.size) == (etag, len(data))
                assert await archive.initialize_upload(
                    dandiset.identifier, len(data), etag
                ) == BlobExists(blob_id=blob.blob_id)
                assert (await archive.blob_by_digest(etag)).blob_id == blob.blob_id

                metadata = {
                    "path": "a/b.bin",
                    "schemaKey": "Asset",
                    "encodingFormat": "application/octet-stream",
                }
                asset = await archive.create_asset(
                    dandiset.identifier, metadata, blob_id=blob.blob_id
                )
                with pytest.raises(errors.AlreadyExists):
                    await archive.create_asset(dandiset.identifier, metadata, blob_id=blob.blob_id)
                url = s3_url(asset, local_archive)
                assert (
                    await archive.objects.read_range(url, 1000, 2000, etag=etag) == data[1000:2000]
                )
                renamed = await archive.replace_asset(
                    dandiset.identifier,
                    asset.asset_id,
                    {**metadata, "path": "c.bin"},
                    blob_id=blob.blob_id,
                )
                assert [
                    a.path for a in await archive.list_assets(dandiset.identifier, "draft")
                ] == ["c.bin"]
                await archive.delete_asset(dandiset.identifier, renamed.asset_id)
                assert await archive.list_assets(dandiset.identifier, "draft") == []
            finally:
                await archive.delete_dandiset(dandiset.identifier)
            with pytest.raises(errors.NotFound):
                await archive.get_dandiset(dandiset.identifier)

    run(main)


def test_zarr_upload_round_trip(local_archive):
    import base64

    files = {".zgroup": b"{}", "arr/0": b"abc", "arr/1": b"defg"}

    async def main() -> None:
        async with owner(local_archive) as archive:
            dandiset = await archive.create_dandiset(
                "archive client zarr test", {"description": "x"}
            )
            try:
                zarr = await archive.create_zarr("x.zarr", dandiset.identifier)
                md5s = [
                    (p, base64.b64encode(hashlib.md5(b).digest()).decode())
                    for p, b in files.items()
                ]
                urls = await archive.zarr_upload_urls(zarr.zarr_id, md5s)
                for (path, md5), url in zip(md5s, urls, strict=True):
                    await archive.objects.put(url, files[path], headers={"Content-MD5": md5})
                await archive.finalize_zarr(zarr.zarr_id)
                with trio.fail_after(30):
                    while (zarr := await archive.get_zarr(zarr.zarr_id)).status.value != "Complete":
                        await trio.sleep(0.1)
                # The worked example of dandi-api.md §8.2 plus one more file.
                assert (zarr.file_count, zarr.size) == (3, 9)
                listed = await archive.list_zarr_files(zarr.zarr_id)
                assert {f.key: f.etag for f in listed} == {
                    p: hashlib.md5(b).hexdigest() for p, b in files.items()
                }
                await archive.delete_zarr_files(zarr.zarr_id, ["arr/1"])
                assert [f.key for f in await archive.list_zarr_files(zarr.zarr_id)] == [
                    ".zgroup",
                    "arr/0",
                ]
                assert [
                    z.zarr_id for z in await archive.list_zarrs(dandiset_id=dandiset.identifier)
                ] == [zarr.zarr_id]
            finally:
                await archive.delete_dandiset(dandiset.identifier)

    run(main)


PUBLISHABLE = {
    "description": "A test Dandiset",
    "license": ["spdx:CC0-1.0"],
    "contributor": [
        {
            "schemaKey": "Person",
            "name": "Tests, DANDI-Cli",
            "email": "nemo@example.com",
            "roleName": ["dcite:Author", "dcite:ContactPerson"],
        }
    ],
}


@pytest.fixture(scope="module")
def empty_archive(tmp_path_factory):
    """A private, unseeded archive: publishing cannot be undone, so not in the shared one."""
    run_dir = tmp_path_factory.mktemp("archive-publish")
    process, ready = start_local_archive(
        shared_test_data_dir(),
        run_dir / "ready.json",
        run_dir / "archive.log",
        "--seed",
        "none",
        "--no-access-log",
    )
    try:
        yield ready
    finally:
        stop_local_archive(process)


async def upload_blob(archive: ArchiveClient, dandiset_id: str, data: bytes) -> str:
    """The upload protocol end to end (single part); returns the blob id."""
    started = await archive.initialize_upload(dandiset_id, len(data), dandi_etag(data))
    if isinstance(started, BlobExists):
        return started.blob_id
    (part,) = started.parts
    etag = await archive.objects.put(part.upload_url, data)
    completion = await archive.complete_upload(
        started.upload_id, [UploadedPart(part_number=1, size=len(data), etag=etag)]
    )
    await archive.objects.complete_multipart(completion.complete_url, completion.body)
    return (await archive.validate_upload(started.upload_id)).blob_id


def test_update_and_publish_a_draft(empty_archive):
    async def main() -> None:
        async with ArchiveClient(empty_archive["api_url"], token=empty_archive["token"]) as archive:
            dandiset = await archive.create_dandiset("to publish", PUBLISHABLE)
            updated = await archive.update_version(
                dandiset.identifier, "published name", PUBLISHABLE
            )
            assert updated.name == "published name"
            assert (await archive.get_version_metadata(dandiset.identifier, "draft"))[
                "name"
            ] == "published name"
            blob_id = await upload_blob(archive, dandiset.identifier, b"published bytes\n" * 64)
            metadata = {"path": "data.txt", "schemaKey": "Asset", "encodingFormat": "text/plain"}
            await archive.create_asset(dandiset.identifier, metadata, blob_id=blob_id)
            with trio.fail_after(60):
                while (
                    await archive.get_version(dandiset.identifier, "draft")
                ).status.value != "Valid":
                    await trio.sleep(0.1)
                await archive.publish(dandiset.identifier, release_notes="first")
                while (
                    await archive.get_version(dandiset.identifier, "draft")
                ).status.value != "Published":
                    await trio.sleep(0.1)
            versions = await archive.list_versions(dandiset.identifier, order="-created")
            assert versions[-1].version == "draft" and len(versions) == 2
            published = versions[0].version
            assert [a.path for a in await archive.list_assets(dandiset.identifier, published)] == [
                "data.txt"
            ]
            with pytest.raises(errors.ReadOnly):
                await archive.update_version(
                    dandiset.identifier, "x", PUBLISHABLE, version=published
                )
            with pytest.raises(errors.PermissionDenied):
                await archive.delete_dandiset(dandiset.identifier)  # it has a published version

    run(main)
