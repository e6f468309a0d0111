"""The lean HTTP/1.1 client for ranged object reads (`dandifs.archive.rawhttp`), through
`ObjectStore.read_range`, against real loopback servers under trio's MockClock.

`test_archive_http.py` already runs the object-read cases (ranges, ETags, short and cut
bodies, 403 re-resolution, servers ignoring Range) through this client; here are the
connection-level behaviours of its own: keep-alive, connections the server closed while
idle, chunked and unframed bodies, redirects followed once and cached.
"""

from __future__ import annotations

from collections.abc import Callable

import ssl

import httpx
import pytest
import trustme
import trio
import trio.testing

from dandifs import errors
from dandifs.archive.objects import (
    STALL_FLOOR,
    STALL_QUANTUM,
    STALL_RATE_FACTOR,
    STALL_ROUND_TRIPS,
    ObjectStore,
)
from dandifs.archive.rawhttp import INITIAL_WINDOW, MIN_RTO, Origin, TransportError, parse_head
from test_archive_http import (
    Reply,
    listen_on_loopback,
    objects_client,
    run,
    sequence,
    serve_object,
    started,
)

DATA = bytes(range(256)) * 64  # 16 KiB


# -- a server that writes raw answers and counts connections -------------------------------

RawReply = tuple[bytes, bool | str]
"""Bytes to send, then whether to close the connection, or `STALL`: send nothing more."""
STALL = "stall"


class RawServer:
    """Answers each request head with `handler(target, connection_number)`; over TLS with
    the server context `tls`.  Records each request's target and Range header, and which
    stalled connections (`STALL`) the client closed."""

    def __init__(
        self, handler: Callable[[str, int], RawReply], tls: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[str] = []
        self.ranges: list[str | None] = []
        self.closed_stalled: list[int] = []  # the stalled connections the client closed
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/bucket/key"

    async def start(self, nursery: trio.Nursery) -> RawServer:
        self.port = await listen_on_loopback(nursery, self._serve)
        return self

    async def _serve(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        number = self.connections
        buffer = b""
        if self.tls is not None:
            stream = trio.SSLStream(stream, self.tls, server_side=True)
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                target = head.split(b" ")[1].decode()
                self.requests.append(target)
                self.ranges.append(_header(head, b"range"))
                answer, close = self.handler(target, number)
                await stream.send_all(answer)
                if close == STALL:
                    await self._until_closed(stream, number)
                if close:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    async def _until_closed(self, stream: trio.abc.Stream, number: int) -> None:
        """Send nothing more; note when the client closes the connection (over TLS
        without a goodbye: a broken stream)."""
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        self.closed_stalled.append(number)


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == name:
            return value.strip().decode()
    return None


def asked_range(server: RawServer) -> tuple[int, int]:
    """The first and last byte the request being answered asked for."""
    first, last = server.ranges[-1].removeprefix("bytes=").split("-")
    return int(first), int(last)


def partial_content(first: int, last: int, **extra: str) -> bytes:
    headers = {"Content-Range": f"bytes {first}-{last}/{len(DATA)}", "ETag": '"e1"',
               "Content-Length": str(last - first + 1), **extra}
    head = "HTTP/1.1 206 Partial Content\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + DATA[first : last + 1]


# -- pure parsing -------------------------------------------------------------------------


def test_parse_head_reads_status_reason_and_headers_case_insensitively():
    status, reason, headers = parse_head(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nETag:  \"x\" "
    )
    assert (status, reason) == (206, "Partial Content")
    assert headers["content-range"] == "bytes 0-9/100"
    assert headers["etag"] == '"x"'
    assert parse_head(b"HTTP/1.0 200")[:2] == (200, "")


@pytest.mark.parametrize(
    "head", [b"SSH-2.0-OpenSSH_9.2", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon here",
             b"HTTP/1.1 200 OK\r\n Folded: header"],
)
def test_parse_head_refuses_what_is_not_http(head):
    with pytest.raises(TransportError):
        parse_head(head)


# -- connections --------------------------------------------------------------------------


def test_ranged_reads_share_one_kept_alive_connection():
    async def test(nursery):
        server = await RawServer(lambda target, n: (partial_content(0, 99), False)).start(nursery)
        async with objects_client() as archive:
            for _ in range(3):
                assert await archive.objects.read_range(server.url, 0, 100) == DATA[:100]
            assert server.connections == 1
            assert archive.stats.object_requests == 3

    run(test)


def test_a_connection_closed_while_idle_is_replaced_without_a_retry():
    async def test(nursery):
        # Every answer claims keep-alive, but the server hangs up right after it.
        server = await RawServer(lambda target, n: (partial_content(10, 19), True)).start(nursery)
        async with objects_client() as archive:
            for _ in range(3):
                await trio.sleep(1)  # the close reaches the client while the connection idles
                assert await archive.objects.read_range(server.url, 10, 20) == DATA[10:20]
            assert server.connections == 3
            assert archive.stats.failed_attempts == 0

    run(test)


def test_warmed_connections_carry_the_first_gets():
    async def test(nursery):
        server = await RawServer(lambda target, n: (partial_content(0, 99), False)).start(nursery)
        async with objects_client() as archive:
            objects = archive.objects
            assert objects.warm(server.url, 2, nursery) == 2
            assert objects.warm(server.url, 2, nursery) == 0  # enough are being opened
            for _ in range(10_000):  # until the server has accepted both
                if server.connections == 2:
                    break
                await trio.sleep(0.01)
            assert (server.connections, objects.ready_connections(server.url)) == (2, 2)
            for _ in range(3):
                assert await objects.read_range(server.url, 0, 100) == DATA[:100]
            assert (server.connections, len(server.requests)) == (2, 3)
            assert objects.ready_connections(server.url) == 2

    run(test)


def test_a_get_takes_a_connection_still_being_opened_rather_than_its_own():
    async def test(nursery):
        server = await RawServer(lambda target, n: (partial_content(0, 99), False)).start(nursery)
        async with objects_client() as archive:
            archive.objects.warm(server.url, 1, nursery)
            assert await archive.objects.read_range(server.url, 0, 100) == DATA[:100]
            assert server.connections == 1

    run(test)


def test_the_window_estimate_grows_with_the_bytes_moved_and_falls_back_when_idle():
    async def test(nursery):
        server = await RawServer(lambda target, n: (partial_content(0, 9999), False)).start(
            nursery
        )
        async with objects_client() as archive:
            ranges = archive.objects.ranges
            assert ranges.warm_bytes(server.url) == INITIAL_WINDOW  # a new connection's
            await archive.objects.read_range(server.url, 0, 10000)
            await archive.objects.read_range(server.url, 0, 10000)
            assert ranges.warm_bytes(server.url) == INITIAL_WINDOW + 20000
            [connection] = ranges._idle[Origin.of(server.url)[0]]
            later = connection.last_used + MIN_RTO + connection.rtt + 0.01
            assert connection.window_now(later) == INITIAL_WINDOW

    run(test)


def test_connection_close_is_honoured():
    async def test(nursery):
        server = await RawServer(
            lambda target, n: (partial_content(0, 9, Connection="close"), False)
        ).start(nursery)
        async with objects_client() as archive:
            for _ in range(2):
                assert await archive.objects.read_range(server.url, 0, 10) == DATA[:10]
            assert server.connections == 2

    run(test)


def test_a_body_read_only_in_part_does_not_go_back_to_the_pool():
    async def test(nursery):
        whole = (b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: %d\r\n\r\n" % len(DATA)) + DATA
        server = await RawServer(lambda target, n: (whole, False)).start(nursery)
        async with objects_client() as archive:
            assert await archive.objects.read_range(server.url, 5, 15) == DATA[5:15]
            assert await archive.objects.read_range(server.url, 0, len(DATA)) == DATA
            assert server.connections == 2  # the first answer's rest was never read

    run(test)


def test_chunked_and_unframed_error_bodies_are_read_and_quoted():
    chunked = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nno su\r\n6;ext=1\r\nch key\r\n0\r\n\r\n")
    unframed = b"HTTP/1.1 404 Not Found\r\n\r\ngone for good"

    async def test(nursery):
        server = await RawServer(
            lambda target, n: (chunked, False) if "chunked" in target else (unframed, True)
        ).start(nursery)
        async with objects_client() as archive:
            with pytest.raises(errors.NotFound, match="no such key"):
                await archive.objects.read_range(server.url + "?chunked", 0, 10)
            with pytest.raises(errors.NotFound, match="gone for good"):
                await archive.objects.read_range(server.url, 0, 10)
            assert archive.stats.failed_attempts == 0

    run(test)


def test_garbage_and_silence_are_retried_then_reported():
    async def test(nursery):
        server = await RawServer(lambda target, n: (b"garbage\r\n\r\n", False)).start(nursery)
        async with objects_client() as archive:
            with pytest.raises(errors.Unavailable, match="not an HTTP/1.x answer"):
                await archive.objects.read_range(server.url, 0, 10)
            assert archive.stats.failed_attempts == 5

    run(test)


def test_a_silent_server_times_out_and_the_read_is_retried():
    async def test(nursery):
        s3 = await started(
            nursery, sequence(Reply(silent=True), Reply(503, {"Retry-After": "7"}), Reply())
        )
        s3.handler = _then_object(s3.handler, after=2)
        # Object bodies are received on a worker thread: its read timeout is real time.
        async with objects_client(timeout=httpx.Timeout(0.5)) as archive:
            began = trio.current_time()
            assert await archive.objects.read_range(f"{s3.origin}/o", 3, 9) == DATA[3:9]
            # The 1 s back-off after the silence, then the 7 s the 503 asked for.
            assert trio.current_time() - began == pytest.approx(8)
            assert archive.stats.failed_attempts == 2

    run(test)


def _then_object(scripted: Callable, *, after: int) -> Callable:
    calls = 0

    def handler(request):
        nonlocal calls
        calls += 1
        return scripted(request) if calls <= after else serve_object(request, DATA, etag="e")

    return handler


async def redirected_object(nursery):
    """(an object server holding DATA, a server whose every URL redirects (307) to it)."""
    s3 = await started(nursery, lambda request: serve_object(request, DATA, etag="e"))
    mirror = await started(nursery, lambda request: Reply(307, {"Location": f"{s3.origin}/real"}))
    return s3, mirror


def test_a_redirecting_object_url_is_followed_once_and_its_target_cached():
    """A download URL the mount did not recognise as the API's (another spelling of its
    host) redirects: later reads go straight to the target."""

    async def test(nursery):
        s3, mirror = await redirected_object(nursery)
        async with objects_client() as archive:
            for start in range(0, 40, 10):
                assert await archive.objects.read_range(
                    f"{mirror.origin}/o", start, start + 4
                ) == DATA[start : start + 4]
            assert len(mirror.requests) == 1
            assert [r.path for r in s3.requests] == ["/real"] * 4

    run(test)


# -- bodies in pieces ---------------------------------------------------------------------


LARGE = bytes(range(251)) * 4000  # about 1 MB: most of it arrives after the head


def large_partial_content(first: int, last: int) -> bytes:
    head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{len(LARGE)}"
            f"\r\nETag: \"e1\"\r\nContent-Length: {last - first + 1}\r\n\r\n")
    return head.encode() + LARGE[first : last + 1]


@pytest.mark.parametrize("piece_size", [1000, 4096, 5000, 16 * 1024, 256 * 1024, 1 << 20, 4 << 20])
def test_a_body_is_received_in_pieces_of_the_size_asked_for(piece_size):
    """The cache keeps blocks in buffers of their own: the body arrives straight in them,
    both the part that came along with the answer's head and the rest."""
    first, end = 7, len(LARGE) - 3

    async def test(nursery):
        server = await RawServer(
            lambda target, n: (large_partial_content(first, end - 1), False)
        ).start(nursery)
        async with objects_client() as archive:
            pieces = await archive.objects.read_pieces(
                server.url, first, end, piece_size=piece_size, etag="e1"
            )
            assert b"".join(pieces) == LARGE[first:end]
            sizes = [len(piece) for piece in pieces]
            assert sizes[:-1] == [piece_size] * (len(pieces) - 1)
            assert 0 < sizes[-1] <= piece_size
            # The connection went back to the pool: the body was read to its end.
            assert await archive.objects.read_range(server.url, first, end) == LARGE[first:end]
            assert server.connections == 1

    run(test)


def test_pieces_of_a_body_that_ends_early_keep_its_bytes_and_a_zero_size_is_refused():
    cut = partial_content(0, 8999)[:-5000]  # promises 9000 bytes, sends 4000

    async def test(nursery):
        server = await RawServer(
            lambda target, n: (cut, True) if n == 1 else (partial_content(*asked_range(server)),
                                                          False)
        ).start(nursery)
        async with objects_client() as archive:
            pieces = await archive.objects.read_pieces(server.url, 0, 9000, piece_size=4096)
            assert [len(piece) for piece in pieces] == [4096, 4096, 808]
            assert b"".join(pieces) == DATA[:9000]
            assert archive.stats.failed_attempts == 1
            assert server.ranges == ["bytes=0-8999", "bytes=4000-8999"]  # only the rest again
            assert archive.stats.bytes_received == 9000
            with pytest.raises(ValueError, match="piece size"):
                await archive.objects.read_pieces(server.url, 0, 10, piece_size=0)

    run(test)


def test_pieces_through_the_general_client_are_cut_alike():
    """Read by httpx (a store without the lean client: what a proxied origin gets), a
    body is cut into the same pieces."""

    async def test(nursery):
        s3 = await started(nursery, lambda request: serve_object(request, DATA, etag="e"))
        async with objects_client() as archive:
            store = ObjectStore(archive.objects.session)
            pieces = await store.read_pieces(f"{s3.origin}/o", 100, 1100, piece_size=300)
            assert [len(piece) for piece in pieces] == [300, 300, 300, 100]
            assert b"".join(pieces) == DATA[100:1100]
            assert len(s3.requests) == 1

    run(test)


# -- stalls -------------------------------------------------------------------------------


def large_range(server: RawServer) -> bytes:
    return large_partial_content(*asked_range(server))


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("sent", [0, 300_001], ids=["no-head", "half-body"])
def test_a_stalled_get_is_given_up_and_only_its_missing_bytes_asked_again(
    tls, sent, tls_server_context, trusted
):
    """The first GET sends its head and `sent` bytes of its body (or, for 0, not even its
    head), then nothing: the read gives it up after a bounded silence rather than waiting
    for it, closes that connection and asks another for exactly the bytes still missing."""
    first, end, piece_size = 7, len(LARGE) - 3, 64 * 1024

    def handler(target: str, n: int) -> RawReply:
        if n == 1:
            answer = large_range(server)
            head = answer.index(b"\r\n\r\n") + 4
            return answer[: head + sent] if sent else b"", STALL
        return large_range(server), False

    async def test(nursery):
        nonlocal server
        server = await RawServer(handler, tls_server_context if tls else None).start(nursery)
        async with objects_client() as archive:
            pieces = await archive.objects.read_pieces(
                server.url, first, end, piece_size=piece_size, etag="e1"
            )
            assert b"".join(pieces) == LARGE[first:end]
            assert [len(piece) for piece in pieces[:-1]] == [piece_size] * (len(pieces) - 1)
            assert server.ranges == [f"bytes={first}-{end - 1}", f"bytes={first + sent}-{end - 1}"]
            assert server.connections == 2
            assert server.closed_stalled == [1]  # the stalled connection was closed, not reused
            stats = archive.stats
            assert stats.stalled_requests == stats.hedged_requests == stats.failed_attempts == 1
            assert stats.bytes_received == end - first  # no byte came twice
            # The second connection went back to the pool and serves the next read.
            assert await archive.objects.read_range(server.url, 0, 10, etag="e1") == LARGE[:10]
            assert server.connections == 2

    server: RawServer
    run(test)


def test_a_stall_bound_follows_the_measured_round_trip_and_rate():
    store = ObjectStore(objects_client().objects.session)
    assert store.stall_timeout == STALL_FLOOR  # nothing measured yet
    store._head_seconds, store._stream_rate = 0.5, None  # a distant server
    assert store.stall_timeout == pytest.approx(STALL_ROUND_TRIPS * 0.5)
    store._head_seconds, store._stream_rate = 0.001, 1e5  # a slow link: 100 kB/s
    assert store.stall_timeout == pytest.approx(
        STALL_ROUND_TRIPS * 0.001 + STALL_RATE_FACTOR * STALL_QUANTUM / 1e5
    )


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(certificate_authority) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trusted(certificate_authority, tmp_path, monkeypatch) -> None:
    """The client trusts the test CA the way httpx would: through `SSL_CERT_FILE`."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


def test_https_ranged_reads_over_one_tls_connection(tls_server_context, trusted):
    async def test(nursery):
        def handler(target: str, n: int) -> RawReply:
            if target.endswith("/large"):
                return large_partial_content(7, len(LARGE) - 1), False
            return partial_content(0, 99), False

        server = await RawServer(handler, tls_server_context).start(nursery)
        async with objects_client() as archive:
            for _ in range(3):
                assert await archive.objects.read_range(server.url, 0, 100, etag="e1") == DATA[:100]
            pieces = await archive.objects.read_pieces(
                f"{server.url}/large", 7, len(LARGE), piece_size=64 * 1024, etag="e1"
            )
            assert b"".join(pieces) == LARGE[7:]
            assert [len(piece) for piece in pieces[:-1]] == [64 * 1024] * (len(pieces) - 1)
            assert all(isinstance(piece, bytearray) for piece in pieces)  # received in place
            assert server.connections == 1
            assert archive.stats.object_requests == 4
            assert archive.objects.stream_rate is not None  # timed like any other body

    run(test)


async def small_object_over_tls(nursery: trio.Nursery, context: ssl.SSLContext) -> RawServer:
    """A TLS server answering every GET with bytes 0-99 of DATA (ETag "e1")."""
    return await RawServer(lambda target, n: (partial_content(0, 99), False), context).start(
        nursery
    )


def test_https_read_of_a_changed_object_is_stale(tls_server_context, trusted):
    async def test(nursery):
        server = await small_object_over_tls(nursery, tls_server_context)
        async with objects_client() as archive:
            with pytest.raises(errors.Stale, match="e1"):
                await archive.objects.read_range(server.url, 0, 100, etag="e0")
            assert len(server.requests) == 1

    run(test)


def test_an_untrusted_certificate_is_refused_without_retries(tls_server_context):
    async def test(nursery):
        server = await small_object_over_tls(nursery, tls_server_context)
        async with objects_client() as archive:
            with pytest.raises(errors.Unavailable, match="certificate"):
                await archive.objects.read_range(server.url, 0, 100)
            assert server.requests == []  # no request was sent over it
            assert server.connections == 1

    run(test)
