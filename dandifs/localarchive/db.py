"""The archive's state in SQLite: schema and a serialized connection.

One connection guarded by a lock is enough for a demo/test archive and keeps every
multi-statement operation atomic without thinking about SQLite's locking modes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    token TEXT UNIQUE,
    status TEXT NOT NULL DEFAULT 'APPROVED',
    admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dandisets (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    embargo_status TEXT NOT NULL DEFAULT 'OPEN',
    embargo_end_date TEXT
);
CREATE TABLE IF NOT EXISTS owners (
    dandiset_id INTEGER NOT NULL REFERENCES dandisets(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (dandiset_id, user_id)
);
CREATE TABLE IF NOT EXISTS stars (
    dandiset_id INTEGER NOT NULL REFERENCES dandisets(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created TEXT NOT NULL,
    PRIMARY KEY (dandiset_id, user_id)
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    dandiset_id INTEGER NOT NULL REFERENCES dandisets(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    validation_errors TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    UNIQUE (dandiset_id, version)
);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    blob_id TEXT NOT NULL UNIQUE,
    etag TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    size INTEGER NOT NULL,
    embargoed INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_sha256 ON blobs (sha256);
CREATE TABLE IF NOT EXISTS zarrs (
    id INTEGER PRIMARY KEY,
    zarr_id TEXT NOT NULL UNIQUE,
    dandiset_id INTEGER NOT NULL REFERENCES dandisets(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'Pending',
    checksum TEXT,
    file_count INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    embargoed INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    UNIQUE (dandiset_id, name)
);
CREATE TABLE IF NOT EXISTS assets (
    id INTEGER PRIMARY KEY,
    asset_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    blob INTEGER REFERENCES blobs(id),
    zarr INTEGER REFERENCES zarrs(id) ON DELETE SET NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'Pending',
    validation_errors TEXT NOT NULL DEFAULT '[]',
    published INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_status ON assets (status);
CREATE INDEX IF NOT EXISTS assets_zarr ON assets (zarr);
CREATE TABLE IF NOT EXISTS version_assets (
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    asset INTEGER NOT NULL REFERENCES assets(id),
    path TEXT NOT NULL,
    PRIMARY KEY (version_id, asset),
    UNIQUE (version_id, path)
);
CREATE INDEX IF NOT EXISTS version_assets_path_nocase
    ON version_assets (version_id, path COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    dandiset_id INTEGER NOT NULL REFERENCES dandisets(id) ON DELETE CASCADE,
    multipart_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    embargoed INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
"""

Row = sqlite3.Row


class Database:
    """A single SQLite connection shared by all threads, one transaction at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """Run a block atomically; nested blocks join the outer transaction."""
        with self._lock:
            outermost = self._depth == 0
            if outermost:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outermost:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outermost:
                self._conn.execute("COMMIT")

    def one(self, sql: str, params: tuple | dict = ()) -> Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | dict = ()) -> list[Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
