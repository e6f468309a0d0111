"""A small real HTTP object server for the cache tests: ranged GETs, ETags, request counts.

It runs in a thread of the test process on a loopback port the OS picks, and serves
objects held in memory.  `latency` delays every answer, like a distant S3; `stream_rate`
(bytes per second, 0: unlimited) paces each body, like one S3 connection.

Each request is numbered when it arrives and when its answer starts to go out, so that a
test can count round trips (`round_trips`) instead of timing them, and `hold()` keeps every
answer back until `release()`, so that a test can see which requests a client sends while
others are still unanswered.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Served:
    path: str
    start: int
    end: int  # exclusive
    arrived: int = field(default=0, compare=False)  # the server's event count on arrival
    answered: float = field(default=float("inf"), compare=False)  # ... as its answer began


def round_trips(served: list[Served]) -> int:
    """The longest chain of these requests in which each arrived only after the one before
    it was answered: the round trips a client waited for them, however long each took."""
    depth: dict[int, int] = {}
    ordered = sorted(served, key=lambda s: s.arrived)
    for i, request in enumerate(ordered):
        depth[i] = 1 + max(
            (depth[j] for j in range(i) if ordered[j].answered < request.arrived), default=0
        )
    return max(depth.values(), default=0)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up early (a cancelled read-ahead) is not worth a traceback."""


class ObjectServer:
    def __init__(self, *, latency: float = 0.0, stream_rate: float = 0.0) -> None:
        self.latency = latency
        self.stream_rate = stream_rate
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._served: list[Served] = []
        self._lock = threading.Lock()
        self._answering = 0  # requests being answered right now
        self.max_in_flight = 0  # the most requests answered at once since `forget_served`
        self._events = 0
        self._open = threading.Event()
        self._open.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = _QuietServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.origin}/{path}"

    def put(self, path: str, data: bytes, etag: str) -> str:
        with self._lock:
            self._objects[path] = (data, etag)
        return self.url(path)

    def served(self, path: str | None = None) -> list[Served]:
        with self._lock:
            return [s for s in self._served if path is None or s.path == path]

    def forget_served(self) -> None:
        """Start counting afresh, once every request under way was answered (a client that
        hung up early still has its request counted where it belongs)."""
        deadline = time.monotonic() + 10
        while self._answering and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            self._served.clear()
            self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests arrived and not yet answered in full."""
        with self._lock:
            return self._answering

    def hold(self) -> None:
        """Keep every answer back (requests are still counted as they arrive)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _event(self) -> int:
        with self._lock:
            self._events += 1
            return self._events

    def __enter__(self) -> ObjectServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._answering += 1
            self.max_in_flight = max(self.max_in_flight, self._answering)
        try:
            self._answer_counted(request)
        finally:
            with self._lock:
                self._answering -= 1

    def _answer_counted(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.lstrip("/")
        with self._lock:
            found = self._objects.get(path)
        if found is None:
            self._delay()
            self._reply(request, 404, b"not found")
            return
        data, etag = found
        start, end, status = 0, len(data), 200
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(len(data), int(match.group(2)) + 1 if match.group(2) else len(data))
            if start >= len(data):
                self._delay()
                self._reply(request, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
        served = Served(path, start, end, arrived=self._event())
        with self._lock:
            self._served.append(served)
        self._delay()
        self._open.wait()
        served.answered = self._event()  # before the body: a reply to it arrives after this
        headers = {"ETag": f'"{etag}"'}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        self._reply(request, status, memoryview(data)[start:end], headers, self.stream_rate)

    def _delay(self) -> None:
        if self.latency:
            time.sleep(self.latency)

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        body: bytes | memoryview,
        headers: dict[str, str] | None = None,
        stream_rate: float = 0.0,
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not stream_rate:
            request.wfile.write(body)
            return
        began, piece = time.monotonic(), 16 << 10
        for sent in range(0, len(body), piece):
            request.wfile.write(body[sent : sent + piece])
            request.wfile.flush()
            time.sleep(max(0.0, began + (sent + piece) / stream_rate - time.monotonic()))


@pytest.fixture
def server():
    """An `ObjectServer` for one test (import this fixture into the test module)."""
    with ObjectServer() as running:
        yield running
