"""Non-blocking TCP connections for the S3 proxy, with zero-copy forwarding of bodies.

A proxy spends its time moving bodies from one socket to another. Reading them into Python
and writing them out again costs two copies through user space and an object per chunk;
`splice(2)` moves the bytes socket -> pipe -> socket inside the kernel instead. On this
project's benchmarks (gigabytes streamed on a machine with two shared cores) that is the
difference between the proxy being a bottleneck and being nearly free.

The sockets are driven by the running asyncio loop's readiness callbacks (`sock_recv`,
`add_reader`...), not by asyncio transports, because a transport owns its socket and cannot
lend it to `splice`.

A `Flow` shapes one body: a `Pace` caps its rate (the model of a single connection's
bandwidth), a `Window` sends it in rounds of a congestion window one round trip apart (see
`netmodel.py`); the body still moves through the pipe, but a chunk at a time, each released only
when both allow it.

`TlsConnection` is the server side of a TLS connection (the archive over HTTPS). Its bytes are
encrypted in user space, so bodies to or from it are copied rather than spliced.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import math
import socket
import ssl
import struct
from collections.abc import Callable

from dandifs.localarchive.netmodel import Window

RECV_SIZE = 1 << 18
PIPE_SIZE = 1 << 20
PACE_QUANTUM = 0.01  # seconds of data per paced chunk: ~100 wake-ups a second per stream
PACE_MIN_CHUNK = 16 << 10
PACE_SLACK = 0.05  # seconds of lag a paced stream may make up: wake-ups late on a busy machine
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in the fcntl module only from Python 3.10 on Linux
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


class Pace:
    """Releases the bytes of one stream no faster than `rate` bytes per second.

    Each chunk is due `len(chunk) / rate` seconds after the previous one was, as if it crossed
    a link of that bandwidth. A sleep that overshoots is made up by the next chunks, but by at
    most `PACE_SLACK`: a stream that fell further behind (its reader stalled) does not burst
    to catch up, since a link that sat idle cannot send faster afterwards.
    """

    def __init__(self, rate: float) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of bytes per second, got {rate}")
        self.rate = rate
        self.chunk_size = max(PACE_MIN_CHUNK, min(PIPE_SIZE, int(rate * PACE_QUANTUM)))
        self._due: float | None = None  # when the bytes released so far have crossed the link

    def schedule(self, count: int, now: float) -> float:
        """Book `count` more bytes at time `now`; return the seconds to wait before sending."""
        start = now if self._due is None else max(self._due, now - PACE_SLACK)
        self._due = start + count / self.rate
        return self._due - now

    async def release(self, count: int) -> None:
        """Wait until `count` more bytes may go out."""
        delay = self.schedule(count, asyncio.get_running_loop().time())
        if delay > 0:
            await asyncio.sleep(delay)

    def restart(self) -> None:
        """The link sat idle on purpose (waiting for acknowledgements): no lag to make up."""
        self._due = None


class Flow:
    """How one body moves: at most at `pace`'s rate and, with a `window`, in its rounds one
    `rtt` apart, so that a round takes the longer of one round trip and its bytes' time at the
    rate. Creating it starts the body (a new round of the window)."""

    def __init__(
        self, pace: Pace | None = None, window: Window | None = None, rtt: float = 0.0
    ) -> None:
        self.pace = pace
        self.window = window
        self.rtt = rtt
        self._loop = asyncio.get_running_loop()
        self._rounds_before = 0
        if window is not None:
            self._rounds_before = window.rounds
            window.begin(self._loop.time(), rtt)

    @property
    def rounds(self) -> int:
        """Rounds of the window this body took so far."""
        return 0 if self.window is None else self.window.rounds - self._rounds_before

    @property
    def chunk_size(self) -> int:
        return PIPE_SIZE if self.pace is None else self.pace.chunk_size

    async def allow(self, wanted: int) -> int:
        """How many of `wanted` bytes may go now, after waiting for the window if it is full."""
        if self.window is None:
            return wanted
        count, wait = self.window.take(wanted, self._loop.time(), self.rtt)
        if wait > 0:
            if self.pace is not None:
                self.pace.restart()
            await asyncio.sleep(wait)
        return count

    async def release(self, count: int) -> None:
        if self.pace is not None:
            await self.pace.release(count)

    def sent(self, count: int) -> None:
        if self.window is not None:
            self.window.sent(count, self._loop.time())


class Connection:
    """One TCP connection: buffered reads for message heads, queued writes flushed by
    `drain()`, and `forward()` to move a body to another connection without copying it."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._pending: list[bytes] = []
        self._eof = False
        self._pipe: tuple[int, int] | None = None
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int) -> Connection:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    # -- reading ----------------------------------------------------------------------------

    spliceable = True  # whether bodies may move between its socket and a pipe as they are

    async def _fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        if self._eof:
            return False
        data = await self._recv()
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    async def _recv(self) -> bytes:
        """The next bytes received; b"" at end of stream."""
        return await self._loop.sock_recv(self.sock, RECV_SIZE)

    async def _send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    def _take(self, count: int) -> bytes:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def readuntil(self, separator: bytes, limit: int) -> bytes:
        """Bytes up to and including `separator`; `asyncio.LimitOverrunError` past `limit`
        bytes, `asyncio.IncompleteReadError` at end of stream."""
        searched = 0
        while True:
            index = self._buffer.find(separator, searched)
            if index >= 0:
                return self._take(index + len(separator))
            if len(self._buffer) > limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", limit)
            searched = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                raise asyncio.IncompleteReadError(self._take(len(self._buffer)), None)

    async def read(self, count: int) -> bytes:
        """Up to `count` bytes; b"" at end of stream."""
        if not self._buffer and not await self._fill():
            return b""
        return self._take(count)

    async def readexactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not await self._fill():
                raise asyncio.IncompleteReadError(self._take(len(self._buffer)), count)
        return self._take(count)

    def at_eof(self) -> bool:
        """Whether the peer has closed (checked without consuming anything)."""
        if self._buffer:
            return False
        if self._eof:
            return True
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    # -- writing ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue `data`; `drain()` sends everything queued."""
        if data:
            self._pending.append(data)

    async def drain(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        await self._send(data)

    # -- forwarding -------------------------------------------------------------------------

    async def forward(self, target: Connection, count: int, flow: Flow | None = None) -> int:
        """Move exactly `count` bytes from this connection to `target` (zero-copy where both
        allow it), shaped by `flow` if given; `asyncio.IncompleteReadError` if this side ends
        first."""
        await target.drain()
        remaining = count
        while remaining:
            moved = await self._move_some(target, remaining, flow)
            if moved == 0:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= moved
        return count

    async def forward_to_eof(self, target: Connection, flow: Flow | None = None) -> int:
        await target.drain()
        total = 0
        while moved := await self._move_some(target, PIPE_SIZE, flow):
            total += moved
        self._eof = True
        return total

    async def _move_some(self, target: Connection, limit: int, flow: Flow | None) -> int:
        """Move up to `limit` bytes (one chunk of `flow`, and what its window allows) to
        `target`; return the bytes moved, 0 at end of stream."""
        size = min(limit, PIPE_SIZE if flow is None else flow.chunk_size)
        if flow is not None:
            size = await flow.allow(size)
        if self._buffer or not (self.spliceable and target.spliceable):
            moved = await self._copy_some(target, size, flow)
        else:
            moved = await self._splice_some(target, size, flow)
        if flow is not None:
            flow.sent(moved)
        return moved

    async def _copy_some(self, target: Connection, size: int, flow: Flow | None) -> int:
        """Move what is buffered, or else what one read brings, through user space."""
        data = await self.read(size)
        if data:
            if flow is not None:
                await flow.release(len(data))
            await target._send(data)
        return len(data)

    async def _splice_some(self, target: Connection, size: int, flow: Flow | None) -> int:
        """Fill the pipe from this socket (up to `size` bytes), then empty it into `target`
        (once `flow` allows). Returns the bytes moved; 0 means this side reached end of
        stream."""
        read_end, write_end = self._ensure_pipe()
        while True:
            try:
                moved = os.splice(self.fd, write_end, size, flags=_SPLICE_FLAGS)
                break
            except (BlockingIOError, InterruptedError):
                await self._readable()
        if flow is not None and moved:
            await flow.release(moved)
        left = moved
        while left:
            try:
                left -= os.splice(read_end, target.fd, left, flags=_SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                await target._writable()
        return moved

    def _ensure_pipe(self) -> tuple[int, int]:
        if self._pipe is None:
            read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
                fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
            self._pipe = (read_end, write_end)
        return self._pipe

    async def _readable(self) -> None:
        await self._wait(self._loop.add_reader, self._loop.remove_reader)

    async def _writable(self) -> None:
        await self._wait(self._loop.add_writer, self._loop.remove_writer)

    async def _wait(
        self, add: Callable[[int, Callable[[], None]], object], remove: Callable[[int], object]
    ) -> None:
        ready = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(self.fd, wake)
        try:
            await ready
        finally:
            remove(self.fd)

    # -- closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send what is queued (if the peer still listens), then close."""
        with contextlib.suppress(OSError):
            await self.drain()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        if self._pipe is not None:
            for end in self._pipe:
                os.close(end)
            self._pipe = None
        self.sock.close()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()


class TlsConnection(Connection):
    """The server side of a TLS connection over a non-blocking socket.

    TLS runs on memory buffers (`ssl.SSLObject`): the socket carries the encrypted records, read
    and written through the same loop callbacks as a plain connection. `handshake()` must
    complete before anything else.
    """

    spliceable = False

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    async def handshake(self) -> str:
        """Complete the TLS handshake; return the version agreed on ("TLSv1.3"...).
        `ConnectionError` if the client goes away or refuses (e.g. does not trust us)."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush_records()
                if not await self._receive_records():
                    raise ConnectionError("the client closed during the TLS handshake") from None
            except ssl.SSLError as exc:
                await self._flush_records()  # the alert, if any, tells the client why
                raise ConnectionError(f"TLS handshake failed: {exc}") from exc
        await self._flush_records()
        return self._tls.version() or "unknown"

    async def _recv(self) -> bytes:
        while True:
            try:
                return self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._flush_records()  # e.g. the answer to a key update
                if not await self._receive_records():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise ConnectionError(f"TLS error: {exc}") from exc

    async def _send(self, data: bytes) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            raise ConnectionError(f"TLS error: {exc}") from exc
        await self._flush_records()

    async def _receive_records(self) -> bool:
        """Read encrypted bytes from the socket into TLS; False at end of stream."""
        data = await self._loop.sock_recv(self.sock, RECV_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def _flush_records(self) -> None:
        data = self._outgoing.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def aclose(self) -> None:
        """Send what is queued and a TLS close_notify (if the peer still listens), then close."""
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.drain()
            with contextlib.suppress(ssl.SSLWantReadError):
                self._tls.unwrap()
            await self._flush_records()
        self.close()
