"""The archive's answers about published versions, kept on disk across mounts.

A published version never changes, so what the archive said about it once (that it exists,
its metadata, its asset lists, folder listings, asset records, the file lists of its Zarrs)
holds forever, and a new `dandifs mount` over the same cache directory can resolve paths
in it without asking again.  Kept are the archive's own answers, not what the resolver
derived from them, so an answer read back goes through exactly the code a fresh answer
does.

What may be kept is decided by the caller, strictly: only answers about a published
version of an OPEN dandiset (the same for every reader, with or without a token), never
drafts, never `latest` (a pointer that moves), never "not found".  The one exception to
"published versions only" is the dandiset's own record, kept for the attributes of its
folder once it has a published version (it can no longer be deleted or embargoed then);
it is stripped of its pointers to versions and refreshed whenever the archive is asked.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import anyio
from pydantic import TypeAdapter, ValidationError

from dandifs.model import (
    Asset,
    AssetPath,
    Dandiset,
    EmbargoStatus,
    VersionInfo,
    VersionSummary,
    ZarrFile,
)
from dandifs.resolve.answerdb import AnswerDB, AnswerKey

log = logging.getLogger("dandifs.resolve.answers")

T = TypeVar("T")

#: Bound of the file's rows; LRU-pruned beyond it.
DEFAULT_MAX_BYTES = 256 << 20
DB_NAME = "answers.sqlite3"
#: Stands for "no version" in the key of a fact about the dandiset itself.
NO_VERSION = ""

_VERSION_INFO: TypeAdapter[VersionInfo] = TypeAdapter(VersionInfo)
_VERSION_SUMMARY: TypeAdapter[VersionSummary] = TypeAdapter(VersionSummary)
_ASSETS: TypeAdapter[list[Asset]] = TypeAdapter(list[Asset])
_ASSET: TypeAdapter[Asset] = TypeAdapter(Asset)
_ASSET_PATHS: TypeAdapter[list[AssetPath]] = TypeAdapter(list[AssetPath])
_ZARR_FILES: TypeAdapter[list[ZarrFile]] = TypeAdapter(list[ZarrFile])
_DANDISET: TypeAdapter[Dandiset] = TypeAdapter(Dandiset)


def _always(_: Any) -> bool:
    return True


@dataclass(frozen=True)
class Question(Generic[T]):
    """One archive call about one version: how its answer is named, encoded, and judged."""

    dandiset_id: str
    version: str
    query: str
    """The call and its parameters, e.g. `assets?metadata=true&order=path&path=sub-01%2F`."""
    kind: TypeAdapter[T] = field(compare=False, repr=False)
    worth_keeping: Callable[[T], bool] = field(default=_always, compare=False, repr=False)
    """Judges the answer itself where the question alone cannot (is the version published?)."""


def _query(call: str, **params: Any) -> str:
    present = {name: value for name, value in params.items() if value not in (None, False)}
    return f"{call}?{urlencode(sorted(present.items()))}" if present else call


def _published_and_open(info: VersionInfo) -> bool:
    dandiset = info.dandiset
    return (
        not info.is_draft
        and dandiset is not None
        and dandiset.embargo_status is EmbargoStatus.OPEN
    )


def version_info(dandiset_id: str, version: str) -> Question[VersionInfo]:
    """`…/versions/<v>/info/`: kept only if it shows a published version of an open dandiset."""
    return Question(dandiset_id, version, "info", _VERSION_INFO, _published_and_open)


def version_summary(dandiset_id: str, version: str) -> Question[VersionSummary]:
    """A published version as its dandiset's record described it (the caller knows the
    dandiset is open: a summary does not say)."""
    return Question(dandiset_id, version, "summary", _VERSION_SUMMARY, lambda s: not s.is_draft)


def assets(
    dandiset_id: str,
    version: str,
    *,
    path: str | None = None,
    glob: str | None = None,
    metadata: bool = False,
    order: str | None = None,
) -> Question[list[Asset]]:
    query = _query("assets", path=path, glob=glob, metadata=metadata, order=order)
    return Question(dandiset_id, version, query, _ASSETS)


def asset(dandiset_id: str, version: str, asset_id: str) -> Question[Asset]:
    return Question(dandiset_id, version, f"asset/{asset_id}", _ASSET)


def asset_paths(dandiset_id: str, version: str, path_prefix: str) -> Question[list[AssetPath]]:
    return Question(dandiset_id, version, _query("paths", path_prefix=path_prefix), _ASSET_PATHS)


def zarr_files(
    dandiset_id: str, version: str, zarr_id: str, prefix: str
) -> Question[list[ZarrFile]]:
    """A Zarr's file list, as seen from one published version (which pins it)."""
    return Question(dandiset_id, version, _query(f"zarr/{zarr_id}", prefix=prefix), _ZARR_FILES)


def dandiset_record(dandiset_id: str) -> Question[Dandiset]:
    """The dandiset's record, for its folder's attributes (see the module's docs)."""

    def is_open(record: Dandiset) -> bool:
        return record.embargo_status is EmbargoStatus.OPEN

    return Question(dandiset_id, NO_VERSION, "dandiset", _DANDISET, is_open)


def folder_record(record: Dandiset) -> Dandiset:
    """`record` without what moves on its own (the draft and the latest release)."""
    return record.model_copy(update={"draft_version": None, "most_recent_published_version": None})


class PublishedAnswers:
    """The answers of one archive (by API URL) kept in `<directory>/answers.sqlite3`.

    Reads and writes run in a worker thread, so the event loop never waits for the disk.
    """

    def __init__(self, directory: Path, api_url: str, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.api_url = api_url
        self.db = AnswerDB(directory / DB_NAME, max_bytes=max_bytes)

    def _key(self, question: Question[Any]) -> AnswerKey:
        return (self.api_url, question.dandiset_id, question.version, question.query)

    async def recall(self, question: Question[T]) -> T | None:
        """The kept answer to `question`, or None."""
        return await anyio.to_thread.run_sync(self._recall, question)

    async def keep(self, question: Question[T], answer: T) -> None:
        """Keep `answer` if it is worth keeping."""
        if question.worth_keeping(answer):
            await anyio.to_thread.run_sync(self._keep, question, answer)

    def close(self) -> None:
        self.db.close()

    def _recall(self, question: Question[T]) -> T | None:
        key = self._key(question)
        body = self.db.get(key)
        if body is None:
            return None
        try:
            return question.kind.validate_json(zlib.decompress(body))
        except (zlib.error, ValidationError, ValueError) as exc:
            log.warning("kept answer %s is unreadable (%s): discarded", key, exc)
            self.db.forget(key)
            return None

    def _keep(self, question: Question[T], answer: T) -> None:
        encoded = question.kind.dump_json(answer, by_alias=True)
        self.db.put(self._key(question), zlib.compress(encoded, 6))
