"""The archive's rules for asset paths, checked before any byte is spooled or sent.

The archive refuses a new asset (400) whose path breaks these rules (`dandi-api.md` §6.3):
at most 512 characters; relative (no leading `/`); folder and file names joined by single
`/`, none empty; each name made of ASCII letters, digits, whitespace and
``( ) , & # + ~ = - _ [ ] \\ ^ ` ``, with a `.` allowed only before one of those (so
`.hidden` and `a.tar.gz` are fine, `.`, `..`, `a..b` and `a.` are not).  Checking them here
turns a write the archive would refuse into an immediate, explained error instead of an
upload that fails at its last step.

The rules are the archive's, no stricter: whitespace includes tabs and other Unicode
spaces because the archive accepts them, and dandi-cli uploads such names.  Names that
dandifs should keep local instead of uploading (editor swap files, `.DS_Store`) are valid
asset paths; that policy is the upload pipeline's, not a path rule.
"""

from __future__ import annotations

import string

from dandifs.errors import NameRefused

MAX_ASSET_PATH_CHARS = 512
"""The archive's limit on the length of an asset path, in characters."""

_PUNCTUATION = "()[],&#+~=-_^`\\"
_ALLOWED = frozenset(string.ascii_letters + string.digits + _PUNCTUATION)
_SHOWN_ALLOWED = "letters A-Z a-z, digits 0-9, spaces and ( ) [ ] , & # + ~ = - _ ^ ` \\"


def _allowed(char: str) -> bool:
    return char in _ALLOWED or char.isspace()


def check_asset_path(path: str) -> None:
    """Raise `NameRefused` if the archive would refuse `path` (relative to the dandiset
    root) as the path of a new asset; the message says what to change.  A folder made in a
    draft is checked the same way, since its path becomes part of its files' paths."""
    if not path:
        raise NameRefused("an asset path cannot be empty")
    if path.startswith("/"):
        raise NameRefused(
            f"{path!r}: an asset path is relative to the dandiset and must not begin with '/'"
        )
    if len(path) > MAX_ASSET_PATH_CHARS:
        raise NameRefused(
            f"{path[:40]!r}...: the path is {len(path)} characters long; the archive takes "
            f"at most {MAX_ASSET_PATH_CHARS}: use shorter folder or file names"
        )
    if path.endswith("/"):
        raise NameRefused(f"{path!r}: an asset path must not end with '/'")
    for name in path.split("/"):
        _check_name(path, name)


def _check_name(path: str, name: str) -> None:
    if not name:
        raise NameRefused(f"{path!r}: a folder name is empty ('//'); use a single '/'")
    if name in (".", ".."):
        raise NameRefused(
            f"{path!r}: '{name}' cannot be a folder or file name in the archive; "
            "give the full path from the dandiset root"
        )
    for char in name:
        if char != "." and not _allowed(char):
            raise NameRefused(
                f"{path!r}: the archive does not allow {char!r} (U+{ord(char):04X}) in asset "
                f"paths; use {_SHOWN_ALLOWED}, and '.' between them"
            )
    if ".." in name:
        raise NameRefused(f"{path!r}: {name!r} has two dots in a row, which the archive refuses")
    if name.endswith("."):
        raise NameRefused(f"{path!r}: {name!r} ends with '.', which the archive refuses")
