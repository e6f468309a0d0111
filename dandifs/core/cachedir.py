"""What a cache directory holds, and emptying it: for `dandifs cache`, beside running mounts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dandifs.cache.disk import stores_in
from dandifs.upload.journal import JOURNAL_FILE, Journal, UploadRecord
from dandifs.errors import UploadFailed
from dandifs.upload.spool import SPOOL_FOLDER, Spool, UploadLock

_NO_BOUND = 1 << 62  # a store opened only to be read or cleared never evicts


def cache_usage(base: Path) -> dict[str, int]:
    """Objects and bytes of published blocks on disk, and bytes of kept metadata."""
    objects = blocks = 0
    for store in stores_in(base / "blocks", capacity=_NO_BOUND):
        for stored in store.scan():
            objects += 1
            blocks += stored.allocated
    return {"objects": objects, "block_bytes": blocks, "metadata_bytes": _bytes_under(base / "metadata")}


def clear_cache(base: Path) -> dict[str, int]:
    """Remove every cached block and kept metadata answer; what is being written at this
    moment by a running mount stays (it is in use), everything else goes."""
    objects = freed = 0
    for store in stores_in(base / "blocks", capacity=_NO_BOUND):
        removed, size = store.clear()
        objects += removed
        freed += size
    metadata = _bytes_under(base / "metadata")
    shutil.rmtree(base / "metadata", ignore_errors=True)
    return {"objects": objects, "block_bytes": freed, "metadata_bytes": metadata}


def uploads_dir(base: Path) -> Path:
    """Where a cache directory keeps files written into drafts until the archive has them."""
    return base / "uploads"


def journalled_uploads(base: Path) -> list[UploadRecord]:
    """Every upload the cache directory's journal holds that is not done, oldest first."""
    journal_path = uploads_dir(base) / JOURNAL_FILE
    if not journal_path.exists():
        return []
    journal = Journal(journal_path)
    try:
        return [record for record in journal.all() if record.phase.value != "done"]
    finally:
        journal.close()


def discard_journalled_upload(base: Path, record_id: str) -> UploadRecord:
    """Give up an upload: its row and spooled bytes go (KeyError if there is none;
    UploadFailed while a running process sends it)."""
    journal = Journal(uploads_dir(base) / JOURNAL_FILE)
    try:
        record = journal.get(record_id)
        lock = UploadLock.take(Path(record.spool))
        if lock is None and Path(record.spool).exists():
            raise UploadFailed(
                f"{record.path}: a running mount or server is sending it now; stop it first"
            )
        Spool(uploads_dir(base) / SPOOL_FOLDER).discard(Path(record.spool))
        journal.remove(record_id)
        if lock is not None:
            lock.release()
        return record
    finally:
        journal.close()


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total
