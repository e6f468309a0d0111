"""Writes through the WebDAV server (`dandifs serve`, a real process) into drafts of the
local archive over HTTPS: plain HTTP requests for the protocol, then the real clients
(litmus, cadaver, rclone, davfs2), each checked against the archive's own API.

A PUT answers once the archive has the asset, so the archive is asked right after it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dandischema.digests.dandietag import DandiETag
from fuse_support import dandi_download
from test_webdav_clients import ARTIFACTS, DAV, Server, hrefs, propfind, start_server, stop_server

DANDI = "{https://dandiarchive.org/ns}"
DANDISET = "000001"


@pytest.fixture(scope="module")
def server(local_archive, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("webdav-write")
    running = start_server(tmp, local_archive.api_url, "--cache-dir", str(tmp / "cache"))
    yield running
    stop_server(running)


@pytest.fixture
def auth(local_archive) -> tuple[str, str]:
    return ("demo", local_archive.token)


@pytest.fixture
def folder(server) -> str:
    """A fresh folder name in the draft for one test (the draft is shared by the session)."""
    return f"webdav-{uuid.uuid4().hex[:8]}"


def draft_url(server: Server, relative: str = "") -> str:
    return f"{server.url}dandisets/{DANDISET}/draft/{relative}"


def archive_asset(local_archive, path: str) -> dict | None:
    """The draft's asset at `path` as the archive's API gives it (None: no such asset)."""
    answer = httpx.get(
        f"{local_archive.api_url}/dandisets/{DANDISET}/versions/draft/assets/",
        params={"path": path, "metadata": "1"},
        headers={"Authorization": f"token {local_archive.token}"},
        verify=local_archive.verify, timeout=60,
    ).json()
    matches = [asset for asset in answer["results"] if asset["path"] == path]
    return matches[0] if matches else None


def dandi_etag(data: bytes) -> str:
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        return DandiETag.from_file(handle.name).as_str()


def assert_asset(local_archive, path: str, data: bytes) -> dict:
    asset = archive_asset(local_archive, path)
    assert asset is not None, f"the archive has no asset {path}"
    assert asset["size"] == len(data)
    assert asset["metadata"]["digest"]["dandi:dandi-etag"] == dandi_etag(data)
    return asset


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def raw_put(server: Server, target: str, headers: dict[str, str], body: bytes) -> int:
    """A PUT over a socket: the body is sent as given, then the sending side is shut (a
    client that stops early), and the status of the answer is returned."""
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        head = f"PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        sock.sendall(head.encode() + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def archive_folder(server: Server, auth: tuple[str, str], folder: str) -> None:
    """A folder the archive has (one file in it): a folder made by MKCOL alone exists only
    for the token that made it, and davfs2 and cadaver look before they authenticate."""
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    assert httpx.put(draft_url(server, f"{folder}/seed.txt"), content=b"seed", auth=auth).status_code == 201


def basic(token: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"u:{token}".encode()).decode()


# -- PUT -------------------------------------------------------------------------------------


def test_put_makes_an_asset_dandi_download_returns(server, local_archive, auth, folder, archive_env, tmp_path):
    data = payload(3 * 1024 * 1024 + 17, "put")
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    created = httpx.put(draft_url(server, f"{folder}/data.bin"), content=data, auth=auth, timeout=300)
    assert created.status_code == 201, created.text
    asset = assert_asset(local_archive, f"{folder}/data.bin", data)
    assert created.headers["ETag"] == f'"{asset["metadata"]["digest"]["dandi:dandi-etag"]}"'
    downloaded = dandi_download(local_archive.api_url, DANDISET, "draft", tmp_path / "dl", archive_env)
    assert (downloaded / folder / "data.bin").read_bytes() == data
    # Through the server, listed with its size and the archive's ETag.
    (response,) = ET.fromstring(propfind(draft_url(server, f"{folder}/data.bin"), "0", auth=auth).content)
    assert response.find(f".//{DAV}getcontentlength").text == str(len(data))
    assert response.find(f".//{DAV}getetag").text == created.headers["ETag"]
    replaced = httpx.put(draft_url(server, f"{folder}/data.bin"), content=data[:1000], auth=auth)
    assert replaced.status_code == 204
    assert_asset(local_archive, f"{folder}/data.bin", data[:1000])


def test_chunked_put(server, local_archive, auth, folder):
    data = payload(2 * 1024 * 1024 + 5, "chunked")
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    blocks = iter([data[i : i + 300_000] for i in range(0, len(data), 300_000)])
    response = httpx.put(draft_url(server, f"{folder}/chunked.bin"), content=blocks, auth=auth, timeout=300)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201, response.text
    assert_asset(local_archive, f"{folder}/chunked.bin", data)


def test_a_short_body_keeps_nothing(server, local_archive, auth, folder):
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    target = f"/dandisets/{DANDISET}/draft/{folder}/short.bin"
    status = raw_put(server, target, {"Authorization": basic(auth[1]), "Content-Length": "100000"},
                     b"x" * 40_000)
    assert status == 400
    assert archive_asset(local_archive, f"{folder}/short.bin") is None
    assert propfind(draft_url(server, f"{folder}/short.bin"), "0", auth=auth).status_code == 404
    # An existing asset stays as it was when its replacement breaks off.
    data = payload(5000, "kept")
    assert httpx.put(draft_url(server, f"{folder}/kept.bin"), content=data, auth=auth).status_code == 201
    status = raw_put(server, f"/dandisets/{DANDISET}/draft/{folder}/kept.bin",
                     {"Authorization": basic(auth[1]), "Content-Length": "9000"}, b"y" * 10)
    assert status == 400
    assert_asset(local_archive, f"{folder}/kept.bin", data)
    assert httpx.get(draft_url(server, f"{folder}/kept.bin"), auth=auth, follow_redirects=True).content == data


def test_zero_byte_put_then_the_real_one_leaves_one_asset(server, local_archive, auth, folder):
    """Windows and Finder PUT an empty file first: it is a file here, never an asset."""
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    url = draft_url(server, f"{folder}/finder.bin")
    assert httpx.put(url, content=b"", auth=auth).status_code == 201
    (response,) = ET.fromstring(propfind(url, "0", auth=auth).content)
    assert response.find(f".//{DAV}resourcetype/{DAV}collection") is None
    assert response.find(f".//{DAV}getcontentlength").text == "0"
    assert response.find(f".//{DANDI}upload").text.startswith("empty")
    assert archive_asset(local_archive, f"{folder}/finder.bin") is None
    data = payload(70_000, "finder")
    assert httpx.put(url, content=data, auth=auth).status_code == 204
    assert_asset(local_archive, f"{folder}/finder.bin", data)
    listing = hrefs(propfind(draft_url(server, folder), "1", auth=auth))
    assert [h for h in listing if h.endswith("finder.bin")] == [f"/dandisets/{DANDISET}/draft/{folder}/finder.bin"]
    (response,) = ET.fromstring(propfind(url, "0", auth=auth).content)
    assert response.find(f".//{DANDI}upload") is None  # an archive asset now


def test_upload_and_validation_properties(server, local_archive, auth, folder):
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    url = draft_url(server, f"{folder}/v.bin")
    assert httpx.put(url, content=payload(1000, "v"), auth=auth).status_code == 201
    body = ("<?xml version='1.0'?><propfind xmlns='DAV:' xmlns:d='https://dandiarchive.org/ns'>"
            "<prop><d:validation/><d:upload/><getcontentlength/></prop></propfind>")
    answer = propfind(url, "0", body, auth=auth)
    assert answer.status_code == 207
    root = ET.fromstring(answer.content)
    statuses = {status.text for status in root.iter(f"{DAV}status")}
    validation = root.find(f".//{DANDI}validation")
    assert validation is not None, answer.text
    assert "HTTP/1.1 404 Not Found" in statuses  # upload: an archive asset has none


# -- DELETE, MKCOL, MOVE, COPY ------------------------------------------------------------------


def test_mkcol_put_inside_then_delete_the_folder(server, local_archive, auth, folder):
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 405
    assert httpx.request("MKCOL", draft_url(server, f"{folder}/a/b"), auth=auth).status_code == 409
    assert httpx.request("MKCOL", draft_url(server, f"{folder}/sub"), auth=auth).status_code == 201
    for name in ("one.bin", "sub/two.bin"):
        assert httpx.put(draft_url(server, f"{folder}/{name}"), content=name.encode() * 100,
                         auth=auth).status_code == 201
    assert_asset(local_archive, f"{folder}/sub/two.bin", b"sub/two.bin" * 100)
    assert httpx.delete(draft_url(server, f"{folder}/one.bin"), auth=auth).status_code == 204
    assert archive_asset(local_archive, f"{folder}/one.bin") is None
    assert httpx.delete(draft_url(server, f"{folder}/one.bin"), auth=auth).status_code == 404
    assert httpx.delete(draft_url(server, folder), auth=auth).status_code == 204
    assert archive_asset(local_archive, f"{folder}/sub/two.bin") is None
    assert propfind(draft_url(server, folder), "0", auth=auth).status_code == 404


def test_move_and_copy(server, local_archive, auth, folder):
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    data = payload(200_000, "move")
    assert httpx.put(draft_url(server, f"{folder}/a.bin"), content=data, auth=auth).status_code == 201
    first = assert_asset(local_archive, f"{folder}/a.bin", data)

    def move(source: str, target: str, method: str = "MOVE", **headers: str) -> httpx.Response:
        return httpx.request(method, draft_url(server, source), auth=auth,
                             headers={"Destination": draft_url(server, target), **headers})

    stats_before = local_archive.s3_stats()
    assert move(f"{folder}/a.bin", f"{folder}/b.bin").status_code == 201
    assert archive_asset(local_archive, f"{folder}/a.bin") is None
    moved = assert_asset(local_archive, f"{folder}/b.bin", data)
    assert moved["blob"] == first["blob"]
    assert move(f"{folder}/b.bin", f"{folder}/c.bin", "COPY").status_code == 201
    copied = assert_asset(local_archive, f"{folder}/c.bin", data)
    assert copied["blob"] == first["blob"] and copied["asset_id"] != moved["asset_id"]
    assert local_archive.s3_stats()["bytes_received"] == stats_before["bytes_received"]  # no bytes moved
    assert move(f"{folder}/b.bin", f"{folder}/c.bin", "COPY", Overwrite="F").status_code == 412
    assert move(f"{folder}/b.bin", f"{folder}/c.bin", "COPY").status_code == 204
    # A folder moves with what is in it.
    assert move(folder, f"{folder}-moved/").status_code == 201
    assert_asset(local_archive, f"{folder}-moved/c.bin", data)
    assert archive_asset(local_archive, f"{folder}/c.bin") is None
    # Copying out of a published version into the draft is allowed; moving out of it is not.
    published = httpx.get(f"{server.url}dandisets/{DANDISET}/", auth=auth)
    version = re.search(r'href="(0\.\d+\.\d+)/"', published.text).group(1)
    source = f"{server.url}dandisets/{DANDISET}/{version}/dandiset.yaml"
    refused = httpx.request("MOVE", source, auth=auth,
                            headers={"Destination": draft_url(server, f"{folder}-moved/x.yaml")})
    assert refused.status_code == 403


# -- who may write where -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outsider_token(local_archive) -> str:
    """A second account of the local archive, owning nothing (added to its database)."""
    token = uuid.uuid4().hex
    database = local_archive.data_dir / "runs" / str(local_archive.pid) / "archive.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO users (username, email, first_name, last_name, token)"
            " VALUES ('outsider@example.com', 'outsider@example.com', 'Out', 'Sider', ?)",
            (token,),
        )
    return token


def test_writes_need_a_token_with_rights(server, local_archive, auth, folder, outsider_token, published):
    url = draft_url(server, f"{folder}.bin")
    anonymous, cost = server.archive_requests(lambda: httpx.put(url, content=b"x"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert cost == 0
    wrong = httpx.put(url, content=b"x", auth=("u", "not-a-token"))
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
    bearer = httpx.put(url, content=b"bearer", headers={"Authorization": f"Bearer {auth[1]}"})
    assert bearer.status_code == 201
    outsider = ("u", outsider_token)
    assert httpx.delete(url, auth=outsider).status_code == 403
    assert httpx.request("MOVE", url, auth=outsider,
                         headers={"Destination": draft_url(server, f"{folder}.moved")}).status_code == 403
    put = httpx.put(draft_url(server, f"{folder}.other"), content=b"x", auth=outsider)
    assert put.status_code in (403, 502) and "ermission" in put.text
    assert archive_asset(local_archive, f"{folder}.other") is None
    assert_asset(local_archive, f"{folder}.bin", b"bearer")
    for target in (f"dandisets/{DANDISET}/{published}/x.bin", f"dandisets/{DANDISET}/draft/dandiset.yaml",
                   f"dandisets/{DANDISET}/draft/", "dandisets/"):
        refused, cost = server.archive_requests(
            lambda: httpx.put(server.url + target, content=b"x", auth=auth))
        assert refused.status_code == 403 and cost == 0, (target, refused.text)
        assert b"draft" in refused.content or b"dandiset.yaml" in refused.content


def test_options_advertise_locking_in_drafts_only(server, published):
    draft = httpx.options(draft_url(server))
    assert draft.headers["DAV"] == "1, 2" and "PUT" in draft.headers["Allow"]
    release = httpx.options(f"{server.url}dandisets/{DANDISET}/{published}/")
    assert release.headers["DAV"] == "1" and "PUT" not in release.headers["Allow"]


def test_lock_guards_a_put(server, local_archive, auth, folder):
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    url = draft_url(server, f"{folder}/locked.bin")
    body = ("<?xml version='1.0'?><lockinfo xmlns='DAV:'><lockscope><exclusive/></lockscope>"
            "<locktype><write/></locktype><owner>test</owner></lockinfo>")
    locked = httpx.request("LOCK", url, content=body, auth=auth, headers={"Timeout": "Second-60"})
    assert locked.status_code in (200, 201), locked.text
    token = locked.headers["Lock-Token"]
    assert archive_asset(local_archive, f"{folder}/locked.bin") is None  # a lock makes an empty file here
    assert httpx.put(url, content=b"no lock token", auth=auth).status_code == 423
    data = payload(4000, "locked")
    with_token = httpx.put(url, content=data, auth=auth, headers={"If": f"({token})"})
    assert with_token.status_code == 204, with_token.text
    assert httpx.request("UNLOCK", url, auth=auth, headers={"Lock-Token": token}).status_code == 204
    assert_asset(local_archive, f"{folder}/locked.bin", data)
    etag = httpx.head(url, auth=auth).headers["ETag"]
    assert httpx.put(url, content=b"x", auth=auth, headers={"If-Match": '"other"'}).status_code == 412
    assert httpx.put(url, content=b"x", auth=auth, headers={"If-None-Match": "*"}).status_code == 412
    assert httpx.put(url, content=b"new", auth=auth, headers={"If-Match": etag}).status_code == 204
    published_lock = httpx.request("LOCK", f"{server.url}dandisets/{DANDISET}/", content=body, auth=auth)
    assert published_lock.status_code == 403


def test_proppatch_keeps_dead_properties_and_sets_times(server, auth, folder):
    httpx.request("MKCOL", draft_url(server, folder), auth=auth)
    url = draft_url(server, f"{folder}/p.bin")
    httpx.put(url, content=b"", auth=auth)  # pending (empty), so its time is ours to keep
    body = ("<?xml version='1.0'?><propertyupdate xmlns='DAV:' xmlns:z='urn:x'><set><prop>"
            "<z:colour>blue</z:colour><getlastmodified>Mon, 01 Jan 2024 10:00:00 GMT</getlastmodified>"
            "</prop></set></propertyupdate>")
    answer = httpx.request("PROPPATCH", url, content=body, auth=auth)
    assert answer.status_code == 207 and answer.text.count("200 OK") >= 1, answer.text
    found = ET.fromstring(propfind(url, "0", auth=auth).content)
    assert found.find(".//{urn:x}colour").text == "blue"
    assert found.find(f".//{DAV}getlastmodified").text == "Mon, 01 Jan 2024 10:00:00 GMT"


# -- real clients -------------------------------------------------------------------------------


def litmus_outcomes(output: str) -> dict[str, dict[str, str]]:
    suites = re.split(r"^-> running `(\w+)':", output, flags=re.M)[1:]
    return {name: dict(re.findall(r"^\s*\d+\.\s+(\w+)\.+ ?(pass|FAIL|SKIPPED|WARNING)", body, re.M))
            for name, body in zip(suites[::2], suites[1::2])}


LITMUS_EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "basic": {
        "put_get_utf8_segment": "the archive's asset path rules refuse '€' (a 400 saying which "
        "characters are allowed)",
    },
}
"""litmus tests that fail against a draft, each with its reason (docs/webdav.md)."""


def test_litmus_against_a_draft(server, auth, folder, tmp_path):
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    result = subprocess.run(
        ["litmus", "-k", draft_url(server, f"{folder}/"), *auth],
        env={**os.environ, "TESTS": "basic copymove props locks http", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=1200, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "litmus-draft.txt").write_text(output)
    outcomes = litmus_outcomes(output)
    assert set(outcomes) == {"basic", "copymove", "props", "locks", "http"}, output[-3000:]
    failed = {suite: {test: "" for test, outcome in tests.items() if outcome == "FAIL"}
              for suite, tests in outcomes.items()}
    expected = {suite: {test: "" for test in LITMUS_EXPECTED_FAILURES.get(suite, {})} for suite in outcomes}
    assert failed == expected, output[-6000:]


def test_cadaver_puts_moves_and_deletes(server, local_archive, auth, folder, tmp_path):
    archive_folder(server, auth, folder)
    local = tmp_path / "cadaver.bin"
    data = payload(123_456, "cadaver")
    local.write_bytes(data)
    (tmp_path / ".netrc").write_text(f"machine 127.0.0.1 login demo password {auth[1]}\n")
    (tmp_path / ".netrc").chmod(0o600)
    script = f"put {local} one.bin\nmove one.bin two.bin\nput {local} three.bin\ndelete three.bin\nls\nquit\n"
    result = subprocess.run(
        ["cadaver", draft_url(server, f"{folder}/")], input=script, capture_output=True, text=True,
        timeout=300, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert "succeeded" in result.stdout and "failed" not in result.stdout.lower(), result.stdout
    assert_asset(local_archive, f"{folder}/two.bin", data)
    assert archive_asset(local_archive, f"{folder}/one.bin") is None
    assert archive_asset(local_archive, f"{folder}/three.bin") is None


def test_rclone_copies_a_folder_in_and_checks_it(server, local_archive, auth, folder, trusted_cas, tmp_path):
    source = tmp_path / "src"
    for index in range(6):
        path = source / ("nested" if index % 2 else "") / f"file{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload(10_000 * (index + 1), f"rclone{index}"))
    assert httpx.request("MKCOL", draft_url(server, folder), auth=auth).status_code == 201
    obscured = subprocess.run(["rclone", "obscure", auth[1]], capture_output=True, text=True,
                              check=True).stdout.strip()
    remote = ["--webdav-url", draft_url(server, f"{folder}/"), "--webdav-vendor", "other",
              "--webdav-user", "demo", "--webdav-pass", obscured, "--ca-cert", str(trusted_cas.path),
              "--config", str(tmp_path / "rclone.conf")]
    subprocess.run(["rclone", "copy", *remote, str(source), ":webdav:"], check=True, timeout=600,
                   capture_output=True)
    checked = subprocess.run(["rclone", "check", *remote, str(source), ":webdav:"],
                             capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stderr
    for path in source.rglob("*.bin"):
        assert_asset(local_archive, f"{folder}/{path.relative_to(source)}", path.read_bytes())


def test_davfs2_read_write_copies_in_and_renames(server, local_archive, auth, folder, tmp_path):
    archive_folder(server, auth, folder)
    point = tmp_path / "mnt"
    point.mkdir()
    cache = Path(tempfile.mkdtemp(prefix="dandifs-davfs-cache-"))
    cache.chmod(0o777)
    url = draft_url(server, f"{folder}/")
    secrets = tmp_path / "secrets"
    secrets.write_text(f"{url} demo {auth[1]}\n")
    secrets.chmod(0o600)
    conf = tmp_path / "davfs2.conf"
    conf.write_text(f"secrets {secrets}\ncache_dir {cache}\nask_auth 0\nbuf_size 64\ndelay_upload 0\n")
    mounted = subprocess.run(["mount", "-t", "davfs", "-o", f"rw,conf={conf}", url, str(point)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert mounted.returncode == 0, mounted.stderr
    data = payload(300_000, "davfs2")
    try:
        (tmp_path / "in.bin").write_bytes(data)
        subprocess.run(["cp", str(tmp_path / "in.bin"), str(point / "copied.bin")], check=True, timeout=300)
        os.rename(point / "copied.bin", point / "renamed.bin")
    finally:
        # davfs2 uploads on close at the latest when it unmounts.
        subprocess.run(["umount", str(point)], check=False, capture_output=True, timeout=300)
        shutil.rmtree(cache, ignore_errors=True)
    assert_asset(local_archive, f"{folder}/renamed.bin", data)
    assert archive_asset(local_archive, f"{folder}/copied.bin") is None
