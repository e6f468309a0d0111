"""One behaviour suite, run through both front ends: a real `dandifs mount` (FUSE) and a real
`dandifs serve` (WebDAV), over the session's local archive.

Each case is written once against a small adapter with the same methods for both front ends
(stat, list, read a byte range, an asset's metadata, the error a path gives as a
front-end-neutral kind) and is held to the archive itself: its API's asset records and the
bytes in its S3, fetched directly.  Where the front ends differ on purpose (a FUSE `latest`
is a symlink, a WebDAV one a folder), the case says so; docs/SEMANTICS.md describes the same.
"""

from __future__ import annotations

import errno
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import yaml

from fuse_support import MountProcess, require_fuse
from test_webdav_clients import Server, start_server, stop_server

DAV = "{DAV:}"
LARGE_NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
ZARR_PATH = "sub-mouse04/sub-mouse04_sample.ome.zarr"
EMBARGOED = "000003"
FRONT_ENDS = ("fuse", "webdav")


# -- what a case sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    kind: str  # "file" or "folder"
    size: int | None  # files only
    mtime: int | None  # whole seconds since the epoch (WebDAV dates have no finer resolution)
    ctime: int | None  # None: the front end shows no time (WebDAV: the archive gives none)


class FrontEnd(Protocol):
    name: str

    def stat(self, path: str) -> Stat: ...
    def list(self, path: str) -> list[str]: ...
    def read(self, path: str, offset: int, size: int) -> bytes: ...
    def metadata(self, path: str) -> dict[str, Any]: ...
    def asset_id(self, path: str) -> str: ...
    def error(self, path: str) -> str | None: ...
    def write_error(self, path: str) -> str | None: ...
    def is_symlink(self, path: str) -> bool: ...


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


FUSE_KINDS = {
    errno.ENOENT: "not-found", errno.ENOTDIR: "not-a-directory",
    errno.EISDIR: "is-a-directory", errno.EROFS: "read-only", errno.EACCES: "permission-denied",
    errno.ENAMETOOLONG: "name-too-long",
}


class Fuse:
    name = "fuse"

    def __init__(self, mountpoint: Path) -> None:
        self.root = mountpoint

    def _local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def stat(self, path: str) -> Stat:
        info = os.stat(self._local(path))
        folder = os.path.isdir(self._local(path))
        return Stat("folder" if folder else "file", None if folder else info.st_size,
                    int(info.st_mtime), int(info.st_ctime))

    def is_symlink(self, path: str) -> bool:
        return self._local(path).is_symlink()

    def list(self, path: str) -> list[str]:
        return sorted(os.listdir(self._local(path)))

    def read(self, path: str, offset: int, size: int) -> bytes:
        with open(self._local(path), "rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    def metadata(self, path: str) -> dict[str, Any]:
        return json.loads(os.getxattr(self._local(path), "user.dandi.metadata"))

    def asset_id(self, path: str) -> str:
        return os.getxattr(self._local(path), "user.dandi.asset_id").decode()

    def _kind(self, action: Callable[[], object]) -> str | None:
        try:
            action()
        except OSError as failure:
            return FUSE_KINDS.get(failure.errno, errno.errorcode.get(failure.errno or 0))
        return None

    def error(self, path: str) -> str | None:
        """What opening `path` for reading gives (a folder is read as a file would be)."""
        return self._kind(lambda: self.read(path, 0, 1))

    def write_error(self, path: str) -> str | None:
        return self._kind(lambda: open(self._local(path), "wb").close())


class WebDAV:
    name = "webdav"

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(auth=("dandi", token) if token else None, timeout=60)

    def _url(self, path: str) -> str:
        return self.url + quote(path)

    def _propfind(self, path: str, depth: str) -> httpx.Response:
        return self.http.request("PROPFIND", self._url(path), headers={"Depth": depth})

    @staticmethod
    def _stat_of(response: ET.Element) -> Stat:
        prop = response.find(f"{DAV}propstat/{DAV}prop")
        assert prop is not None
        folder = prop.find(f"{DAV}resourcetype/{DAV}collection") is not None
        length = prop.findtext(f"{DAV}getcontentlength")
        modified = prop.findtext(f"{DAV}getlastmodified")
        created = prop.findtext(f"{DAV}creationdate")
        return Stat(
            "folder" if folder else "file",
            None if folder or length is None else int(length),
            seconds(parsedate_to_datetime(modified)) if modified else None,
            seconds(datetime.fromisoformat(created.replace("Z", "+00:00"))) if created else None,
        )

    def stat(self, path: str) -> Stat:
        answer = self._propfind(path, "0")
        assert answer.status_code == 207, (path, answer.status_code, answer.text[-300:])
        response = ET.fromstring(answer.content).find(f"{DAV}response")
        assert response is not None
        return self._stat_of(response)

    def is_symlink(self, path: str) -> bool:
        return False  # WebDAV has no links: every name is a file or a folder

    def list(self, path: str) -> list[str]:
        answer = self._propfind(path.rstrip("/") + "/", "1")
        assert answer.status_code == 207, (path, answer.status_code)
        hrefs = [unquote(urlsplit(r.findtext(f"{DAV}href") or "").path).rstrip("/")
                 for r in ET.fromstring(answer.content).findall(f"{DAV}response")]
        here = path.rstrip("/")
        return sorted(href.rsplit("/", 1)[-1] for href in hrefs if href != here)

    def read(self, path: str, offset: int, size: int) -> bytes:
        """A ranged GET as clients send it, following the redirect to S3."""
        answer = self.http.get(self._url(path), follow_redirects=True,
                               headers={"Range": f"bytes={offset}-{offset + size - 1}"})
        assert answer.status_code == 206, (path, answer.status_code)
        return answer.content

    def _view(self, path: str) -> dict[str, Any]:
        answer = self.http.get(self.url + "/.metadata" + quote(path))
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.json()

    def metadata(self, path: str) -> dict[str, Any]:
        return self._view(path)["metadata"]

    def asset_id(self, path: str) -> str:
        return self._view(path)["entry"]["asset_id"]

    @staticmethod
    def _kind(answer: httpx.Response) -> str | None:
        if answer.status_code < 400:
            return None
        if answer.status_code in (403, 405) and "read-only" in answer.text:
            return "read-only"
        return {400: "bad-path", 401: "needs-credentials", 403: "forbidden",
                404: "not-found", 409: "conflict"}.get(answer.status_code, str(answer.status_code))

    def error(self, path: str) -> str | None:
        return self._kind(self.http.get(self._url(path)))

    def write_error(self, path: str) -> str | None:
        return self._kind(self.http.put(self._url(path), content=b"new bytes"))


# -- the processes and the archive's own answers ------------------------------------------------


@pytest.fixture(scope="module")
def published(local_archive) -> str:
    record = httpx.get(f"{local_archive.api_url}/dandisets/000001/", timeout=30).json()
    return record["most_recent_published_version"]["version"]


def start_mount(local_archive, base: Path, token: str = "") -> MountProcess:
    require_fuse()
    return MountProcess(base / "mnt", local_archive.api_url, base / "cache",
                        env={"DANDI_API_KEY": token}).start()


@pytest.fixture(scope="module")
def mount(local_archive, tmp_path_factory) -> Iterator[MountProcess]:
    process = start_mount(local_archive, tmp_path_factory.mktemp("behaviour-fuse"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def server(local_archive, tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("behaviour-webdav"), local_archive.api_url)
    yield running
    stop_server(running)


@pytest.fixture(params=FRONT_ENDS)
def frontend(request) -> FrontEnd:
    if request.param == "fuse":
        return Fuse(request.getfixturevalue("mount").mountpoint)
    return WebDAV(request.getfixturevalue("server").url)


@pytest.fixture(scope="module")
def token_mount(local_archive, tmp_path_factory) -> Iterator[MountProcess]:
    base = tmp_path_factory.mktemp("behaviour-fuse-token")
    process = start_mount(local_archive, base, local_archive.token)
    yield process
    process.stop()


def with_token(frontend: FrontEnd, request, token: str) -> FrontEnd:
    """The same front end as seen by the dandiset's owner."""
    if frontend.name == "fuse":
        return Fuse(request.getfixturevalue("token_mount").mountpoint)
    return WebDAV(request.getfixturevalue("server").url, token)


_RECORDS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def assets(local_archive, dandiset: str, version: str) -> dict[str, dict[str, Any]]:
    """The archive API's asset records of a version, by path (asked as the demo owner)."""
    key = (dandiset, version)
    if key not in _RECORDS:
        url = f"{local_archive.api_url}/dandisets/{dandiset}/versions/{version}/assets/"
        owner = {"Authorization": f"token {local_archive.token}"}
        page = httpx.get(url, params={"page_size": 1000}, headers=owner, timeout=30).json()
        assert page["next"] is None
        _RECORDS[key] = {record["path"]: record for record in page["results"]}
    return _RECORDS[key]


def s3_location(local_archive, asset_id: str) -> str:
    """Where the archive's S3 holds an asset's bytes (a Zarr's: the prefix of its keys)."""
    record = httpx.get(f"{local_archive.api_url}/assets/{asset_id}/", timeout=30).json()
    return next(url for url in record["contentUrl"] if url.startswith(local_archive.s3_url))


def s3_bytes(url: str, offset: int, size: int) -> bytes:
    answer = httpx.get(url, headers={"Range": f"bytes={offset}-{offset + size - 1}"}, timeout=60)
    assert answer.status_code == 206
    return answer.content


def version_root(dandiset: str, version: str) -> str:
    return f"/dandisets/{dandiset}/{version}"


# -- the namespace ---------------------------------------------------------------------------


def test_the_top_of_the_tree(frontend) -> None:
    assert frontend.list("/") == ["dandisets"]
    assert frontend.stat("/").kind == frontend.stat("/dandisets").kind == "folder"
    assert frontend.list("/dandisets") == ["000001", "000002"]  # 000003 is embargoed


def test_a_dandiset_folder_holds_draft_latest_and_its_published_versions(
    frontend, published
) -> None:
    assert frontend.list("/dandisets/000001") == sorted(["draft", "latest", published])
    assert frontend.list("/dandisets/000002") == ["draft"]  # never published: no latest
    assert frontend.stat("/dandisets/000001/draft").kind == "folder"


def test_latest_is_the_newest_published_version(frontend, published) -> None:
    latest, release = "/dandisets/000001/latest", version_root("000001", published)
    assert frontend.stat(latest).kind == "folder"  # followed, in FUSE
    assert frontend.list(latest) == frontend.list(release)
    assert frontend.is_symlink(latest) == (frontend.name == "fuse")
    if frontend.name == "fuse":
        assert os.readlink(frontend.root / latest.lstrip("/")) == published


def test_releases_is_an_accepted_alias_that_is_never_listed(frontend, published) -> None:
    assert frontend.list("/dandisets/000001/releases") == [published]
    assert frontend.list(f"/dandisets/000001/releases/{published}") == frontend.list(
        version_root("000001", published))
    assert "releases" not in frontend.list("/dandisets/000001")


@pytest.mark.parametrize("dandiset", ["000001", "000002"])
def test_every_version_lists_its_assets_and_dandiset_yaml(
    frontend, local_archive, published, dandiset
) -> None:
    versions = ["draft", published] if dandiset == "000001" else ["draft"]
    for version in versions:
        tops = {path.split("/", 1)[0] for path in assets(local_archive, dandiset, version)}
        assert frontend.list(version_root(dandiset, version)) == sorted(tops | {"dandiset.yaml"})


def test_dandiset_yaml_is_the_version_metadata(frontend, local_archive, published) -> None:
    path = version_root("000001", published) + "/dandiset.yaml"
    info = frontend.stat(path)
    assert info.kind == "file" and info.size
    text = frontend.read(path, 0, info.size).decode()
    assert text.startswith("# DO NOT EDIT THIS FILE LOCALLY.")
    document = yaml.safe_load(text)
    api = httpx.get(f"{local_archive.api_url}/dandisets/000001/versions/{published}/",
                    timeout=30).json()
    assert document["identifier"] == api["identifier"] == "DANDI:000001"
    assert document["name"] == api["name"] and document["version"] == published


# -- sizes, times, metadata --------------------------------------------------------------------


@pytest.mark.parametrize("dandiset", ["000001", "000002"])
def test_sizes_and_times_are_the_asset_records(frontend, local_archive, published, dandiset) -> None:
    """A file's size is the asset's; its modification time the asset's `modified`, its
    change/creation time the asset's `created`. A Zarr asset is a folder."""
    version = published if dandiset == "000001" else "draft"
    for path, record in assets(local_archive, dandiset, version).items():
        info = frontend.stat(f"{version_root(dandiset, version)}/{path}")
        assert info.mtime == seconds(datetime.fromisoformat(record["modified"])), path
        assert info.ctime == seconds(datetime.fromisoformat(record["created"])), path
        if path.endswith(".zarr"):
            assert info.kind == "folder"
        else:
            assert (info.kind, info.size) == ("file", record["size"]), path


def test_an_assets_metadata_is_the_archives(frontend, local_archive, published) -> None:
    record = assets(local_archive, "000001", published)[LARGE_NWB]
    path = f"{version_root('000001', published)}/{LARGE_NWB}"
    assert frontend.asset_id(path) == record["asset_id"]
    metadata = frontend.metadata(path)
    assert metadata["identifier"] == record["asset_id"] and metadata["path"] == LARGE_NWB
    assert metadata["contentSize"] == record["size"]
    assert metadata["digest"]["dandi:dandi-etag"]


# -- bytes -----------------------------------------------------------------------------------


def test_ranges_of_a_blob_are_the_bytes_in_s3(frontend, local_archive, published) -> None:
    record = assets(local_archive, "000001", published)[LARGE_NWB]
    url, size = s3_location(local_archive, record["asset_id"]), record["size"]
    path = f"{version_root('000001', published)}/{LARGE_NWB}"
    for offset, count in [(0, 4096), (size // 2 + 12345, 300_000), (size - 1000, 1000)]:
        assert frontend.read(path, offset, count) == s3_bytes(url, offset, count), offset


def test_ranges_of_a_file_inside_a_zarr_are_the_bytes_in_s3(frontend, local_archive) -> None:
    record = assets(local_archive, "000002", "draft")[ZARR_PATH]
    prefix = s3_location(local_archive, record["asset_id"])
    zarr_id = prefix.rstrip("/").rsplit("/", 1)[-1]
    files = httpx.get(f"{local_archive.api_url}/zarr/{zarr_id}/files/", timeout=30).json()
    chunk = max(files["results"], key=lambda file: file["Size"])
    path = f"{version_root('000002', 'draft')}/{ZARR_PATH}/{chunk['Key']}"
    info = frontend.stat(path)
    assert (info.kind, info.size) == ("file", chunk["Size"])
    middle = chunk["Size"] // 3
    expected = s3_bytes(prefix + chunk["Key"], middle, 1000)
    assert frontend.read(path, middle, 1000) == expected
    assert frontend.list(f"{version_root('000002', 'draft')}/{ZARR_PATH}")[:2] == [
        ".zattrs", ".zgroup"]


# -- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".DS_Store", "._x", ".git", ".git/config", "Thumbs.db",
                                  "desktop.ini"])
def test_names_that_never_exist_are_not_found(frontend, name) -> None:
    assert frontend.error(f"/dandisets/000001/draft/{name}") == "not-found"
    assert frontend.error(f"/dandisets/000002/draft/{ZARR_PATH}/{name}") == "not-found"


# (path, what FUSE gives, what WebDAV gives)
BAD_PATHS = [
    ("/dandisets/12345", "not-found", "not-found"),  # ids are six digits
    ("/dandisets/000001/12345", "not-found", "not-found"),  # not a version
    ("/dandisets/000001/draft/" + "x" * 300, "not-found", "not-found"),  # over-long name
    ("/dandisets/000001/draft/no-such-file.nwb", "not-found", "not-found"),
    ("/nothing-here", "not-found", "not-found"),
    # The kernel resolves `..` itself before FUSE sees it; WebDAV refuses it encoded too.
    ("/dandisets/000001/%2e%2e/000002", "not-found", "bad-path"),
]


@pytest.mark.parametrize(("path", "fuse", "webdav"), BAD_PATHS, ids=[p for p, *_ in BAD_PATHS])
def test_bad_paths(frontend, path, fuse, webdav) -> None:
    if frontend.name == "webdav" and "%" in path:
        answer = frontend.http.get(frontend.url + path)  # sent as it is, not quoted again
        assert WebDAV._kind(answer) == webdav
        return
    assert frontend.error(path) == {"fuse": fuse, "webdav": webdav}[frontend.name]


def test_dot_dot_never_leaves_the_tree(mount) -> None:
    root = mount.mountpoint
    assert os.listdir(root / "dandisets/000001/../000002") == os.listdir(
        root / "dandisets/000002")


def test_a_file_used_as_a_folder(frontend, published) -> None:
    """FUSE: ENOTDIR, as on any filesystem; WebDAV: 409, as for any other file."""
    path = version_root("000001", published) + "/dandiset.yaml/inside"
    assert frontend.error(path) == {"fuse": "not-a-directory", "webdav": "conflict"}[
        frontend.name]


def test_reading_a_folder(frontend, published) -> None:
    """FUSE: EISDIR; WebDAV: a GET on a folder is its HTML listing, not an error."""
    path = version_root("000001", published)
    assert frontend.error(path) == {"fuse": "is-a-directory", "webdav": None}[frontend.name]


def test_an_embargoed_dandiset_is_visible_only_with_the_token(
    frontend, request, local_archive
) -> None:
    assert EMBARGOED not in frontend.list("/dandisets")
    expected = {"fuse": "not-found", "webdav": "needs-credentials"}[frontend.name]
    assert frontend.error(f"/dandisets/{EMBARGOED}/draft/dandiset.yaml") == expected
    owner = with_token(frontend, request, local_archive.token)
    assert EMBARGOED in owner.list("/dandisets")
    root = version_root(EMBARGOED, "draft")
    records = assets(local_archive, EMBARGOED, "draft")
    tops = {path.split("/", 1)[0] for path in records}
    assert owner.list(root) == sorted(tops | {"dandiset.yaml"})
    path, record = sorted(records.items())[0]
    assert owner.stat(f"{root}/{path}").size == record["size"]
    assert owner.read(f"{root}/dandiset.yaml", 0, 10) == b"# DO NOT E"


@pytest.mark.parametrize("where", ["published", "latest", "dandiset", "top"])
def test_writes_are_refused_outside_drafts(frontend, published, where) -> None:
    path = {"published": f"{version_root('000001', published)}/new.txt",
            "latest": "/dandisets/000001/latest/new.txt",
            "dandiset": "/dandisets/000001/new.txt",
            "top": "/dandisets/new.txt"}[where]
    assert frontend.write_error(path) == "read-only"
    existing = f"{version_root('000001', published)}/dandiset.yaml"
    assert frontend.write_error(existing) == "read-only"
