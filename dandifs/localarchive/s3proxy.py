"""The front proxies of the local archive: what its clients see as "S3" and as the API.

`HttpRelay` relays HTTP/1.1 between clients and a loopback server, moving bodies both ways
without buffering them (zero-copy, see `relay.py`), and adds what a server on the internet has
and a loopback one lacks:

- HTTPS, when given a TLS context (the loopback leg stays plain HTTP);
- the network model (`rtt_ms`, see `netmodel.py`): one round trip per request, one per new
  connection plus the TLS handshake's, and bodies sent in rounds of a congestion window per
  connection and direction;
- latency: a fixed delay before each request is answered (the flat model);
- bandwidth per connection: each body, a response's or an uploaded request's, is paced to at
  most `stream_mbps` MB/s on its own, so N parallel GETs (or part PUTs) move N times as much
  (S3 bounds each connection's rate, which is why clients read large objects with parallel
  ranged GETs and upload them in parallel parts);
- counters of connections, TLS handshakes, requests, rounds and bytes.

`ApiFront` is that in front of the REST API (uvicorn). `S3Proxy` is that in front of
SeaweedFS, plus:

- faults, drawn per request from a seeded generator: 500/503 answers with an S3 XML error
  body, connection resets, truncated bodies (the full Content-Length promised, the
  connection closed half-way), and stalls (half the body, then nothing for `stall_seconds`,
  then the rest);
- the embargo bucket policy: anonymous (unsigned) GET/HEAD of a private key is refused with
  403 `AccessDenied`, while presigned requests pass;
- expiry of presigned URLs (403 `AccessDenied`, "Request has expired");
- request counters, so benchmarks can count the S3 requests a client made.

Both are controlled at runtime under `/__dandifs__/` (not a valid bucket name, nor an API
path): `GET|PUT /__dandifs__/faults` (JSON `FaultConfig`), `GET|DELETE /__dandifs__/stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import ssl
import threading
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dandifs.localarchive.objectstore import PrivateKeys
from dandifs.localarchive.netmodel import (
    DEFAULT_MAX_WINDOW,
    MIN_RTO,
    Window,
    handshake_round_trips,
)
from dandifs.localarchive.relay import Connection, Flow, Pace, TlsConnection

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
    """What a front proxy does to requests. Rates are probabilities per request; their sum is
    at most 1. The same `seed` gives the same sequence of faults for the same sequence of
    requests. `stream_mbps` caps each body (response, or request: uploads) at that many MB
    (10^6 bytes) per second; 0 is no cap. `rtt_ms` > 0 turns the network model on with that round-trip time; its
    congestion windows grow up to `window_max_kib` KiB, and fall back to the initial window
    after a connection was idle for `min_rto_ms` plus the RTT (Linux's 200 ms by default).
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    seed: int | None = None
    stream_mbps: float = 0.0
    rtt_ms: float = 0.0
    window_max_kib: float = DEFAULT_MAX_WINDOW / 1024
    min_rto_ms: float = MIN_RTO * 1000
    stall_rate: float = 0.0
    stall_seconds: float = 5.0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "stream_mbps", "rtt_ms", "min_rto_ms", "stall_seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.window_max_kib) and self.window_max_kib > 0):
            raise ValueError(f"window_max_kib must be a finite number > 0, got "
                             f"{self.window_max_kib}")
        rates = self.rates()
        for name, value in rates.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if sum(rates.values()) > 1:
            raise ValueError(f"{' + '.join(rates)} must be at most 1")

    def rates(self) -> dict[str, float]:
        """The fault rates by field name."""
        return {"error_rate": self.error_rate, "reset_rate": self.reset_rate,
                "truncate_rate": self.truncate_rate, "stall_rate": self.stall_rate}

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
        """A fresh pace for one body, or None when bodies are not capped."""
        return Pace(self.stream_mbps * 1e6) if self.stream_mbps else None

    @property
    def rtt(self) -> float:
        """The model's round-trip time in seconds; 0 when the model is off."""
        return self.rtt_ms / 1000


@dataclass
class ProxyStats:
    """Counters since start or the last reset. Control requests are not counted."""

    requests: Counter[str]  # by method
    statuses: Counter[int]
    faults: Counter[str]  # error, reset, truncate, stall
    denied: int = 0
    bytes_sent: int = 0  # response body bytes written to clients (added after each await)
    bytes_received: int = 0  # request body bytes read from clients
    connections: int = 0  # client connections that carried a request
    handshakes: int = 0  # TLS handshakes of those
    rounds_sent: int = 0  # rounds of the network model's windows: response bodies
    rounds_received: int = 0  # ... request bodies

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
            "connections": self.connections,
            "handshakes": self.handshakes,
            "rounds_sent": self.rounds_sent,
            "rounds_received": self.rounds_received,
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


@dataclass
class _Link:
    """The network model's state of one client connection: a window per direction."""

    down: Window  # response bodies
    up: Window  # request bodies
    handshakes: int = 0  # TLS handshakes done on it
    counted: bool = False  # whether its first request (not a control one) was counted


class HttpRelay:
    """Relays HTTP/1.1 from `host:port` to a loopback server at `upstream`, over HTTPS if given
    a TLS context, with the network model, the bandwidth cap and counters.

    `faults` and `stats` may be read and replaced from any thread (and through the control
    paths); the relay itself runs on the event loop that called `start()`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        faults: FaultConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.tls = tls
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
        """Apply `faults`; `ValueError` naming what this relay cannot do."""
        self.check_faults(faults)
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def check_faults(self, faults: FaultConfig) -> None:
        """Refuse settings this relay does not model (all are modelled here)."""

    def reset_stats(self) -> None:
        self.stats = ProxyStats.empty()

    # -- serving ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=128)
        await self.start_on(listener)

    async def start_on(self, listener: socket.socket) -> None:
        """Serve on a socket already listening."""
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
            task = asyncio.create_task(self._serve_connection(sock))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy has not been started")
        return self._listener.getsockname()[1]

    @property
    def host(self) -> str:
        if self._listener is None:
            raise RuntimeError("the proxy has not been started")
        return self._listener.getsockname()[0]

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def url(self) -> str:
        host = self.host
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

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

    async def _serve_connection(self, sock: socket.socket) -> None:
        client = Connection(sock) if self.tls is None else TlsConnection(sock, self.tls)
        upstream = _Upstream(self.upstream_host, self.upstream_port)
        maximum = int(self._faults.window_max_kib * 1024)
        link = _Link(Window(maximum), Window(maximum))
        try:
            rtt = self._faults.rtt
            if rtt:
                await asyncio.sleep(rtt)  # the TCP handshake
            if isinstance(client, TlsConnection):
                version = await client.handshake()
                link.handshakes += 1
                if self._faults.rtt:
                    await asyncio.sleep(handshake_round_trips(version) * self._faults.rtt)
            while await self._serve_request(client, upstream, link):
                pass
        except BadRequest as exc:
            client.write(self._error_response(400, "BadRequest", str(exc), ""))
        except UpstreamLost as exc:
            # Raised only before any byte of a response went out: the client can retry.
            self.stats.statuses[503] += 1
            client.write(self._error_response(503, "ServiceUnavailable", str(exc), ""))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client or the server went away mid-message: nothing sensible to answer
        finally:
            upstream.close()
            await client.aclose()

    def _error_response(self, status: int, code: str, message: str, resource: str,
                        *, head_only: bool = False, close: bool = True) -> bytes:
        """An error answered by the relay itself, closing the connection unless told not to."""
        return _response(status, _REASONS.get(status, ""),
                         json.dumps({"detail": message}).encode(), "application/json",
                         head_only=head_only, close=close)

    async def _serve_request(self, client: Connection, upstream: _Upstream, link: _Link) -> bool:
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
        if not link.counted:
            link.counted = True
            self.stats.connections += 1
            self.stats.handshakes += link.handshakes
        faults = self._faults
        delay = faults.latency_ms / 1000 + faults.rtt
        if delay:
            await asyncio.sleep(delay)
        return await self._answer(client, upstream, link, request, method, version, url.path,
                                  url.query)

    async def _answer(self, client: Connection, upstream: _Upstream, link: _Link,
                      request: _Head, method: str, version: str, path: str, query: str) -> bool:
        """Answer a request whose round trip was waited for: relay it."""
        return await self._relay(client, upstream, link, request, method, version)

    def _upstream_head(self, request: _Head) -> bytes:
        """The request head as sent to the server behind."""
        return request.raw

    def _flow(self, window: Window, pace: Pace | None = None) -> Flow | None:
        """How the next body on `window`'s direction moves, or None: as fast as it can."""
        faults = self._faults
        if not faults.rtt:
            return None if pace is None else Flow(pace)
        window.maximum = max(window.initial, int(faults.window_max_kib * 1024))
        window.min_rto = faults.min_rto_ms / 1000
        return Flow(pace, window, faults.rtt)

    async def _relay(
        self,
        client: Connection,
        upstream: _Upstream,
        link: _Link,
        request: _Head,
        method: str,
        version: str,
        *,
        fault: str | None = None,
    ) -> bool:
        """Relay a request and its response; `fault` "truncate" or "stall" spoils the body."""
        expects_continue = request.has_token("expect", "100-continue")
        raw = self._upstream_head(request)
        if expects_continue:
            # Answer "go on" ourselves: the body is streamed to the server as it arrives anyway.
            raw = _without_header(_parse_head(raw), "expect")
            client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await client.drain()
            if self._faults.rtt:
                await asyncio.sleep(self._faults.rtt)  # "100 Continue" out, the body back
        has_body = request.get("transfer-encoding") or _content_length(request)
        server = await upstream.connection()
        try:
            server.write(raw)
            flow = self._flow(link.up, self._faults.body_pace()) if has_body else None
            moved = await _relay_body(client, server, request, flow)
            self.stats.bytes_received += moved
            self._count_rounds(flow, sent=False)
            await server.drain()
            response = await _read_head(server)
        except (ConnectionError, BadRequest):
            response = None
        if response is None:
            upstream.close()
            if has_body:
                raise UpstreamLost("the server closed the connection during a request")
            # A kept-alive connection may have been closed by the server while idle: retry
            # once afresh.
            server = await upstream.connection()
            server.write(raw)
            await server.drain()
            response = await _read_head(server)
            if response is None:
                raise UpstreamLost("the server closed the connection without answering")

        status = _status_of(response)
        self.stats.statuses[status] += 1
        length = _content_length(response)
        bodyless = method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200
        client.write(response.raw)
        if bodyless or length == 0:
            await client.drain()
            return self._keep_both(upstream, request, version, response)
        flow = self._flow(link.down, self._faults.body_pace())
        try:
            if fault in {"truncate", "stall"} and length and length > 1:
                self.stats.faults[fault] += 1
                moved = await server.forward(client, length // 2, flow)
                self.stats.bytes_sent += moved
                if fault == "truncate":
                    upstream.close()
                    return False  # the caller closes the connection: a clean FIN, half a body short
                await asyncio.sleep(self._faults.stall_seconds)
                moved = await server.forward(client, length - length // 2, flow)
                self.stats.bytes_sent += moved
            elif response.get("transfer-encoding"):
                moved = await _copy_chunked(server, client, flow)
                self.stats.bytes_sent += moved
            elif length is not None:
                moved = await server.forward(client, length, flow)
                self.stats.bytes_sent += moved
            else:
                # Delimited by close: relay to the end, then close the client side too.
                moved = await server.forward_to_eof(client, flow)
                self.stats.bytes_sent += moved
                upstream.close()
                return False
        finally:
            self._count_rounds(flow, sent=True)
        await client.drain()
        return self._keep_both(upstream, request, version, response)

    def _count_rounds(self, flow: Flow | None, *, sent: bool) -> None:
        if flow is not None and flow.window is not None:
            if sent:
                self.stats.rounds_sent += flow.rounds
            else:
                self.stats.rounds_received += flow.rounds

    @staticmethod
    def _keep_both(upstream: _Upstream, request: _Head, version: str, response: _Head) -> bool:
        """Close the server side if it asked to; return whether the client side stays open."""
        if not _keep_alive(response, response.start_line.split(" ", 1)[0]):
            upstream.close()
        return _keep_alive(request, version)

    async def _refuse(
        self,
        client: Connection,
        request: _Head,
        version: str,
        method: str,
        status: int,
        code: str,
        message: str,
        resource: str,
    ) -> bool:
        """Answer with an error without asking the server; keep the connection if we can."""
        self.stats.statuses[status] += 1
        # A client waiting for "100 Continue" will not send its body now: close after answering.
        keep = _keep_alive(request, version) and not request.has_token("expect", "100-continue")
        if keep:
            moved = await _discard_body(client, request)
            self.stats.bytes_received += moved
        client.write(self._error_response(status, code, message, resource,
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
                self.set_faults(faults)
            except (ValueError, TypeError) as exc:
                return _json_response(400, {"detail": f"invalid fault configuration: {exc}"})
            return _json_response(200, faults.to_json())
        if name == "stats" and method == "GET":
            return _json_response(200, self.stats.to_json())
        if name == "stats" and method == "DELETE":
            self.reset_stats()
            return _json_response(200, self.stats.to_json())
        if name in {"faults", "stats"}:
            return _json_response(405, {"detail": f"method {method} not allowed on {path}"})
        return _json_response(404, {"detail": f"no control endpoint {path}"})


class ApiFront(HttpRelay):
    """The REST API as clients see it: uvicorn behind the network model (and HTTPS).

    Faults are for S3 only: the API's clients are tested against its own error answers."""

    def check_faults(self, faults: FaultConfig) -> None:
        spoiling = [name for name, rate in faults.rates().items() if rate]
        if spoiling:
            raise ValueError(f"{', '.join(spoiling)}: the API front models the network only "
                             "(rtt_ms, window_max_kib, latency_ms, stream_mbps); faults are "
                             "set on S3")

    def _upstream_head(self, request: _Head) -> bytes:
        if self.tls is None:
            return request.raw
        # uvicorn trusts X-Forwarded-Proto from loopback: its URLs then say https.
        head = _parse_head(_without_header(request, "x-forwarded-proto"))
        return _with_header(head, "X-Forwarded-Proto", "https")


class S3Proxy(HttpRelay):
    """Relays S3 requests to SeaweedFS at `upstream`, with faults, the embargo and counters."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        private_keys: PrivateKeys | None = None,
        faults: FaultConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(upstream_host, upstream_port, faults=faults, tls=tls)
        self.private_keys = private_keys if private_keys is not None else PrivateKeys()

    def _draw_fault(self) -> str | None:
        rates = self._faults.rates()
        if not any(rates.values()):
            return None
        with self._lock:
            draw = self._rng.random()
        for name, rate in rates.items():
            if draw < rate:
                return name.removesuffix("_rate")
            draw -= rate
        return None

    def _error_response(self, status: int, code: str, message: str, resource: str,
                        *, head_only: bool = False, close: bool = True) -> bytes:
        return _response(status, _REASONS.get(status, ""), _xml_error(code, message, resource),
                         "application/xml", head_only=head_only, close=close)

    async def _answer(self, client: Connection, upstream: _Upstream, link: _Link,
                      request: _Head, method: str, version: str, path: str, query: str) -> bool:
        fault = self._draw_fault()
        if fault in {"truncate", "stall"} and method != "GET":
            fault = None  # only a body-carrying answer can be cut short or held up
        if fault == "reset":
            self.stats.faults["reset"] += 1
            client.reset()
            return False
        if fault == "error":
            self.stats.faults["error"] += 1
            status, code, message = self._draw_error()
            return await self._refuse(client, request, version, method, status, code, message,
                                      path)
        if _presigned_url_expired(query):
            return await self._refuse(client, request, version, method, 403, "AccessDenied",
                                      "Request has expired", path)
        if method in {"GET", "HEAD"} and not _is_signed(query, request):
            key = _object_key(path)
            if key is not None and self.private_keys.is_private(key):
                self.stats.denied += 1
                return await self._refuse(client, request, version, method, 403,
                                          "AccessDenied", "Access Denied", path)
        return await self._relay(client, upstream, link, request, method, version, fault=fault)

    def _draw_error(self) -> tuple[int, str, str]:
        with self._lock:
            slow_down = self._rng.random() < 0.5
        if slow_down:
            return 503, "SlowDown", "Please reduce your request rate."
        return 500, "InternalError", "We encountered an internal error. Please try again."


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


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


def _with_header(head: _Head, name: str, value: str) -> bytes:
    lines = [head.start_line] + [f"{k}: {v}" for k, v in head.headers] + [f"{name}: {value}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _relay_body(
    source: Connection, target: Connection, head: _Head, flow: Flow | None = None
) -> int:
    if (head.get("transfer-encoding") or "").lower().endswith("chunked"):
        return await _copy_chunked(source, target, flow)
    length = _content_length(head)
    return await source.forward(target, length, flow) if length else 0


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
    source: Connection, target: Connection | None, flow: Flow | None = None
) -> int:
    """Relay (or, with no target, drop) a chunked body verbatim, its chunks shaped by `flow`;
    return its payload size."""
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
            await source.forward(target, size + 2, flow)  # the chunk and its CRLF
        total += size
