"""The local archive's runtime: SeaweedFS, the ObjectStore, the S3 front proxy, the process.

Everything here runs for real: a `weed server` child, the proxy on an event loop, httpx and
curl as clients, and `dandifs local-archive` as a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest import LocalArchive, start_local_archive, stop_local_archive

from dandifs.localarchive.netmodel import INITIAL_WINDOW, MIN_RTO, SEGMENT, Window
from dandifs.localarchive.objectstore import DEFAULT_BUCKET, ObjectStore, PrivateKeys
from dandifs.localarchive.relay import PACE_MIN_CHUNK, PIPE_SIZE, Pace
from dandifs.localarchive.s3proxy import ApiFront, FaultConfig, S3Proxy
from dandifs.localarchive.seaweed import SeaweedServer
from dandifs.localarchive.tls import new_authority, server_context

T = TypeVar("T")
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


# -- pure parts ----------------------------------------------------------------------------


class TestFaultConfig:
    def test_defaults_are_no_faults(self) -> None:
        assert FaultConfig().to_json() == {
            "latency_ms": 0.0, "error_rate": 0.0, "reset_rate": 0.0,
            "truncate_rate": 0.0, "seed": None, "stream_mbps": 0.0, "rtt_ms": 0.0,
            "window_max_kib": 4096.0, "min_rto_ms": 200.0, "stall_rate": 0.0,
            "stall_seconds": 5.0,
        }

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"error_rate": 1.5}, "error_rate must be between 0 and 1"),
            ({"latency_ms": -1}, "latency_ms must be a finite number >= 0"),
            ({"stream_mbps": -1}, "stream_mbps must be a finite number >= 0"),
            ({"stream_mbps": float("inf")}, "stream_mbps must be a finite number >= 0"),
            ({"stream_mbps": "fast"}, "stream_mbps must be a number"),
            ({"error_rate": 0.6, "reset_rate": 0.6}, "at most 1"),
            ({"latency": 5}, "unknown field(s) ['latency']"),
            ({"seed": "x"}, "seed must be an integer"),
            ({"error_rate": True}, "error_rate must be a number"),
            ([1, 2], "expected a JSON object"),
        ],
    )
    def test_refuses_bad_settings_by_name(self, data: Any, message: str) -> None:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")
                           .replace(")", r"\)").replace("]", r"\]")):
            FaultConfig.from_json(data)


class TestPace:
    """Worked schedules at 1 MB/s: 10,000 bytes take 10 ms."""

    def test_chunks_follow_each_other_at_the_rate(self) -> None:
        pace = Pace(1e6)
        assert pace.schedule(10_000, now=100.0) == pytest.approx(0.010)
        assert pace.schedule(10_000, now=100.0) == pytest.approx(0.020)
        assert pace.schedule(10_000, now=100.020) == pytest.approx(0.010)

    def test_an_overshooting_sleep_is_made_up(self) -> None:
        pace = Pace(1e6)
        assert pace.schedule(10_000, now=0.0) == pytest.approx(0.010)
        # Woken 5 ms late: the next chunk is due 10 ms after the first was, 5 ms from now.
        assert pace.schedule(10_000, now=0.015) == pytest.approx(0.005)

    def test_a_stalled_stream_does_not_burst(self) -> None:
        pace = Pace(1e6)
        pace.schedule(10_000, now=0.0)
        # A second later only the last 50 ms (PACE_SLACK) can be made up, then the rate holds.
        delays = [pace.schedule(10_000, now=1.0) for _ in range(6)]
        assert delays == pytest.approx([-0.04, -0.03, -0.02, -0.01, 0.0, 0.01])

    def test_chunk_size_is_about_ten_milliseconds_of_data(self) -> None:
        assert Pace(50e6).chunk_size == 500_000
        assert Pace(200e6).chunk_size == PIPE_SIZE  # 2 MB of data, capped at the pipe
        assert Pace(1e3).chunk_size == PACE_MIN_CHUNK

    @pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
    def test_refuses_rates_that_are_not_positive_and_finite(self, rate: float) -> None:
        with pytest.raises(ValueError, match="positive number"):
            Pace(rate)


class TestPrivateKeys:
    def test_prefix_and_exact_entries(self) -> None:
        keys = PrivateKeys()
        keys.set("zarr/abc/", True)
        keys.set("blobs/123/456/123456-uuid", True)
        assert keys.is_private("zarr/abc/0/0/0")
        assert keys.is_private("blobs/123/456/123456-uuid")
        assert not keys.is_private("zarr/abcd/0")
        assert not keys.is_private("blobs/123/456/123456-uuid2")
        assert not keys.is_private("zarr/abc")  # the prefix itself is not an object

    def test_entry_without_slash_covers_keys_under_it(self) -> None:
        keys = PrivateKeys()
        keys.set("zarr/abc", True)
        assert keys.is_private("zarr/abc") and keys.is_private("zarr/abc/.zattrs")
        assert not keys.is_private("zarr/abcd")
        keys.set("zarr/abc/", False)  # either spelling lifts it
        assert not keys.is_private("zarr/abc/.zattrs")

    def test_persisted_across_instances(self, tmp_path: Path) -> None:
        path = tmp_path / "private.json"
        PrivateKeys(path).set("blobs/a", True)
        assert PrivateKeys(path).is_private("blobs/a")


MIB = 1 << 20
SLOW_START_8MIB = [INITIAL_WINDOW << k for k in range(9)]  # 14,480 ... 3,706,880 bytes


class TestWindow:
    """Worked schedules of the congestion window at a 30 ms RTT."""

    RTT = 0.030

    def test_starts_at_ten_segments(self) -> None:
        assert INITIAL_WINDOW == 10 * SEGMENT == 14_480
        assert Window().schedule(1024, self.RTT) == [1024]

    def test_a_cold_body_doubles_each_round_trip(self) -> None:
        # 8 MiB cold: 9 doubling rounds carry 511 x 14,480 = 7,399,280 bytes, the 10th the rest.
        assert Window().schedule(8 * MIB, self.RTT) == [*SLOW_START_8MIB, 8 * MIB - 7_399_280]

    def test_a_warm_body_goes_in_rounds_of_the_maximum(self) -> None:
        window = Window()
        window.schedule(8 * MIB, self.RTT)
        assert window.schedule(8 * MIB, self.RTT, start=0.5) == [4 * MIB, 4 * MIB]
        assert window.size == 4 * MIB

    def test_it_grows_by_what_was_acknowledged_only(self) -> None:
        window = Window()
        window.schedule(1024, self.RTT)
        window.schedule(1024, self.RTT, start=0.1)
        assert window.size == INITIAL_WINDOW + 1024  # the second body's round not yet acked
        assert window.schedule(20_000, self.RTT, start=0.2) == [INITIAL_WINDOW + 2048,
                                                                 20_000 - INITIAL_WINDOW - 2048]

    def test_an_idle_connection_is_cold_again_after_an_rto(self) -> None:
        window = Window()
        window.schedule(8 * MIB, self.RTT)  # last bytes sent at 0.27 s (9 waits of 30 ms)
        idle_limit = 9 * self.RTT + MIN_RTO + self.RTT
        assert window.schedule(8 * MIB, self.RTT, start=idle_limit - 0.01)[0] == 4 * MIB
        assert window.schedule(8 * MIB, self.RTT, start=idle_limit + 1)[0] == INITIAL_WINDOW

    def test_take_waits_for_the_round_trip_of_a_full_round(self) -> None:
        window = Window(maximum=1 << 30)
        window.begin(10.0, self.RTT)
        assert window.take(50_000, 10.0, self.RTT) == (INITIAL_WINDOW, 0.0)
        window.sent(INITIAL_WINDOW, 10.001)
        count, wait = window.take(50_000, 10.002, self.RTT)
        assert (count, wait) == (2 * INITIAL_WINDOW, pytest.approx(0.028))
        # A round slower than the RTT (a bandwidth cap) is followed by the next at once.
        window.sent(count, 10.1)
        assert window.take(50_000, 10.1, self.RTT) == (50_000, 0.0)

    def test_the_maximum_bounds_the_window(self) -> None:
        window = Window(maximum=100_000)
        assert window.schedule(400_000, self.RTT) == [14_480, 28_960, 57_920, 100_000,
                                                      100_000, 98_640]


def test_presigned_urls_name_the_public_base() -> None:
    """With another proxy in front (`--s3-public-url`), every URL handed out names it."""
    store = ObjectStore("http://127.0.0.1:1", "http://front.example:9000/")
    assert store.object_url("blobs/a/b/c d") == (
        f"http://front.example:9000/{DEFAULT_BUCKET}/blobs/a/b/c%20d")
    for url in (
        store.presign_get("k", filename="f.nwb"),
        store.presign_head("k"),
        store.presign_put("k", content_md5_b64="AAAAAAAAAAAAAAAAAAAAAA=="),
        store.presign_upload_part("k", "upload", 3),
        store.presign_complete_multipart("k", "upload"),
    ):
        assert url.startswith(f"http://front.example:9000/{DEFAULT_BUCKET}/k?")
        assert "X-Amz-Signature=" in url


# -- a SeaweedFS + proxy stack for this module ---------------------------------------------


class LoopThread:
    """An asyncio loop on a thread of its own, so that blocking clients can talk to a proxy."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Stack:
    seaweed: SeaweedServer
    proxy: S3Proxy
    store: ObjectStore
    loop: LoopThread

    @property
    def url(self) -> str:
        return self.proxy.url

    def faults(self, **kw: Any) -> None:
        response = httpx.put(f"{self.url}/__dandifs__/faults", json=kw)
        response.raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/__dandifs__/stats").json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("seaweed")
    loop = LoopThread()
    with SeaweedServer(data, buckets=[DEFAULT_BUCKET]) as seaweed:
        assert seaweed.ports is not None
        proxy = S3Proxy(seaweed.host, seaweed.ports.s3)
        loop.run(proxy.start())
        store = ObjectStore(seaweed.s3_url, proxy.url, private_keys=proxy.private_keys)
        try:
            yield Stack(seaweed, proxy, store, loop)
        finally:
            loop.run(proxy.close())
            loop.close()


@pytest.fixture
def s3(stack: Stack) -> Iterator[Stack]:
    """The stack with faults off and counters at zero before and after the test."""
    stack.faults()
    httpx.delete(f"{stack.url}/__dandifs__/stats")
    yield stack
    stack.faults()


def _s3_error_code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


# -- SeaweedFS -----------------------------------------------------------------------------


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_seaweed_starts_and_stops_without_leftovers(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "weed", buckets=["some-bucket"])
    with server:
        assert server.process is not None and server.ports is not None
        pid, ports = server.process.pid, server.ports
        assert _group_members(pid) == [pid]  # its own process group
        assert httpx.get(f"{server.s3_url}/some-bucket").status_code == 200
        assert all(_port_open(port) for port in vars(ports).values())
    assert _group_members(pid) == []
    assert not any(_port_open(port) for port in vars(ports).values())
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")
    assert [p for port in vars(ports).values() for p in tmp.glob(f"seaweedfs-*-{port}.sock")] == []


def test_seaweed_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL cannot clean up: the kernel must kill `weed` for it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from dandifs.localarchive.seaweed import SeaweedServer
        server = SeaweedServer(Path({str(tmp_path / 'weed')!r}))
        server.start()
        print(server.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    weed_pid = int(parent.stdout.readline())
    assert _group_members(weed_pid) == [weed_pid]
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _group_members(weed_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(weed_pid) == []


def test_seaweed_failure_to_start_is_reported(tmp_path: Path) -> None:
    from dandifs.errors import Unavailable

    server = SeaweedServer(tmp_path / "weed", extra_args=["-no-such-flag"])
    with pytest.raises(Unavailable, match="SeaweedFS exited with status"):
        with server:
            pass


# -- ObjectStore ---------------------------------------------------------------------------


def test_put_head_and_read_through_the_proxy(s3: Stack) -> None:
    data = os.urandom(100_000)
    etag = s3.store.put_bytes("roundtrip/a b.bin", data)
    assert etag == hashlib.md5(data).hexdigest()
    head = s3.store.head("roundtrip/a b.bin")
    assert head is not None and (head.size, head.etag) == (len(data), etag)
    assert head.last_modified.utcoffset() is not None
    assert s3.store.head("roundtrip/missing") is None

    url = s3.store.object_url("roundtrip/a b.bin")
    assert url == f"{s3.url}/{DEFAULT_BUCKET}/roundtrip/a%20b.bin"
    with httpx.Client() as client:
        assert client.get(url).content == data
        ranged = client.get(url, headers={"Range": "bytes=100-199"})
        assert ranged.status_code == 206
        assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        assert ranged.content == data[100:200]
        assert client.head(url).headers["Content-Length"] == str(len(data))
        assert client.get(s3.store.presign_head("roundtrip/a b.bin")).status_code == 200
    assert s3.stats()["requests"] == {"GET": 3, "HEAD": 1}


def test_multipart_upload_with_presigned_part_urls(s3: Stack) -> None:
    """dandi-cli's blob upload: parts PUT to presigned URLs, completion POSTed as XML."""
    key = "blobs/abc/def/abcdef-multipart"
    parts_data = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(123)]
    upload_id = s3.store.create_multipart(key)
    etags = []
    with httpx.Client(timeout=60) as client:
        for number, data in enumerate(parts_data, start=1):
            url = s3.store.presign_upload_part(key, upload_id, number)
            assert url.startswith(f"{s3.url}/{DEFAULT_BUCKET}/{key}?")
            assert "X-Amz-Signature=" in url
            response = client.put(url, content=data)
            assert response.status_code == 200, response.text
            etags.append(response.headers["ETag"].strip('"'))
        assert etags == [hashlib.md5(d).hexdigest() for d in parts_data]
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            for n, e in enumerate(etags, start=1)
        )
        completion = client.post(
            s3.store.presign_complete_multipart(key, upload_id),
            content=f'<CompleteMultipartUpload xmlns="{S3_NS[1:-1]}">{body}'
            "</CompleteMultipartUpload>",
        )
    assert completion.status_code == 200, completion.text
    expected = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest() + "-3"
    assert ET.fromstring(completion.content).findtext(f"{S3_NS}ETag") == f'"{expected}"'
    head = s3.store.head(key)
    assert head is not None
    assert (head.etag, head.size) == (expected, sum(map(len, parts_data)))
    uploaded = sum(map(len, parts_data)) + len(completion.request.content)
    assert s3.stats()["bytes_received"] == uploaded


def test_put_file_in_parts_gives_the_dandi_etag(s3: Stack, tmp_path: Path) -> None:
    from dandischema.digests.dandietag import DandiETag

    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom((5 << 20) * 2 + 1000))
    part_size = 5 << 20
    etag = s3.store.put_file("blobs/put-file", path, part_size=part_size)
    md5s = [hashlib.md5(path.read_bytes()[i : i + part_size]).digest()
            for i in range(0, path.stat().st_size, part_size)]
    assert etag == hashlib.md5(b"".join(md5s)).hexdigest() + "-3"
    single = s3.store.put_file("blobs/put-file-single", path)
    assert single == hashlib.md5(path.read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert s3.store.put_file("blobs/empty", empty, part_size=part_size) == (
        hashlib.md5(hashlib.md5(b"").digest()).hexdigest() + "-1"
    )
    # dandi's own part table (64 MiB minimum part) makes one part of a file this small:
    dandi = DandiETag(path.stat().st_size)
    assert dandi.part_qty == 1
    assert s3.store.put_file("blobs/put-file-dandi", path, part_size=64 << 20) == (
        hashlib.md5(hashlib.md5(path.read_bytes()).digest()).hexdigest() + "-1"
    )


def test_presigned_put_checks_content_md5(s3: Stack) -> None:
    data = b'{"zarr_format": 2}'
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    url = s3.store.presign_put("zarr/z1/.zgroup", content_md5_b64=md5)
    assert "content-md5" in url.lower()
    good = httpx.put(url, content=data, headers={"Content-MD5": md5})
    assert good.status_code == 200
    assert good.headers["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    bad = httpx.put(url, content=b"other bytes", headers={"Content-MD5": md5})
    assert bad.status_code == 400
    assert s3.store.get_bytes("zarr/z1/.zgroup") == data


def test_presigned_get_names_the_download(s3: Stack) -> None:
    s3.store.put_bytes("blobs/named", b"x")
    response = httpx.get(s3.store.presign_get("blobs/named", filename="sub-01 ses.nwb"))
    assert response.headers["Content-Disposition"] == 'attachment; filename="sub-01 ses.nwb"'


def test_list_pages_with_start_after_and_delete_prefix(s3: Stack) -> None:
    keys = [f"listing/{name}" for name in ("a", "b", "c/1", "c/2", "d")]
    for key in keys:
        s3.store.put_bytes(key, key.encode())
    page, truncated = s3.store.list("listing/", limit=2)
    assert [h.key for h in page] == keys[:2] and truncated
    page, truncated = s3.store.list("listing/", start_after="listing/b", limit=2)
    assert [h.key for h in page] == keys[2:4] and truncated
    page, truncated = s3.store.list("listing/", start_after="listing/c/2")
    assert [h.key for h in page] == keys[4:] and not truncated
    assert page[0].etag == hashlib.md5(b"listing/d").hexdigest() and page[0].size == 9

    # ListObjectsV2 with a delimiter, unsigned, through the proxy:
    response = httpx.get(
        f"{s3.url}/{DEFAULT_BUCKET}",
        params={"list-type": "2", "prefix": "listing/", "delimiter": "/"},
    )
    tree = ET.fromstring(response.content)
    assert [e.findtext(f"{S3_NS}Key") for e in tree.iter(f"{S3_NS}Contents")] == [
        "listing/a", "listing/b", "listing/d"]
    assert [e.findtext(f"{S3_NS}Prefix") for e in tree.iter(f"{S3_NS}CommonPrefixes")] == [
        "listing/c/"]

    s3.store.delete("listing/a")
    assert s3.store.head("listing/a") is None
    s3.store.delete_prefix("listing/")
    assert s3.store.list("listing/") == ([], False)


def test_private_keys_refused_anonymously_and_served_presigned(s3: Stack) -> None:
    s3.store.put_bytes("zarr/embargoed/0/0", b"secret chunk")
    s3.store.put_bytes("blobs/emb/arg/embargoed-blob", b"secret blob")
    s3.store.set_private("zarr/embargoed/", True)
    s3.store.set_private("blobs/emb/arg/embargoed-blob", True)
    with httpx.Client() as client:
        for key in ("zarr/embargoed/0/0", "blobs/emb/arg/embargoed-blob"):
            refused = client.get(s3.store.object_url(key))
            assert refused.status_code == 403
            assert _s3_error_code(refused.content) == "AccessDenied"
            assert client.head(s3.store.object_url(key)).status_code == 403
            assert client.get(s3.store.presign_get(key)).status_code == 200
            assert client.head(s3.store.presign_head(key)).status_code == 200
        s3.store.set_private("zarr/embargoed/", False)  # unembargo
        assert client.get(s3.store.object_url("zarr/embargoed/0/0")).content == b"secret chunk"
    assert s3.stats()["denied"] == 4


def test_chunked_upload_through_the_proxy(s3: Stack) -> None:
    parts = [bytes([65 + i]) * 100_000 for i in range(5)]
    response = httpx.put(s3.store.presign_put("blobs/chunked"), content=iter(parts))
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert s3.store.get_bytes("blobs/chunked") == b"".join(parts)
    assert s3.stats()["bytes_received"] == 500_000


def test_expired_presigned_urls_are_refused(s3: Stack) -> None:
    s3.store.put_bytes("blobs/expiring", b"x")
    url = s3.store.presign_get("blobs/expiring")
    assert httpx.get(url).status_code == 200
    signed_at = url.split("X-Amz-Date=")[1].split("&")[0]
    expired = url.replace(f"X-Amz-Date={signed_at}", "X-Amz-Date=20200101T000000Z")
    refused = httpx.get(expired)
    assert refused.status_code == 403
    assert _s3_error_code(refused.content) == "AccessDenied"
    assert b"Request has expired" in refused.content


def test_curl_upload_with_expect_continue(s3: Stack, tmp_path: Path) -> None:
    """curl sends `Expect: 100-continue` for large PUTs; the proxy must not stall it."""
    path = tmp_path / "upload.bin"
    path.write_bytes(os.urandom(3 << 20))
    url = s3.store.presign_put("blobs/curl-upload")
    # Told to wait an hour for "100 Continue", curl finishes within the limit only if the
    # proxy sends it; its trace shows the interim answer itself.
    result = subprocess.run(
        ["curl", "-v", "-sS", "-f", "-T", str(path), "-H", "Expect: 100-continue",
         "--expect100-timeout", "3600", "-o", "/dev/null", "-w", "%{http_code}", url],
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout == "200", result.stderr
    assert "< HTTP/1.1 100 Continue" in result.stderr
    assert s3.store.get_bytes("blobs/curl-upload") == path.read_bytes()


# -- faults --------------------------------------------------------------------------------


def _timed_heads(client: httpx.Client, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        client.head(url).raise_for_status()
        times.append(time.monotonic() - started)
    return times


def test_latency_is_added_to_every_request(s3: Stack) -> None:
    s3.store.put_bytes("latency/probe", b"x")
    url = s3.store.object_url("latency/probe")
    with httpx.Client() as client:
        s3.faults(latency_ms=150)
        slowed = _timed_heads(client, url, 5)
    # A lower bound only: other load on the machine can make a request slower, never faster.
    assert all(elapsed >= 0.150 for elapsed in slowed), slowed
    assert s3.stats()["requests"] == {"HEAD": 5}  # each one answered once, after the delay


def test_error_faults_answer_s3_xml_and_repeat_with_a_seed(s3: Stack) -> None:
    s3.store.put_bytes("faults/errors", b"payload")
    url = s3.store.object_url("faults/errors")

    def statuses() -> list[int]:
        s3.faults(error_rate=0.5, seed=7)
        with httpx.Client() as client:
            return [client.get(url).status_code for _ in range(40)]

    first = statuses()
    assert set(first) == {200, 500, 503}
    assert statuses() == first
    s3.faults(error_rate=1)
    response = httpx.get(url)
    assert response.status_code in {500, 503}
    assert response.headers["Content-Type"] == "application/xml"
    assert _s3_error_code(response.content) in {"InternalError", "SlowDown"}
    # An upload answered with an error leaves the connection usable for the retry:
    with httpx.Client() as client:
        assert client.put(s3.store.presign_put("faults/up"), content=b"a" * 1000).status_code >= 500
        s3.faults()
        assert client.put(s3.store.presign_put("faults/up"), content=b"a" * 1000).status_code == 200
    assert s3.stats()["faults"]["error"] == first.count(500) * 2 + first.count(503) * 2 + 2


def test_reset_faults_reset_the_connection(s3: Stack) -> None:
    s3.store.put_bytes("faults/reset", b"payload")
    s3.faults(reset_rate=1)
    with pytest.raises(httpx.TransportError) as caught:
        httpx.get(s3.store.object_url("faults/reset"))
    assert isinstance(caught.value, (httpx.ReadError, httpx.RemoteProtocolError))
    assert s3.stats()["faults"] == {"reset": 1}


def test_truncate_faults_cut_the_body_short(s3: Stack) -> None:
    data = os.urandom(1 << 20)
    s3.store.put_bytes("faults/truncate", data)
    s3.faults(truncate_rate=1)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        httpx.get(s3.store.object_url("faults/truncate"))
    # What a raw client sees: the full length promised, half of it delivered, then EOF.
    host, port = s3.proxy.host, s3.proxy.port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(f"GET /{DEFAULT_BUCKET}/faults/truncate HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(data)}".encode() in head
    assert body == data[: len(data) // 2]
    assert s3.stats()["faults"] == {"truncate": 2}


STREAM_BODY = 8 << 20


def _timed_get(url: str) -> tuple[float, bytes]:
    started = time.monotonic()
    body = httpx.get(url, timeout=30).content
    return time.monotonic() - started, body


def test_stream_cap_paces_each_body(s3: Stack) -> None:
    data = os.urandom(STREAM_BODY)
    s3.store.put_bytes("pace/object", data)
    url = s3.store.object_url("pace/object")
    s3.faults(stream_mbps=50)
    elapsed, body = _timed_get(url)
    assert body == data
    # Lower bounds only (load slows a body, never speeds it); the schedule is TestPace's.
    assert elapsed >= 0.95 * STREAM_BODY / 50e6  # 0.168 s at 50 MB/s
    # A ranged GET is a body of its own, paced the same way.
    started = time.monotonic()
    response = httpx.get(url, headers={"Range": f"bytes=0-{STREAM_BODY // 2 - 1}"})
    assert response.status_code == 206 and response.content == data[: STREAM_BODY // 2]
    assert time.monotonic() - started >= 0.95 * STREAM_BODY / 2 / 50e6


def test_stream_cap_is_per_connection(s3: Stack) -> None:
    """Two GETs in parallel are each paced on their own, as two S3 connections are: every
    body gets a schedule of its own (a shared one would book the second body behind the
    first), and two bodies streaming at once are each held to the cap."""
    faults = FaultConfig(stream_mbps=16)
    first, second = faults.body_pace(), faults.body_pace()
    assert first is not None and second is not None and first is not second
    assert second.schedule(100_000, now=0.0) == first.schedule(100_000, now=0.0)
    data = os.urandom(STREAM_BODY)
    s3.store.put_bytes("pace/parallel", data)
    url = s3.store.object_url("pace/parallel")
    s3.faults(stream_mbps=16)
    alone = STREAM_BODY / 16e6  # 0.52 s
    results: list[tuple[float, bytes]] = []
    both_streaming = threading.Barrier(2, timeout=30)

    def get() -> None:
        started = time.monotonic()
        with httpx.stream("GET", url, timeout=30) as response:
            chunks = response.iter_bytes()
            body = next(chunks)
            both_streaming.wait()
            body += b"".join(chunks)
        results.append((time.monotonic() - started, body))

    threads = [threading.Thread(target=get) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [body == data for _, body in results] == [True, True]
    # Lower bounds: load slows a body, never speeds it.
    assert all(elapsed >= 0.95 * alone for elapsed, _ in results)


def test_stream_cap_paces_uploaded_bodies(s3: Stack) -> None:
    """An upload's body is held to the cap as a download's is (part PUTs cross the same
    link), and two parts sent at once are each paced on their own."""
    data = os.urandom(STREAM_BODY)
    s3.faults(stream_mbps=50)
    started = time.monotonic()
    response = httpx.put(s3.store.presign_put("pace/upload"), content=data, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert s3.stats()["bytes_received"] == STREAM_BODY
    assert elapsed >= 0.95 * STREAM_BODY / 50e6  # a lower bound: 0.168 s at 50 MB/s
    s3.faults(stream_mbps=0)
    assert httpx.get(s3.store.object_url("pace/upload"), timeout=30).content == data
    s3.faults(stream_mbps=16)
    half = STREAM_BODY // 2
    results: list[tuple[float, int]] = []

    def put(index: int) -> None:
        started = time.monotonic()
        status = httpx.put(s3.store.presign_put(f"pace/part{index}"),
                           content=data[index * half:(index + 1) * half], timeout=30).status_code
        results.append((time.monotonic() - started, status))

    threads = [threading.Thread(target=put, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for _, status in results) == [200, 200]
    assert all(elapsed >= 0.95 * half / 16e6 for elapsed, _ in results)  # 0.26 s each


def test_stream_cap_zero_restores_full_speed(s3: Stack) -> None:
    data = os.urandom(STREAM_BODY)
    s3.store.put_bytes("pace/uncapped", data)
    url = s3.store.object_url("pace/uncapped")
    s3.faults(stream_mbps=10)
    assert httpx.get(f"{s3.url}/__dandifs__/faults").json()["stream_mbps"] == 10
    s3.faults(stream_mbps=0)
    assert httpx.get(f"{s3.url}/__dandifs__/faults").json()["stream_mbps"] == 0
    assert FaultConfig(stream_mbps=0).body_pace() is None  # bodies go out unpaced
    assert httpx.get(url, timeout=30).content == data


def test_bad_stream_cap_is_refused_with_a_400(s3: Stack) -> None:
    s3.faults(stream_mbps=40)
    for bad in (-5, "fast", None):
        response = httpx.put(f"{s3.url}/__dandifs__/faults", json={"stream_mbps": bad})
        assert response.status_code == 400
        assert "stream_mbps" in response.json()["detail"]
    assert httpx.get(f"{s3.url}/__dandifs__/faults").json()["stream_mbps"] == 40


def test_control_endpoints_validate_and_count(s3: Stack) -> None:
    bad = httpx.put(f"{s3.url}/__dandifs__/faults", json={"error_rate": 3})
    assert bad.status_code == 400 and "error_rate" in bad.json()["detail"]
    assert httpx.put(f"{s3.url}/__dandifs__/faults", content=b"{not json").status_code == 400
    assert httpx.get(f"{s3.url}/__dandifs__/nothing").status_code == 404
    assert httpx.post(f"{s3.url}/__dandifs__/stats").status_code == 405
    applied = httpx.put(f"{s3.url}/__dandifs__/faults", json={"latency_ms": 5}).json()
    assert applied["latency_ms"] == 5 and applied["error_rate"] == 0
    assert httpx.get(f"{s3.url}/__dandifs__/faults").json() == applied

    data = os.urandom(10_000)
    s3.store.put_bytes("stats/object", data)
    with httpx.Client() as client:
        for _ in range(3):
            client.get(s3.store.object_url("stats/object"))
        client.get(s3.store.object_url("stats/object"), headers={"Range": "bytes=0-9"})
    stats = s3.stats()
    assert stats["requests"] == {"GET": 4} and stats["total_requests"] == 4
    assert stats["statuses"] == {"200": 3, "206": 1}
    assert stats["bytes_sent"] == 3 * len(data) + 10
    assert httpx.delete(f"{s3.url}/__dandifs__/stats").json()["total_requests"] == 0


def test_malformed_requests_get_a_400(s3: Stack) -> None:
    for garbage in (b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"):
        with socket.create_connection((s3.proxy.host, s3.proxy.port)) as sock:
            sock.sendall(garbage)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert _s3_error_code(answer.partition(b"\r\n\r\n")[2]) == "BadRequest"


def test_unreachable_s3_is_a_retryable_503(stack: Stack) -> None:
    from dandifs.localarchive.seaweed import free_ports

    (closed_port,) = free_ports(1)
    proxy = S3Proxy("127.0.0.1", closed_port)
    stack.loop.run(proxy.start())
    try:
        response = httpx.get(f"{proxy.url}/{DEFAULT_BUCKET}/anything")
    finally:
        stack.loop.run(proxy.close())
    assert response.status_code == 503
    assert _s3_error_code(response.content) == "ServiceUnavailable"


def test_proxy_streams_large_objects(s3: Stack, tmp_path: Path) -> None:
    """A body much larger than the proxy's buffers goes through intact and without stalls
    (a pause of 10 s between two pieces fails the read; that limit only catches a hang)."""
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(64 << 20))
    s3.store.put_file("large/object", path, part_size=16 << 20)
    digest = hashlib.md5()
    url = s3.store.object_url("large/object")
    with httpx.stream("GET", url, timeout=httpx.Timeout(10.0)) as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(path.read_bytes()).hexdigest()
    assert s3.stats()["bytes_sent"] == 64 << 20  # one pass, nothing sent twice


def _raw_get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    return response.read()


def test_network_model_counts_connections_requests_and_rounds(s3: Stack) -> None:
    small, large = os.urandom(1024), os.urandom(8 * MIB)
    s3.store.put_bytes("net/small", small)
    s3.store.put_bytes("net/large", large)
    # An idle time that a loaded machine cannot reach between two requests of this client.
    s3.faults(rtt_ms=20, min_rto_ms=60_000)
    httpx.delete(f"{s3.url}/__dandifs__/stats")
    with contextlib.closing(http.client.HTTPConnection(s3.proxy.host, s3.proxy.port)) as first:
        assert _raw_get(first, f"/{DEFAULT_BUCKET}/net/small") == small
        assert _raw_get(first, f"/{DEFAULT_BUCKET}/net/small") == small
    stats = s3.stats()
    assert (stats["connections"], stats["total_requests"], stats["rounds_sent"]) == (1, 2, 2)
    with contextlib.closing(http.client.HTTPConnection(s3.proxy.host, s3.proxy.port)) as second:
        # 8 MiB cold takes the 10 rounds of slow start; at once again on the same connection,
        # with the window at its 4 MiB maximum, 2.
        assert _raw_get(second, f"/{DEFAULT_BUCKET}/net/large") == large
        assert s3.stats()["rounds_sent"] == 2 + 10
        assert _raw_get(second, f"/{DEFAULT_BUCKET}/net/large") == large
        assert s3.stats()["rounds_sent"] == 2 + 10 + 2
        # Idle longer than an RTO (here 200 ms + RTT): cold again.
        s3.faults(rtt_ms=20, min_rto_ms=MIN_RTO * 1000)
        time.sleep(MIN_RTO + 0.1)
        assert _raw_get(second, f"/{DEFAULT_BUCKET}/net/large") == large
    stats = s3.stats()
    assert stats["rounds_sent"] == 2 + 10 + 2 + 10
    assert (stats["connections"], stats["handshakes"], stats["total_requests"]) == (2, 0, 5)
    assert stats["bytes_sent"] == 2 * len(small) + 3 * len(large)


def test_network_model_paces_uploads_in_rounds(s3: Stack) -> None:
    s3.faults(rtt_ms=10)
    # 100 KiB from a cold window: 14,480 + 28,960 + 57,920 = 101,360 bytes, then a 4th round.
    response = httpx.put(s3.store.presign_put("net/upload"), content=os.urandom(100 << 10))
    assert response.status_code == 200
    stats = s3.stats()
    assert (stats["rounds_received"], stats["bytes_received"]) == (4, 100 << 10)


def test_a_new_connection_costs_a_round_trip_more(s3: Stack) -> None:
    """A lower bound only: 1 KiB on a new connection waits for the TCP set-up and the
    request's round trip (100 ms each), however idle the machine."""
    s3.store.put_bytes("net/probe", b"x" * 1024)
    s3.faults(rtt_ms=100)
    started = time.monotonic()
    assert len(httpx.get(s3.store.object_url("net/probe")).content) == 1024
    assert time.monotonic() - started >= 0.2


def test_network_model_and_stream_cap_compose(s3: Stack) -> None:
    data = os.urandom(4 * MIB)
    s3.store.put_bytes("net/capped", data)
    s3.faults(rtt_ms=5, stream_mbps=50)
    started = time.monotonic()
    assert httpx.get(s3.store.object_url("net/capped"), timeout=30).content == data
    assert time.monotonic() - started >= 0.95 * len(data) / 50e6  # the cap still holds
    assert s3.stats()["rounds_sent"] == 9  # 511 x 14,480 < 4 MiB: slow start's 9 rounds


def test_stall_faults_hold_the_body_half_way(s3: Stack) -> None:
    data = os.urandom(1 << 20)
    s3.store.put_bytes("faults/stall", data)
    s3.faults(stall_rate=1, stall_seconds=0.3)
    # What a raw client sees: the head and half the body, then nothing for a while, then the
    # rest (a lower bound on the wait only).
    with socket.create_connection((s3.proxy.host, s3.proxy.port)) as sock:
        sock.sendall(f"GET /{DEFAULT_BUCKET}/faults/stall HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n\r\n".encode())
        received = b""
        while len(received.partition(b"\r\n\r\n")[2]) < len(data) // 2:
            received += sock.recv(1 << 16)
        half_at = time.monotonic()
        while chunk := sock.recv(1 << 16):
            received += chunk
            if len(received.partition(b"\r\n\r\n")[2]) == len(data) // 2 + len(chunk):
                first_after = time.monotonic()
    assert received.partition(b"\r\n\r\n")[2] == data
    assert first_after - half_at >= 0.25
    # HEAD has no body to stall; the GET through httpx is whole.
    assert httpx.head(s3.store.object_url("faults/stall")).status_code == 200
    assert httpx.get(s3.store.object_url("faults/stall")).content == data
    assert s3.stats()["faults"] == {"stall": 2}


def test_bad_network_settings_are_refused_by_name(s3: Stack) -> None:
    for field, bad in (("rtt_ms", -1), ("window_max_kib", 0), ("stall_rate", 2),
                       ("stall_seconds", "long")):
        response = httpx.put(f"{s3.url}/__dandifs__/faults", json={field: bad})
        assert response.status_code == 400 and field in response.json()["detail"]


@dataclass
class TlsStack:
    stack: Stack
    proxy: S3Proxy  # TLS 1.3
    proxy12: S3Proxy  # at most TLS 1.2
    ca_file: Path

    def store(self, proxy: S3Proxy) -> ObjectStore:
        return ObjectStore(self.stack.seaweed.s3_url, proxy.url,
                           private_keys=proxy.private_keys)

    def control(self, proxy: S3Proxy, method: str, name: str, **body: Any) -> Any:
        response = httpx.request(method, f"{proxy.url}/__dandifs__/{name}",
                                 json=body if method == "PUT" else None,
                                 verify=ssl.create_default_context(cafile=self.ca_file))
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def tls_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    """Two S3 proxies over HTTPS (TLS 1.3, and at most 1.2) with one CA, before the module's
    SeaweedFS."""
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority = new_authority(ca_file)
    assert stack.seaweed.ports is not None
    proxies = [S3Proxy(stack.seaweed.host, stack.seaweed.ports.s3,
                       tls=server_context(authority, version)) for version in ("1.3", "1.2")]
    for proxy in proxies:
        stack.loop.run(proxy.start())
    try:
        yield TlsStack(stack, proxies[0], proxies[1], ca_file)
    finally:
        for proxy in proxies:
            stack.loop.run(proxy.close())


@pytest.fixture
def tls(tls_stack: TlsStack) -> Iterator[TlsStack]:
    """The TLS proxies with faults off and counters at zero before and after the test."""
    for proxy in (tls_stack.proxy, tls_stack.proxy12):
        proxy.set_faults(FaultConfig())
        proxy.reset_stats()
    yield tls_stack
    for proxy in (tls_stack.proxy, tls_stack.proxy12):
        proxy.set_faults(FaultConfig())


def test_tls_serves_clients_that_trust_the_ca_and_refuses_others(
    tls: TlsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MIB)
    store = tls.store(tls.proxy)
    store.put_bytes("tls/object", data)
    url = store.object_url("tls/object")
    assert url.startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url)  # the system's CAs (certifi) do not know ours
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # how httpx (and dandifs) trust it
    with httpx.Client() as client:
        assert client.get(url).content == data
        assert client.get(url, headers={"Range": "bytes=5-9"}).content == data[5:10]
        upload = os.urandom(MIB + 5)
        assert client.put(store.presign_put("tls/upload"), content=upload).status_code == 200
        assert client.get(store.object_url("tls/upload")).content == upload
    stats = tls.control(tls.proxy, "GET", "stats")
    assert (stats["connections"], stats["handshakes"]) == (1, 1)  # not the refused one
    assert stats["total_requests"] == 4 and stats["bytes_received"] == MIB + 5


def test_curl_fetches_a_presigned_url_with_the_ca(tls: TlsStack, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    store = tls.store(tls.proxy)
    store.put_bytes("tls/curl", data)
    url = store.presign_get("tls/curl", filename="curl.bin")
    out = tmp_path / "out.bin"
    fetched = subprocess.run(["curl", "-sSf", "--cacert", str(tls.ca_file), "-o", str(out), url],
                             capture_output=True, text=True, timeout=60)
    assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes() == data
    refused = subprocess.run(["curl", "-sS", "-o", os.devnull, url], env={"PATH": os.environ["PATH"],
                             "CURL_CA_BUNDLE": str(Path(__file__))}, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode in {60, 77}  # not trusted / CA file unusable: never served


@pytest.mark.parametrize(("which", "version", "round_trips"),
                         [("proxy", "TLSv1.3", 3), ("proxy12", "TLSv1.2", 4)])
def test_a_new_tls_connection_pays_the_handshake(
    tls: TlsStack, which: str, version: str, round_trips: int
) -> None:
    """TCP set-up, the handshake's round trip(s), the request's: a lower bound only."""
    proxy = getattr(tls, which)
    store = tls.store(proxy)
    store.put_bytes("tls/probe", b"y" * 1024)
    tls.control(proxy, "PUT", "faults", rtt_ms=100)
    context = ssl.create_default_context(cafile=tls.ca_file)
    started = time.monotonic()
    connection = http.client.HTTPSConnection(proxy.host, proxy.port, context=context, timeout=30)
    try:
        assert _raw_get(connection, f"/{DEFAULT_BUCKET}/tls/probe") == b"y" * 1024
        assert time.monotonic() - started >= round_trips * 0.1
        assert connection.sock.version() == version
        assert _raw_get(connection, f"/{DEFAULT_BUCKET}/tls/probe") == b"y" * 1024
    finally:
        connection.close()
    stats = tls.control(proxy, "GET", "stats")
    assert (stats["connections"], stats["handshakes"], stats["rounds_sent"]) == (1, 1, 2)


# -- the process ---------------------------------------------------------------------------


def test_ready_file_token_and_sigterm_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ready = tmp_path / "ready.json"
    process, info = start_local_archive(
        data, ready, tmp_path / "first.log", "--seed", "none", "--s3-latency", "20",
        "--s3-stream-mbps", "75", timeout=120,
    )
    try:
        assert set(info) >= {"api_url", "s3_url", "token", "pid", "data_dir"}
        assert info["pid"] == process.pid and info["data_dir"] == str(data.resolve())
        assert info["api_url"].endswith("/api") and len(info["token"]) == 40
        assert httpx.get(f"{info['api_url']}/info/").status_code == 200
        assert httpx.get(f"{info['s3_direct_url']}/{DEFAULT_BUCKET}").status_code == 200
        faults = httpx.get(f"{info['s3_proxy_url']}/__dandifs__/faults").json()
        assert faults["latency_ms"] == 20 and faults["stream_mbps"] == 75
        run_dir = data / "runs" / str(process.pid)
        weed = [p for p in _group_members_named("weed") if _is_under(p, run_dir)]
        assert len(weed) == 1
    finally:
        code = stop_local_archive(process, signal.SIGTERM)
    assert code == 0, (tmp_path / "first.log").read_text()
    assert not ready.exists()
    assert not run_dir.exists()
    assert not _alive(weed[0])

    process, again = start_local_archive(data, ready, tmp_path / "second.log", "--seed", "none",
                                         timeout=120)
    assert stop_local_archive(process, signal.SIGINT) == 0
    assert again["token"] == info["token"]  # stable for one data directory


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--s3-error-rate", "1.5", "between 0 and 1"),
        ("--s3-stream-mbps", "-3", "must not be negative"),
        ("--s3-stream-mbps", "inf", "stream_mbps must be a finite number"),
    ],
)
def test_runner_refuses_bad_options(option: str, value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dandifs", "local-archive", option, value],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def _group_members_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _is_under(pid: int, directory: Path) -> bool:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.decode(errors="replace").startswith(f"-dir={directory}") for arg in cmdline)


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- the session archive -------------------------------------------------------------------


def test_local_archive_fixture_serves_the_demo(local_archive: LocalArchive) -> None:
    info = httpx.get(f"{local_archive.api_url}/info/").json()
    assert info["services"]["api"]["url"].rstrip("/") == local_archive.api_url
    dandisets = httpx.get(f"{local_archive.api_url}/dandisets/").json()
    assert {d["identifier"] for d in dandisets["results"]} >= {"000001", "000002"}
    local_archive.reset_s3_stats()
    with local_archive.s3_faults(latency_ms=10) as applied:
        assert applied["latency_ms"] == 10
    assert local_archive.s3_stats()["total_requests"] == 0
    assert json.loads(json.dumps(local_archive.s3_stats()))["faults"] == {}
