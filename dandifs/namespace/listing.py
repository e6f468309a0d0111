"""Listing and stat rules shared by both front ends: fixed folders, `latest`, mode bits.

The archive decides what is inside a version; everything above a version root is fixed by
the namespace and decided here, so the FUSE mount and the WebDAV server show the same tree.
"""

from __future__ import annotations

import stat
from typing import Iterable

from dandifs.namespace import names

ROOT_CHILDREN: tuple[str, ...] = (names.DANDISETS,)


def dandiset_children(published_versions: Iterable[str]) -> list[str]:
    """The names inside `/dandisets/<id>/`, in listing order.

    `draft` always; `latest` and one folder per published version when there are any.
    `releases/` is accepted as a path but not listed, so `find` and `wget -r` do not walk
    every release twice.
    """
    published = sorted(set(published_versions))
    return [names.DRAFT, *([names.LATEST] if published else []), *published]


def latest_target(version_id: str) -> str:
    """Where the `latest` symlink points: the sibling folder of that version (relative)."""
    return version_id


# Mode bits: read-only everywhere except drafts opened with a token, where the owner may
# write.  Execute bits on folders only (they are for traversal).
READ_ONLY_FILE = 0o444
READ_ONLY_FOLDER = 0o555
WRITABLE_FILE = 0o644
WRITABLE_FOLDER = 0o755
SYMLINK = 0o777


def file_mode(writable: bool) -> int:
    return stat.S_IFREG | (WRITABLE_FILE if writable else READ_ONLY_FILE)


def folder_mode(writable: bool) -> int:
    return stat.S_IFDIR | (WRITABLE_FOLDER if writable else READ_ONLY_FOLDER)


def symlink_mode() -> int:
    return stat.S_IFLNK | SYMLINK

