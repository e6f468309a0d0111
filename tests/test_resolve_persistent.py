"""Answers about published versions kept on disk: a new resolver (a remount) over the same
folder resolves a published version with no archive request at all.

Against the real local archive (demo dandisets: 000001 published + draft, 000002 a draft
with a Zarr, 000003 embargoed).  Requests are the archive client's own HTTP counters.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from dandifs.archive import ArchiveClient
from dandifs.errors import NotFound
from dandifs.model import Asset, ZarrFile
from dandifs.resolve import EntryKind, Resolver
from dandifs.resolve import persistent
from dandifs.resolve.answerdb import AnswerDB
from dandifs.resolve.persistent import DB_NAME, PublishedAnswers

pytestmark = pytest.mark.anyio

NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"



@asynccontextmanager
async def resolving(
    local_archive, persist_dir: Path, *, token: str | None = None, **options
) -> AsyncIterator[tuple[Resolver, ArchiveClient]]:
    """A new client and resolver: what a new mount process starts with."""
    async with ArchiveClient(local_archive.api_url, token=token, anonymous=token is None) as client:
        resolver = Resolver(client, persist_dir=persist_dir, **options)
        try:
            yield resolver, client
        finally:
            resolver.close()


async def everything_below(resolver: Resolver, path: str) -> list:
    """What `ls -lR` and `getfattr` of a tree ask: every folder listed, every entry stat-ed,
    `dandiset.yaml` read, each file's asset metadata."""
    seen = []
    for entry in await resolver.listdir(path):
        seen.append(await resolver.stat(entry.path))
        if entry.kind is EntryKind.FOLDER:
            seen.extend(await everything_below(resolver, entry.path))
        elif entry.asset_id is not None:
            seen.append(await resolver.metadata(entry.path))
        else:
            seen.append(await resolver.read_virtual(entry.path))
    return seen


async def version_walk(resolver: Resolver, version_root: str) -> list:
    """Every lookup a mount makes on the way to and through one version."""
    dandiset = version_root.rsplit("/", 1)[0]
    return [
        await resolver.stat(dandiset),
        await resolver.stat(version_root),
        await resolver.version_metadata(version_root),
        *await everything_below(resolver, version_root),
    ]


def kept_rows(persist_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(persist_dir / DB_NAME) as db:
        rows = db.execute("SELECT dandiset, version, query FROM answers ORDER BY 1, 2, 3")
        return rows.fetchall()


# --- a new resolver over the same folder ----------------------------------------------------------


@pytest.mark.parametrize("tree_limit", [2000, 1], ids=["assets-walks", "folder-endpoint"])
async def test_a_published_version_resolves_from_disk_with_no_request(
    local_archive, published, tmp_path, tree_limit
):
    root = f"/dandisets/000001/{published}"
    async with resolving(local_archive, tmp_path, tree_limit=tree_limit) as (resolver, client):
        first = await version_walk(resolver, root)
        assert client.stats.api_requests > 0

    async with resolving(local_archive, tmp_path, tree_limit=tree_limit) as (resolver, client):
        again = await version_walk(resolver, root)
        assert client.stats.api_requests == 0
        assert resolver.stats.archive_calls == 0 and resolver.stats.disk_hits > 0
    assert again == first


async def test_a_file_looked_up_directly_resolves_from_disk(local_archive, published, tmp_path):
    """A big version's file never seen in a listing: its exact-path query is kept too."""
    path = f"/dandisets/000001/{published}/{NWB}"
    async with resolving(local_archive, tmp_path, tree_limit=1) as (resolver, client):
        first = await resolver.stat(path)
        assert client.stats.api_requests > 0

    async with resolving(local_archive, tmp_path, tree_limit=1) as (resolver, client):
        assert await resolver.stat(path) == first
        assert client.stats.api_requests == 0


async def test_releases_paths_share_what_is_kept(local_archive, published, tmp_path):
    async with resolving(local_archive, tmp_path) as (resolver, _):
        await version_walk(resolver, f"/dandisets/000001/{published}")

    async with resolving(local_archive, tmp_path) as (resolver, client):
        entry = await resolver.stat(f"/dandisets/000001/releases/{published}/{NWB}")
        assert entry.immutable and entry.size > 0
        assert client.stats.api_requests == 0


# --- what is never kept ---------------------------------------------------------------------------


async def test_drafts_and_latest_still_ask_the_archive(local_archive, published, tmp_path):
    async with resolving(local_archive, tmp_path) as (resolver, _):
        for root in ("/dandisets/000001/draft", "/dandisets/000001/latest"):
            await version_walk(resolver, root)
        await version_walk(resolver, f"/dandisets/000001/{published}")

    async with resolving(local_archive, tmp_path) as (resolver, client):
        await resolver.stat(f"/dandisets/000001/draft/{NWB}")
        assert client.stats.api_requests > 0
    async with resolving(local_archive, tmp_path) as (resolver, client):
        latest = await resolver.stat("/dandisets/000001/latest")
        assert latest.symlink_target == published
        assert client.stats.api_requests == 1  # the dandiset record, asked afresh

    versions = {version for _, version, _ in kept_rows(tmp_path)}
    assert versions == {published, persistent.NO_VERSION}


async def test_content_read_through_latest_is_kept_under_its_version(
    local_archive, published, tmp_path
):
    async with resolving(local_archive, tmp_path) as (resolver, _):
        await resolver.listdir("/dandisets/000001/latest/sub-mouse01")

    async with resolving(local_archive, tmp_path) as (resolver, client):
        await resolver.stat(f"/dandisets/000001/{published}")
        version_info_only = client.stats.api_requests
        assert version_info_only == 1  # the version's info was never asked through `latest`
        await resolver.listdir(f"/dandisets/000001/{published}/sub-mouse01")
        assert client.stats.api_requests == version_info_only


async def test_nothing_of_an_embargoed_dandiset_is_kept(local_archive, tmp_path):
    async with resolving(local_archive, tmp_path, token=local_archive.token) as (resolver, client):
        await version_walk(resolver, "/dandisets/000003/draft")
        assert client.stats.api_requests > 0
    assert not (tmp_path / DB_NAME).exists() or kept_rows(tmp_path) == []


async def test_not_found_is_not_kept(local_archive, published, tmp_path):
    async with resolving(local_archive, tmp_path) as (resolver, _):
        await resolver.stat(f"/dandisets/000001/{published}")  # the store exists
    for _ in range(2):
        async with resolving(local_archive, tmp_path) as (resolver, client):
            with pytest.raises(NotFound):
                await resolver.stat("/dandisets/000001/0.999999.9999/a.nwb")
            assert client.stats.api_requests == 1
    assert all(version != "0.999999.9999" for _, version, _ in kept_rows(tmp_path))


# --- a damaged store ------------------------------------------------------------------------------


async def test_a_corrupt_store_is_discarded_and_rebuilt(local_archive, published, tmp_path, caplog):
    (tmp_path / DB_NAME).write_bytes(b"this is not an SQLite database\n" * 200)
    root = f"/dandisets/000001/{published}"
    with caplog.at_level(logging.WARNING, logger="dandifs.resolve.answers"):
        async with resolving(local_archive, tmp_path) as (resolver, client):
            first = await version_walk(resolver, root)
            assert client.stats.api_requests > 0
    assert any("damaged" in record.getMessage() for record in caplog.records)

    async with resolving(local_archive, tmp_path) as (resolver, client):
        assert await version_walk(resolver, root) == first
        assert client.stats.api_requests == 0


async def test_an_unreadable_answer_is_asked_again(local_archive, published, tmp_path, caplog):
    root = f"/dandisets/000001/{published}"
    async with resolving(local_archive, tmp_path) as (resolver, _):
        first = await version_walk(resolver, root)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE answers SET body = X'00112233' WHERE query = 'info'")

    with caplog.at_level(logging.WARNING, logger="dandifs.resolve.answers"):
        async with resolving(local_archive, tmp_path) as (resolver, client):
            assert await version_walk(resolver, root) == first
            assert client.stats.api_requests == 1  # the version info, and nothing else
    assert any("unreadable" in record.getMessage() for record in caplog.records)

    async with resolving(local_archive, tmp_path) as (resolver, client):
        await version_walk(resolver, root)
        assert client.stats.api_requests == 0


async def test_an_unusable_folder_does_not_fail_lookups(local_archive, published, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    async with resolving(local_archive, blocker / "metadata") as (resolver, client):
        entry = await resolver.stat(f"/dandisets/000001/{published}/{NWB}")
        assert entry.size > 0 and client.stats.api_requests > 0


# --- several processes at once --------------------------------------------------------------------

WALKER = textwrap.dedent(
    """
    import json, sys, trio
    from pathlib import Path
    from dandifs.archive import ArchiveClient
    from dandifs.resolve import EntryKind, Resolver

    async def walk(resolver, path):
        count = 0
        for entry in await resolver.listdir(path):
            await resolver.stat(entry.path)
            count += 1
            if entry.kind is EntryKind.FOLDER:
                count += await walk(resolver, entry.path)
            elif entry.asset_id is not None:
                await resolver.metadata(entry.path)
        return count

    async def main(api_url, persist_dir, root):
        async with ArchiveClient(api_url, anonymous=True) as client:
            resolver = Resolver(client, persist_dir=Path(persist_dir))
            try:
                await resolver.stat(root.rsplit("/", 1)[0])
                entries = await walk(resolver, root)
            finally:
                resolver.close()
            print(json.dumps({"entries": entries, "requests": client.stats.api_requests}))

    trio.run(main, *sys.argv[1:])
    """
)


def run_walkers(count: int, api_url: str, persist_dir: Path, root: str) -> list[dict]:
    """`count` processes walking `root` at the same time over one store."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WALKER, api_url, str(persist_dir), root],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_processes_share_the_store(local_archive, published, tmp_path):
    root = f"/dandisets/000001/{published}"
    cold = run_walkers(3, local_archive.api_url, tmp_path, root)
    assert len({result["entries"] for result in cold}) == 1 and cold[0]["entries"] > 0
    warm = run_walkers(3, local_archive.api_url, tmp_path, root)
    assert [result["requests"] for result in warm] == [0, 0, 0]
    assert [result["entries"] for result in warm] == [cold[0]["entries"]] * 3


# --- the codec: archive answers survive the round trip --------------------------------------------


async def test_answers_read_back_equal_the_archives(local_archive, published, tmp_path):
    async with ArchiveClient(local_archive.api_url, anonymous=True) as client:
        assets = await client.list_assets("000001", published, metadata=True)
        [zarr] = [a for a in await client.list_assets("000002", "draft") if a.is_zarr]
        files = await client.list_zarr_files(zarr.zarr)
    answers = PublishedAnswers(tmp_path, local_archive.api_url)
    try:
        asset_list = persistent.assets("000001", published, metadata=True)
        zarr_list = persistent.zarr_files("000001", published, zarr.zarr, "")
        await answers.keep(asset_list, assets)
        await answers.keep(zarr_list, files)
        assert await answers.recall(asset_list) == assets
        assert await answers.recall(zarr_list) == files
        assert all(isinstance(item, ZarrFile) for item in files) and len(files) > 1000
        assert all(isinstance(item, Asset) and item.metadata for item in assets)
    finally:
        answers.close()


async def test_a_draft_version_info_is_never_kept(local_archive, tmp_path):
    async with ArchiveClient(local_archive.api_url, anonymous=True) as client:
        draft = await client.get_version("000001", "draft")
    answers = PublishedAnswers(tmp_path, local_archive.api_url)
    try:
        question = persistent.version_info("000001", "draft")
        await answers.keep(question, draft)
        assert await answers.recall(question) is None
    finally:
        answers.close()


# --- the bound (pure SQLite, no archive) ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_the_store_prunes_the_least_recently_used(tmp_path):
    db = AnswerDB(tmp_path / "a.sqlite3", max_bytes=10_000, clock=Clock())
    key = lambda n: ("http://a/api", "000001", "0.1", f"q{n}")  # noqa: E731
    try:
        for n in range(10):
            db.put(key(n), bytes(900))
        assert db.row_count() == 10
        db.put(key(10), bytes(900))  # over the bound: down to 3/4 of it, oldest first
        assert db.total_bytes() <= 7_500
        assert db.get(key(0)) is None and db.get(key(10)) == bytes(900)
        db.put(key(11), bytes(5_000))  # more than an eighth of the bound: not kept
        assert db.get(key(11)) is None
    finally:
        db.close()


def test_reading_an_answer_keeps_it_from_pruning(tmp_path):
    clock = Clock()
    db = AnswerDB(tmp_path / "a.sqlite3", max_bytes=10_000, clock=clock)
    key = lambda n: ("http://a/api", "000001", "0.1", f"q{n}")  # noqa: E731
    try:
        for n in range(10):
            db.put(key(n), bytes(900))
        clock.now += 7200  # long enough for a read to count as a use
        assert db.get(key(0)) is not None
        db.put(key(10), bytes(900))
        assert db.get(key(0)) is not None and db.get(key(1)) is None
    finally:
        db.close()


def test_a_store_of_another_layout_is_emptied(tmp_path):
    path = tmp_path / "a.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE answers (k TEXT)")
        old.execute("PRAGMA user_version = 99")
    db = AnswerDB(path, max_bytes=10_000)
    try:
        key = ("http://a/api", "000001", "0.1", "info")
        assert db.get(key) is None
        db.put(key, b"x")
        assert db.get(key) == b"x"
    finally:
        db.close()


def test_the_store_is_usable_from_worker_threads(tmp_path):
    # Opened in one thread, then used from trio's worker threads, as `PublishedAnswers` does.
    db = AnswerDB(tmp_path / "a.sqlite3", max_bytes=10_000)
    try:
        db.put(("u", "d", "v", "q"), b"abc")
        assert trio.run(trio.to_thread.run_sync, db.get, ("u", "d", "v", "q")) == b"abc"
    finally:
        db.close()
