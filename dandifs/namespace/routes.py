"""The path grammar: a namespace path becomes a route, or is refused before any I/O.

```
/                                     Root
/dandisets/                           DandisetsFolder
/dandisets/<id>/                      DandisetFolder
/dandisets/<id>/releases/             ReleasesFolder (accepted, not listed)
/dandisets/<id>/<version>/            VersionRoot        <version>: draft | latest | 0.YYMMDD.HHMM
/dandisets/<id>/releases/<v>/         VersionRoot (alias; <v> is a version id)
/dandisets/<id>/<version>/dandiset.yaml   DandisetYaml
/dandisets/<id>/<version>/<path>      InVersion (a folder, an asset, or inside a Zarr asset)
```

Paths are case-sensitive.  A trailing slash is accepted and ignored: whether something is a
folder is the archive's answer, not the caller's spelling.  Every refusal is an
`InvalidPath` (a `NotFound`) whose message says what is wrong with the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from dandifs.errors import InvalidPath
from dandifs.namespace import names


@dataclass(frozen=True)
class VersionAddress:
    """How a path names a version: `draft`, `latest` or a version id, directly or via `releases/`."""

    dandiset_id: str
    version: str
    via_releases: bool = False

    @property
    def is_draft(self) -> bool:
        return self.version == names.DRAFT

    @property
    def is_latest(self) -> bool:
        return self.version == names.LATEST

    @property
    def root_path(self) -> str:
        """The namespace path of this version's root folder (no trailing slash)."""
        middle = f"{names.RELEASES}/{self.version}" if self.via_releases else self.version
        return f"/{names.DANDISETS}/{self.dandiset_id}/{middle}"

    def path_of(self, relative: str) -> str:
        """The namespace path of `relative` (a path inside the version; "" is the root)."""
        return f"{self.root_path}/{relative}" if relative else self.root_path


@dataclass(frozen=True)
class Root:
    path: str = "/"


@dataclass(frozen=True)
class DandisetsFolder:
    path: str = f"/{names.DANDISETS}"


@dataclass(frozen=True)
class DandisetFolder:
    dandiset_id: str

    @property
    def path(self) -> str:
        return f"/{names.DANDISETS}/{self.dandiset_id}"


@dataclass(frozen=True)
class ReleasesFolder:
    dandiset_id: str

    @property
    def path(self) -> str:
        return f"/{names.DANDISETS}/{self.dandiset_id}/{names.RELEASES}"


@dataclass(frozen=True)
class VersionRoot:
    address: VersionAddress

    @property
    def path(self) -> str:
        return self.address.root_path


@dataclass(frozen=True)
class DandisetYaml:
    address: VersionAddress

    @property
    def path(self) -> str:
        return self.address.path_of(names.DANDISET_YAML)


@dataclass(frozen=True)
class InVersion:
    """A path inside a version: `relative` is e.g. `sub-01/sub-01.nwb` (never empty)."""

    address: VersionAddress
    relative: str

    @property
    def path(self) -> str:
        return self.address.path_of(self.relative)

    @property
    def segments(self) -> list[str]:
        return self.relative.split("/")

    @property
    def never_exists(self) -> bool:
        """True if some segment is a name no archive object has (`.git`, `.DS_Store`, ...)."""
        return any(names.never_exists_remotely(segment) for segment in self.segments)

    def zarr_splits(self) -> list[tuple[str, str]]:
        """Where this path may enter a Zarr asset: `(zarr asset path, key inside it)` pairs.

        One pair per non-final segment named like a Zarr (`*.zarr`, `*.ngff`), shallowest
        first.  They are candidates only: a folder may be named `x.zarr` without being a
        Zarr, so the resolver checks each against the archive's listing.
        """
        segments = self.segments
        return [
            ("/".join(segments[: i + 1]), "/".join(segments[i + 1 :]))
            for i, segment in enumerate(segments[:-1])
            if names.is_zarr_name(segment)
        ]


Route = Union[Root, DandisetsFolder, DandisetFolder, ReleasesFolder, VersionRoot, DandisetYaml, InVersion]


def split_segments(path: str) -> list[str]:
    """The segments of an absolute path, checked for everything that needs no I/O.

    Refuses: a non-absolute path, NUL, a path over `MAX_PATH_BYTES`, empty segments (`//`;
    one trailing slash is fine), `.` and `..`, and names over `MAX_NAME_BYTES`.
    """
    if not isinstance(path, str):
        raise InvalidPath(f"a path must be text, not {type(path).__name__}")
    if "\x00" in path:
        raise InvalidPath(f"path {path!r} contains a NUL character")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPath(f"path {path!r} is not valid Unicode text") from None
    if size > names.MAX_PATH_BYTES:
        raise InvalidPath(f"path is {size} bytes long; the limit is {names.MAX_PATH_BYTES}")
    if not path.startswith("/"):
        raise InvalidPath(f"path {path!r} is not absolute (it must start with '/')")
    body = path[1:]
    if body.endswith("/"):
        body = body[:-1]
    if not body:
        if path != "/":
            raise InvalidPath(f"path {path!r} has an empty segment ('//')")
        return []
    segments = body.split("/")
    for segment in segments:
        if segment == "":
            raise InvalidPath(f"path {path!r} has an empty segment ('//')")
        if segment in (".", ".."):
            raise InvalidPath(f"path {path!r} contains {segment!r}; only plain names are allowed")
        length = len(segment.encode("utf-8"))
        if length > names.MAX_NAME_BYTES:
            raise InvalidPath(
                f"name {segment[:40]!r}... is {length} bytes long; the limit is {names.MAX_NAME_BYTES}"
            )
    return segments


def parse_path(path: str) -> Route:
    """The route a namespace path names; `InvalidPath` (with the reason) if it names none."""
    segments = split_segments(path)
    if not segments:
        return Root()
    if segments[0] != names.DANDISETS:
        raise InvalidPath(f"nothing is at /{segments[0]}: the root holds only /{names.DANDISETS}/")
    if len(segments) == 1:
        return DandisetsFolder()
    dandiset_id = segments[1]
    if not names.is_dandiset_id(dandiset_id):
        raise InvalidPath(f"{dandiset_id!r} is not a dandiset id (dandiset ids are six digits)")
    if len(segments) == 2:
        return DandisetFolder(dandiset_id)
    rest = segments[2:]
    if rest[0] == names.RELEASES:
        if len(rest) == 1:
            return ReleasesFolder(dandiset_id)
        if not names.is_version_id(rest[1]):
            raise InvalidPath(
                f"{rest[1]!r} is not a published version id (expected 0.YYMMDD.HHMM)"
            )
        address = VersionAddress(dandiset_id, rest[1], via_releases=True)
        inside = rest[2:]
    else:
        version = rest[0]
        if version not in (names.DRAFT, names.LATEST) and not names.is_version_id(version):
            raise InvalidPath(
                f"{version!r} is not a version of dandiset {dandiset_id}"
                " (expected draft, latest or a version id 0.YYMMDD.HHMM)"
            )
        address = VersionAddress(dandiset_id, version)
        inside = rest[1:]
    if not inside:
        return VersionRoot(address)
    if inside == [names.DANDISET_YAML]:
        return DandisetYaml(address)
    return InVersion(address, "/".join(inside))


def parent_path(path: str) -> str:
    """The parent of a canonical path (`/a/b` -> `/a`, `/a` -> `/`)."""
    head = path.rstrip("/").rpartition("/")[0]
    return head or "/"


def join_path(folder: str, name: str) -> str:
    """`folder` + `name` with exactly one slash between them."""
    return f"{folder.rstrip('/')}/{name}"
