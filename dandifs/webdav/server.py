"""Serving the WSGI application with cheroot: threads, a real port, a graceful stop.

cheroot is WsgiDAV's own default server: a thread pool (one request per thread, as the
blocking portal expects) that de-chunks request bodies as WsgiDAV requires.  SIGTERM and
Ctrl-C stop it after the requests in flight, so `systemctl stop` and a terminal behave
the same.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from cheroot import wsgi

DEFAULT_THREADS = 32


def make_server(app, host: str, port: int, *, threads: int = DEFAULT_THREADS) -> wsgi.Server:
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="dandifs")
    server.prepare()  # binds now, so port 0 has become a real port
    return server


def bound_url(server: wsgi.Server) -> str:
    host, port = server.bind_addr[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call `stop` (on a fresh thread: it waits for workers) on SIGTERM, SIGINT or SIGHUP."""

    def handler(signum, frame) -> None:
        threading.Thread(target=stop, name="dandifs-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve_forever(server: wsgi.Server) -> None:
    """Serve on this (main) thread until a signal stops the server."""
    with stop_on_signals(server.stop):
        server.serve()
