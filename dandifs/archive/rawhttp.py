"""A lean HTTP/1.1 client for the one request that moves bulk bytes: a ranged GET of an object.

Reading object bodies through httpx costs more CPU than everything else a mount does: its
connection layer reads sockets 64 KiB at a time and pushes each piece through the h11
parser and several layers of async generators, all on the one thread that also answers
FUSE.  A ranged GET needs none of that generality: one request line, a few headers, and a
body whose length the answer states.  So this module speaks just that, and does it on a
worker thread with a blocking socket: the body is received straight into preallocated
buffers by one `recvmsg_into(MSG_WAITALL)` (no joins, one GIL hand-over per body), and the
kernel's copy of the bytes runs without the GIL, in parallel with the event loop serving
FUSE.  A caller that keeps the body in pieces (the block cache: one buffer per block) has
it received into those pieces, so nothing is copied afterwards.  The event loop pays one
thread hop per request.

HTTPS too, with the context `httpx.create_ssl_context()` makes (certifi, or `SSL_CERT_FILE`
/ `SSL_CERT_DIR`: what httpx trusts).  A TLS record holds at most 16 KiB, so a TLS body is
received a record per call (`SSLSocket.recv_into`, decrypting without the GIL) rather than
in one; the figures that chose this client over httpx for TLS are in docs/fuse.md ("HTTPS
read client").  A certificate that does not verify is `CertificateRefused`, not retried.

A GET that receives nothing for the time its caller allows (`timeout`: each receive's
timeout for that one request, head included) fails with `Stalled`, its connection closed.  The
body goes into a `Filling`, which keeps what arrived: the caller asks again for the rest
only, on another connection.

Connections are kept alive per origin.  One taken from the idle pool may have been closed by
the server meanwhile; if it fails before the first byte of an answer arrives, the request is
sent once more on a new connection (what HTTP clients do for idempotent requests).  A body
not read to its end closes its connection rather than returning it to the pool.

Each connection keeps an estimate of its sender's congestion window (TCP slow start: 10
segments when new, growing by the bytes each answer moved, back to 10 segments after an idle
time longer than one retransmission timeout, 200 ms + RTT), so that callers can size a
request to what one round trip moves (`warm_bytes`); `warm` opens connections (TCP and TLS)
ahead of the first GET, which then takes one of them instead of paying the set-up itself.

Anything this client does not handle (proxies, the API's token) is left to the general
`HttpSession`; a redirect is handed back as an answer for `ObjectStore` to follow and cache.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

log = logging.getLogger(__name__)

HEAD_RECEIVE_BYTES = 16 << 10  # small, so that little of the body is copied along with the head
MAX_HEAD_BYTES = 64 << 10
MAX_ERROR_BODY = 1 << 20
MAX_SCATTER = 1024  # buffers per `recvmsg_into` call (the kernel's IOV_MAX)
MAX_PREPARED = 64 << 20  # longest body whose buffers are allocated before it is asked for
DEFAULT_PORTS = {"http": 80, "https": 443}
SEGMENT = 1448  # TCP payload bytes per segment (1500-byte MTU)
INITIAL_WINDOW = 10 * SEGMENT  # a new sender's congestion window (RFC 6928)
MAX_WINDOW = 4 << 20  # the most a window estimate grows to
MIN_RTO = 0.2  # seconds: idle longer than this plus the RTT, a window starts again (RFC 2861)
# What a receive that outlived its timeout raises: EAGAIN (SO_RCVTIMEO), or over TLS
# Python's own timeout.
_TIMED_OUT = (BlockingIOError, TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

Span = Callable[["Answer"], tuple[int, int]]
"""Given a successful answer's head, which bytes `[offset, stop)` of its body to keep."""


class TransportError(Exception):
    """The connection failed, timed out or carried something that is not HTTP/1.1."""


class CertificateRefused(TransportError):
    """The server's TLS certificate did not verify: asking again will not help."""


class Stalled(TransportError):
    """Nothing arrived for the request's timeout: the connection was given up (and closed)."""


class _StaleConnection(TransportError):
    """A kept-alive connection closed before answering: safe to send the request again."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> tuple[Origin, str]:
        """The origin of `url` and the request target (path and query, as written)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        port = parts.port or DEFAULT_PORTS[scheme]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(scheme, parts.hostname, port), target

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


class Answer:
    """A response: `status_code`, `reason_phrase`, case-insensitive `headers` (as on an
    `httpx.Response`, so the same checks apply to answers of either client) and `pieces`:
    the first `MAX_ERROR_BODY` bytes of an answer other than 200 or 206 (whose kept span
    goes into the request's `Filling`)."""

    def __init__(self, status: int, reason: str, headers: httpx.Headers) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self.pieces: list[bytes | bytearray] = []
        self.head_seconds = 0.0  # from sending the request to the end of the answer's head
        self.body_seconds = 0.0  # how long the kept body took to arrive after the head

    @property
    def body(self) -> bytes | bytearray:
        """The kept bytes in one buffer (joined only if they came in several pieces)."""
        if len(self.pieces) == 1:
            return self.pieces[0]
        return b"".join(self.pieces)

    @property
    def is_success(self) -> bool:
        return self.status_code in (200, 206)

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    def as_httpx(self, url: str) -> httpx.Response:
        """This answer as an `httpx.Response`, for the archive layer's error translation."""
        return httpx.Response(
            self.status_code,
            headers=self.headers,
            content=bytes(self.body),
            request=httpx.Request("GET", url),
        )


class Filling:
    """The buffers one range's body is received into, and how much of them is filled.

    It outlives a failed GET: the bytes that GET received stay, and the next GET of the
    range asks only for the rest, received after them.  The body is kept in consecutive
    pieces of `piece_size` bytes (the last may be shorter; one piece if None): a cache
    keeping blocks separately keeps them without a copy.

    With the kept length `expected`, `prepare` allocates the buffers on the calling thread
    rather than on the worker thread: glibc gives each thread its own memory arena, and the
    freed blocks that arenas of worker threads keep raised a streaming daemon's peak RSS by a
    quarter.  (Not beyond `MAX_PREPARED`: a range may reach far past the end of its object.)
    """

    def __init__(self, piece_size: int | None = None, expected: int | None = None) -> None:
        if piece_size is not None and piece_size <= 0:
            raise ValueError(f"piece size must be positive, not {piece_size}")
        self.piece_size = piece_size
        self.expected = expected
        self.pieces: list[bytearray] = []
        self.filled = 0

    def prepare(self) -> None:
        if not self.pieces and self.expected and self.expected <= MAX_PREPARED:
            self.pieces = allocate(self.expected, self.piece_size or self.expected)

    def kept(self) -> list[bytearray]:
        """The bytes filled so far, in pieces."""
        self._reserve(self.filled)
        return self.pieces

    def views(self, count: int) -> list[memoryview]:
        """Views of the `count` bytes after those filled (the buffers made to end there)."""
        self._reserve(self.filled + count)
        views, skip = [], self.filled
        for piece in self.pieces:
            if skip < len(piece):
                views.append(memoryview(piece)[skip:])
            skip = max(0, skip - len(piece))
        return views

    def store(self, data: bytes) -> None:
        """Keep `data` after the bytes filled (a body received whole, not in place)."""
        start = 0
        for view in self.views(len(data)):
            view[:] = data[start : start + len(view)]
            start += len(view)
            view.release()
        self.filled += len(data)

    def _reserve(self, total: int) -> None:
        """Cut or grow the buffers to hold exactly `total` bytes."""
        size = self.piece_size or max(total, 1)
        pieces: list[bytearray] = []
        held = 0
        for piece in self.pieces:
            if held >= total:
                break
            pieces.append(piece)
            held += len(piece)
        if held > total:
            del pieces[-1][len(pieces[-1]) - (held - total) :]
        elif held < total:
            if pieces and len(pieces[-1]) < size:
                grown = min(size - len(pieces[-1]), total - held)
                pieces[-1].extend(bytes(grown))
                held += grown
            pieces += allocate(total - held, size)
        self.pieces = pieces


def _framing(status: int, headers: httpx.Headers) -> int | str | None:
    """How the body ends: its length, "chunked", or None (at the end of the connection)."""
    if status in (204, 304) or 100 <= status < 200:
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    length = headers.get("content-length")
    if length is None:
        return None
    try:
        value = int(length)
    except ValueError:
        raise TransportError(f"bad Content-Length {length!r}") from None
    if value < 0:
        raise TransportError(f"bad Content-Length {length!r}")
    return value


class _Connection:
    """One HTTP/1.1 connection over a blocking socket, maybe TLS (used by one thread at a
    time), plus what was received beyond the last message."""

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.reused = False
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.rtt = 0.0  # seconds of one round trip, as the set-up measured it
        self.window = INITIAL_WINDOW  # estimated bytes the server sends in one round trip
        self.last_used = time.monotonic()

    def window_now(self, now: float) -> int:
        """The window estimate at `now`: the initial one again after an idle RTO."""
        if now - self.last_used > MIN_RTO + self.rtt:
            return INITIAL_WINDOW
        return self.window

    def moved(self, count: int) -> None:
        """`count` bytes of answer arrived: slow start grows the window by what was acked."""
        now = time.monotonic()
        self.window = min(MAX_WINDOW, self.window_now(now) + count)
        self.last_used = now
        self.filled = 0  # bytes the last `fill` placed, also when it failed part-way

    @staticmethod
    def prepare(sock: socket.socket, timeout: float | None) -> None:
        """Blocking mode, so that MSG_WAITALL works; the kernel enforces the timeout.

        Over TLS, Python's own timeout instead: OpenSSL takes a receive the kernel timed out
        for "try again", and Python's blocking read then waits on forever.
        """
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(timeout)
            return
        sock.settimeout(None)
        if timeout:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))

    def limit_receives(self, timeout: float | None) -> None:
        """How long one receive may wait for anything to arrive (from now on)."""
        if not timeout or timeout == self.timeout:
            return
        if self.tls:
            self.sock.settimeout(timeout)
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
        self.timeout = timeout

    def _stalled(self) -> Stalled:
        return Stalled(f"nothing received for {self.timeout:g} s")

    def _receive(self) -> bytes:
        """The next piece from the network; b"" at the end of the stream."""
        try:
            return self.sock.recv(HEAD_RECEIVE_BYTES)
        except _TIMED_OUT:
            raise self._stalled() from None
        except OSError as exc:
            raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc

    def exchange(self, request: bytes, span: Span, filling: Filling) -> tuple[Answer, bool]:
        """Send `request`, receive the answer; also whether the connection may be reused.

        A successful answer's kept span goes into `filling`, after the bytes it holds: what
        arrived stays there even if the body then fails.
        """
        started = time.monotonic()
        try:
            self.sock.sendall(request)
        except OSError as exc:
            if self.reused:
                raise _StaleConnection("kept-alive connection was closed") from exc
            raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc
        answer = Answer(*self.receive_head())
        body_started = time.monotonic()
        answer.head_seconds = body_started - started
        framing = _framing(answer.status_code, answer.headers)
        if answer.is_success and isinstance(framing, int):
            offset, stop = span(answer)
            stop = min(stop, framing)
            self.skip(min(offset, framing))
            self.filled = 0
            try:
                self.fill(filling.views(max(0, stop - offset)))
            finally:
                filling.filled += self.filled
            answer.body_seconds = time.monotonic() - body_started
            complete = stop >= framing
            received = self.filled
        elif answer.is_success:
            offset, limit = span(answer)
            body, complete = self.receive_whole(framing, limit)
            filling.store(body[offset:])
            received = len(body)
        else:
            body, complete = self.receive_whole(framing, MAX_ERROR_BODY)
            answer.pieces = [body]
            received = len(body)
        keep = complete and "close" not in answer.headers.get("connection", "").lower()
        self.moved(received)
        return answer, keep

    def receive_head(self) -> tuple[int, str, httpx.Headers]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise TransportError("answer head too long")
            try:
                piece = self._receive()
            except Stalled:
                raise Stalled(f"no answer within {self.timeout:g} s") from None
            except TransportError as exc:
                if self.reused and not self.buffer:
                    raise _StaleConnection(str(exc)) from exc
                raise
            if not piece:
                if self.reused and not self.buffer:
                    raise _StaleConnection("kept-alive connection was closed")
                raise TransportError("connection closed before the answer's head ended")
            self.buffer += piece
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        return parse_head(head)

    def receive_into(self, count: int) -> bytearray:
        """`count` bytes of body, received in place; `TransportError` if the stream ends."""
        body = bytearray(count)
        self.fill([memoryview(body)])
        return body

    def fill(self, views: list[memoryview]) -> None:
        """Fill `views` in order: first from what was received beyond the head, then from
        the socket, all of the rest at once.  `filled` counts the bytes placed."""
        count = sum(len(view) for view in views)
        position = min(count, len(self.buffer))
        if position:
            data = memoryview(self.buffer)
            start = 0
            for view in views:
                taken = min(len(view), position - start)
                view[:taken] = data[start : start + taken]
                start += taken
            data.release()
            del self.buffer[:position]
        self.filled = position
        pending = _advance([view for view in views if len(view)], position)
        try:
            while pending:
                if self.tls:
                    received = self.sock.recv_into(pending[0])  # up to one TLS record
                else:
                    # One call for the whole rest (MSG_WAITALL): each return to Python must
                    # win the GIL back from the busy event loop, which can take milliseconds.
                    # It returns early, with what came, when a receive timeout expires.
                    received = self.sock.recvmsg_into(
                        pending[:MAX_SCATTER], 0, socket.MSG_WAITALL
                    )[0]
                if not received:
                    raise TransportError(f"body ended after {position} of {count} bytes")
                position += received
                self.filled = position
                pending = _advance(pending, received)
        except _TIMED_OUT:  # the receive timeout expired with nothing received
            raise Stalled(
                f"the body stopped after {position} of {count} bytes: nothing for "
                f"{self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc
        finally:
            # Also the views of what was still pending: a traceback keeping this frame
            # must not keep the buffers exported (a later GET may need to cut them).
            for view in (*views, *pending):
                view.release()

    def skip(self, count: int) -> None:
        while count:
            if not self.buffer:
                piece = self._receive()
                if not piece:
                    raise TransportError("body ended early")
                self.buffer += piece
            taken = min(count, len(self.buffer))
            del self.buffer[:taken]
            count -= taken

    def receive_whole(self, framing: int | str | None, limit: int) -> tuple[bytes, bool]:
        """A body, or its first `limit` bytes; and whether it was read to its end."""
        if framing == "chunked":
            return self.receive_chunked(limit)
        if framing is None:
            return self.receive_to_eof(limit), False  # the connection ends with the body
        assert isinstance(framing, int)
        return bytes(self.receive_into(min(framing, limit))), framing <= limit

    def receive_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise TransportError("chunk header too long")
            piece = self._receive()
            if not piece:
                raise TransportError("connection closed inside a chunked body")
            self.buffer += piece
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def receive_chunked(self, limit: int) -> tuple[bytes, bool]:
        """A chunked body, or its first `limit` bytes; and whether it was read to its end."""
        body = bytearray()
        while True:
            size_text = self.receive_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise TransportError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while self.receive_line():
                    pass  # trailer fields, up to the empty line
                return bytes(body), True
            if len(body) + size > limit:
                body += self.receive_into(limit - len(body))
                return bytes(body), False
            body += self.receive_into(size)
            if self.receive_line():
                raise TransportError("chunk not followed by CRLF")

    def receive_to_eof(self, limit: int) -> bytes:
        """Up to `limit` bytes of a body that ends with the connection."""
        body = bytearray(self.buffer)
        self.buffer.clear()
        while len(body) < limit and (piece := self._receive()):
            body += piece
        return bytes(body[:limit])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Exchange:
    """One request on a worker thread.  If the waiting task is cancelled, the thread runs on
    (sockets cannot be interrupted) and closes its connection when it is done."""

    def __init__(self, connection: _Connection | None) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._abandoned = False
        self._finished = False

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            abandoned = self._abandoned
        if abandoned and self.connection is not None:
            self.connection.close()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            finished = self._finished
        if finished and self.connection is not None:
            self.connection.close()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _advance(views: list[memoryview], count: int) -> list[memoryview]:
    """What is left of `views` once their first `count` bytes are filled."""
    for index, view in enumerate(views):
        if count < len(view):
            return [view[count:], *views[index + 1 :]]
        count -= len(view)
    return []


def allocate(count: int, piece_size: int) -> list[bytearray]:
    """Buffers for `count` bytes, `piece_size` each (the last may be shorter)."""
    if piece_size <= 0:
        raise ValueError(f"piece size must be positive, not {piece_size}")
    return [bytearray(min(piece_size, count - start)) for start in range(0, count, piece_size)]


def parse_head(head: bytes) -> tuple[int, str, httpx.Headers]:
    """Status, reason and headers of an HTTP/1.x answer head (without its final CRLFCRLF)."""
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise TransportError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise TransportError(f"malformed header line {line[:80]!r}")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", httpx.Headers(headers)


class _Warming:
    """A connection `RangeClient.warm` is opening; a GET may claim it before it is open."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.connection: _Connection | None = None
        self.claimed = False


class RangeClient:
    """Keep-alive connections per origin for GETs of object bytes."""

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 60.0,
        max_idle_per_origin: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.user_agent = user_agent
        self._ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self._idle: dict[Origin, list[_Connection]] = {}
        self._warming: dict[Origin, list[_Warming]] = {}
        self._round_trips: dict[Origin, float] = {}
        self._closed = False

    async def get(
        self,
        url: str,
        headers: dict[str, str],
        span: Span,
        filling: Filling,
        *,
        timeout: float | None = None,
    ) -> Answer:
        """A GET of `url`.  For a 200 or 206, `span(answer)` says which bytes of the body to
        keep (it may raise to refuse the answer), received into `filling` after the bytes it
        holds; other answers keep a short body.

        `timeout` bounds each wait for bytes of this answer, its head included (never beyond
        `read_timeout`); when it passes with nothing received, `Stalled`.
        """
        origin, target = Origin.of(url)
        filling.prepare()
        request = self._request(origin, target, headers)
        if timeout is None or (self.read_timeout and self.read_timeout < timeout):
            timeout = self.read_timeout
        idle = self._idle.get(origin)
        exchange = _Exchange(idle.pop() if idle else await self._claim_warming(origin))
        try:
            answer, keep = await anyio.to_thread.run_sync(
                self._exchange, exchange, origin, request, span, filling, timeout,
                abandon_on_cancel=True,
            )
        except BaseException:
            exchange.abandon()
            raise
        connection = exchange.connection
        assert connection is not None
        if keep:
            self._keep(origin, connection)
        else:
            connection.close()
        return answer

    def _keep(self, origin: Origin, connection: _Connection) -> None:
        """Put `connection` in the idle pool (the most recent last), or close it."""
        pool = self._idle.setdefault(origin, [])
        if not self._closed and len(pool) < self.max_idle_per_origin:
            connection.reused = True  # if the server closed it meanwhile, send again
            pool.append(connection)
        else:
            connection.close()

    def warm_bytes(self, url: str) -> int:
        """About how many bytes of an answer the next GET of `url`'s origin receives in its
        first round trip: the best idle connection's window estimate, or a new one's."""
        return max(self.idle_windows(url), default=INITIAL_WINDOW)

    def idle_windows(self, url: str) -> list[int]:
        """The window estimates of the idle connections to `url`'s origin, in the order GETs
        take them (the most recently used first)."""
        origin, _ = Origin.of(url)
        now = time.monotonic()
        return [connection.window_now(now) for connection in reversed(self._idle.get(origin, []))]

    def round_trip(self, url: str) -> float:
        """Seconds of one round trip to `url`'s origin, the least its set-ups measured
        (0 before any)."""
        origin, _ = Origin.of(url)
        return self._round_trips.get(origin, 0.0)

    async def measured_round_trip(self, url: str) -> float:
        """`round_trip`, once a connection being opened by `warm` has measured it."""
        origin, _ = Origin.of(url)
        warming = self._warming.get(origin)
        if origin not in self._round_trips and warming:
            await warming[0].ready.wait()
        return self._round_trips.get(origin, 0.0)

    def ready_connections(self, url: str) -> int:
        """Connections to `url`'s origin a GET can take without setting one up: the idle ones
        and those being opened by `warm`."""
        origin, _ = Origin.of(url)
        return len(self._idle.get(origin, ())) + len(self._warming.get(origin, ()))

    def warm(self, url: str, count: int, tasks: anyio.abc.TaskGroup) -> int:
        """Open connections (TCP and TLS) to `url`'s origin, in `tasks`, until `count` are
        idle or being opened, so that GETs about to come skip the set-up; how many it
        started.  A GET that finds no idle connection takes one still being opened and
        waits for it, which is never longer than opening its own.  Failures are left for
        the GETs to meet."""
        origin, _ = Origin.of(url)
        wanted = max(0, count - self.ready_connections(url))
        if self._closed:
            return 0
        for _ in range(wanted):
            slot = _Warming()
            self._warming.setdefault(origin, []).append(slot)
            tasks.start_soon(self._warm_one, origin, slot)
        return wanted

    async def _warm_one(self, origin: Origin, slot: _Warming) -> None:
        try:
            slot.connection = await anyio.to_thread.run_sync(self._connect, origin)
        except Exception as exc:  # noqa: BLE001 - the GETs meet the failure themselves
            log.debug("could not open a connection to %s ahead of use: %s", origin.host, exc)
        finally:
            waiting = self._warming.get(origin, [])
            if slot in waiting:
                waiting.remove(slot)
            slot.ready.set()
        if not slot.claimed and slot.connection is not None:
            self._keep(origin, slot.connection)

    async def _claim_warming(self, origin: Origin) -> _Connection | None:
        """A connection `warm` is opening, once open (None if none is, or it failed)."""
        warming = self._warming.get(origin)
        if not warming:
            return None
        slot = warming.pop(0)
        slot.claimed = True
        try:
            await slot.ready.wait()
        except BaseException:
            if slot.ready.is_set():
                if slot.connection is not None:
                    self._keep(origin, slot.connection)
            else:
                slot.claimed = False  # `_warm_one` pools it when it is open
            raise
        return slot.connection

    def _request(self, origin: Origin, target: str, headers: dict[str, str]) -> bytes:
        lines = [f"GET {target} HTTP/1.1", f"Host: {origin.host_header}",
                 f"User-Agent: {self.user_agent}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _exchange(
        self,
        exchange: _Exchange,
        origin: Origin,
        request: bytes,
        span: Span,
        filling: Filling,
        timeout: float | None,
    ) -> tuple[Answer, bool]:
        """On the worker thread: send on the idle connection given, or on a new one."""
        try:
            while True:
                if exchange.connection is None:
                    exchange.connection = self._connect(origin)
                exchange.connection.limit_receives(timeout)
                try:
                    return exchange.connection.exchange(request, span, filling)
                except _StaleConnection:
                    exchange.connection.close()
                    exchange.connection = None  # and send it again on a new connection
                except BaseException:
                    exchange.connection.close()
                    raise
        finally:
            exchange.finish()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context, made on first use (loading the CA bundle takes a while)."""
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def _connect(self, origin: Origin) -> _Connection:
        address = f"{origin.host}:{origin.port}"
        started = time.monotonic()
        try:
            sock = socket.create_connection((origin.host, origin.port), self.connect_timeout)
        except TimeoutError:
            raise TransportError(
                f"could not connect to {address} in {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise TransportError(f"could not connect to {address}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if origin.tls:
            sock = self._handshake(sock, origin)
        _Connection.prepare(sock, self.read_timeout)
        connection = _Connection(sock, self.read_timeout)
        # TCP's set-up takes a round trip, TLS 1.3's handshake one more
        connection.rtt = (time.monotonic() - started) / (2 if origin.tls else 1)
        # The least seen: a set-up also waits for CPU (the handshake's crypto, a busy
        # machine), which only ever adds to the path's round trip.
        self._round_trips[origin] = min(connection.rtt, self._round_trips.get(origin, math.inf))
        return connection

    def _handshake(self, sock: socket.socket, origin: Origin) -> ssl.SSLSocket:
        address = f"{origin.host}:{origin.port}"
        try:
            sock.settimeout(self.connect_timeout)
            return self.ssl_context.wrap_socket(sock, server_hostname=origin.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise CertificateRefused(
                f"{address}: TLS certificate refused: {exc.verify_message or exc}"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise TransportError(f"TLS handshake with {address} failed: {exc}") from exc

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
