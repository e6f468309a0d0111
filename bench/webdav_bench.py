"""WebDAV: `dandifs serve` beside WsgiDAV's FilesystemProvider and `rclone serve webdav`.

All three serve the same tree: the 10,000-file folder of demo dandiset 000004 (the local
archive's `big` seed), dandifs from the archive, the other two from a local copy of it.

  * PROPFIND Depth 1 of the folder: cold (dandifs: a freshly started server, so the listing
    comes from the archive; the peers: the first request after start) and warm; for dandifs,
    the archive requests the cold listing made.
  * GETs per second with CONCURRENCY clients: dandifs answers with a 307 to S3 (the request
    the client makes to dandifs), the peers send the 1 KiB file itself.
  * The 1 GiB file of 000004 read whole: from S3 directly (where the redirect points) and
    streamed through dandifs (what davfs2, cadaver and litmus get), in MiB/s.

    python -m bench webdav_bench [-- --repeat N --seconds S --concurrency C]
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._localarchive import Archive, running_archive, stop_process
from bench._table import Series, render
from dandifs.localarchive.demo.catalog import BULK_FILES

FOLDER = "bulk"
LARGE = "large/sequential-1GiB.bin"
DANDISET = "000004"
NEON_AGENT = "davfs2/1.6.1 neon/0.32.5"  # a client that gets bytes streamed, not redirected
THREADS = 32  # worker threads of every server under test

WSGIDAV_LAUNCHER = """
import sys
from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp
app = WsgiDAVApp({"provider_mapping": {"/": {"root": sys.argv[1], "readonly": True}},
                  "simple_dc": {"user_mapping": {"*": True}}, "verbose": 0,
                  "logging": {"enable": False}, "lock_storage": None, "property_manager": None})
server = wsgi.Server(("127.0.0.1", 0), app, numthreads=int(sys.argv[2]))
server.prepare()
print(f"http://127.0.0.1:{server.bind_addr[1]}/", flush=True)
server.serve()
"""


@dataclass
class Served:
    name: str
    folder_url: str
    file_urls: list[str]
    log: Path | None = None

    def last_archive_requests(self) -> int | None:
        if self.log is None:
            return None
        counts = re.findall(r"archive=(\d+)", self.log.read_text(errors="replace"))
        return int(counts[-1]) if counts else None


@contextmanager
def process(command: list[str], log: Path, url_pattern: str, source: str = "stdout") -> Iterator[str]:
    """Start a server process and yield the base URL it announces."""
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if source == "stdout" else sink,
            stderr=sink if source == "stdout" else subprocess.PIPE,
        )
    stream = proc.stdout if source == "stdout" else proc.stderr
    try:
        deadline = time.monotonic() + 60
        for raw in stream:
            match = re.search(url_pattern, raw.decode(errors="replace"))
            if match:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not announce its URL")
        else:
            raise RuntimeError(f"{command[0]} exited: {log.read_text()[-2000:]}")
        threading.Thread(target=stream.read, daemon=True).start()  # keep draining its output
        yield match.group(1)
    finally:
        stop_process(proc)


def dandifs_command(archive: Archive) -> list[str]:
    return [sys.executable, "-m", "dandifs", "serve", "-i", archive.api_url, "--port", "0",
            "--threads", str(THREADS)]


def local_copy(archive: Archive, names: list[str], root: Path) -> Path:
    """The folder as plain files (all assets share one 1 KiB blob)."""
    assets = httpx.get(
        f"{archive.api_url}/dandisets/{DANDISET}/versions/draft/assets/",
        params={"path": f"{FOLDER}/{names[0]}"}, timeout=60,
    ).json()["results"]
    download = f"{archive.api_url}/assets/{assets[0]['asset_id']}/download/"
    data = httpx.get(download, follow_redirects=True, timeout=60).content
    folder = root / FOLDER
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(data)
    return root


def propfind(client: httpx.Client, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.request("PROPFIND", url, headers={"Depth": "1"})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.text.count("<ns0:response>") + response.text.count("<D:response>")


def gets_per_second(urls: list[str], seconds: float, concurrency: int) -> float:
    """Requests per second from `concurrency` keep-alive clients for `seconds`."""
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency

    def worker(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(timeout=30, follow_redirects=False) as client:
            while time.perf_counter() < stop:
                response = client.get(rng.choice(urls))
                assert response.status_code in (200, 307), response.status_code
                counts[index] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return sum(counts) / (time.perf_counter() - started)


def read_throughput(url: str, headers: dict[str, str]) -> float:
    """MiB/s of one whole-file GET (following redirects), the body counted as it arrives."""
    received = 0
    started = time.perf_counter()
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
    return received / (1 << 20) / (time.perf_counter() - started)


def measure(served: Served, series: dict, *, warm: int, seconds: float, concurrency: int,
            cold: float | None = None) -> None:
    with httpx.Client(timeout=120) as client:
        if cold is None:
            cold, _ = propfind(client, served.folder_url)
        series["cold"].values.append(cold)
        for _ in range(warm):
            elapsed, entries = propfind(client, served.folder_url)
            series["warm"].values.append(elapsed)
        series["warm"].note = f"{entries - 1} entries"
    series["get"].values.append(gets_per_second(served.file_urls, seconds, concurrency))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webdav_bench")
    parser.add_argument("--repeat", type=int, default=3, help="cold starts / GET runs per server")
    parser.add_argument("--warm", type=int, default=5, help="warm PROPFINDs per run")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one GET run")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv or [])

    contenders = ("dandifs serve", "wsgidav fs", "rclone serve webdav")
    results = {name: {case: Series(case, name) for case in ("cold", "warm", "get")}
               for name in contenders}
    archive_requests: list[int] = []
    streams = {name: Series("1 GiB read", name) for name in ("S3 directly", "dandifs stream-through")}
    with running_archive("big") as archive, tempfile.TemporaryDirectory(prefix="webdav-bench-") as tmp:
        scratch = Path(tmp)
        names = [f"file-{n:05d}.dat" for n in range(BULK_FILES)]  # as the seed names them
        tree = local_copy(archive, names, scratch / "tree")
        sample = random.Random(0).sample(names, 200)

        for attempt in range(args.repeat):
            log = scratch / f"dandifs-{attempt}.log"
            with process(dandifs_command(archive), log, r" at (http://\S+/)") as base:
                folder = f"{base}dandisets/{DANDISET}/draft/{FOLDER}/"
                served = Served("dandifs serve", folder, [folder + n for n in sample], log)
                with httpx.Client(timeout=120) as client:
                    cold, _ = propfind(client, folder)
                time.sleep(0.2)
                archive_requests.append(served.last_archive_requests() or 0)
                measure(served, results["dandifs serve"], warm=args.warm, seconds=args.seconds,
                        concurrency=args.concurrency, cold=cold)
                large = f"{base}dandisets/{DANDISET}/draft/{LARGE}"
                redirect = httpx.get(large, timeout=60)
                streams["S3 directly"].values.append(read_throughput(redirect.headers["Location"], {}))
                streams["dandifs stream-through"].values.append(
                    read_throughput(large, {"User-Agent": NEON_AGENT})
                )

        launcher = [sys.executable, "-c", WSGIDAV_LAUNCHER, str(tree), str(THREADS)]
        rclone = ["rclone", "serve", "webdav", str(tree), "--addr", "127.0.0.1:0", "--read-only",
                  "--config", str(scratch / "rclone.conf")]
        for name, command, pattern, source in (
            ("wsgidav fs", launcher, r"(http://\S+/)", "stdout"),
            ("rclone serve webdav", rclone, r"started on (http://\S+/)", "stderr"),
        ):
            for _ in range(args.repeat):
                with process(command, scratch / f"{name}.log", pattern, source) as base:
                    folder = f"{base}{FOLDER}/"
                    served = Served(name, folder, [folder + n for n in sample])
                    measure(served, results[name], warm=args.warm, seconds=args.seconds,
                            concurrency=args.concurrency)

    results["dandifs serve"]["cold"].note = (
        f"archive requests: {', '.join(map(str, archive_requests))}"
    )
    for case, unit, lower in (("cold", "s", True), ("warm", "s", True), ("get", "req/s", False)):
        title = {"cold": "PROPFIND Depth 1, 10,000 entries, cold",
                 "warm": "PROPFIND Depth 1, 10,000 entries, warm",
                 "get": f"GET of a file, {args.concurrency} concurrent clients "
                        "(dandifs: 307 to S3; peers: the 1 KiB body)"}[case]
        print(f"\n{title}")
        print(render([results[name][case] for name in contenders], unit=unit,
                     baseline={case: "dandifs serve"}, lower_is_better=lower))
    print("\nThe 1 GiB file read whole (one client)")
    print(render(list(streams.values()), unit="MiB/s", baseline={"1 GiB read": "S3 directly"},
                 lower_is_better=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
