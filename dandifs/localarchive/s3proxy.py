"""The S3 front proxy: what clients of the local archive see as "S3".

It relays HTTP/1.1 between clients and SeaweedFS, moving bodies both ways without buffering
them (zero-copy, see `relay.py`), and adds what a real bucket on the internet has and a
loopback SeaweedFS lacks:

- latency: a fixed delay before each request is answered;
- bandwidth per connection: each response body is paced to at most `stream_mbps` MB/s, on
  its own, so N parallel GETs move N times as much (S3 bounds each connection's rate, which
  is why clients read large objects with parallel ranged GETs);
- faults, drawn per request from a seeded generator: 500/503 answers with an S3 XML error
  body, connection resets, and truncated bodies (the full Content-Length promised, the
  connection closed half-way);
- the embargo bucket policy: anonymous (unsigned) GET/HEAD of a private key is refused with
  403 `AccessDenied`, while presigned requests pass;
- expiry of presigned URLs (403 `AccessDenied`, "Request has expired");
- request counters, so benchmarks can count the S3 requests a client made.

Faults and counters are controlled at runtime under `/__dandifs__/` (not a valid bucket name):
`GET|PUT /__dandifs__/faults` (JSON `FaultConfig`), `GET|DELETE /__dandifs__/stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import threading
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dandifs.localarchive.objectstore import PrivateKeys
from dandifs.localarchive.relay import Connection, Pace

CONTROL_PREFIX = "/__dandifs__/"
_DISCARD_CHUNK = 1 << 20  # bytes per read when dropping a body
_HEAD_LIMIT = 64 * 1024  # longest request or response head accepted
_NO_BODY_STATUSES = {204, 304}


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.1 we can relay."""


class UpstreamLost(Exception):
    """SeaweedFS closed or refused the connection."""


@dataclass(frozen=True)
class FaultConfig:
    """What the proxy does to requests. Rates are probabilities per request; their sum is at
    most 1. The same `seed` gives the same sequence of faults for the same sequence of requests.
    `stream_mbps` caps each response body at that many MB (10^6 bytes) per second; 0 is no cap.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    seed: int | None = None
    stream_mbps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "stream_mbps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        rates = {"error_rate": self.error_rate, "reset_rate": self.reset_rate,
                 "truncate_rate": self.truncate_rate}
        for name, value in rates.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if sum(rates.values()) > 1:
            raise ValueError("error_rate + reset_rate + truncate_rate must be at most 1")

    @classmethod
    def from_json(cls, data: object) -> FaultConfig:
        """Build from a JSON object; unknown fields and wrong types are refused by name."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "seed":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError("seed must be an integer or null")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number")
            values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def body_pace(self) -> Pace | None:
        """A fresh pace for one response body, or None when bodies are not capped."""
        return Pace(self.stream_mbps * 1e6) if self.stream_mbps else None


@dataclass
class ProxyStats:
    """Counters since start or the last reset. Control requests are not counted."""

    requests: Counter[str]  # by method
    statuses: Counter[int]
    faults: Counter[str]  # error, reset, truncate
    denied: int = 0
    bytes_sent: int = 0  # response body bytes written to clients
    bytes_received: int = 0  # request body bytes read from clients

    @classmethod
    def empty(cls) -> ProxyStats:
        return cls(Counter(), Counter(), Counter())

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "total_requests": sum(self.requests.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "faults": dict(self.faults),
            "denied": self.denied,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }


@dataclass
class _Head:
    """A parsed request or response head, plus its raw bytes for forwarding unchanged."""

    start_line: str
    headers: list[tuple[str, str]]
    raw: bytes

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def has_token(self, name: str, token: str) -> bool:
        value = self.get(name) or ""
        return token in {part.strip().lower() for part in value.split(",")}


def _parse_head(raw: bytes) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")  # latin-1 maps every byte: never fails
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name, value.strip()))
    return _Head(lines[0], headers, raw)


async def _read_head(connection: Connection) -> _Head | None:
    """The next head, or None at a clean end of stream (no byte of a new message)."""
    try:
        raw = await connection.readuntil(b"\r\n\r\n", _HEAD_LIMIT)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("connection closed inside a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("message head too long") from exc
    return _parse_head(raw)


def _content_length(head: _Head) -> int | None:
    value = head.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest(f"bad Content-Length {value!r}")
    return int(value)


def _xml_error(code: str, message: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{_xml_escape(resource)}</Resource>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _response(
    status: int,
    reason: str,
    body: bytes,
    content_type: str,
    *,
    head_only: bool = False,
    close: bool = False,
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Server: dandifs-s3proxy",
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)


def _is_signed(target_query: str, head: _Head) -> bool:
    if head.get("authorization"):
        return True
    query = parse_qs(target_query, keep_blank_values=True)
    return "X-Amz-Signature" in query or "Signature" in query


def _presigned_url_expired(target_query: str) -> bool:
    """SigV4 presigned URLs carry their signing time and lifetime; S3 refuses them after it
    (SeaweedFS without identities does not check signatures, so the proxy does this part)."""
    if "X-Amz-Expires" not in target_query:
        return False
    query = parse_qs(target_query)
    try:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        lifetime = int(query["X-Amz-Expires"][0])
    except (KeyError, ValueError):
        return False  # not a well-formed presigned URL: let S3 judge it
    expiry = signed.replace(tzinfo=timezone.utc) + timedelta(seconds=lifetime)
    return datetime.now(timezone.utc) > expiry


class _Upstream:
    """One keep-alive connection to SeaweedFS, owned by one client connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._connection: Connection | None = None

    async def connection(self) -> Connection:
        if self._connection is None or self._connection.at_eof():
            self.close()
            try:
                self._connection = await Connection.connect(self.host, self.port)
            except OSError as exc:
                where = f"{self.host}:{self.port}"
                raise UpstreamLost(f"cannot connect to S3 at {where}: {exc}") from exc
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None


class S3Proxy:
    """Relays S3 requests from `host:port` to SeaweedFS at `upstream`, with faults and counters.

    `faults` and `stats` may be read and replaced from any thread (and through the control
    paths); the relay itself runs on the event loop that called `start()`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        private_keys: PrivateKeys | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.private_keys = private_keys if private_keys is not None else PrivateKeys()
        self.stats = ProxyStats.empty()
        self._lock = threading.Lock()
        self._faults = FaultConfig()
        self._rng = random.Random()
        self.set_faults(faults or FaultConfig())
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- configuration ----------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def reset_stats(self) -> None:
        self.stats = ProxyStats.empty()

    def _draw_fault(self) -> str | None:
        faults = self._faults
        if not (faults.error_rate or faults.reset_rate or faults.truncate_rate):
            return None
        with self._lock:
            draw = self._rng.random()
        for kind, rate in (
            ("error", faults.error_rate),
            ("reset", faults.reset_rate),
            ("truncate", faults.truncate_rate),
        ):
            if draw < rate:
                return kind
            draw -= rate
        return None

    # -- serving ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept())

    async def _accept(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError:  # e.g. out of file descriptors: keep serving the others
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._serve_connection(Connection(sock)))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the S3 proxy has not been started")
        return self._listener.getsockname()[1]

    @property
    def host(self) -> str:
        if self._listener is None:
            raise RuntimeError("the S3 proxy has not been started")
        return self._listener.getsockname()[0]

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        if self._listener is None or self._accepting is None:
            return
        self._accepting.cancel()
        tasks = [self._accepting, *self._connections]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listener.close()
        self._listener = self._accepting = None

    async def _serve_connection(self, client: Connection) -> None:
        upstream = _Upstream(self.upstream_host, self.upstream_port)
        try:
            while await self._serve_request(client, upstream):
                pass
        except BadRequest as exc:
            body = _xml_error("BadRequest", str(exc), "")
            client.write(_response(400, "Bad Request", body, "application/xml", close=True))
        except UpstreamLost as exc:
            # Raised only before any byte of a response went out: the client can retry.
            self.stats.statuses[503] += 1
            body = _xml_error("ServiceUnavailable", str(exc), "")
            client.write(_response(503, "Service Unavailable", body, "application/xml",
                                   close=True))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client or S3 went away mid-message: nothing sensible to answer
        finally:
            upstream.close()
            await client.aclose()

    async def _serve_request(
        self,
        client: Connection,
        upstream: _Upstream,
    ) -> bool:
        """Relay one request and its response; return whether the connection stays open."""
        request = await _read_head(client)
        if request is None:
            return False
        method, target, version = _split_request_line(request.start_line)
        url = urlsplit(target)
        if url.path.startswith(CONTROL_PREFIX):
            body = await _read_body(client, request)
            client.write(self._control(method, url.path, body))
            await client.drain()
            return _keep_alive(request, version)

        self.stats.requests[method] += 1
        if self._faults.latency_ms:
            await asyncio.sleep(self._faults.latency_ms / 1000)
        fault = self._draw_fault()
        if fault == "truncate" and method != "GET":
            fault = None  # only a body-carrying answer can be cut short
        if fault == "reset":
            self.stats.faults["reset"] += 1
            client.reset()
            return False
        if fault == "error":
            self.stats.faults["error"] += 1
            status, reason, code, message = self._draw_error()
            return await self._refuse(client, request, version, method, status, reason,
                                      _xml_error(code, message, url.path))
        if _presigned_url_expired(url.query):
            body = _xml_error("AccessDenied", "Request has expired", url.path)
            return await self._refuse(client, request, version, method, 403,
                                      "Forbidden", body)
        if method in {"GET", "HEAD"} and not _is_signed(url.query, request):
            key = _object_key(url.path)
            if key is not None and self.private_keys.is_private(key):
                self.stats.denied += 1
                body = _xml_error("AccessDenied", "Access Denied", url.path)
                return await self._refuse(client, request, version, method, 403,
                                          "Forbidden", body)
        return await self._relay(client, upstream, request, method, version,
                                 truncate=fault == "truncate")

    async def _relay(
        self,
        client: Connection,
        upstream: _Upstream,
        request: _Head,
        method: str,
        version: str,
        *,
        truncate: bool,
    ) -> bool:
        expects_continue = request.has_token("expect", "100-continue")
        raw = request.raw
        if expects_continue:
            # Answer "go on" ourselves: the body is streamed to S3 as it arrives anyway.
            raw = _without_header(request, "expect")
            client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await client.drain()
        has_body = request.get("transfer-encoding") or _content_length(request)
        s3 = await upstream.connection()
        try:
            s3.write(raw)
            self.stats.bytes_received += await _relay_body(client, s3, request)
            await s3.drain()
            response = await _read_head(s3)
        except (ConnectionError, BadRequest):
            response = None
        if response is None:
            upstream.close()
            if has_body:
                raise UpstreamLost("S3 closed the connection during a request")
            # A kept-alive connection may have been closed by S3 while idle: retry once afresh.
            s3 = await upstream.connection()
            s3.write(raw)
            await s3.drain()
            response = await _read_head(s3)
            if response is None:
                raise UpstreamLost("S3 closed the connection without answering")

        status = _status_of(response)
        self.stats.statuses[status] += 1
        length = _content_length(response)
        bodyless = method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200
        pace = self._faults.body_pace()
        if truncate and not bodyless and length and length > 1:
            self.stats.faults["truncate"] += 1
            client.write(response.raw)
            self.stats.bytes_sent += await s3.forward(client, length // 2, pace)
            upstream.close()
            return False  # the caller closes the connection: a clean FIN, half a body short

        client.write(response.raw)
        if bodyless:
            pass
        elif response.get("transfer-encoding"):
            self.stats.bytes_sent += await _copy_chunked(s3, client, pace)
        elif length is not None:
            self.stats.bytes_sent += await s3.forward(client, length, pace)
        else:
            # Delimited by close: relay to the end, then close the client side too.
            self.stats.bytes_sent += await s3.forward_to_eof(client, pace)
            upstream.close()
            return False
        await client.drain()
        if not _keep_alive(response, response.start_line.split(" ", 1)[0]):
            upstream.close()
        return _keep_alive(request, version)

    def _draw_error(self) -> tuple[int, str, str, str]:
        with self._lock:
            slow_down = self._rng.random() < 0.5
        if slow_down:
            return 503, "Service Unavailable", "SlowDown", "Please reduce your request rate."
        return (500, "Internal Server Error", "InternalError",
                "We encountered an internal error. Please try again.")

    async def _refuse(
        self,
        client: Connection,
        request: _Head,
        version: str,
        method: str,
        status: int,
        reason: str,
        body: bytes,
    ) -> bool:
        """Answer with an S3 error without asking SeaweedFS; keep the connection if we can."""
        self.stats.statuses[status] += 1
        # A client waiting for "100 Continue" will not send its body now: close after answering.
        keep = _keep_alive(request, version) and not request.has_token("expect", "100-continue")
        if keep:
            self.stats.bytes_received += await _discard_body(client, request)
        client.write(_response(status, reason, body, "application/xml",
                               head_only=method == "HEAD", close=not keep))
        await client.drain()
        return keep

    # -- control ----------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> bytes:
        name = path[len(CONTROL_PREFIX):].strip("/")
        if name == "faults" and method == "GET":
            return _json_response(200, self._faults.to_json())
        if name == "faults" and method == "PUT":
            try:
                faults = FaultConfig.from_json(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return _json_response(400, {"detail": f"invalid fault configuration: {exc}"})
            self.set_faults(faults)
            return _json_response(200, faults.to_json())
        if name == "stats" and method == "GET":
            return _json_response(200, self.stats.to_json())
        if name == "stats" and method == "DELETE":
            self.reset_stats()
            return _json_response(200, self.stats.to_json())
        if name in {"faults", "stats"}:
            return _json_response(405, {"detail": f"method {method} not allowed on {path}"})
        return _json_response(404, {"detail": f"no control endpoint {path}"})


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _json_response(status: int, data: object) -> bytes:
    body = json.dumps(data).encode()
    return _response(status, _REASONS.get(status, ""), body, "application/json")


def _split_request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {line!r}")
    return parts[0].upper(), parts[1], parts[2]


def _status_of(response: _Head) -> int:
    parts = response.start_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise UpstreamLost(f"malformed status line from S3: {response.start_line!r}")
    return int(parts[1])


def _keep_alive(head: _Head, version: str) -> bool:
    if head.has_token("connection", "close"):
        return False
    return version != "HTTP/1.0" or head.has_token("connection", "keep-alive")


def _object_key(path: str) -> str | None:
    """The object key of a path-style URL `/<bucket>/<key>`, or None for bucket requests."""
    bucket, sep, key = unquote(path).lstrip("/").partition("/")
    return key if sep and key else None


def _without_header(head: _Head, name: str) -> bytes:
    lines = [head.start_line] + [f"{k}: {v}" for k, v in head.headers if k.lower() != name]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _relay_body(source: Connection, target: Connection, head: _Head) -> int:
    if (head.get("transfer-encoding") or "").lower().endswith("chunked"):
        return await _copy_chunked(source, target)
    length = _content_length(head)
    return await source.forward(target, length) if length else 0


async def _read_body(connection: Connection, head: _Head) -> bytes:
    length = _content_length(head) or 0
    if length > _HEAD_LIMIT:
        raise BadRequest("control request body too long")
    return await connection.readexactly(length)


async def _discard_body(connection: Connection, head: _Head) -> int:
    """Read and drop a request body so the connection can carry the next request."""
    if (head.get("transfer-encoding") or "").lower().endswith("chunked"):
        return await _copy_chunked(connection, None)
    length = _content_length(head) or 0
    await _discard(connection, length)
    return length


async def _discard(connection: Connection, count: int) -> None:
    while count:
        data = await connection.read(min(count, _DISCARD_CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", count)
        count -= len(data)


async def _copy_chunked(
    source: Connection, target: Connection | None, pace: Pace | None = None
) -> int:
    """Relay (or, with no target, drop) a chunked body verbatim, its chunks at most at
    `pace`'s rate; return its payload size."""
    total = 0
    while True:
        size_line = await source.readuntil(b"\r\n", _HEAD_LIMIT)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequest(f"bad chunk size line {size_line!r}") from exc
        if target is not None:
            target.write(size_line)
        if size == 0:
            while True:  # trailers, then the empty line
                line = await source.readuntil(b"\r\n", _HEAD_LIMIT)
                if target is not None:
                    target.write(line)
                if line == b"\r\n":
                    if target is not None:
                        await target.drain()
                    return total
        if target is None:
            await _discard(source, size + 2)
        else:
            await source.forward(target, size + 2, pace)  # the chunk and its CRLF
        total += size
