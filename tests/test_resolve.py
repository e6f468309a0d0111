"""The resolver against the real local archive (demo dandisets), counting archive requests.

Demo data: 000001 has a published version and a draft (nested `sub-*/` NWB files), 000002 a
draft with an OME-Zarr of more than 1,000 objects, 000003 is embargoed.  Request counts are
the archive client's own HTTP counters (`client.stats.api_requests`), so "one walk" means
one HTTP request per page actually sent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from dandifs.archive import ArchiveClient
from dandifs.errors import InvalidPath, NotADirectory, NotFound
from dandifs.namespace.dandiset_yaml import render_dandiset_yaml_bytes
from dandifs.resolve import EntryKind, Resolver

pytestmark = pytest.mark.anyio

DRAFT = "/dandisets/000001/draft"
ZARR_DANDISET = "/dandisets/000002/draft"



@asynccontextmanager
async def resolving(
    local_archive, *, token: str | None = None, **options
) -> AsyncIterator[tuple[Resolver, ArchiveClient]]:
    # Long draft lifetimes unless a test says otherwise, so that request counts cannot be
    # disturbed by an expiry on a slow machine.
    options.setdefault("ttl_draft", 300)
    async with ArchiveClient(local_archive.api_url, token=token, anonymous=token is None) as client:
        yield Resolver(client, **options), client


class Requests:
    """How many API requests a block of code made."""

    def __init__(self, client: ArchiveClient) -> None:
        self.client = client
        self.start = client.stats.api_requests

    @property
    def made(self) -> int:
        return self.client.stats.api_requests - self.start


async def walk(resolver: Resolver, path: str) -> list:
    """Every entry below `path` (like `find`), listing each folder."""
    found = []
    for entry in await resolver.listdir(path):
        found.append(entry)
        if entry.kind is EntryKind.FOLDER:
            found.extend(await walk(resolver, entry.path))
    return found


async def published_version(local_archive) -> str:
    async with resolving(local_archive) as (resolver, _):
        latest = await resolver.stat("/dandisets/000001/latest")
        return latest.symlink_target


# --- above versions ------------------------------------------------------------------------


async def test_root_and_dandisets(local_archive):
    async with resolving(local_archive) as (resolver, client):
        requests = Requests(client)
        assert [e.path for e in await resolver.listdir("/")] == ["/dandisets"]
        assert (await resolver.stat("/")).kind is EntryKind.FOLDER
        assert (await resolver.stat("/dandisets/")).path == "/dandisets"
        assert requests.made == 0
        names = [e.name for e in await resolver.listdir("/dandisets")]
        assert "000001" in names and "000002" in names
        assert "000003" not in names  # embargoed: invisible without a token
        assert requests.made == 1
        # The listing filled the dandiset cache: stat costs nothing more.
        entry = await resolver.stat("/dandisets/000001")
        assert entry.kind is EntryKind.FOLDER and entry.mtime is not None
        assert requests.made == 1


async def test_dandiset_folder_latest_and_releases(local_archive):
    async with resolving(local_archive) as (resolver, client):
        children = await resolver.listdir("/dandisets/000001")
        names = [e.name for e in children]
        assert names[:2] == ["draft", "latest"]
        assert "releases" not in names  # accepted as a path, never listed
        latest = next(e for e in children if e.name == "latest")
        assert latest.kind is EntryKind.SYMLINK
        version = latest.symlink_target
        assert version in names and version.startswith("0.")
        published = next(e for e in children if e.name == version)
        assert published.immutable and published.kind is EntryKind.FOLDER

        symlink = await resolver.stat("/dandisets/000001/latest")
        assert symlink.kind is EntryKind.SYMLINK and symlink.symlink_target == version
        followed = await resolver.stat("/dandisets/000001/latest", follow=True)
        assert followed.kind is EntryKind.FOLDER and followed.version == version
        assert not followed.immutable  # `latest` may point elsewhere tomorrow

        releases = await resolver.listdir("/dandisets/000001/releases")
        assert [e.path for e in releases] == [f"/dandisets/000001/releases/{version}"]
        # 000002 was never published: no `latest`
        assert [e.name for e in await resolver.listdir("/dandisets/000002")] == ["draft"]
        with pytest.raises(NotFound, match="no published version"):
            await resolver.stat("/dandisets/000002/latest")


async def test_latest_and_releases_show_the_published_version(local_archive):
    version = await published_version(local_archive)
    async with resolving(local_archive) as (resolver, client):
        direct = await walk(resolver, f"/dandisets/000001/{version}")
        via_latest = await walk(resolver, "/dandisets/000001/latest")
        via_releases = await walk(resolver, f"/dandisets/000001/releases/{version}")

        def shape(entries, root):
            return [(e.path.removeprefix(root), e.kind, e.size, e.etag, e.mtime) for e in entries]

        assert shape(direct, f"/dandisets/000001/{version}") == shape(
            via_latest, "/dandisets/000001/latest"
        ) == shape(via_releases, f"/dandisets/000001/releases/{version}")
        assert all(e.immutable for e in direct)
        assert not any(e.immutable for e in via_latest)
        # The published version differs from the draft (the draft has one more asset).
        draft_files = [e for e in await walk(resolver, DRAFT) if e.kind is EntryKind.FILE]
        published_files = [e for e in direct if e.kind is EntryKind.FILE]
        assert len(draft_files) == len(published_files) + 1


# --- one walk per listing, and cache hits ------------------------------------------------------


async def test_small_version_is_one_walk_for_everything(local_archive):
    async with resolving(local_archive) as (resolver, client):
        requests = Requests(client)
        root = await resolver.listdir(DRAFT)
        # the dandiset record (draft -> version), ONE walk of the assets list, the version info
        assert requests.made == 3
        everything = await walk(resolver, DRAFT)
        for entry in everything:
            assert (await resolver.stat(entry.path)).path == entry.path
        assert requests.made == 3, "listing and stat of every folder and file must be cached"
        counters = resolver.stats.snapshot()
        assert counters["hits"] > 0 and counters["archive_calls"] == 3
        assert client.stats.api_requests == 3

        # Files carry their real times, digests and S3 URLs (from the assets list).
        truth = {a.path: a for a in await client.list_assets("000001", "draft", metadata=True)}
        files = [e for e in everything if e.kind is EntryKind.FILE and e.asset_id]
        assert sorted(e.path.removeprefix(DRAFT + "/") for e in files) == sorted(truth)
        for entry in files:
            asset = truth[entry.path.removeprefix(DRAFT + "/")]
            assert (entry.size, entry.mtime, entry.ctime) == (asset.size, asset.modified, asset.created)
            assert entry.etag == asset.digest and entry.asset_id == asset.asset_id
            assert entry.content_url in asset.content_urls
            assert entry.dandiset_id == "000001" and entry.version == "draft"
        # Folder sizes agree with the archive's own folder aggregates.
        aggregates = {p.path: p for p in await client.list_asset_paths("000001", "draft")}
        for folder in (e for e in root if e.kind is EntryKind.FOLDER):
            assert folder.size == aggregates[folder.name].aggregate_size
            assert folder.file_count == aggregates[folder.name].aggregate_files


async def test_big_folder_is_one_walk_of_the_folder_endpoint(local_archive):
    # tree_limit=0 treats every version as too big to read whole: listings use assets/paths/.
    async with resolving(local_archive, tree_limit=0) as (resolver, client):
        await resolver.listdir(DRAFT)
        requests = Requests(client)
        children = await resolver.listdir(f"{DRAFT}/sub-mouse01")
        assert len(children) >= 2
        assert requests.made == 1, "one folder listing is one walk, not one request per child"
        for child in children:
            stat = await resolver.stat(child.path)
            assert stat == child and stat.size > 0 and stat.content_url
        assert requests.made == 1, "the listing filled the stat cache of its children"
        # Folder-endpoint entries are timed by their version (the endpoint has no times).
        version = await resolver.stat(DRAFT)
        assert all(c.mtime == version.mtime for c in children)


async def test_big_version_small_folder_is_one_walk_with_real_times(local_archive):
    # 000001's draft has 5 assets: with tree_limit=3 its root is listed by the folder
    # endpoint, and each sub-folder (2 assets or fewer) by one walk of the assets list.
    async with resolving(local_archive, tree_limit=3) as (resolver, client):
        truth = {a.path: a for a in await client.list_assets("000001", "draft")}
        requests = Requests(client)
        root = await resolver.listdir(DRAFT)
        assert requests.made == 3  # dandiset record, folder endpoint, version info
        folder = next(e for e in root if e.name == "sub-mouse01")
        assert folder.file_count <= 3
        requests = Requests(client)
        children = await resolver.listdir(folder.path)
        assert requests.made == 1
        for child in children:
            asset = truth[child.path.removeprefix(DRAFT + "/")]
            assert (child.mtime, child.ctime, child.etag is not None) == (
                asset.modified, asset.created, True,
            )
            assert await resolver.stat(child.path) == child
        assert requests.made == 1


async def test_cold_stat_of_a_file_is_one_request(local_archive):
    async with resolving(local_archive) as (resolver, client):
        truth = (await client.list_assets("000001", "draft"))[0]
    async with resolving(local_archive, tree_limit=0) as (resolver, client):
        await resolver.stat(DRAFT)  # the version itself: the dandiset record
        requests = Requests(client)
        entry = await resolver.stat(f"{DRAFT}/{truth.path}")
        assert requests.made == 1
        assert (entry.kind, entry.size, entry.mtime, entry.asset_id) == (
            EntryKind.FILE, truth.size, truth.modified, truth.asset_id,
        )
        # A folder never seen: the exact query finds no asset, then its own listing (which
        # the next readdir reuses).
        folder = truth.path.rsplit("/", 1)[0]
        requests = Requests(client)
        entry = await resolver.stat(f"{DRAFT}/{folder}")
        assert entry.kind is EntryKind.FOLDER and entry.size > 0
        assert requests.made == 2
        await resolver.listdir(f"{DRAFT}/{folder}")
        assert requests.made == 2


@pytest.mark.parametrize("tree_limit", [None, 0])  # listed from the assets walk / one query
async def test_another_spelling_of_the_instance_still_reads_from_s3(local_archive, tree_limit):
    """The archive calls itself 127.0.0.1 in every `contentUrl`; given `localhost/api/`,
    files still name their S3 URL, and a read is one GET of S3 (no download redirect)."""
    spelled = local_archive.api_url.replace("//127.0.0.1:", "//localhost:") + "/"
    options = {} if tree_limit is None else {"tree_limit": tree_limit}
    async with ArchiveClient(spelled, anonymous=True) as client:
        resolver = Resolver(client, ttl_draft=300, **options)
        truth = (await client.list_assets("000001", "draft"))[0]
        entry = await resolver.stat(f"{DRAFT}/{truth.path}")
        files = [e for e in await walk(resolver, DRAFT) if e.kind is EntryKind.FILE and e.asset_id]
        for found in [entry, *files]:
            assert found.content_url.startswith(local_archive.s3_url), found.content_url
            assert "/download/" not in found.content_url
        before = client.stats.snapshot()
        assert len(await client.objects.read_range(entry.content_url, 0, 1024)) == 1024
        after = client.stats.snapshot()
        assert after["object_requests"] - before["object_requests"] == 1
        assert after["api_requests"] == before["api_requests"]


async def test_the_latest_release_by_its_id_costs_no_request_of_its_own(local_archive):
    """The path a kernel walks to a file of the latest release: the dandiset's record, which
    already describes that release, then the file's folder; no `info` request between."""
    version = await published_version(local_archive)
    async with resolving(local_archive) as (resolver, client):
        requests = Requests(client)
        await resolver.stat("/dandisets/000001")
        assert requests.made == 1
        entry = await resolver.stat(f"/dandisets/000001/{version}")
        assert requests.made == 1
        assert entry.kind is EntryKind.FOLDER and entry.immutable and entry.version == version
        info = await client.get_version("000001", version)
        assert (entry.size, entry.mtime) == (info.size, info.modified)


async def test_concurrent_identical_lookups_share_one_walk(local_archive):
    async with resolving(local_archive) as (resolver, client):
        await resolver.stat(DRAFT)
        requests = Requests(client)
        results = []

        async def list_root() -> None:
            results.append(await resolver.listdir(DRAFT))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(list_root)
        assert len(results) == 10 and all(r == results[0] for r in results)
        assert requests.made == 2  # one assets walk + one version info, shared by all ten
        assert resolver.stats.shared_waits > 0


# --- lifetimes ---------------------------------------------------------------------------------


async def test_draft_entries_expire_published_ones_do_not(local_archive):
    version = await published_version(local_archive)
    async with resolving(local_archive, ttl_draft=2, ttl_published=3600) as (resolver, client):
        await resolver.listdir(f"/dandisets/000001/{version}")
        await resolver.listdir(DRAFT)
        requests = Requests(client)
        await resolver.listdir(DRAFT)
        await resolver.listdir(f"/dandisets/000001/{version}")
        assert requests.made == 0
        await trio.sleep(2.1)
        requests = Requests(client)
        await resolver.listdir(f"/dandisets/000001/{version}")
        assert requests.made == 0, "published versions are immutable: still cached"
        await resolver.listdir(DRAFT)
        assert requests.made == 3, "the draft expired: dandiset record, assets walk, info"
        assert resolver.stats.expired > 0


async def test_not_found_is_cached_briefly(local_archive):
    async with resolving(local_archive, tree_limit=0, ttl_negative=1) as (resolver, client):
        await resolver.stat(DRAFT)
        missing = f"{DRAFT}/sub-mouse01/no-such-file.nwb"
        requests = Requests(client)
        with pytest.raises(NotFound):
            await resolver.stat(missing)
        first = requests.made
        assert first >= 1
        with pytest.raises(NotFound):
            await resolver.stat(missing)
        assert requests.made == first and resolver.stats.negative_hits >= 1
        await trio.sleep(1.1)
        with pytest.raises(NotFound):
            await resolver.stat(missing)
        assert requests.made > first

        with pytest.raises(NotFound):
            await resolver.stat("/dandisets/999999")
        made = requests.made
        with pytest.raises(NotFound):
            await resolver.stat("/dandisets/999999/draft/x")
        assert requests.made == made  # the missing dandiset is remembered


# --- refusals without I/O ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{DRAFT}/.git",
        f"{DRAFT}/sub-mouse01/.DS_Store",
        f"{DRAFT}/._sub-mouse01",
        f"{DRAFT}/desktop.ini",
        f"{DRAFT}/.git/config",
    ],
)
async def test_never_remote_names_cost_nothing(local_archive, path):
    async with resolving(local_archive) as (resolver, client):
        with pytest.raises(NotFound, match="no archive object"):
            await resolver.stat(path)
        with pytest.raises(NotFound):
            await resolver.listdir(path)
        assert client.stats.api_requests == 0


@pytest.mark.parametrize(
    "path", ["/dandisets/1", "/dandisets/000001/v1", f"{DRAFT}/../x", f"{DRAFT}//x", "/zarrs"]
)
async def test_invalid_paths_cost_nothing(local_archive, path):
    async with resolving(local_archive) as (resolver, client):
        with pytest.raises(InvalidPath):
            await resolver.stat(path)
        assert client.stats.api_requests == 0


async def test_files_are_not_folders(local_archive):
    async with resolving(local_archive) as (resolver, client):
        files = [e for e in await walk(resolver, DRAFT) if e.kind is EntryKind.FILE and e.asset_id]
        nwb = next(e for e in files if e.name.endswith(".nwb"))
        with pytest.raises(NotADirectory):
            await resolver.listdir(nwb.path)
        with pytest.raises(NotFound):
            await resolver.stat(f"{nwb.path}/inside")
        with pytest.raises(NotADirectory):
            await resolver.listdir(f"{DRAFT}/dandiset.yaml")
    async with resolving(local_archive, tree_limit=0) as (resolver, client):
        with pytest.raises(NotADirectory):
            await resolver.listdir(nwb.path)
        with pytest.raises(NotFound):
            await resolver.listdir(f"{DRAFT}/no-such-folder")


# --- dandiset.yaml and metadata --------------------------------------------------------------------


async def test_dandiset_yaml(local_archive):
    from dandi.dandiset import Dandiset  # the writer `dandi download` uses

    version = await published_version(local_archive)
    async with resolving(local_archive) as (resolver, client):
        for path in (DRAFT, f"/dandisets/000001/{version}", "/dandisets/000001/latest"):
            entry = await resolver.stat(f"{path}/dandiset.yaml")
            data = await resolver.read_virtual(f"{path}/dandiset.yaml")
            assert entry.kind is EntryKind.FILE and entry.size == len(data)
            assert entry.content_url is None and entry.content_type.startswith("text/yaml")
            real_version = entry.version
            raw = await client.get_version_metadata("000001", real_version)
            assert data == render_dandiset_yaml_bytes(raw)
            assert data == Dandiset.get_dandiset_record(raw).encode()
            listed = [e for e in await resolver.listdir(path) if e.name == "dandiset.yaml"]
            assert listed == [entry]
            assert (await resolver.version_metadata(path))["id"] == raw["id"]


async def test_asset_metadata_and_metadata_view(local_archive):
    async with resolving(local_archive, tree_limit=0) as (resolver, client):
        children = await resolver.listdir(f"{DRAFT}/sub-mouse01")
        entry = children[0]
        requests = Requests(client)
        metadata = await resolver.asset_metadata(entry)
        assert metadata["path"] == entry.path.removeprefix(DRAFT + "/")
        assert metadata["identifier"] == entry.asset_id
        assert await resolver.asset_metadata(entry) == metadata
        assert requests.made == 1
        assert await resolver.metadata(entry.path) == metadata
        version_record = await resolver.metadata(f"{DRAFT}/sub-mouse01")
        assert version_record["identifier"].endswith("000001")
        with pytest.raises(NotFound):
            await resolver.asset_metadata(await resolver.stat(DRAFT))


# --- Zarr interiors ------------------------------------------------------------------------------------


async def find_zarr(resolver: Resolver):
    for folder in await resolver.listdir(ZARR_DANDISET):
        if folder.kind is EntryKind.FOLDER:
            for entry in await resolver.listdir(folder.path):
                if entry.zarr_id is not None:
                    return entry
    raise AssertionError("the demo dandiset 000002 has no Zarr asset")


async def test_zarr_interior_is_one_walk(local_archive):
    async with resolving(local_archive) as (resolver, client):
        zarr = await find_zarr(resolver)
        assert zarr.kind is EntryKind.FOLDER and zarr.file_count >= 1000
        requests = Requests(client)
        inside = await walk(resolver, zarr.path)
        files = [e for e in inside if e.kind is EntryKind.FILE]
        assert len(files) == zarr.file_count
        assert sum(f.size for f in files) == zarr.size
        # The whole Zarr is one paginated walk of its file list (1,000 keys a page).
        assert requests.made == math.ceil(zarr.file_count / 1000)
        for entry in inside[:50]:
            assert await resolver.stat(entry.path) == entry
        assert requests.made == math.ceil(zarr.file_count / 1000)

        top = [e.name for e in await resolver.listdir(zarr.path)]
        assert ".zattrs" in top or ".zgroup" in top or "zarr.json" in top
        # Every object carries its S3 URL and ETag: the bytes there match the ETag.
        sample = [f for f in files if f.size > 0][:3]
        async with httpx.AsyncClient() as http:
            for entry in sample:
                assert entry.zarr_id == zarr.zarr_id and entry.etag
                body = (await http.get(entry.content_url)).raise_for_status().content
                assert len(body) == entry.size
                assert hashlib.md5(body).hexdigest() == entry.etag.strip('"')


async def test_a_draft_zarrs_files_live_as_long_as_its_checksum(local_archive):
    """A Zarr in a draft is not listed again when the draft expires: its files change only
    with its checksum, which the draft's own (cheap) re-listing names."""
    async with resolving(local_archive, ttl_draft=1) as (resolver, client):
        zarr = await find_zarr(resolver)
        assert zarr.etag and not zarr.immutable
        files = [e for e in await walk(resolver, zarr.path) if e.kind is EntryKind.FILE]
        await trio.sleep(1.1)
        again = await resolver.stat(zarr.path)  # the draft's own lookups, expired
        assert again.etag == zarr.etag
        requests = Requests(client)
        for entry in files[:: max(1, len(files) // 50)]:
            assert (await resolver.stat(entry.path)).etag == entry.etag
        assert await resolver.zarr_neighbours(files[0])
        assert requests.made == 0, "no page of the Zarr's file list again"


async def test_cold_stat_inside_a_zarr(local_archive):
    async with resolving(local_archive) as (resolver, client):
        zarr = await find_zarr(resolver)
        chunk = next(e for e in await walk(resolver, zarr.path) if e.kind is EntryKind.FILE)
    async with resolving(local_archive, tree_limit=0) as (resolver, client):
        entry = await resolver.stat(chunk.path)
        assert (entry.size, entry.etag, entry.content_url) == (chunk.size, chunk.etag, chunk.content_url)
        with pytest.raises(NotFound):
            await resolver.stat(f"{zarr.path}/no/such/key")
        with pytest.raises(NotADirectory):
            await resolver.listdir(chunk.path)


# --- embargo ----------------------------------------------------------------------------------------------


async def test_embargoed_dandiset_is_invisible_without_a_token(local_archive):
    async with resolving(local_archive) as (resolver, client):
        with pytest.raises(NotFound, match="not visible"):
            await resolver.stat("/dandisets/000003")
        with pytest.raises(NotFound):
            await resolver.listdir("/dandisets/000003/draft")


async def test_embargoed_dandiset_with_the_owners_token(local_archive):
    async with resolving(local_archive, token=local_archive.token) as (resolver, client):
        assert "000003" in [e.name for e in await resolver.listdir("/dandisets")]
        folder = await resolver.stat("/dandisets/000003")
        assert folder.embargoed
        files = [
            e for e in await walk(resolver, "/dandisets/000003/draft") if e.kind is EntryKind.FILE
        ]
        assets = [e for e in files if e.asset_id is not None]
        assert assets and all(e.embargoed for e in files)
        for entry in assets:
            # Embargoed bytes are only reachable through the API (redirect to presigned S3).
            assert entry.content_url.startswith(local_archive.api_url)
        entry = assets[0]
        if entry.zarr_id is None:
            assert entry.content_url == f"{local_archive.api_url}/assets/{entry.asset_id}/download/"
        async with httpx.AsyncClient(follow_redirects=True) as http:
            response = await http.get(
                entry.content_url,
                headers={"Authorization": f"token {local_archive.token}", "Range": "bytes=0-99"},
            )
            assert response.status_code in (200, 206) and len(response.content) == min(100, entry.size)


# --- writes to a draft ------------------------------------------------------------------------------------


async def test_invalidate_after_a_write_to_a_draft(local_archive):
    """A new asset is invisible while cached absent, and visible once its path is invalidated."""
    async with resolving(
        local_archive, token=local_archive.token, ttl_draft=3600, ttl_negative=3600
    ) as (resolver, client):
        dandiset = await client.create_dandiset("resolver invalidation", {"description": "test"})
        root = f"/dandisets/{dandiset.identifier}/draft"
        assert [e.name for e in await resolver.listdir(root)] == ["dandiset.yaml"]
        with pytest.raises(NotFound):
            await resolver.stat(f"{root}/new/file.nwb")

        source = (await client.list_assets("000001", "draft"))[0]
        await client.create_asset(
            dandiset.identifier, {"path": "new/file.nwb", "schemaKey": "Asset"}, blob_id=source.blob
        )
        with pytest.raises(NotFound):  # still cached as absent: the TTLs are an hour
            await resolver.stat(f"{root}/new/file.nwb")

        resolver.invalidate(f"{root}/new/file.nwb")
        entry = await resolver.stat(f"{root}/new/file.nwb")
        assert entry.kind is EntryKind.FILE and entry.size == source.size
        assert [e.name for e in await resolver.listdir(root)] == ["dandiset.yaml", "new"]
        assert (await resolver.stat(root)).file_count == 1
        # Only drafts are ever invalidated; other paths are ignored.
        resolver.invalidate("/dandisets/000001/latest/x")
        resolver.invalidate("/")


async def test_huge_zarrs_are_walked_one_folder_at_a_time(local_archive):
    async with resolving(local_archive) as (resolver, client):
        zarr = await find_zarr(resolver)
        whole = {e.path: e for e in await walk(resolver, zarr.path)}
    # zarr_tree_limit below the Zarr's object count: each folder is its own prefix walk.
    async with resolving(local_archive, zarr_tree_limit=10) as (resolver, client):
        await resolver.stat(zarr.path)
        top = await resolver.listdir(zarr.path)
        assert [e.path for e in top] == sorted(p for p in whole if p.count("/") == zarr.path.count("/") + 1)
        folder = next(e for e in top if e.kind is EntryKind.FOLDER)
        requests = Requests(client)
        children = await resolver.listdir(folder.path)
        assert requests.made == math.ceil(folder.file_count / 1000)
        assert children == [whole[e.path] for e in children]
        assert len(children) == sum(1 for p in whole if p.rsplit("/", 1)[0] == folder.path)
        await resolver.listdir(folder.path)
        assert requests.made == math.ceil(folder.file_count / 1000)  # cached
        with pytest.raises(NotFound):
            await resolver.listdir(f"{zarr.path}/no-such-folder")
