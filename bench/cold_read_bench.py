"""Cold sparse reads over HTTPS on the local archive's TCP model: dandifs beside remfile.

    python -m bench cold_read_bench [-- --rtts 30,80 --repeat 5 --trees A,B --sequential]

The local archive runs with `--tls` and its network model (`rtt_ms` on both the S3 proxy and
the API front): every new connection pays TCP and TLS set-up, every body slow start from 10
segments, and a connection idle longer than 200 ms + RTT is cold again.  Each run is a new
process with nothing cached: for dandifs a fresh mount on a fresh cache directory, for
remfile a new `remfile.File` of the same S3 URL (requests trusts the CA through
`REQUESTS_CA_BUNDLE`).  The reads:

* the canonical slice of the simple demo NWB (000001,
  `acquisition/ElectricalSeries/data[500000:510000, :8]`, h5py);
* if the data directory has it (`--seed big`), pynwb's read of the Neuropixels session
  (000005): one (30,000 x 64) chunk of `ElectricalSeriesAP` and 10 units' spike times.

`--trees` names source trees to mount from (each put first on `PYTHONPATH` of its mount):
their runs interleave with each other and with remfile, so that a busy moment of the
machine hits them all (A/B comparisons of a change).  Each row has the median, min and max
of the read's own time (imports excluded) and, from the S3 proxy's counters, the median
connections, TLS handshakes, rounds sent and requests of one read.  `--sequential` adds a
256 MiB sequential read through each tree's mount (MB/s) at the first RTT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench._localarchive import Archive, running_archive
from bench._table import Series, render
from bench.fuse_bench import (
    BIN,
    SESSION_READS,
    SPARSE,
    Mount,
    Read,
    mounted,
    run_timed,
    timed_read,
)
from bench._localarchive import default_data_dir
from dandifs.localarchive.demodata import LARGE_BIN_PATH

HERE = Path(__file__).resolve().parent.parent
PYNWB_READ = SESSION_READS[0]
SEQUENTIAL_BYTES = 256 << 20
COUNTERS = ("connections", "handshakes", "rounds_sent", "total_requests")

SEQUENTIAL_PART = r"""
import sys, time
limit = int(sys.argv[2])
started = time.perf_counter()
total = 0
with open(sys.argv[1], "rb", buffering=0) as f:
    while total < limit and (chunk := f.read(1 << 20)):
        total += len(chunk)
print(time.perf_counter() - started, total)
"""


def set_rtt(archive: Archive, rtt_ms: float) -> None:
    """The network model at `rtt_ms` on both fronts (the API's takes network fields only)."""
    archive.control("PUT", "faults", {"rtt_ms": rtt_ms})
    api_origin = archive.ready["api_front_url"].rstrip("/")
    httpx.put(f"{api_origin}/__dandifs__/faults", json={"rtt_ms": rtt_ms},
              timeout=10).raise_for_status()


def s3_counters(archive: Archive) -> dict[str, int]:
    stats = archive.control("GET", "stats")
    return {name: int(stats.get(name, 0)) for name in COUNTERS}


class Runner:
    def __init__(self, archive: Archive, scratch: Path, trees: list[Path]) -> None:
        self.archive = archive
        self.scratch = scratch
        self.trees = trees
        self._serial = 0
        self.published = {
            read.dandiset: archive.api(f"dandisets/{read.dandiset}/")[
                "most_recent_published_version"]["version"]
            for read in (SPARSE, PYNWB_READ) if self.has(read)
        }

    def has(self, read: Read) -> bool:
        try:
            self.archive.api(f"dandisets/{read.dandiset}/")
            return True
        except httpx.HTTPStatusError:
            return False

    def mount(self, tree: Path) -> Mount:
        self._serial += 1
        place = self.scratch / f"mnt-{self._serial}"
        cache = self.scratch / f"cache-{self._serial}"
        env = dict(os.environ) | {"PYTHONPATH": str(tree)}
        return Mount(f"dandifs {tree}", place,
                     [str(BIN / "dandifs"), "mount", str(place), "-f", "-i",
                      self.archive.api_url, "--cache-dir", str(cache)], env)

    def path_in(self, mount: Mount, dandiset: str, path: str, version: str | None = None) -> Path:
        version = version or self.published[dandiset]
        return mount.mountpoint / "dandisets" / dandiset / version / path

    def counted(self, measure: Callable[[], float]) -> tuple[float, dict[str, int]]:
        self.archive.control("DELETE", "stats")
        value = measure()
        return value, s3_counters(self.archive)

    def cold(self, read: Read, rtt_ms: float, repeat: int) -> list[Series]:
        case = f"cold {read.name} @{rtt_ms:g} ms RTT, https"
        url = self.archive.s3_url_of(read.dandiset, self.published[read.dandiset], read.path)

        def through(tree: Path) -> Callable[[], float]:
            def measure() -> float:
                with mounted(self.mount(tree)) as mount:
                    time.sleep(0.3)  # a mount's own start-up connections settle first
                    return timed_read("path", read, self.path_in(mount, read.dandiset,
                                                                 read.path))
            return measure

        contenders: list[tuple[Series, Callable[[], float]]] = [
            (Series(case, f"dandifs {tree.name}"), through(tree)) for tree in self.trees
        ]
        contenders.append((Series(case, "remfile"), lambda: timed_read("remfile", read, url)))
        counts: list[list[dict[str, int]]] = [[] for _ in contenders]
        for _ in range(repeat):
            for (series, measure), seen in zip(contenders, counts):
                value, counters = self.counted(measure)
                series.values.append(value)
                seen.append(counters)
        for (series, _), seen in zip(contenders, counts):
            series.note = " ".join(
                f"{name.replace('total_', '')} {statistics.median(c[name] for c in seen):g}"
                f" ({min(c[name] for c in seen)}-{max(c[name] for c in seen)})"
                for name in COUNTERS
            )
        return [series for series, _ in contenders]

    def sequential(self, rtt_ms: float, repeat: int) -> list[Series]:
        case = f"sequential 256 MiB @{rtt_ms:g} ms RTT, https"
        result = [Series(case, f"dandifs {tree.name}") for tree in self.trees]
        counts: list[list[int]] = [[] for _ in self.trees]
        for _ in range(repeat):
            for tree, series, seen in zip(self.trees, result, counts):
                def measure() -> float:
                    with mounted(self.mount(tree)) as mount:
                        path = self.path_in(mount, "000004", LARGE_BIN_PATH, "draft")
                        return run_timed(sys.executable, "-c", SEQUENTIAL_PART, str(path),
                                         str(SEQUENTIAL_BYTES))
                seconds, counters = self.counted(measure)
                series.values.append(SEQUENTIAL_BYTES / seconds / 1e6)
                seen.append(counters["total_requests"])
        for series, seen in zip(result, counts):
            series.note = f"S3 requests {sorted(seen)}"
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cold_read_bench")
    parser.add_argument("--rtts", default="30,80", help="RTTs in ms (default 30,80)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--trees", default=str(HERE),
                        help="source trees to mount from, comma-separated (default: this one)")
    parser.add_argument("--sequential", action="store_true",
                        help="also a 256 MiB sequential read at the first RTT")
    parser.add_argument("--reads", default="sparse,pynwb", help="sparse and/or pynwb")
    args = parser.parse_args(argv or [])
    trees = [Path(tree).resolve() for tree in args.trees.split(",")]
    rtts = [float(value) for value in args.rtts.split(",")]
    big = (default_data_dir() / "demo-cache" / "neuropixels").exists()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dandifs-cold-bench-") as scratch, \
            running_archive("big" if big else "demo", None, "--tls") as archive:
        ca = archive.ready["ca_file"]
        os.environ["SSL_CERT_FILE"] = ca
        os.environ["REQUESTS_CA_BUNDLE"] = ca
        runner = Runner(archive, Path(scratch), trees)
        reads = [read for name, read in (("sparse", SPARSE), ("pynwb", PYNWB_READ))
                 if name in args.reads.split(",") and read.dandiset in runner.published]
        results: list[Series] = []
        try:
            for rtt in rtts:
                set_rtt(archive, rtt)
                for read in reads:
                    print(f"-- {read.name} @{rtt:g} ms", flush=True)
                    measured = runner.cold(read, rtt, args.repeat)
                    print(render(measured, baseline={s.case: "remfile" for s in measured}),
                          flush=True)
                    results += measured
            if args.sequential and big:
                set_rtt(archive, rtts[0])
                print(f"-- sequential @{rtts[0]:g} ms", flush=True)
                sequential = runner.sequential(rtts[0], args.repeat)
                print(render(sequential, unit="MB/s"))
        finally:
            set_rtt(archive, 0)
    baseline = {s.case: "remfile" for s in results}
    print(render(results, unit="s", baseline=baseline))
    print(f"\ncold_read_bench took {time.monotonic() - started:.0f} s (repeat {args.repeat}, "
          f"RTTs {rtts} ms, trees {[str(t) for t in trees]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
