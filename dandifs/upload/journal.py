"""The journal of uploads: what was written where, and how far each got on its way to the
archive, kept in SQLite beside the spool so that a restart (or a `kill -9`) loses nothing.

Each upload is one row.  Its phase and the parts the archive already has change in
transactions, so a resumed upload sends only the parts not yet recorded.  Rows carry the
SHA-256 of the token that wrote them: a core resumes only its own caller's uploads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dandifs.errors import NoSpace
from dandifs.upload.state import Phase, UploadState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    dandiset TEXT NOT NULL,
    path TEXT NOT NULL,
    spool TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL,
    digest TEXT,
    upload_id TEXT,
    parts TEXT NOT NULL DEFAULT '{}',
    plan TEXT NOT NULL DEFAULT '[]',
    zarr TEXT,
    parts_total INTEGER NOT NULL DEFAULT 0,
    blob_id TEXT,
    asset_id TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""

JOURNAL_FILE = "journal.sqlite"
"""The journal's name in an uploads folder (beside the spool)."""

#: Phases an upload can be resumed from; DONE and FAILED rows wait for a person or pruning.
UNFINISHED = (Phase.SPOOLED, Phase.HASHING, Phase.UPLOADING, Phase.VALIDATING, Phase.REGISTERING)


def owner_of(token: str | None) -> str:
    """What a row records of the token that wrote it: never the token itself."""
    return hashlib.sha256((token or "").encode()).hexdigest()


@dataclass(frozen=True)
class PlannedPart:
    """One part the archive asked for: `size` bytes from `offset` to a presigned URL (valid
    for days, so a resumed upload sends its remaining parts to the same URLs)."""

    number: int
    offset: int
    size: int
    url: str


@dataclass(frozen=True)
class UploadRecord:
    id: str
    owner: str
    dandiset_id: str
    path: str
    spool: str
    size: int
    phase: Phase
    digest: str | None = None
    upload_id: str | None = None
    parts: dict[int, str] = field(default_factory=dict)
    plan: tuple[PlannedPart, ...] = ()
    zarr: str | None = None
    """The Zarr asset path a file belongs to (`path` is then the asset path of the file
    inside it, e.g. `x.zarr/0/0`): sent with the Zarr's other changes, not as a blob."""
    parts_total: int = 0
    blob_id: str | None = None
    asset_id: str | None = None
    reason: str | None = None
    attempts: int = 0
    created: float = 0.0
    updated: float = 0.0

    @property
    def state(self) -> UploadState:
        return UploadState(self.phase, len(self.parts), self.parts_total, self.reason)


class Journal:
    """Thread-safe; each call is one transaction, durable when it returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Progress (phases, parts) survives a crash or kill -9 with NORMAL, and a step
        # replayed after a power cut is harmless; a new row must survive that too (FULL).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._path = path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _changing(self) -> Iterator[sqlite3.Connection]:
        """One change under the lock; a full disk is `NoSpace`, as for spooled bytes."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                if "full" in str(exc) or "disk I/O" in str(exc):
                    raise NoSpace(
                        f"no room for the upload journal {self._path}: free some space there; "
                        "nothing written so far is lost"
                    ) from exc
                raise

    def add(
        self, *, owner: str, dandiset_id: str, path: str, spool: str, size: int,
        zarr: str | None = None,
    ) -> UploadRecord:
        """A committed file, spooled and waiting for its upload."""
        now = time.time()
        record = UploadRecord(
            id=str(uuid.uuid4()), owner=owner, dandiset_id=dandiset_id, path=path, spool=spool,
            size=size, phase=Phase.SPOOLED, zarr=zarr, created=now, updated=now,
        )
        with self._changing() as db:
            db.execute("PRAGMA synchronous=FULL")  # what close promised: through a power cut
            try:
                db.execute(
                    "INSERT INTO uploads (id, owner, dandiset, path, spool, size, phase, zarr,"
                    " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, owner, dandiset_id, path, spool, size, record.phase.value, zarr,
                     now, now),
                )
            finally:
                db.execute("PRAGMA synchronous=NORMAL")
        return record

    _COLUMNS = {
        "path", "phase", "digest", "upload_id", "parts_total", "blob_id", "asset_id", "reason",
        "attempts", "size", "plan", "parts",
    }

    def update(self, record_id: str, /, **changes: object) -> UploadRecord:
        """Change some fields of a row (phase as a `Phase`); returns the row as it now is."""
        unknown = set(changes) - self._COLUMNS
        if unknown:
            raise ValueError(f"not journal fields: {sorted(unknown)}")
        values = {name: _column(value) for name, value in changes.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._changing() as db:
            db.execute(
                f"UPDATE uploads SET {assignments}, updated = ? WHERE id = ?",
                (*values.values(), time.time(), record_id),
            )
        return self.get(record_id)

    def part_done(self, record_id: str, number: int, etag: str) -> None:
        """Record one part the archive's S3 has, so a resumed upload does not send it again."""
        with self._changing() as db:
            db.execute("BEGIN IMMEDIATE")  # parts finish at once: no lost update
            try:
                (parts,) = db.execute(
                    "SELECT parts FROM uploads WHERE id = ?", (record_id,)
                ).fetchone()
                recorded = json.loads(parts)
                recorded[str(number)] = etag
                db.execute(
                    "UPDATE uploads SET parts = ?, updated = ? WHERE id = ?",
                    (json.dumps(recorded, sort_keys=True), time.time(), record_id),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def get(self, record_id: str) -> UploadRecord:
        rows = self._select("WHERE id = ?", (record_id,))
        if not rows:
            raise KeyError(record_id)
        return rows[0]

    def unfinished(self, owner: str) -> list[UploadRecord]:
        """This caller's uploads to resume, oldest first."""
        marks = ", ".join("?" for _ in UNFINISHED)
        return self._select(
            f"WHERE owner = ? AND phase IN ({marks}) ORDER BY created",
            (owner, *(phase.value for phase in UNFINISHED)),
        )

    def owned_by(self, owner: str) -> list[UploadRecord]:
        """Every row of this caller (pending, failed, done), oldest first."""
        return self._select("WHERE owner = ? ORDER BY created", (owner,))

    def all(self) -> list[UploadRecord]:
        return self._select("ORDER BY created", ())

    def remove(self, record_id: str) -> None:
        with self._changing() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (record_id,))

    def _select(self, where: str, parameters: tuple[object, ...]) -> list[UploadRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, dandiset, path, spool, size, phase, digest, upload_id, parts,"
                " plan, zarr, parts_total, blob_id, asset_id, reason, attempts, created, updated"
                f" FROM uploads {where}",
                parameters,
            ).fetchall()
        return [
            UploadRecord(
                id=row[0], owner=row[1], dandiset_id=row[2], path=row[3], spool=row[4],
                size=row[5], phase=Phase(row[6]), digest=row[7], upload_id=row[8],
                parts={int(k): v for k, v in json.loads(row[9]).items()},
                plan=tuple(PlannedPart(*part) for part in json.loads(row[10])), zarr=row[11],
                parts_total=row[12], blob_id=row[13], asset_id=row[14], reason=row[15],
                attempts=row[16], created=row[17], updated=row[18],
            )
            for row in rows
        ]


def _column(value: object) -> object:
    """A field as SQLite stores it: phases by name, the part plan as JSON."""
    if isinstance(value, Phase):
        return value.value
    if isinstance(value, tuple) and all(isinstance(part, PlannedPart) for part in value):
        return json.dumps([[p.number, p.offset, p.size, p.url] for p in value])
    if isinstance(value, dict):  # the parts S3 has: number -> ETag
        return json.dumps({str(number): etag for number, etag in value.items()}, sort_keys=True)
    return value
