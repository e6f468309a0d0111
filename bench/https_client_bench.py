"""Which client reads object ranges over HTTPS: the lean range client over TLS, or httpx.

A server process (forked, so its CPU is not counted) serves one object of `--size` bytes
(256 MiB) with ranged GETs over HTTPS, with a certificate of a throw-away `trustme` CA, and
over plain HTTP for reference.  The client side is the product's own `ObjectStore`, with the
lean client (`ranges`) or without it (httpx), verification (ETag) on, on trio:

* sequential: the object in 8 MiB ranges, one GET after the other, kept in 256 KiB pieces
  (the block cache's reads): throughput, and the process's CPU seconds per GiB;
* 4 parallel: the same with four GETs under way at once (the split of a large read);
* busy loop: sequential (the first 64 MiB) while another task keeps the event loop busy
  with Python work in 1 ms slices (a mount answering FUSE), the case that a worker thread
  needing the GIL back after every TLS record could lose;
* small GETs: 4 KiB ranges at random offsets, one at a time: latency.

    python -m bench https_client_bench [-- --size MIB --repeat N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trustme

from bench._table import Series, render

MIB = 1 << 20
GIB = 1 << 30
RANGE_BYTES = 8 * MIB
PIECE_BYTES = 256 * 1024
SMALL_BYTES = 4096
SMALL_COUNT = 200
BUSY_BYTES = 64 * MIB  # read while the loop is busy (slow enough to keep short)
ETAG = "bench-object"
_RANGE = re.compile(rb"\r\nrange: *bytes=(\d+)-(\d+)", re.IGNORECASE)


# -- the server (its own process) ---------------------------------------------------------


def _serve_connection(connection: socket.socket, data: memoryview) -> None:
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                piece = connection.recv(65536)
                if not piece:
                    return
                buffer += piece
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            match = _RANGE.search(head)
            first, last = (int(match[1]), int(match[2])) if match else (0, len(data) - 1)
            last = min(last, len(data) - 1)
            connection.sendall(
                f"HTTP/1.1 206 Partial Content\r\nContent-Length: {last - first + 1}\r\n"
                f"Content-Range: bytes {first}-{last}/{len(data)}\r\nETag: \"{ETAG}\"\r\n"
                "Connection: keep-alive\r\n\r\n".encode()
            )
            connection.sendall(data[first : last + 1])
    except (OSError, ssl.SSLError):
        return
    finally:
        connection.close()


def _accept(listener: socket.socket, data: memoryview, tls: ssl.SSLContext | None) -> None:
    while True:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                connection = tls.wrap_socket(connection, server_side=True)
            except (OSError, ssl.SSLError):
                connection.close()
                continue
        threading.Thread(target=_serve_connection, args=(connection, data), daemon=True).start()


def serve(size: int, certificate: Path, plain: socket.socket, secure: socket.socket) -> None:
    block = random.Random(1).randbytes(MIB)
    data = memoryview(block * (size // MIB) + block[: size % MIB])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate)
    threading.Thread(target=_accept, args=(plain, data, None), daemon=True).start()
    _accept(secure, data, tls)


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


# -- the client ---------------------------------------------------------------------------


class Measured:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def done(self, size: int) -> tuple[float, float]:
        """(MB/s, CPU seconds per GiB)."""
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return size / wall / 1e6, cpu * GIB / size


async def read_sequential(store, url: str, size: int, start: int = 0) -> int:
    received = 0
    for offset in range(start, start + size, RANGE_BYTES):
        end = min(offset + RANGE_BYTES, start + size)
        pieces = await store.read_pieces(url, offset, end, piece_size=PIECE_BYTES, etag=ETAG)
        received += sum(len(piece) for piece in pieces)
    return received


async def read_parallel(store, url: str, size: int, streams: int = 4) -> int:
    share = size // streams
    totals: list[int] = []

    async def one(index: int) -> None:
        totals.append(await read_sequential(store, url, share, index * share))

    async with trio.open_nursery() as nursery:
        for index in range(streams):
            nursery.start_soon(one, index)
    return sum(totals)


async def busy_loop(stop: trio.Event) -> None:
    while not stop.is_set():
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:
            pass
        await trio.sleep(0)


async def read_while_busy(store, url: str, size: int) -> int:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy_loop, stop)
        try:
            return await read_sequential(store, url, min(size, BUSY_BYTES))
        finally:
            stop.set()


async def small_latencies(store, url: str, size: int) -> list[float]:
    rng = random.Random(2)
    latencies = []
    for _ in range(SMALL_COUNT):
        offset = rng.randrange(size - SMALL_BYTES)
        started = time.perf_counter()
        data = await store.read_range(url, offset, offset + SMALL_BYTES, etag=ETAG)
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(data) == SMALL_BYTES
    return latencies


async def measure(args: argparse.Namespace, urls: dict[str, str]) -> list[list[Series]]:
    from dandifs.archive import ArchiveClient
    from dandifs.archive.objects import ObjectStore

    size = args.size * MIB
    contenders = ("lean, https", "httpx, https", "lean, http", "httpx, http")
    rate, cpu, latency = [], [], []
    cases: dict[str, Callable[..., Awaitable[int]]] = {
        "sequential": read_sequential, "4 parallel": read_parallel, "busy loop": read_while_busy,
    }
    for case in cases:
        rate += [Series(case, name) for name in contenders]
        if case != "busy loop":  # the busy task's own CPU would count
            cpu += [Series(case, name) for name in contenders]
    latency += [Series("small GETs median", name) for name in contenders]
    latency += [Series("small GETs p90", name) for name in contenders]
    by_key = {(s.case, s.contender, id(table)): s for table in (rate, cpu, latency) for s in table}

    def put(table: list[Series], case: str, contender: str, value: float) -> None:
        by_key[(case, contender, id(table))].values.append(value)

    async with ArchiveClient("http://127.0.0.1:9/api", anonymous=True) as archive:
        stores = {"lean": archive.objects, "httpx": ObjectStore(archive.objects.session)}
        for _ in range(args.repeat):
            for contender in contenders:
                client, scheme = contender.split(", ")
                store, url = stores[client], urls[scheme]
                await store.read_range(url, 0, 1, etag=ETAG)  # connect outside the timing
                for case, read in cases.items():
                    timer = Measured()
                    received = await read(store, url, size)
                    assert received in (size, BUSY_BYTES), (case, contender, received)
                    throughput, cpu_per_gib = timer.done(received)
                    put(rate, case, contender, throughput)
                    if case != "busy loop":
                        put(cpu, case, contender, cpu_per_gib)
                times = await small_latencies(store, url, size)
                put(latency, "small GETs median", contender, statistics.median(times))
                put(latency, "small GETs p90", contender, statistics.quantiles(times, n=10)[-1])
    return [rate, cpu, latency]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="https_client_bench")
    parser.add_argument("--size", type=int, default=256, help="object size in MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv or [])

    with tempfile.TemporaryDirectory(prefix="https-bench-") as tmp:
        ca = trustme.CA()
        certificate = Path(tmp) / "server.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(certificate))
        bundle = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        plain, secure = listener(), listener()
        urls = {
            "http": f"http://127.0.0.1:{plain.getsockname()[1]}/bucket/blobs/object",
            "https": f"https://127.0.0.1:{secure.getsockname()[1]}/bucket/blobs/object",
        }
        server = multiprocessing.get_context("fork").Process(
            target=serve, args=(args.size * MIB, certificate, plain, secure), daemon=True
        )
        server.start()
        plain.close()
        secure.close()
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(bundle)  # trusted as httpx would trust it
        try:
            rate, cpu, latency = trio.run(measure, args, urls)
        finally:
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous
            server.terminate()
            server.join()
    baseline = {s.case: "httpx, https" for s in rate}
    print(f"{args.size} MiB object over loopback, {RANGE_BYTES // MIB} MiB ranges, "
          f"{args.repeat} runs")
    print(render(rate, unit="MB/s", baseline=baseline, lower_is_better=False))
    print()
    print(render(cpu, unit="CPU s/GiB", baseline=baseline))
    print()
    print(render(latency, unit="ms", baseline={s.case: "httpx, https" for s in latency}))
    return 0
