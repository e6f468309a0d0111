"""A bounded SQLite file of opaque answers, shared by every process that opens it.

Rows are keyed by (archive API URL, dandiset, version, query) and hold bytes this module
never interprets.  SQLite gives what a cache shared by several mounts needs: atomic
writes, readers that never see half a row, and locking across processes (WAL mode, so
readers do not wait for a writer).

The file is a cache, so no failure of it may fail a lookup: a busy or unwritable database
reads as a miss, and a damaged one is deleted and rebuilt (with a log line) rather than
repaired.  Its size is bounded: once the rows exceed `max_bytes`, the least recently used
are deleted down to three quarters of it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("dandifs.resolve.answers")

AnswerKey = tuple[str, str, str, str]
"""(archive API URL, dandiset id, version, query)."""

T = TypeVar("T")

SCHEMA_VERSION = 1
#: How long a busy database (another process writing) is waited for before giving up.
BUSY_TIMEOUT_SECONDS = 2.0
#: A row's "last used" time is refreshed at most this often: reads stay reads.
TOUCH_INTERVAL_SECONDS = 3600.0
#: Pruning deletes down to this share of `max_bytes`, so it does not run on every write.
PRUNE_TO = 0.75
#: A single answer larger than this share of `max_bytes` is not kept at all.
LARGEST_SHARE = 0.125

_SCHEMA = (
    """CREATE TABLE answers (
    archive TEXT NOT NULL,
    dandiset TEXT NOT NULL,
    version TEXT NOT NULL,
    query TEXT NOT NULL,
    body BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (archive, dandiset, version, query)
    )""",
    "CREATE INDEX answers_by_use ON answers (used)",
)


class AnswerDB:
    """Thread-safe; every method may block on disk I/O (call it from a worker thread)."""

    def __init__(
        self, path: Path, *, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._disabled = False
        self._warned = False

    # --- reading and writing -------------------------------------------------------------------

    def get(self, key: AnswerKey) -> bytes | None:
        """The bytes kept for `key`, or None."""

        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT body, used FROM answers"
                " WHERE archive = ? AND dandiset = ? AND version = ? AND query = ?",
                key,
            ).fetchone()
            if row is None:
                return None
            body, used = row
            now = self._clock()
            if now - used > TOUCH_INTERVAL_SECONDS:
                try:
                    db.execute(
                        "UPDATE answers SET used = ?"
                        " WHERE archive = ? AND dandiset = ? AND version = ? AND query = ?",
                        (now, *key),
                    )
                except sqlite3.OperationalError:
                    pass  # another process is writing: the answer is read all the same
            return bytes(body)

        return self._run(read, None)

    def put(self, key: AnswerKey, body: bytes) -> None:
        """Keep `body` for `key` (replacing what was there), then prune if over the bound."""
        size = len(body) + sum(len(part) for part in key)
        if size > self.max_bytes * LARGEST_SHARE:
            log.debug("answer %s (%d bytes) is too large to keep", key, size)
            return

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):  # the row and the pruning it makes necessary, at once
                db.execute(
                    "INSERT OR REPLACE INTO answers"
                    " (archive, dandiset, version, query, body, bytes, used)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*key, body, size, self._clock()),
                )
                self._prune(db)

        self._run(write, None)

    def forget(self, key: AnswerKey) -> None:
        """Delete the row for `key` (its bytes turned out to be unusable)."""

        def delete(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM answers"
                " WHERE archive = ? AND dandiset = ? AND version = ? AND query = ?",
                key,
            )

        self._run(delete, None)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- bookkeeping ---------------------------------------------------------------------------

    def total_bytes(self) -> int:
        return self._run(lambda db: _count(db, "SUM(bytes)"), 0)

    def row_count(self) -> int:
        return self._run(lambda db: _count(db, "COUNT(*)"), 0)

    def _prune(self, db: sqlite3.Connection) -> None:
        """Delete the least recently used rows once the total exceeds `max_bytes`."""
        total = _count(db, "SUM(bytes)")
        if total <= self.max_bytes:
            return
        excess = total - int(self.max_bytes * PRUNE_TO)
        victims = []
        oldest_first = db.execute("SELECT rowid, bytes FROM answers ORDER BY used")
        for rowid, size in oldest_first:
            victims.append((rowid,))
            excess -= size
            if excess <= 0:
                break
        oldest_first.close()
        db.executemany("DELETE FROM answers WHERE rowid = ?", victims)
        log.info("metadata store over %d bytes: %d answers pruned", self.max_bytes, len(victims))

    # --- opening, and surviving a damaged file -------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection], T], fallback: T) -> T:
        """`work` on the open database; `fallback` if the database cannot answer."""
        with self._lock:
            if self._disabled:
                return fallback
            try:
                return work(self._connection())
            except (sqlite3.OperationalError, OSError) as exc:
                # Busy (another process holds the write lock), disk full, read-only folder:
                # this lookup goes to the archive, the next tries again.
                level = logging.DEBUG if self._warned else logging.WARNING
                log.log(level, "metadata store %s not usable just now: %s", self.path, exc)
                self._warned = True
                return fallback
            except sqlite3.DatabaseError as exc:
                self._rebuild(exc)
                return fallback

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # a cache: losing the last write is fine
            if _schema_version(db) != SCHEMA_VERSION:
                with _transaction(db):
                    if _schema_version(db) != SCHEMA_VERSION:  # not made meanwhile by another
                        if _schema_version(db) != 0:
                            log.info("metadata store %s has an older layout: emptied", self.path)
                        db.execute("DROP TABLE IF EXISTS answers")
                        for statement in _SCHEMA:
                            db.execute(statement)
                        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        except BaseException:
            db.close()
            raise
        return db

    def _rebuild(self, reason: Exception) -> None:
        """Throw the damaged file away and start an empty one; give up if that fails too."""
        log.warning(
            "metadata store %s is damaged (%s): discarded, starting afresh", self.path, reason
        )
        if self._db is not None:
            self._db.close()
            self._db = None
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.Error) as exc:
            log.warning(
                "metadata store %s cannot be rebuilt (%s): not keeping metadata", self.path, exc
            )
            self._disabled = True


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock at once (no upgrade deadlock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _count(db: sqlite3.Connection, aggregate: str) -> int:
    return int(db.execute(f"SELECT COALESCE({aggregate}, 0) FROM answers").fetchone()[0])
