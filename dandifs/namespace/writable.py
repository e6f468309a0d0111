"""Which paths can ever be written: inside a draft, nothing else (design §4).

The rule on the path alone, for every front end (the WebDAV server refuses before it
opens a caller's core; the core refuses before it checks the token and the name)."""

from __future__ import annotations

from dandifs.errors import InvalidPath
from dandifs.namespace.routes import DandisetYaml, InVersion, VersionRoot, parse_path


def is_in_draft(path: str) -> bool:
    """A draft's folder or anything in it (where WebDAV advertises locking)."""
    try:
        route = parse_path(path)
    except InvalidPath:
        return False
    return (
        isinstance(route, (VersionRoot, InVersion))
        and route.address.is_draft
        and not route.address.via_releases
    )


def read_only_reason(path: str) -> str | None:
    """Why `path` can never be written, in words for the person who tried; None inside a
    draft."""
    try:
        route = parse_path(path)
    except InvalidPath as exc:
        return f"{path} is read-only: only /dandisets/<id>/draft/ can be written ({exc})"
    if isinstance(route, InVersion) and route.address.is_draft and not route.address.via_releases:
        return None
    if isinstance(route, DandisetYaml):
        return (
            f"{path} is read-only: dandiset.yaml is rendered from the dandiset's metadata; "
            "change the metadata on the archive's web site instead"
        )
    if isinstance(route, VersionRoot) and route.address.is_draft:
        return f"{path} is read-only: the draft folder itself cannot change; write inside it"
    return (
        f"{path} is read-only: only /dandisets/<id>/draft/ can be written; "
        "published versions never change"
    )
