"""Rules about single names: which are valid, which never exist remotely, which are Zarrs."""

from __future__ import annotations

import re

MAX_NAME_BYTES = 255
"""The longest name (one path segment) in UTF-8 bytes, as on Linux (NAME_MAX)."""

MAX_PATH_BYTES = 4096
"""The longest whole path in UTF-8 bytes, as on Linux (PATH_MAX)."""

ZARR_SUFFIXES = (".zarr", ".ngff")
"""Asset names with these endings are Zarr stores (matched case-sensitively, as the archive does)."""

DANDISET_ID = re.compile(r"[0-9]{6}")
VERSION_ID = re.compile(r"0\.[0-9]{6}\.[0-9]{4}")

DRAFT = "draft"
LATEST = "latest"
RELEASES = "releases"
DANDISETS = "dandisets"
DANDISET_YAML = "dandiset.yaml"

# Metadata files that file managers, shells and version-control tools probe for in every
# folder they open.  No DANDI asset is ever called this, so answering "not found" without
# asking the archive saves a round trip per probe (a Finder window opens ~10 of them).
_NEVER_REMOTE = frozenset(
    name.casefold()
    for name in (
        ".git",
        ".svn",
        ".bzr",
        ".hg",
        ".nols",
        ".DS_Store",
        ".Spotlight-V100",
        ".Trashes",
        ".fseventsd",
        ".TemporaryItems",
        ".metadata_never_index",
        ".localized",
        ".directory",
        ".xdg-volume-info",
        ".Trash",
        "desktop.ini",
        "Thumbs.db",
        "autorun.inf",
    )
)


def never_exists_remotely(name: str) -> bool:
    """True for names that no archive object ever has (`.git`, `.DS_Store`, `._*`, ...).

    Comparison ignores case, because the clients that probe for them (Windows, macOS) do.
    """
    folded = name.casefold()
    return (
        folded in _NEVER_REMOTE
        or folded.startswith("._")
        or folded.startswith(".trash-")
    )


def is_zarr_name(name: str) -> bool:
    """True if an asset with this name is expected to be a Zarr store."""
    return name.endswith(ZARR_SUFFIXES)


def is_dandiset_id(text: str) -> bool:
    return DANDISET_ID.fullmatch(text) is not None


def is_version_id(text: str) -> bool:
    """True for a published version identifier, `0.YYMMDD.HHMM` (never `draft`)."""
    return VERSION_ID.fullmatch(text) is not None
