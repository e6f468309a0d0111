"""Pure parts of the resolve layer: records -> entries and trees, TTL caches, single-flight.

Worked vectors come from the real archive's recorded answers (reference/real-archive).
The resolver against the live local archive is tested in `test_resolve.py`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import trio
import trio.testing

from dandifs.archive.urls import s3_url_of
from dandifs.errors import NotFound
from dandifs.model import Asset, AssetPath, ZarrFile
from dandifs.resolve.caching import CacheStats, MetadataCache, TTLStore
from dandifs.resolve.entries import (
    Listing,
    Origin,
    entry_from_asset,
    entry_from_asset_path,
    tree_from_assets,
    tree_from_zarr_files,
    zarr_file_count,
    zarr_id_from_url,
)
from dandifs.resolve.entry import EntryKind

RECORDINGS = Path(__file__).parent / "data" / "real-archive" / "recordings"
API = "http://127.0.0.1:8000/api"
VERSION_TIME = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
ORIGIN = Origin(
    dandiset_id="000001", version="draft", api_url=API, created=VERSION_TIME, modified=VERSION_TIME
)



def _results(name: str) -> list[dict]:
    return json.loads((RECORDINGS / name).read_text())["response"]["body"]["results"]


@pytest.fixture(scope="module")
def assets() -> list[Asset]:
    return [Asset.model_validate(r) for r in _results("assets_list_GET_metadata_true_full_draft.json")]


def test_blob_asset_entry(assets):
    entry = entry_from_asset(assets[0], ORIGIN)
    assert entry.kind is EntryKind.FILE
    assert entry.path == "sub-mouse01/sub-mouse01_ses-s1.nwb"
    assert entry.size == 178616
    assert entry.etag == "4824d358a853264e8479d60972903efb-1"
    assert entry.content_url == (
        "http://127.0.0.1:29000/dandi-dandisets/blobs/1ee/92a/1ee92aad-eff7-40e6-8750-9520b1244f3e"
    )
    assert entry.content_type == "application/x-nwb"
    assert entry.mtime == datetime(2026, 11, 22, 1, 45, 41, 417313, tzinfo=timezone.utc)
    assert entry.ctime == datetime(2026, 11, 22, 1, 45, 41, 417276, tzinfo=timezone.utc)
    assert entry.asset_id == "0c73e290-ad5f-4622-ae5a-ca0ca9224d5b"
    assert not entry.immutable and not entry.embargoed


def test_embargoed_blob_is_read_through_the_api(assets):
    embargoed = Origin(dandiset_id="000003", version="draft", api_url=API, embargoed=True)
    entry = entry_from_asset(assets[0], embargoed)
    assert entry.content_url == f"{API}/assets/0c73e290-ad5f-4622-ae5a-ca0ca9224d5b/download/"
    assert entry.embargoed


def test_zarr_asset_entry(assets):
    entry = entry_from_asset(assets[1], ORIGIN)
    assert entry.kind is EntryKind.FOLDER
    assert entry.zarr_id == "32aeb5e0-9aea-45ea-ada2-293496a62c15"
    assert entry.etag == "9e6955629a1a16f1bcb70fe4ddba6ef4-7--968"
    assert entry.file_count == 7
    assert entry.size == 968
    assert entry.content_url.endswith("/zarr/32aeb5e0-9aea-45ea-ada2-293496a62c15/")


def test_helpers():
    assert zarr_file_count("9e6955629a1a16f1bcb70fe4ddba6ef4-7--968") == 7
    assert zarr_file_count(None) is None
    assert zarr_file_count("garbage") is None
    assert zarr_id_from_url(
        "http://h/b/zarr/32aeb5e0-9aea-45ea-ada2-293496a62c15/"
    ) == "32aeb5e0-9aea-45ea-ada2-293496a62c15"
    assert zarr_id_from_url("http://h/b/blobs/1ee/92a/1ee92aad-eff7-40e6-8750-9520b1244f3e") is None
    assert s3_url_of([f"{API}/assets/x/download/", "http://s3/b/blobs/x"], API) == "http://s3/b/blobs/x"
    assert s3_url_of([f"{API}/assets/x/download/"], API) is None


BLOB_KEY = "blobs/1ee/92a/1ee92aad-eff7-40e6-8750-9520b1244f3e"
ASSET_ID = "8f64e876-a2d9-48db-8be5-f73e1c904da1"


@pytest.mark.parametrize(
    "mounted_as",
    [
        API,
        f"{API}/",
        "http://localhost:8000/api",
        "http://localhost:8000/api/",
        "https://127.0.0.1:8000/api",
        "http://127.0.0.1:8000/other-prefix/api",
    ],
)
@pytest.mark.parametrize(
    "s3_url",
    [
        f"http://127.0.0.1:29000/dandi-dandisets/{BLOB_KEY}",
        "http://127.0.0.1:29000/dandi-dandisets/zarr/70a4e909-71ef-4ad4-9091-17e95a8c34c9/",
        f"https://dandiarchive.s3.amazonaws.com/{BLOB_KEY}",
    ],
)
def test_the_s3_url_is_told_from_the_download_url_by_shape(mounted_as, s3_url):
    """The archive names itself `API` (as in the recordings); the mount may know it by
    another spelling: the download URL is never taken for the S3 URL, in either order."""
    download = f"{API}/assets/{ASSET_ID}/download/"
    assert s3_url_of([download, s3_url], mounted_as) == s3_url
    assert s3_url_of([s3_url, download], mounted_as) == s3_url
    assert s3_url_of([download], mounted_as) is None
    zarr_file = f"{API}/zarr/{ASSET_ID}/files/?prefix=0/0&download=true"
    assert s3_url_of([zarr_file, s3_url], mounted_as) == s3_url


def test_tree_from_assets_of_a_whole_version(assets):
    tree = tree_from_assets(assets, "", ORIGIN)
    assert set(tree) == {"", "sub-mouse01", "sub-mouse02", "sub-mouse03", "sub-mouse04"}
    root = tree[""]
    assert [e.name for e in root.entries] == ["sub-mouse01", "sub-mouse02", "sub-mouse03", "sub-mouse04"]
    # Folder aggregates equal what the archive's folder endpoint reports for the same draft.
    recorded = {r["path"]: r for r in _results("assets_paths_GET_root_full_draft.json")}
    for folder in root.entries:
        assert folder.kind is EntryKind.FOLDER
        assert folder.size == recorded[folder.name]["aggregate_size"]
        assert folder.file_count == recorded[folder.name]["aggregate_files"]
    # A folder's mtime is its newest asset's, its ctime its oldest's.
    mouse01 = root.child("sub-mouse01")
    assert mouse01.mtime == datetime(2026, 11, 22, 1, 45, 42, 159671, tzinfo=timezone.utc)
    assert mouse01.ctime == datetime(2026, 11, 22, 1, 45, 40, 274756, tzinfo=timezone.utc)
    assert [e.name for e in tree["sub-mouse01"].entries] == [
        "sub-mouse01_ses-s1.nwb",
        "sub-mouse01_ses-s1_image.zarr",
    ]


def test_tree_from_assets_under_a_folder_is_case_sensitive(assets):
    shouting = assets[0].model_copy(update={"path": "SUB-MOUSE01/x.nwb"})
    tree = tree_from_assets([*assets, shouting], "sub-mouse01", ORIGIN)
    assert set(tree) == {"sub-mouse01"}
    assert len(tree["sub-mouse01"]) == 2


def test_folder_listing_entries_have_sizes_but_version_times():
    items = [AssetPath.model_validate(r) for r in _results("assets_paths_GET_folder.json")]
    entries = [entry_from_asset_path(item, ORIGIN) for item in items]
    nwb, zarr = entries
    assert nwb.kind is EntryKind.FILE and nwb.size == 178616 and nwb.mtime == VERSION_TIME
    assert nwb.content_url.endswith("/blobs/1ee/92a/1ee92aad-eff7-40e6-8750-9520b1244f3e")
    assert zarr.kind is EntryKind.FOLDER and zarr.zarr_id == "32aeb5e0-9aea-45ea-ada2-293496a62c15"
    assert zarr.asset_id == "dd4270cb-2df4-4a84-a69f-e58f2c53decb"
    folders = [
        entry_from_asset_path(AssetPath.model_validate(r), ORIGIN)
        for r in _results("assets_paths_GET_root_full_draft.json")
    ]
    assert all(f.kind is EntryKind.FOLDER and f.zarr_id is None for f in folders)
    assert [f.file_count for f in folders] == [2, 2, 1, 1]


def test_tree_from_zarr_files(assets):
    zarr = entry_from_asset(assets[4], ORIGIN)  # sub-mouse03/sub-mouse03_ses-s1_image.zarr
    files = [ZarrFile.model_validate(r) for r in _results("zarr_files_GET_complete.json")]
    tree = tree_from_zarr_files(files, zarr, ORIGIN)
    top = tree[zarr.path]
    assert [e.name for e in top.entries] == [".zgroup", "x"]
    x = top.child("x")
    assert x.kind is EntryKind.FOLDER and x.size == 131 + 2 + 2 + 2 and x.file_count == 4
    chunk = tree[f"{zarr.path}/x"].child("0")
    assert chunk.path == "sub-mouse03/sub-mouse03_ses-s1_image.zarr/x/0"
    assert chunk.etag == "441077cc9e57554dd476bdfb8b8b8102"
    assert chunk.size == 2
    assert chunk.zarr_id == zarr.zarr_id
    assert chunk.content_url == (
        "http://127.0.0.1:29000/dandi-dandisets/zarr/674afa86-2c36-48ad-8a62-e30139e5aa8f/x/0"
    )
    only_x = tree_from_zarr_files(files, zarr, ORIGIN, prefix="x")
    assert set(only_x) == {f"{zarr.path}/x"}
    embargoed = Origin(dandiset_id="000003", version="draft", api_url=API, embargoed=True)
    locked = tree_from_zarr_files(files, zarr, embargoed)[zarr.path].child(".zgroup")
    assert locked.content_url == (
        f"{API}/zarr/674afa86-2c36-48ad-8a62-e30139e5aa8f/files/?prefix=.zgroup&download=true"
    )


def test_listing_is_sorted_with_lookup(assets):
    listing = Listing.of(entry_from_asset(a, ORIGIN) for a in reversed(assets))
    assert [e.path for e in listing.entries] == sorted(a.path for a in assets)
    assert listing.child("sub-mouse04_ses-s1.nwb").size == 180616
    assert listing.child("nope") is None


# --- caches ------------------------------------------------------------------------------


class FakeClock:
    """A settable clock: time is the one thing these pure tests control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_store_expiry_and_bounds():
    clock, stats = FakeClock(), CacheStats()
    store: TTLStore[str, list] = TTLStore(10, stats, clock, weigh=len)
    store.put("a", [1, 2, 3], ttl=5)
    assert store.get("a") == [1, 2, 3]
    clock.now += 5
    assert store.get("a") is None and stats.expired == 1
    store.put("big", list(range(11)), ttl=5)  # heavier than the whole cache: not kept
    assert store.get("big") is None
    for key in "bcdef":
        store.put(key, [1, 2], ttl=60)  # 5 x 2 = 10: full
    store.put("g", [1, 2], ttl=60)  # evicts the least recently used
    assert store.get("b") is None and store.get("g") == [1, 2]
    store.put("zero", [1], ttl=0)
    assert store.get("zero") is None


@pytest.mark.anyio
async def test_metadata_cache_hits_negative_entries_and_ttl():
    clock, stats = FakeClock(), CacheStats()
    cache: MetadataCache[str, str] = MetadataCache(100, negative_ttl=2, stats=stats, clock=clock)
    calls = []

    async def fetch_ok() -> str:
        calls.append("ok")
        return "value"

    async def fetch_missing() -> str:
        calls.append("missing")
        raise NotFound("no such thing")

    assert await cache.get("k", fetch_ok, ttl=10) == "value"
    assert await cache.get("k", fetch_ok, ttl=10) == "value"
    assert calls == ["ok"] and stats.hits == 1 and stats.misses == 1
    for _ in range(2):
        with pytest.raises(NotFound, match="no such thing"):
            await cache.get("gone", fetch_missing, ttl=10)
    assert calls == ["ok", "missing"] and stats.negative_hits == 1
    clock.now += 2  # the negative entry expires
    with pytest.raises(NotFound):
        await cache.get("gone", fetch_missing, ttl=10)
    assert calls == ["ok", "missing", "missing"]
    clock.now += 8  # "k" lived 10 s
    assert await cache.get("k", fetch_ok, ttl=lambda value: 10) == "value"
    assert calls.count("ok") == 2


@pytest.mark.anyio
async def test_single_flight_shares_one_fetch():
    stats = CacheStats()
    cache: MetadataCache[str, int] = MetadataCache(100, negative_ttl=1, stats=stats)
    started = 0
    release = trio.Event()

    async def slow_fetch() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    results = []

    async def lookup() -> None:
        results.append(await cache.get("k", slow_fetch, ttl=60))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(lookup)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert results == [42] * 5 and started == 1 and stats.shared_waits == 4


@pytest.mark.anyio
async def test_a_fetch_under_way_at_a_forget_is_not_cached_and_not_joined():
    """A listing asked for before a change and answered after it must not be kept."""
    stats = CacheStats()
    cache: MetadataCache[str, str] = MetadataCache(100, negative_ttl=60, stats=stats)
    release = trio.Event()
    answers = iter(["before the change", "after the change"])

    async def fetch() -> str:
        answer = next(answers)
        if answer == "before the change":
            await release.wait()
        return answer

    results = {}

    async def lookup(name: str) -> None:
        results[name] = await cache.get("k", fetch, ttl=60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lookup, "early")
        await trio.testing.wait_all_tasks_blocked()
        cache.forget("k")  # the change, while the early fetch is under way
        nursery.start_soon(lookup, "late")  # must not join the early fetch
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert results == {"early": "before the change", "late": "after the change"}
    assert await cache.get("k", fetch, ttl=60) == "after the change"  # cached, no third fetch


@pytest.mark.anyio
async def test_single_flight_shares_failures_and_survives_a_cancelled_leader():
    stats = CacheStats()
    cache: MetadataCache[str, int] = MetadataCache(100, negative_ttl=0, stats=stats)
    release = trio.Event()
    attempts = 0

    async def fetch() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await trio.sleep_forever()  # the leader, cancelled below
        await release.wait()
        return 7

    follower_result = []

    async with trio.open_nursery() as nursery:
        leader_scope = trio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await cache.get("k", fetch, ttl=60)

        async def follower() -> None:
            follower_result.append(await cache.get("k", fetch, ttl=60))

        nursery.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
        leader_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    # The follower was not cancelled: it retried the lookup itself and got the value.
    assert follower_result == [7] and attempts == 2


@pytest.mark.anyio
async def test_gather_keeps_order_and_raises_the_domain_error_itself():
    from dandifs.concurrency import gather

    async def slow(value: int) -> int:
        await trio.sleep(0.01 * value)
        return value

    assert await gather(lambda: slow(3), lambda: slow(1), lambda: slow(2)) == [3, 1, 2]

    async def missing() -> int:
        raise NotFound("no dandiset 999999")

    with pytest.raises(NotFound, match="999999"):  # not an ExceptionGroup
        await gather(lambda: slow(5), missing)
