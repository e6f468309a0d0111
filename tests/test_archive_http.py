"""The archive layer against a tiny real HTTP/1.1 server on loopback, under trio's MockClock.

The server runs in the same trio run as the client and answers from a script: statuses,
`Retry-After`, bodies cut short, reset or silent connections.  Virtual time (autojump)
makes back-off and timeouts instant while still measurable.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import trio
import trio.testing

from dandifs import errors
from dandifs.archive import ArchiveClient, RetryPolicy
from dandifs.archive.pagination import DEFAULT_CONCURRENCY
from dandifs.archive.values import BlobExists

# -- the scripted server ----------------------------------------------------------------


async def listen_on_loopback(
    nursery: trio.Nursery, serve: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    """Serve connections with `serve` on a free loopback port, for the nursery's lifetime."""
    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    send_only: int | None = None  # send this many body bytes, then close: a truncated body
    reset: bool = False  # abort the connection instead of answering
    silent: bool = False  # never answer (the client's read timeout fires)
    delay: float = 0.0  # seconds (of virtual time) before answering


REASONS = {200: "OK", 206: "Partial Content", 302: "Found", 416: "Range Not Satisfiable"}
Handler = Callable[[Request], Reply]


class ScriptedServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery) -> None:
        self.port = await listen_on_loopback(nursery, self._serve)

    async def _serve(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = (line.split(":", 1) for line in lines[1:])
                headers = {name.strip().lower(): value.strip() for name, value in fields}
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                body, buffer = buffer[:length], buffer[length:]
                request = Request(method, target, headers, body)
                self.requests.append(request)
                reply = self.handler(request)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await trio.sleep(reply.delay)
                finally:
                    self.in_flight -= 1
                if reply.reset:
                    stream.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                if reply.silent:
                    await trio.sleep_forever()
                await stream.send_all(self._head(reply))
                payload = reply.body if method != "HEAD" else b""
                if reply.send_only is not None:
                    await stream.send_all(payload[: reply.send_only])
                    return
                await stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    @staticmethod
    def _head(reply: Reply) -> bytes:
        headers = {"Content-Length": str(len(reply.body)), **reply.headers}
        lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def run(test: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    """Run `test(nursery)` under an autojumping MockClock; servers started in the nursery
    are cancelled when the test returns."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await test(nursery)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


POLICY = RetryPolicy(
    max_attempts=5, total_time=300, base_delay=1.0, multiplier=2.0, max_delay=60, random=lambda: 0.0
)


def json_reply(data: object, status: int = 200, **headers: str) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode())


def sequence(*replies: Reply) -> Handler:
    """Answer with `replies` in turn, repeating the last one."""
    queue = list(replies)

    def handler(request: Request) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


async def started(nursery: trio.Nursery, handler: Handler) -> ScriptedServer:
    server = ScriptedServer(handler)
    await server.start(nursery)
    return server


def client_for(server: ScriptedServer, **kwargs) -> ArchiveClient:
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("anonymous", "token" not in kwargs)
    return ArchiveClient(f"{server.origin}/api", **kwargs)


def objects_client(**kwargs) -> ArchiveClient:
    """A client whose API is elsewhere (nothing listens there): S3 URLs are fetched directly."""
    kwargs.setdefault("policy", POLICY)
    return ArchiveClient("http://127.0.0.1:9/api", anonymous=True, **kwargs)


INFO = {"schema_version": "0.7.0", "services": {}}

# -- retries ----------------------------------------------------------------------------


def test_gateway_errors_are_retried_with_exponential_backoff():
    async def test(nursery):
        server = await started(
            nursery, sequence(Reply(503), Reply(502), Reply(500), json_reply(INFO))
        )
        async with client_for(server) as archive:
            start = trio.current_time()
            assert await archive.info() == INFO
            assert trio.current_time() - start == pytest.approx(1 + 2 + 4)
            assert archive.stats.api_requests == 4
            assert archive.stats.failed_attempts == 3

    run(test)


def test_retry_after_seconds_is_honoured_and_capped():
    async def test(nursery):
        server = await started(
            nursery,
            sequence(
                Reply(429, {"Retry-After": "7"}),
                Reply(503, {"Retry-After": "100000"}),
                json_reply(INFO),
            ),
        )
        policy = RetryPolicy(max_attempts=5, total_time=600, max_retry_after=30, random=lambda: 0.0)
        async with client_for(server, policy=policy) as archive:
            start = trio.current_time()
            await archive.info()
            assert trio.current_time() - start == pytest.approx(7 + 30)

    run(test)


def test_persistent_failure_becomes_unavailable_naming_url_and_cause():
    async def test(nursery):
        server = await started(nursery, sequence(Reply(503, {"Retry-After": "2"})))
        async with client_for(server) as archive:
            start = trio.current_time()
            with pytest.raises(errors.Unavailable) as caught:
                await archive.get_dandiset("000001")
            message = str(caught.value)
            assert f"{server.origin}/api/dandisets/000001/" in message
            assert "HTTP 503" in message and "5 attempts" in message
            assert caught.value.retry_after == 2.0
            assert len(server.requests) == POLICY.max_attempts
            assert trio.current_time() - start == pytest.approx(4 * 2)

    run(test)


def test_total_time_bounds_retries():
    async def test(nursery):
        server = await started(nursery, sequence(Reply(502)))
        policy = RetryPolicy(
            max_attempts=100, total_time=20, base_delay=1, multiplier=2, random=lambda: 0.0
        )
        async with client_for(server, policy=policy) as archive:
            start = trio.current_time()
            with pytest.raises(errors.Unavailable, match="HTTP 502"):
                await archive.info()
            # delays 1, 2, 4, 8 fit in 20 s; the next (16) would not.
            assert trio.current_time() - start == pytest.approx(15)
            assert len(server.requests) == 5

    run(test)


def test_truncated_body_reset_and_silence_are_retried():
    body = json.dumps(INFO).encode()

    async def test(nursery):
        server = await started(
            nursery,
            sequence(
                Reply(200, {"Content-Type": "application/json"}, body, send_only=5),
                Reply(reset=True),
                Reply(silent=True),
                json_reply(INFO),
            ),
        )
        async with client_for(server) as archive:
            assert await archive.info() == INFO
            assert len(server.requests) == 4
            assert archive.stats.failed_attempts == 3

    run(test)


def test_a_silent_server_fails_within_total_time_plus_one_timeout():
    async def test(nursery):
        server = await started(nursery, sequence(Reply(silent=True)))
        policy = RetryPolicy(max_attempts=10, total_time=45, random=lambda: 0.0)
        async with client_for(server, policy=policy, timeout=httpx.Timeout(10.0)) as archive:
            start = trio.current_time()
            with pytest.raises(errors.Unavailable, match="/api/info/.*ReadTimeout"):
                await archive.info()
            # Attempts start at 0, 10.25, 20.75, 31.75 and 43.75 s; each times out after 10 s.
            assert trio.current_time() - start == pytest.approx(53.75)
            assert len(server.requests) == 5

    run(test)


def test_post_is_not_repeated_after_the_server_may_have_acted():
    async def test(nursery):
        server = await started(nursery, sequence(Reply(502)))
        async with client_for(server, token="t") as archive:
            with pytest.raises(errors.Unavailable, match="502"):
                await archive.create_dandiset("x", {})
            assert len(server.requests) == 1

    run(test)


# -- error table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "token", "expected"),
    [
        (404, {"detail": "Not found."}, None, errors.NotFound),
        (
            401,
            {"detail": "Authentication credentials were not provided."},
            None,
            errors.AuthenticationRequired,
        ),
        (401, {"detail": "Invalid token."}, "wrong", errors.InvalidToken),
        (
            403,
            {"detail": "You do not have permission to perform this action."},
            "t",
            errors.PermissionDenied,
        ),
        (405, "Only draft versions can be modified.", "t", errors.ReadOnly),
        (409, "An asset with that path already exists", "t", errors.AlreadyExists),
        (412, "", "t", errors.Stale),
        (400, {"metadata": ["No path specified in metadata."]}, "t", errors.ArchiveRejected),
        (501, "", None, errors.Unavailable),
    ],
)
def test_status_table(status, body, token, expected):
    async def test(nursery):
        server = await started(nursery, sequence(json_reply(body, status)))
        async with client_for(server, token=token) if token else client_for(server) as archive:
            with pytest.raises(expected) as caught:
                await archive.get_dandiset("000001")
            assert len(server.requests) == 1
            if isinstance(body, str) and body:
                assert body in str(caught.value)
            if expected is errors.ArchiveRejected:
                assert caught.value.status == 400 and "No path specified" in caught.value.body

    run(test)


# -- token placement --------------------------------------------------------------------


def test_token_is_sent_to_the_api_and_never_across_a_redirect():
    data = bytes(range(256)) * 4

    async def test(nursery):
        s3 = await started(nursery, lambda r: serve_object(r, data, etag="e1"))

        def api(request: Request) -> Reply:
            return Reply(302, {"Location": f"{s3.origin}/bucket/blobs/abc?X-Amz-Signature=x"})

        server = await started(nursery, api)
        async with client_for(server, token="sekrit") as archive:
            url = archive.download_url("5c4a0e6c-7d43-4d7a-9f2c-3b1e8a6c9d01")
            assert await archive.objects.read_range(url, 10, 20) == data[10:20]
            assert await archive.objects.read_range(url, 100, 300) == data[100:300]
            info = await archive.objects.stat(url)
            assert (info.size, info.etag, info.url) == (len(data), "e1", url)
        assert [r.headers.get("authorization") for r in server.requests] == ["token sekrit"]
        assert all("authorization" not in r.headers for r in s3.requests)
        assert len(s3.requests) == 3  # the redirect target was cached

    run(test)


def test_concurrent_first_reads_of_a_download_url_ask_the_api_once():
    """The parallel GETs of a large read of an embargoed file share one redirect lookup."""
    data = bytes(range(256)) * 64

    async def test(nursery):
        s3 = await started(nursery, lambda r: serve_object(r, data, etag="e1"))
        api = await started(
            nursery,
            lambda r: Reply(302, {"Location": f"{s3.origin}/bucket/blobs/abc?X-Amz-Signature=x"}),
        )
        async with client_for(api, token="sekrit") as archive:
            url = archive.download_url("5c4a0e6c-7d43-4d7a-9f2c-3b1e8a6c9d01")
            blocks = 8
            size = len(data) // blocks
            received: dict[int, bytes] = {}

            async def read(block: int) -> None:
                received[block] = await archive.objects.read_range(
                    url, block * size, (block + 1) * size, etag="e1"
                )

            async with trio.open_nursery() as readers:
                for block in range(blocks):
                    readers.start_soon(read, block)
            assert b"".join(received[block] for block in range(blocks)) == data
        assert len(api.requests) == 1
        assert len(s3.requests) == blocks

    run(test)


def test_expired_presigned_target_is_fetched_again():
    data = b"0123456789" * 10

    async def test(nursery):
        def s3_handler(request: Request) -> Reply:
            if request.query.get("sig") == "old":
                return Reply(403, {}, b"<Error><Code>AccessDenied</Code></Error>")
            return serve_object(request, data, etag="e")

        s3 = await started(nursery, s3_handler)
        signatures = iter(["old", "new"])
        server = await started(
            nursery, lambda r: Reply(302, {"Location": f"{s3.origin}/b/k?sig={next(signatures)}"})
        )
        async with client_for(server, token="t") as archive:
            url = archive.download_url("5c4a0e6c-7d43-4d7a-9f2c-3b1e8a6c9d01")
            assert await archive.objects.read_range(url, 0, 5) == b"01234"
        assert len(server.requests) == 2

    run(test)


def test_unsigned_s3_403_is_permission_denied():
    async def test(nursery):
        s3 = await started(
            nursery, sequence(Reply(403, {}, b"<Error><Code>AccessDenied</Code></Error>"))
        )
        async with objects_client() as archive:
            with pytest.raises(errors.PermissionDenied):
                await archive.objects.read_range(f"{s3.origin}/b/k", 0, 5)

    run(test)


# -- ranged reads -----------------------------------------------------------------------


def serve_object(request: Request, data: bytes, *, etag: str, short_by: int = 0) -> Reply:
    """S3-like GET with Range support; `short_by` announces and sends fewer bytes than asked."""
    headers = {"ETag": f'"{etag}"', "Last-Modified": "Sun, 22 Nov 2026 12:00:00 GMT"}
    spec = request.headers.get("range")
    if spec is None:
        return Reply(200, headers, data)
    first_text, last_text = spec.removeprefix("bytes=").split("-")
    first = int(first_text)
    last = min(int(last_text) if last_text else len(data) - 1, len(data) - 1)
    if first >= len(data):
        return Reply(416, {"Content-Range": f"bytes */{len(data)}"})
    body = data[first : last + 1 - short_by]
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return Reply(206, headers, body)


def test_range_reads_check_length_etag_and_the_end_of_the_object():
    data = bytes(range(256)) * 40
    faults = ["cut", "short", "ok"]

    async def test(nursery):
        def handler(request: Request) -> Reply:
            fault = faults.pop(0) if faults else "ok"
            if fault == "short":
                return serve_object(request, data, etag="v1", short_by=3)
            if fault == "cut":
                reply = serve_object(request, data, etag="v1")
                reply.send_only = 10
                return reply
            return serve_object(request, data, etag="v1")

        s3 = await started(nursery, handler)
        url = f"{s3.origin}/bucket/blobs/x"
        async with objects_client() as archive:
            objects = archive.objects
            assert await objects.read_range(url, 1000, 3000, etag="v1") == data[1000:3000]
            # A cut body and a short answer were retried, their bytes kept: each retry asks
            # only for the rest.
            assert [r.headers["range"] for r in s3.requests] == [
                "bytes=1000-2999", "bytes=1010-2999", "bytes=2997-2999"]
            assert archive.stats.failed_attempts == 2
            assert await objects.read_range(url, len(data) - 10, len(data) + 50) == data[-10:]
            assert await objects.read_range(url, len(data) + 5, len(data) + 50) == b""
            assert await objects.read_range(url, 7, 7) == b""
            with pytest.raises(errors.Stale, match="v1"):
                await objects.read_range(url, 0, 10, etag="v0")
            with pytest.raises(ValueError):
                await objects.read_range(url, 10, 5)

    run(test)


def test_a_server_ignoring_range_still_gives_the_right_bytes():
    data = b"abcdefghijklmnopqrstuvwxyz" * 100

    async def test(nursery):
        s3 = await started(nursery, lambda r: Reply(200, {"ETag": '"z"'}, data))
        async with objects_client() as archive:
            assert await archive.objects.read_range(f"{s3.origin}/o", 30, 60) == data[30:60]
            info = await archive.objects.stat(f"{s3.origin}/o")
            assert (info.size, info.etag) == (len(data), "z")

    run(test)


# -- pagination -------------------------------------------------------------------------


def dandiset_record(number: int) -> dict:
    version = {
        "version": "draft",
        "name": f"d{number}",
        "asset_count": 0,
        "size": 0,
        "status": "Valid",
        "created": "2026-01-01T00:00:00Z",
        "modified": "2026-01-01T00:00:00Z",
    }
    return {
        "identifier": f"{number:06d}",
        "created": "2026-01-01T00:00:00Z",
        "modified": "2026-01-01T00:00:00Z",
        "contact_person": "",
        "embargo_status": "OPEN",
        "draft_version": version,
        "most_recent_published_version": None,
    }


def test_pages_after_the_first_are_fetched_concurrently_and_kept_in_order():
    total = 9_500

    async def test(nursery):
        def handler(request: Request) -> Reply:
            page, size = int(request.query.get("page", 1)), int(request.query["page_size"])
            numbers = range((page - 1) * size + 1, min(page * size, total) + 1)
            nxt = None
            if page * size < total:
                query = dict(request.query, page=str(page + 1))
                nxt = f"{server.origin}{request.path}?" + "&".join(
                    f"{k}={v}" for k, v in query.items()
                )
            reply = json_reply(
                {
                    "count": total,
                    "next": nxt,
                    "previous": None,
                    "results": [dandiset_record(n) for n in numbers],
                }
            )
            reply.delay = 1.0 + 0.01 * (10 - page)  # later pages answer first
            return reply

        server = await started(nursery, handler)
        async with client_for(server) as archive:
            start = trio.current_time()
            dandisets = await archive.list_dandisets()
            elapsed = trio.current_time() - start
        assert [d.identifier for d in dandisets] == [f"{n:06d}" for n in range(1, total + 1)]
        assert sorted(int(r.query.get("page", 1)) for r in server.requests) == list(range(1, 11))
        # Page 1 alone, then pages 2..10 at most DEFAULT_CONCURRENCY at a time: two rounds.
        assert server.max_in_flight == DEFAULT_CONCURRENCY
        assert elapsed == pytest.approx(3.0, abs=0.2)

    run(test)


def test_an_unfamiliar_next_link_is_followed():
    async def test(nursery):
        def handler(request: Request) -> Reply:
            after = request.query.get("after", "")
            files = {"": (["a", "b"], "b"), "b": (["c"], None)}[after]
            names, last = files
            nxt = f"{server.origin}/api/zarr/z/files/?after={last}" if last else None
            return json_reply(
                {
                    "next": nxt,
                    "results": [
                        {
                            "Key": n,
                            "Size": 1,
                            "ETag": "e",
                            "LastModified": "2026-01-01 00:00:00+00:00",
                        }
                        for n in names
                    ],
                }
            )

        server = await started(nursery, handler)
        async with client_for(server) as archive:
            files = await archive.list_zarr_files("z")
        assert [f.key for f in files] == ["a", "b", "c"]

    run(test)


def test_initialize_409_gives_the_existing_blob():
    async def test(nursery):
        server = await started(
            nursery,
            sequence(
                json_reply(
                    "Blob already exists.", 409, Location="0d9a3c5e-1111-4222-8333-444455556666"
                )
            ),
        )
        async with client_for(server, token="t") as archive:
            started_upload = await archive.initialize_upload("000001", 10, "abc-1")
        assert started_upload == BlobExists(blob_id="0d9a3c5e-1111-4222-8333-444455556666")
        assert json.loads(server.requests[0].body) == {
            "contentSize": 10,
            "digest": {"algorithm": "dandi:dandi-etag", "value": "abc-1"},
            "dandiset": "000001",
        }

    run(test)


def test_messages_do_not_carry_presigned_signatures():
    async def test(nursery):
        s3 = await started(nursery, sequence(Reply(503)))
        api = await started(
            nursery,
            lambda r: Reply(302, {"Location": f"{s3.origin}/b/k?X-Amz-Signature=SECRETSIG"}),
        )
        policy = RetryPolicy(max_attempts=2, random=lambda: 0.0)
        async with client_for(api, token="t", policy=policy) as archive:
            with pytest.raises(errors.Unavailable) as caught:
                await archive.objects.read_range(archive.download_url("a"), 0, 10)
        assert "SECRETSIG" not in str(caught.value)
        assert f"{s3.origin}/b/k?<signed>" in str(caught.value)

    run(test)


def test_file_parts_are_streamed_with_a_length_and_resent_on_retry(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "file.bin"
    path.write_bytes(data)

    async def test(nursery):
        first = [True]

        def handler(request: Request) -> Reply:
            if first.pop() if first else False:
                return Reply(reset=True)
            return Reply(200, {"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})

        s3 = await started(nursery, handler)
        async with objects_client() as archive:
            etag = await archive.objects.put_file(
                f"{s3.origin}/b/k?partNumber=2", path, 1000, 300_000
            )
        assert etag == hashlib.md5(data[1000:301_000]).hexdigest()
        assert [len(r.body) for r in s3.requests] == [300_000, 300_000]
        assert all("transfer-encoding" not in r.headers for r in s3.requests)

    run(test)
