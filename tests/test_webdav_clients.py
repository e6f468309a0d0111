"""The WebDAV server (`dandifs serve`, a real process) against the local archive, used by
real clients: wget, dandi-cli (for the reference copy), davfs2, rclone, cadaver, litmus,
headless Chromium, and plain HTTP for the protocol details.

Every request's archive cost is read from the server's access log (`archive=N`), which is
how "no archive request for what cannot exist" is checked.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import published_version
from fuse_support import dandi_download

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
DAV = "{DAV:}"
NEON_AGENT = "davfs2/1.6.1 neon/0.32.5"
ACCESS_LINE = re.compile(r'"(?P<method>\S+) (?P<uri>\S+)" (?P<status>\d+) \d+ \S+ archive=(?P<archive>\d+)')


# -- the server and the reference copy -----------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def access_lines(self) -> list[re.Match]:
        text = self.log_path.read_text(errors="replace")
        return [m for m in ACCESS_LINE.finditer(text)]

    def settled_access_lines(self, quiet: float = 0.2) -> list[re.Match]:
        """The access log once no line has been added for `quiet` seconds: a request of an
        earlier test (a client still unmounting) may not have been logged yet."""
        lines = self.access_lines()
        while True:
            time.sleep(quiet)
            again = self.access_lines()
            if len(again) == len(lines):
                return again
            lines = again

    def archive_requests(self, action) -> tuple[httpx.Response, int]:
        """Run `action()` (one HTTP request) and return its response and its archive cost."""
        before = len(self.settled_access_lines())
        response = action()
        deadline = time.monotonic() + 5
        while len(lines := self.access_lines()) <= before:
            assert time.monotonic() < deadline, "the access log has no line for the request"
            time.sleep(0.02)
        return response, sum(int(line["archive"]) for line in lines[before:])


def start_server(tmp: Path, api_url: str, *args: str) -> Server:
    log_path = tmp / "serve.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dandifs", "serve", "-i", api_url, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "DANDI_API_KEY": ""},
    )
    line = process.stdout.readline().decode()
    match = re.search(r" at (http://\S+/)$", line.strip())
    if not match:
        process.kill()
        pytest.fail(f"dandifs serve did not start: {line!r}\n{log_path.read_text()}", pytrace=False)
    return Server(match.group(1), process, log_path)


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    out, _ = server.process.communicate(timeout=30)
    assert server.process.returncode == 0, server.log_path.read_text()[-2000:]
    assert b"stopped" in out


@pytest.fixture(scope="module")
def server(local_archive, tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("webdav"), local_archive.api_url)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def published(local_archive) -> str:
    record = httpx.get(f"{local_archive.api_url}/dandisets/000001/").json()
    return record["most_recent_published_version"]["version"]


@pytest.fixture(scope="module")
def reference(local_archive, published, tmp_path_factory) -> Path:
    """`dandi download` of the published version of 000001: what every client must reproduce."""
    return dandi_download(local_archive.api_url, "000001", published,
                          tmp_path_factory.mktemp("dandi-download"), {})


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below `root`."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def version_url(server: Server, published: str) -> str:
    return f"{server.url}dandisets/000001/{published}/"


def propfind(url: str, depth: str = "1", body: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Depth": depth, **kwargs.pop("headers", {})}
    return httpx.request("PROPFIND", url, headers=headers, content=body, **kwargs)


def hrefs(response: httpx.Response) -> list[str]:
    return [element.text for element in ET.fromstring(response.content).iter(f"{DAV}href")]


# -- wget ------------------------------------------------------------------------------------


def test_wget_mirror_equals_dandi_download(server, published, reference, trusted_cas, tmp_path):
    subprocess.run(
        ["wget", "-q", "-r", "-np", "-nH", "--cut-dirs=3", "-R", "index.html*",
         f"--ca-certificate={trusted_cas.path}",  # GnuTLS: no SSL_CERT_FILE; S3 is HTTPS
         "-P", str(tmp_path), version_url(server, published)],
        check=True, timeout=600,
    )
    mirrored = tree(tmp_path)
    assert "dandiset.yaml" in mirrored
    assert mirrored == tree(reference)
    # The NWB files came from S3: wget followed our 307s across hosts without -H.
    redirected = {
        line["uri"] for line in server.access_lines()
        if line["method"] == "GET" and line["status"] == "307" and line["uri"].endswith(".nwb")
    }
    expected = {f"/dandisets/000001/{published}/{quote(p)}" for p in mirrored if p.endswith(".nwb")}
    assert expected <= redirected


# -- davfs2 ----------------------------------------------------------------------------------


@pytest.fixture
def davfs_mount(tmp_path) -> Iterator:
    """Mounts with davfs2 non-interactively: credentials and options from files."""
    mounted: list[Path] = []
    caches: list[Path] = []

    def mount(url: str, token: str = "") -> Path:
        point = tmp_path / "mnt"
        point.mkdir()
        # davfs2 drops privileges to its own user, who cannot enter pytest's private tmp dirs.
        cache = Path(tempfile.mkdtemp(prefix="dandifs-davfs-cache-"))
        cache.chmod(0o777)
        caches.append(cache)
        secrets = tmp_path / "secrets"
        secrets.write_text(f"{url} user {token or 'none'}\n")
        secrets.chmod(0o600)
        conf = tmp_path / "davfs2.conf"
        # buf_size: davfs2's default 16 KiB kernel buffer makes getdents64 with glibc's 32 KiB
        # buffer fail with EINVAL on current kernels, so `ls` and `cp -r` would fail.
        conf.write_text(
            f"secrets {secrets}\ncache_dir {cache}\nask_auth 0\nuse_locks 0\nbuf_size 64\n"
        )
        result = subprocess.run(
            ["mount", "-t", "davfs", "-o", f"ro,conf={conf}", url, str(point)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, f"mount.davfs failed: {result.stderr}"
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False, capture_output=True, timeout=120)
    for cache in caches:
        shutil.rmtree(cache, ignore_errors=True)


def test_davfs2_copies_every_file_byte_identical(server, published, reference, davfs_mount, tmp_path):
    """`cp` of each file through a davfs2 mount equals the dandi-cli copy (bytes streamed,
    since davfs2 does not follow redirects)."""
    point = davfs_mount(version_url(server, published))
    copy = tmp_path / "copy"
    for relative in tree(reference):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", str(point / relative), str(copy / relative)], check=True, timeout=300)
    assert tree(copy) == tree(reference)


def test_davfs2_cp_recursive(server, published, reference, davfs_mount, tmp_path):
    """`cp -r` of a version through a davfs2 mount equals the dandi-cli copy."""
    point = davfs_mount(version_url(server, published))
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(point), str(copy)], check=True, timeout=600)
    shutil.rmtree(copy / "lost+found")  # davfs2's own folder, not from the server
    assert tree(copy) == tree(reference)


def test_davfs2_reads_embargoed_data_with_a_token(server, local_archive, davfs_mount):
    """davfs2 sends credentials only when challenged: the 401 for an invisible dandiset
    makes it retry with the token from its secrets file."""
    point = davfs_mount(f"{server.url}dandisets/000003/draft/", local_archive.token)
    yaml_text = (point / "dandiset.yaml").read_text()
    assert "000003" in yaml_text


# -- rclone ----------------------------------------------------------------------------------


def rclone(*args: str, cwd: Path, ca_file: Path) -> subprocess.CompletedProcess:
    """rclone trusts `ca_file` (for the S3 it is redirected to) instead of the system roots."""
    return subprocess.run(
        ["rclone", "--config", str(cwd / "rclone.conf"), "--ca-cert", str(ca_file), *args],
        check=True, capture_output=True, text=True, timeout=600,
    )


def test_rclone_lists_and_copies(server, published, reference, trusted_cas, tmp_path):
    remote = ["--webdav-url", version_url(server, published), "--webdav-vendor", "other"]
    listing = rclone("lsf", "-R", "--files-only", *remote, ":webdav:", cwd=tmp_path,
                     ca_file=trusted_cas.path).stdout.split()
    assert sorted(listing) == sorted(tree(reference))
    rclone("copy", *remote, ":webdav:", str(tmp_path / "copy"), cwd=tmp_path,
           ca_file=trusted_cas.path)
    assert tree(tmp_path / "copy") == tree(reference)


# -- cadaver ---------------------------------------------------------------------------------


def test_cadaver_lists_and_gets(server, published, reference, tmp_path):
    relative = "sub-mouse02/sub-mouse02_ses-20240103_ecephys.nwb"
    script = f"ls\ncd sub-mouse02\nls\nget {Path(relative).name} {tmp_path / 'got.nwb'}\nquit\n"
    result = subprocess.run(
        ["cadaver", version_url(server, published)], input=script,
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert "sub-mouse01" in result.stdout and "dandiset.yaml" in result.stdout
    assert Path(relative).name in result.stdout
    got = (tmp_path / "got.nwb").read_bytes()
    assert hashlib.sha256(got).hexdigest() == tree(reference)[relative]


# -- litmus ----------------------------------------------------------------------------------


def test_litmus_basic_and_props_on_a_published_version(server, published, tmp_path):
    """litmus needs a writable collection: each suite's `begin` does MKCOL `litmus/` and
    stops the suite when that fails.  In a published version what applies is `init`; `begin`
    must be refused with a clear 403 (not a 405 or a 500), which ends each suite.  (Against
    a draft: tests/test_webdav_write.py.)"""
    result = subprocess.run(
        ["litmus", "-k", version_url(server, published)], env={**os.environ, "TESTS": "basic props",
        "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "litmus.txt").write_text(output)
    suites = re.split(r"^-> running `(\w+)':", output, flags=re.M)[1:]
    outcomes = {name: dict(re.findall(r"^\s*\d+\.\s+(\w+)\.+ (pass|FAIL)", body, re.M))
                for name, body in zip(suites[::2], suites[1::2])}
    assert outcomes == {
        "basic": {"init": "pass", "begin": "FAIL"},
        "props": {"init": "pass", "begin": "FAIL"},
    }
    assert output.count("403 Forbidden") == 2


# -- Chromium --------------------------------------------------------------------------------


def test_chromium_renders_a_listing(server, local_archive, published, tmp_path):
    """A listing page loads nothing from S3, so Chromium needs no trust in the archive's CA."""
    s3_before = local_archive.s3_stats()["total_requests"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "webdav-listing.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,700",
         f"--screenshot={shot}", f"{version_url(server, published)}sub-mouse01/"],
        check=True, capture_output=True, timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert local_archive.s3_stats()["total_requests"] == s3_before


# -- protocol details, with plain HTTP ---------------------------------------------------------

FILE = "sub-mouse02/sub-mouse02_ses-20240103_ecephys.nwb"


def raw_request(server: Server, method: str, target: str, headers: dict | None = None,
                body: bytes | None = None) -> tuple[int, dict, bytes]:
    """A request whose target is sent exactly as written (httpx would normalise `..`)."""
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def asset_digest(local_archive, published: str, path: str) -> str:
    assets = httpx.get(
        f"{local_archive.api_url}/dandisets/000001/versions/{published}/assets/",
        params={"path": path, "metadata": "1"},
    ).json()["results"]
    (asset,) = [a for a in assets if a["path"] == path]
    return asset["metadata"]["digest"]["dandi:dandi-etag"]


def test_options_advertise_class_1_read_only(server, published):
    response, cost = server.archive_requests(lambda: httpx.options(version_url(server, published)))
    assert response.status_code == 200
    assert response.headers["DAV"] == "1"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "GET", "HEAD", "PROPFIND"}
    assert cost == 0


def test_propfind_properties(server, local_archive, published, reference):
    url = version_url(server, published)
    listing = propfind(url, "1")
    assert listing.status_code == 207
    root = f"/dandisets/000001/{published}/"
    assert sorted(hrefs(listing)) == sorted(
        [root, f"{root}dandiset.yaml", f"{root}sub-mouse01/", f"{root}sub-mouse02/"]
    )
    one = propfind(url + FILE, "0")
    assert hrefs(one) == [root + FILE]
    prop = ET.fromstring(one.content).find(f".//{DAV}prop")
    value = lambda name: prop.find(f"{DAV}{name}").text  # noqa: E731
    assert int(value("getcontentlength")) == (reference / FILE).stat().st_size
    assert value("getetag") == f'"{asset_digest(local_archive, published, FILE)}"'
    assert value("getcontenttype") == "application/x-nwb"
    assert value("displayname") == Path(FILE).name
    assert value("getlastmodified").endswith(" GMT")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value("creationdate"))
    assert prop.find(f"{DAV}resourcetype/{DAV}collection") is None
    folder = ET.fromstring(propfind(url + "sub-mouse02/", "0").content)
    assert folder.find(f".//{DAV}resourcetype/{DAV}collection") is not None


@pytest.mark.parametrize("depth", ["infinity", None])
def test_propfind_infinite_depth_is_refused_without_archive_requests(server, published, depth):
    headers = {} if depth is None else {"Depth": depth}
    response, cost = server.archive_requests(
        lambda: httpx.request("PROPFIND", version_url(server, published), headers=headers)
    )
    assert response.status_code == 403
    assert ET.fromstring(response.content).find(f"{DAV}propfind-finite-depth") is not None
    assert cost == 0


def test_head_and_conditional_gets_are_answered_locally(server, local_archive, published):
    url = version_url(server, published) + FILE
    httpx.head(url)  # warm the metadata cache
    s3_before = local_archive.s3_stats()["total_requests"]
    head, cost = server.archive_requests(lambda: httpx.head(url))
    assert head.status_code == 200 and "location" not in head.headers
    assert cost == 0
    etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
    for conditional in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        response, cost = server.archive_requests(lambda: httpx.get(url, headers=conditional))
        assert response.status_code == 304 and cost == 0
    changed, _ = server.archive_requests(lambda: httpx.get(url, headers={"If-None-Match": '"other"'}))
    assert changed.status_code == 307
    assert local_archive.s3_stats()["total_requests"] == s3_before


def test_get_redirects_to_s3_and_the_token_stays_here(server, local_archive, published, reference):
    response = httpx.get(version_url(server, published) + FILE, auth=("me", local_archive.token))
    assert response.status_code == 307
    location = response.headers["Location"]
    assert location.startswith(local_archive.s3_url) and local_archive.token not in location
    assert httpx.get(location).content == (reference / FILE).read_bytes()


def test_neon_clients_get_bytes_streamed_with_ranges(server, published, reference):
    url = version_url(server, published) + FILE
    expected = (reference / FILE).read_bytes()
    whole = httpx.get(url, headers={"User-Agent": NEON_AGENT})
    assert whole.status_code == 200 and whole.content == expected
    part = httpx.get(url, headers={"User-Agent": NEON_AGENT, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == expected[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(expected)}"


@pytest.mark.parametrize("mode", ["api", "stream"])
def test_redirect_modes(local_archive, published, reference, tmp_path, mode):
    other = start_server(tmp_path, local_archive.api_url, "--redirect", mode)
    try:
        response = httpx.get(version_url(other, published) + FILE)
        if mode == "api":
            assert response.status_code == 307
            assert re.fullmatch(
                re.escape(local_archive.api_url) + r"/assets/[0-9a-f-]{36}/download/",
                response.headers["Location"],
            )
            assert httpx.get(response.headers["Location"], follow_redirects=True).content == (
                reference / FILE
            ).read_bytes()
        else:
            assert response.status_code == 200
            assert response.content == (reference / FILE).read_bytes()
    finally:
        stop_server(other)


def test_reads_over_a_plain_http_archive(plain_archive, reference, tmp_path):
    """Over an archive without TLS the redirects say http, and streamed bytes are the same."""
    assert plain_archive.s3_url.startswith("http://")
    other = start_server(tmp_path, plain_archive.api_url)
    try:
        url = version_url(other, published_version(plain_archive.api_url, "000001")) + FILE
        expected = (reference / FILE).read_bytes()
        redirect = httpx.get(url)
        assert redirect.status_code == 307
        assert redirect.headers["Location"].startswith(f"{plain_archive.s3_url}/")
        assert httpx.get(redirect.headers["Location"]).content == expected
        streamed = httpx.get(url, headers={"User-Agent": NEON_AGENT})
        assert streamed.status_code == 200 and streamed.content == expected
    finally:
        stop_server(other)


def test_dandiset_yaml_is_a_file(server, published, reference):
    response = httpx.get(version_url(server, published) + "dandiset.yaml")
    assert response.status_code == 200
    assert response.content == (reference / "dandiset.yaml").read_bytes()


def test_zarr_interiors_browse_and_download(server):
    folder = f"{server.url}dandisets/000002/draft/sub-mouse04/"
    (zarr,) = [h for h in hrefs(propfind(folder, "1")) if h.endswith(".zarr/")]
    zarr_url = server.url.rstrip("/") + zarr
    inside = hrefs(propfind(zarr_url, "1"))
    assert f"{zarr}.zattrs" in inside and f"{zarr}0/" in inside
    page = httpx.get(zarr_url)
    assert page.status_code == 200 and 'href="0/"' in page.text and 'href=".zattrs"' in page.text
    chunks = [h for h in hrefs(propfind(zarr_url + "0/", "1")) if not h.endswith("/")]
    target = chunks[0] if chunks else f"{zarr}.zattrs"
    redirected = httpx.get(server.url.rstrip("/") + target, follow_redirects=True)
    streamed = httpx.get(server.url.rstrip("/") + target, headers={"User-Agent": NEON_AGENT})
    assert redirected.status_code == streamed.status_code == 200
    assert redirected.content == streamed.content and redirected.content
    attrs = httpx.get(zarr_url + ".zattrs", follow_redirects=True).json()
    assert "multiscales" in attrs


def test_latest_and_releases_resolve(server, published):
    names = {}
    for alias in (published, "latest", f"releases/{published}"):
        base = f"/dandisets/000001/{alias}/"
        found = hrefs(propfind(f"{server.url.rstrip('/')}{base}", "1"))
        assert all(href.startswith(base) for href in found)
        names[alias] = sorted(href[len(base):] for href in found)
    assert names[published] == names["latest"] == names[f"releases/{published}"]
    page = httpx.get(f"{server.url}dandisets/000001/")
    assert 'href="latest/"' in page.text and f'href="{published}/"' in page.text


def test_listing_page_for_people_and_wget(server, published):
    page = httpx.get(version_url(server, published))
    assert page.headers["Content-Type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', page.text)
    assert "sub-mouse01/" in links and "dandiset.yaml" in links
    assert not any(link.startswith(("/", "http")) or "?" in link for link in links)
    assert re.search(r"\d+(\.\d+)? MiB", page.text) and "Z</td>" in page.text
    moved = httpx.get(version_url(server, published).rstrip("/"))
    assert moved.status_code == 301 and moved.headers["Location"].endswith(f"{published}/")
    (metadata_link,) = [link for link in links if link.endswith("sub-mouse01")]
    view = httpx.get(httpx.URL(version_url(server, published)).join(metadata_link))
    assert view.json()["entry"]["kind"] == "folder"
    file_view = httpx.get(f"{server.url}.metadata/dandisets/000001/{published}/{FILE}").json()
    assert file_view["metadata"]["digest"]["dandi:dandi-etag"] == file_view["entry"]["etag"]


def test_embargoed_dandiset_needs_a_token(server, local_archive):
    token = local_archive.token
    embargoed = f"{server.url}dandisets/000003/draft/"
    assert "/dandisets/000003/" not in hrefs(propfind(f"{server.url}dandisets/", "1"))
    anonymous = httpx.get(embargoed)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    for auth in ({"auth": ("anyone", token)}, {"headers": {"Authorization": f"Bearer {token}"}}):
        assert httpx.get(embargoed, **auth).status_code == 200
        assert "/dandisets/000003/" in hrefs(propfind(f"{server.url}dandisets/", "1", **auth))
    assert httpx.get(embargoed).status_code == 401  # nothing leaked through a cache
    wrong = httpx.get(embargoed, auth=("anyone", "not-a-token"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    (file_href,) = [h for h in hrefs(propfind(embargoed + "sub-rat01/", "1", auth=("u", token)))
                    if h.endswith("_ses-20240301_ecephys.nwb")]
    redirect = httpx.get(server.url.rstrip("/") + file_href, auth=("u", token))
    assert redirect.status_code == 307 and token not in redirect.headers["Location"]
    body = httpx.get(redirect.headers["Location"])  # presigned: no credentials needed
    streamed = httpx.get(server.url.rstrip("/") + file_href, auth=("u", token),
                         headers={"User-Agent": NEON_AGENT})
    assert body.status_code == 200 and body.content == streamed.content


@pytest.mark.parametrize(
    "method, target, status",
    [
        ("GET", "/dandisets/000001/draft/../../../etc/passwd", 400),
        ("GET", "/dandisets/%2e%2e/%2e%2e/etc/passwd", 400),
        ("GET", "/dandisets/000001%2fdraft/", 400),
        ("GET", "/dandisets/000001/draft/a%00b", 400),
        ("GET", "/dandisets/12345/", 404),
        ("GET", "/dandisets/000001/not-a-version/", 404),
        ("GET", "/dandisets/000001/draft/" + "x" * 300, 404),
        ("GET", "/dandisets/000001/draft/.git/config", 404),
        ("GET", "/etc/passwd", 404),
        ("GET", "/robots.txt", 404),
        ("PROPFIND", "/dandisets/000001/draft/.DS_Store", 404),
        ("PUT", "/dandisets/000001/draft/new.nwb", 401),  # writable with a token
        ("PUT", "/dandisets/000001/0.240101.1200/new.nwb", 403),
        ("PUT", "/dandisets/000001/draft/dandiset.yaml", 403),
        ("DELETE", "/dandisets/000001/draft/", 403),
        ("MKCOL", "/dandisets/000001/draft/new/", 401),
        ("MKCOL", "/dandisets/000001/latest/new/", 403),
        ("LOCK", "/dandisets/000001/draft/", 403),
        ("POST", "/dandisets/000001/draft/", 405),
    ],
)
def test_bad_input_is_refused_before_any_archive_request(server, method, target, status):
    headers = {"Depth": "0"} if method == "PROPFIND" else {}
    (code, _, body), cost = server.archive_requests(
        lambda: raw_request(server, method, target, headers, b"x" if method == "PUT" else None)
    )
    assert code == status
    assert cost == 0
    assert b"Traceback" not in body and len(body) < 2000


def test_malformed_propfind_body_is_a_clear_400(server, published):
    url = version_url(server, published)
    propfind(url, "0")
    for body in ("<not xml", "<?xml version='1.0'?><other xmlns='DAV:'/>"):
        response, cost = server.archive_requests(lambda: propfind(url, "0", body))
        assert response.status_code == 400 and b"Traceback" not in response.content
        assert cost == 0
    chunked = propfind(url, "0", iter([b"<not ", b"xml"]))  # Transfer-Encoding: chunked
    assert chunked.status_code == 400
    names = propfind(url, "0", iter([b"<propfind xmlns='DAV:'>", b"<propname/></propfind>"]))
    assert names.status_code == 207 and b"<D:resourcetype/>" in names.content


def test_unknown_dandiset(server, local_archive):
    anonymous = httpx.get(f"{server.url}dandisets/999999/draft/")
    assert anonymous.status_code == 401  # the same answer as for an embargoed one: nothing leaks
    known = httpx.get(f"{server.url}dandisets/999999/draft/", auth=("u", local_archive.token))
    assert known.status_code == 404 and b"999999" in known.content


def test_default_token_serves_callers_without_credentials(local_archive, tmp_path):
    """`--token` makes a personal server: callers without credentials see what it sees."""
    personal = start_server(tmp_path, local_archive.api_url, "--token", local_archive.token)
    try:
        listing = hrefs(propfind(f"{personal.url}dandisets/", "1"))
        assert "/dandisets/000003/" in listing
        assert httpx.get(f"{personal.url}dandisets/000003/draft/").status_code == 200
        wrong = httpx.get(f"{personal.url}dandisets/000003/draft/", auth=("u", "not-a-token"))
        assert wrong.status_code == 401
    finally:
        stop_server(personal)


def test_head_on_a_folder_is_a_bodiless_listing(server, published):
    head = httpx.head(version_url(server, published))
    get = httpx.get(version_url(server, published))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert int(head.headers["Content-Length"]) == len(get.content)
