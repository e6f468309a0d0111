"""Everything above the assets: dandisets, versions, `latest`, `dandiset.yaml`.

`draft` and `latest` are resolved from the dandiset record (one request, kept `ttl_draft`
seconds, since both move); a version id from its `info` (kept `ttl_published`: a published
version never changes), which also carries the metadata `dandiset.yaml` is rendered from.
With a disk store (`persistent`), a published version's `info` is kept there too, and the
dandiset's folder takes its attributes from the record kept there unless a fresher one is
in memory, so a path through a version id needs no request at all on a new mount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from dandifs.errors import NotFound
from dandifs.model import Dandiset, VersionInfo, VersionSummary
from dandifs.namespace import listing as rules
from dandifs.namespace import names
from dandifs.namespace.dandiset_yaml import render_dandiset_yaml_bytes
from dandifs.namespace.routes import VersionAddress
from dandifs.resolve.entries import Origin
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.concurrency import gather
from dandifs.resolve.lookups import Lookups
from dandifs.resolve.persistent import (
    Question,
    dandiset_record,
    folder_record,
    version_info,
    version_summary,
)

YAML_CONTENT_TYPE = "text/yaml; charset=utf-8"

T = TypeVar("T")


@dataclass(frozen=True)
class VersionContext:
    """A version as a path names it, resolved to the real version and its caching policy."""

    address: VersionAddress
    origin: Origin
    asset_count: int
    size: int
    ttl: float
    durable: bool = False
    """Its answers may be kept on disk: a published version of a dandiset known to be OPEN."""

    @property
    def key(self) -> tuple[str, str]:
        """(dandiset id, real version): what caches of this version's content are keyed by."""
        return (self.origin.dandiset_id, self.origin.version)

    @property
    def immutable(self) -> bool:
        """Published, and not named through `latest` (which may point elsewhere tomorrow)."""
        return self.origin.immutable and not self.address.is_latest

    def keeping(self, question: Question[T]) -> Question[T] | None:
        """`question` if its answer may be kept on disk, else None (for `Lookups.call`)."""
        return question if self.durable else None


def _sequence_weight(items: tuple[Any, ...]) -> int:
    return len(items) + 1


class Versions:
    """Dandiset records, version lists, version contexts and `dandiset.yaml`."""

    def __init__(self, lookups: Lookups, *, list_entries: int) -> None:
        self.lookups = lookups
        self._dandiset_list = lookups.cache(list_entries, _sequence_weight)
        self._dandisets = lookups.cache(10_000)
        self._versions = lookups.cache(list_entries, _sequence_weight)
        self._infos = lookups.cache(1_000)
        self._yaml = lookups.cache(1_000)
        self._folder_records = lookups.cache(10_000)
        self._kept_records: dict[str, datetime] = {}
        self._kept_summaries: set[tuple[str, str]] = set()

    # --- records ----------------------------------------------------------------------------

    async def dandiset(self, dandiset_id: str) -> Dandiset:
        """The dandiset's record, fresh (`ttl_draft`): `draft` and `latest` are read from it."""
        client = self.lookups.client

        async def fetch() -> Dandiset:
            record = await self.lookups.call(lambda: client.get_dandiset(dandiset_id))
            await self._keep_folder_record(record)
            return record

        return await self._dandisets.get(dandiset_id, fetch, ttl=self.lookups.ttl_draft)

    async def folder_dandiset(self, dandiset_id: str) -> Dandiset:
        """The record that `/dandisets/<id>/` takes its attributes from.

        A fresh record if one is in memory; else, for a dandiset with a published version,
        the record kept on disk (its times as of when the archive was last asked); else a
        fresh one from the archive.
        """
        fresh = self._dandisets.peek(dandiset_id)
        if fresh is not None:
            return fresh
        if self.lookups.answers is None:
            return await self.dandiset(dandiset_id)

        async def recall() -> Dandiset:
            kept = await self.lookups.recall(dandiset_record(dandiset_id))
            return kept if kept is not None else await self.dandiset(dandiset_id)

        return await self._folder_records.get(dandiset_id, recall, ttl=self.lookups.ttl_draft)

    async def _keep_folder_record(self, record: Dandiset) -> None:
        answers = self.lookups.answers
        if answers is None or record.most_recent_published_version is None:
            return
        if self._kept_records.get(record.identifier) == record.modified:
            return
        await answers.keep(dandiset_record(record.identifier), folder_record(record))
        self._kept_records[record.identifier] = record.modified

    async def versions(self, dandiset_id: str) -> tuple[VersionSummary, ...]:
        client = self.lookups.client

        async def fetch() -> tuple[VersionSummary, ...]:
            return tuple(await self.lookups.call(lambda: client.list_versions(dandiset_id)))

        return await self._versions.get(dandiset_id, fetch, ttl=self.lookups.ttl_draft)

    async def info(self, context: VersionContext) -> VersionInfo:
        dandiset_id, version = context.key
        client = self.lookups.client
        return await self._infos.get(
            context.key,
            lambda: self.lookups.call(
                lambda: client.get_version(dandiset_id, version),
                kept=context.keeping(version_info(dandiset_id, version)),
            ),
            ttl=context.ttl,
        )

    def forget_draft(self, dandiset_id: str) -> None:
        """After a write: the draft's record (counts, times) and metadata may have changed."""
        self._dandisets.forget(dandiset_id)
        self._infos.forget((dandiset_id, names.DRAFT))
        self._yaml.forget((dandiset_id, names.DRAFT))

    # --- listings above versions ---------------------------------------------------------------

    async def list_dandisets(self) -> list[Entry]:
        """`/dandisets/`: with a token, the caller's embargoed dandisets are included."""
        client = self.lookups.client
        embargoed = client.authenticated

        async def fetch() -> tuple[Dandiset, ...]:
            found = await self.lookups.call(lambda: client.list_dandisets(embargoed=embargoed))
            for dandiset in found:  # `stat /dandisets/<id>` then costs nothing
                self._dandisets.put(dandiset.identifier, dandiset, self.lookups.ttl_draft)
            return tuple(found)

        dandisets = await self._dandiset_list.get(embargoed, fetch, ttl=self.lookups.ttl_draft)
        entries = [dandiset_folder(f"/{names.DANDISETS}/{d.identifier}", d) for d in dandisets]
        return sorted(entries, key=lambda entry: entry.name)

    async def list_dandiset(self, dandiset_id: str) -> list[Entry]:
        """`/dandisets/<id>/`: `draft`, `latest` (a symlink) and one folder per release."""
        dandiset, versions = await gather(
            lambda: self.dandiset(dandiset_id), lambda: self.versions(dandiset_id)
        )
        published = {v.version: v for v in versions if not v.is_draft}
        base = f"/{names.DANDISETS}/{dandiset_id}"
        entries = []
        for name in rules.dandiset_children(published):
            path = f"{base}/{name}"
            if name == names.DRAFT:
                entries.append(version_entry(path, dandiset, dandiset.draft_version, False))
            elif name == names.LATEST:
                latest = dandiset.most_recent_published_version or max(
                    published.values(), key=lambda v: v.created
                )
                entries.append(
                    latest_symlink(
                        path, dandiset_id, latest.version, latest.created, latest.modified
                    )
                )
            else:
                entries.append(version_entry(path, dandiset, published[name], True))
        return entries

    async def list_releases(self, dandiset_id: str) -> list[Entry]:
        """`/dandisets/<id>/releases/`: the published versions (the dandidav layout)."""
        dandiset, versions = await gather(
            lambda: self.dandiset(dandiset_id), lambda: self.versions(dandiset_id)
        )
        base = f"/{names.DANDISETS}/{dandiset_id}/{names.RELEASES}"
        entries = (
            version_entry(f"{base}/{v.version}", dandiset, v, True)
            for v in versions
            if not v.is_draft
        )
        return sorted(entries, key=lambda entry: entry.name)

    # --- versions -------------------------------------------------------------------------------

    async def context(self, address: VersionAddress) -> VersionContext:
        """The real version behind `address` (`latest` -> its version id) and how to cache it."""
        if address.is_draft or address.is_latest:
            dandiset = await self.dandiset(address.dandiset_id)
            if address.is_draft:
                summary = dandiset.draft_version
                if summary is None:
                    raise NotFound(f"dandiset {address.dandiset_id} has no draft version")
            else:
                summary = dandiset.most_recent_published_version
                if summary is None:
                    raise NotFound(
                        f"dandiset {address.dandiset_id} has no published version, so no 'latest'"
                    )
            return self._context(
                address, summary, embargoed=dandiset.embargoed, durable=not dandiset.embargoed
            )
        summary, known_open = await self._published(address)
        return self._context(address, summary, embargoed=False, durable=known_open)

    async def _published(self, address: VersionAddress) -> tuple[VersionSummary, bool]:
        """A published version's summary, and whether its dandiset is known to be OPEN.

        The dandiset's record, fetched moments ago to look up its folder, already describes
        its latest release: a path naming that version costs no request of its own (the
        summary is kept on disk for the next mount).  Any other version comes from its
        `info`.  Embargoed dandisets cannot be published, so a published version is open;
        its answers are kept on disk only when the archive says so, too.
        """
        fresh = self._dandisets.peek(address.dandiset_id)
        latest = fresh.most_recent_published_version if fresh is not None else None
        summary_question = version_summary(address.dandiset_id, address.version)
        if fresh is not None and latest is not None and latest.version == address.version:
            if not fresh.embargoed:
                await self._keep_summary(summary_question, latest)
            return latest, not fresh.embargoed
        kept = await self.lookups.recall(summary_question)
        if kept is not None:
            return kept, True
        client = self.lookups.client
        info = await self._infos.get(
            (address.dandiset_id, address.version),
            lambda: self.lookups.call(
                lambda: client.get_version(address.dandiset_id, address.version),
                kept=version_info(address.dandiset_id, address.version),
            ),
            ttl=self.lookups.ttl_published,
        )
        owner = info.dandiset
        return info, owner is not None and not owner.embargoed

    async def _keep_summary(
        self, question: Question[VersionSummary], summary: VersionSummary
    ) -> None:
        answers = self.lookups.answers
        if answers is None or (question.dandiset_id, question.version) in self._kept_summaries:
            return
        await answers.keep(question, summary)
        self._kept_summaries.add((question.dandiset_id, question.version))

    def _context(
        self, address: VersionAddress, summary: VersionSummary, *, embargoed: bool, durable: bool
    ) -> VersionContext:
        published = not summary.is_draft
        origin = Origin(
            dandiset_id=address.dandiset_id,
            version=summary.version,
            api_url=self.lookups.api_url,
            embargoed=embargoed,
            immutable=published,
            created=summary.created,
            modified=summary.modified,
        )
        return VersionContext(
            address=address,
            origin=origin,
            asset_count=summary.asset_count,
            size=summary.size,
            ttl=self.lookups.ttl(published=published),
            durable=published and durable,
        )

    async def dandiset_yaml(self, context: VersionContext) -> bytes | None:
        """The bytes of the version's `dandiset.yaml`; None when it has no metadata (no file).

        Rendered once per version and cached like its metadata: the YAML dumper takes tens
        of milliseconds, and every listing of a version root needs the file's size.
        """

        async def render() -> bytes | None:
            info = await self.info(context)
            return render_dandiset_yaml_bytes(info.metadata) if info.metadata else None

        return await self._yaml.get(context.key, render, ttl=context.ttl)

    async def dandiset_yaml_entry(self, context: VersionContext) -> Entry | None:
        data = await self.dandiset_yaml(context)
        if data is None:
            return None
        return Entry(
            path=context.address.path_of(names.DANDISET_YAML),
            kind=EntryKind.FILE,
            size=len(data),
            **version_fields(context),
            content_type=YAML_CONTENT_TYPE,
        )


# --- entries above the assets (pure) -----------------------------------------------------------


def dandiset_folder(path: str, dandiset: Dandiset) -> Entry:
    return Entry(
        path=path,
        kind=EntryKind.FOLDER,
        mtime=dandiset.modified,
        ctime=dandiset.created,
        embargoed=dandiset.embargoed,
        dandiset_id=dandiset.identifier,
    )


def version_entry(
    path: str, dandiset: Dandiset, summary: VersionSummary | None, published: bool
) -> Entry:
    return Entry(
        path=path,
        kind=EntryKind.FOLDER,
        size=summary.size if summary else 0,
        mtime=summary.modified if summary else dandiset.modified,
        ctime=summary.created if summary else dandiset.created,
        immutable=published,
        embargoed=dandiset.embargoed,
        dandiset_id=dandiset.identifier,
        version=summary.version if summary else names.DRAFT,
        file_count=summary.asset_count if summary else 0,
    )


def latest_symlink(
    path: str, dandiset_id: str, version: str, created: datetime, modified: datetime
) -> Entry:
    """`latest`: a symlink to the sibling folder of the most recent published version."""
    target = rules.latest_target(version)
    return Entry(
        path=path,
        kind=EntryKind.SYMLINK,
        size=len(target),
        mtime=modified,
        ctime=created,
        dandiset_id=dandiset_id,
        version=version,
        symlink_target=target,
    )


def version_fields(context: VersionContext) -> dict[str, Any]:
    """The Entry fields every entry made from a version's own record shares."""
    return {
        "mtime": context.origin.modified,
        "ctime": context.origin.created,
        "immutable": context.immutable,
        "embargoed": context.origin.embargoed,
        "dandiset_id": context.origin.dandiset_id,
        "version": context.origin.version,
    }


def version_folder(path: str, context: VersionContext) -> Entry:
    """A version root as named by `path` (`draft/`, `latest/`, `releases/<v>/`, `<v>/`)."""
    return Entry(
        path=path,
        kind=EntryKind.FOLDER,
        size=context.size,
        **version_fields(context),
        file_count=context.asset_count,
    )
