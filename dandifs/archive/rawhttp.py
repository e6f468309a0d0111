"""A lean HTTP/1.1 client for the one request that moves bulk bytes: a ranged GET of an object.

Reading object bodies through httpx costs more CPU than everything else a mount does: its
connection layer reads sockets 64 KiB at a time and pushes each piece through the h11
parser and several layers of async generators, all on the one thread that also answers
FUSE.  A ranged GET needs none of that generality: one request line, a few headers, and a
body whose length the answer states.  So this module speaks just that, over anyio streams
(plain TCP or TLS): the head is parsed once, and the body is received in large pieces
straight into one list that is joined once.

Connections are kept alive per origin.  One taken from the idle pool may have been closed by
the server meanwhile; if it fails before the first byte of an answer arrives, the request is
sent once more on a new connection (what HTTP clients do for idempotent requests).  A body
not read to its end closes its connection rather than returning it to the pool.

Anything this client does not handle (redirects, proxies, the API's token) is left to the
general `HttpSession`; see `ObjectStore.read_range`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

RECEIVE_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 << 10
MAX_ERROR_BODY = 1 << 20


class TransportError(Exception):
    """The connection failed, timed out or carried something that is not HTTP/1.1."""


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
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port), target

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class Answer:
    """A response whose head has arrived; the body is read with `read_span` or `read_small`.

    Offers `status_code`, `reason_phrase` and case-insensitive `headers`, like an
    `httpx.Response`, so that the same checks apply to answers of either client.
    """

    def __init__(self, connection: _Connection, status: int, reason: str, headers: httpx.Headers):
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self._connection = connection
        self._framing = _framing(status, headers)
        self.complete = self._framing == 0  # body read to its end: the connection is reusable

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    async def read_span(self, offset: int, stop: int) -> bytes:
        """Bytes `[offset, stop)` of the body (fewer if it ends first), skipping the rest.

        A body longer than `stop` is not read further: its connection is then closed.
        """
        if not isinstance(self._framing, int):
            return (await self.read_small(limit=stop))[offset:stop]
        length = self._framing
        stop = min(stop, length)
        if offset:
            await self._connection.skip(min(offset, length))
        data = await self._connection.receive_exactly(max(0, stop - offset))
        self.complete = stop >= length
        return data

    async def read_small(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """The body, or its first `limit` bytes (an error answer, a one-byte range)."""
        framing = self._framing
        if framing == "chunked":
            body, self.complete = await self._connection.receive_chunked(limit)
            return body
        if framing is None:
            return await self._connection.receive_to_eof(limit)  # the connection ends with it
        assert isinstance(framing, int)
        body = await self._connection.receive_exactly(min(framing, limit))
        self.complete = framing <= limit
        return body

    def as_httpx(self, url: str, body: bytes) -> httpx.Response:
        """This answer as an `httpx.Response`, for the archive layer's error translation."""
        return httpx.Response(
            self.status_code,
            headers=self.headers,
            content=body,
            request=httpx.Request("GET", url),
        )


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
    """One HTTP/1.1 connection: a stream plus what was received beyond the last message."""

    def __init__(self, stream: anyio.abc.ByteStream, read_timeout: float | None) -> None:
        self.stream = stream
        self.read_timeout = read_timeout
        self.buffer = bytearray()
        self.reused = False

    async def _receive(self) -> bytes:
        """The next piece from the network; b"" at the end of the stream."""
        try:
            with anyio.fail_after(self.read_timeout):
                return await self.stream.receive(RECEIVE_BYTES)
        except anyio.EndOfStream:
            return b""
        except TimeoutError:
            raise TransportError(f"no data for {self.read_timeout:g} s") from None
        except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
            raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc

    async def send(self, data: bytes) -> None:
        try:
            with anyio.fail_after(self.read_timeout):
                await self.stream.send(data)
        except TimeoutError:
            raise TransportError(f"could not send for {self.read_timeout:g} s") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
            if self.reused:
                raise _StaleConnection("kept-alive connection was closed") from exc
            raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc

    async def receive_head(self) -> tuple[int, str, httpx.Headers]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise TransportError("answer head too long")
            try:
                piece = await self._receive()
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

    async def receive_exactly(self, count: int) -> bytes:
        """`count` bytes of body; `TransportError` if the stream ends first."""
        if len(self.buffer) >= count:
            data = bytes(self.buffer[:count])
            del self.buffer[:count]
            return data
        pieces = [bytes(self.buffer)] if self.buffer else []
        received = len(self.buffer)
        self.buffer.clear()
        while received < count:
            piece = await self._receive()
            if not piece:
                raise TransportError(f"body ended after {received} of {count} bytes")
            received += len(piece)
            pieces.append(piece)
        if received > count:  # never expected without pipelining; kept for the next message
            extra = received - count
            self.buffer += pieces[-1][-extra:]
            pieces[-1] = pieces[-1][:-extra]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def skip(self, count: int) -> None:
        while count:
            if not self.buffer:
                piece = await self._receive()
                if not piece:
                    raise TransportError("body ended early")
                self.buffer += piece
            taken = min(count, len(self.buffer))
            del self.buffer[:taken]
            count -= taken

    async def receive_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise TransportError("chunk header too long")
            piece = await self._receive()
            if not piece:
                raise TransportError("connection closed inside a chunked body")
            self.buffer += piece
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def receive_chunked(self, limit: int) -> tuple[bytes, bool]:
        """A chunked body, or its first `limit` bytes; and whether it was read to its end."""
        body = bytearray()
        while True:
            size_text = (await self.receive_line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise TransportError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while await self.receive_line():
                    pass  # trailer fields, up to the empty line
                return bytes(body), True
            if len(body) + size > limit:
                body += await self.receive_exactly(limit - len(body))
                return bytes(body), False
            body += await self.receive_exactly(size)
            if await self.receive_line():
                raise TransportError("chunk not followed by CRLF")

    async def receive_to_eof(self, limit: int) -> bytes:
        """Up to `limit` bytes of a body that ends with the connection."""
        body = bytearray(self.buffer)
        self.buffer.clear()
        while len(body) < limit and (piece := await self._receive()):
            body += piece
        return bytes(body[:limit])

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (OSError, anyio.BrokenResourceError, ssl.SSLError):
                pass


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


def _keeps_alive(answer: Answer) -> bool:
    return answer.complete and "close" not in answer.headers.get("connection", "").lower()


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
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    @asynccontextmanager
    async def get(self, url: str, headers: dict[str, str]) -> AsyncIterator[Answer]:
        """A GET of `url`; the answer's connection is reused if its body was read whole."""
        origin, target = Origin.of(url)
        request = self._request(origin, target, headers)
        connection, answer = await self._exchange(origin, request)
        try:
            yield answer
        except BaseException:
            await connection.aclose()
            raise
        if _keeps_alive(answer) and not self._closed:
            connection.reused = True
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.max_idle_per_origin:
                idle.append(connection)
                return
        await connection.aclose()

    def _request(self, origin: Origin, target: str, headers: dict[str, str]) -> bytes:
        lines = [f"GET {target} HTTP/1.1", f"Host: {origin.host_header}",
                 f"User-Agent: {self.user_agent}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(self, origin: Origin, request: bytes) -> tuple[_Connection, Answer]:
        while True:
            idle = self._idle.get(origin)
            connection = idle.pop() if idle else await self._connect(origin)
            try:
                await connection.send(request)
                status, reason, headers = await connection.receive_head()
                return connection, Answer(connection, status, reason, headers)
            except _StaleConnection:
                await connection.aclose()  # and try the next idle one, or a new one
            except BaseException:
                await connection.aclose()
                raise

    async def _connect(self, origin: Origin) -> _Connection:
        tls = origin.scheme == "https"
        try:
            with anyio.fail_after(self.connect_timeout):
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                    origin.host,
                    origin.port,
                    tls=tls,
                    ssl_context=self._tls_context() if tls else None,
                    tls_standard_compatible=False,
                )
        except TimeoutError:
            raise TransportError(
                f"could not connect to {origin.host}:{origin.port} "
                f"in {self.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"could not connect to {origin.host}:{origin.port}: {exc}") from exc
        return _Connection(stream, self.read_timeout)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # The same trust as httpx (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()
