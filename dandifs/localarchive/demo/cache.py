"""Generate a part's files once, then reuse them.

A part is written into a hidden staging directory, stamped, and renamed into place in one
step, so a crash leaves either the previous complete tree or none (plus staging debris that
the next run removes).  The stamp records the part's version: a tree from another version of
the generator is replaced.  An exclusive lock lets concurrent processes (test sessions, a
local archive starting up) share one cache without writing the same files twice.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .blueprint import Part

STAMP = ".generated.json"
_GENERATOR = "dandifs.localarchive.demo"


def ensure_generated(cache_dir: Path, part: Part) -> Path:
    """The directory holding `part`'s files under `cache_dir`, generating them if needed."""
    target = cache_dir / part.name
    if _is_complete(target, part):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / f".{part.name}.lock"):
        if _is_complete(target, part):  # another process finished it while we waited
            return target
        _remove_debris(cache_dir, part)
        staging = Path(tempfile.mkdtemp(prefix=f".{part.name}.partial-", dir=cache_dir))
        staging.chmod(0o755)  # mkdtemp makes it private; the tree is shared data
        try:
            _generate(staging, part)
            if target.exists():
                graveyard = Path(tempfile.mkdtemp(prefix=f".{part.name}.stale-", dir=cache_dir))
                target.rename(graveyard / part.name)
            staging.rename(target)
        finally:
            _remove_debris(cache_dir, part)
    return target


def _generate(root: Path, part: Part) -> None:
    for source in part.sources():
        destination = root / source.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        source.write(destination)
    (root / STAMP).write_text(json.dumps(_stamp(part), indent=1) + "\n", encoding="utf-8")


def _stamp(part: Part) -> dict:
    return {"generator": _GENERATOR, "part": part.name, "version": part.version}


def _is_complete(target: Path, part: Part) -> bool:
    """Stamped by this version, and nothing it lists has gone missing since."""
    try:
        stamp = json.loads((target / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp != _stamp(part):
        return False
    return all((target / source.name).exists() for source in part.sources())


def _remove_debris(cache_dir: Path, part: Part) -> None:
    """Staging trees of interrupted runs and trees replaced by a newer version."""
    for pattern in (f".{part.name}.partial-*", f".{part.name}.stale-*"):
        for debris in cache_dir.glob(pattern):
            shutil.rmtree(debris, ignore_errors=True)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
