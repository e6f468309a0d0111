"""The FUSE mount beside its peers, measured in one run against one local archive.

    python -m bench fuse_bench [-- --repeat 3 --latencies 30,0 --stream-mbps 100
                                   --cases sparse,warm,nwb,sequential,listing]

Cases (each at every S3 latency given; the local archive's S3 proxy adds the latency).  The
sparse, nwb (cold) and sequential cases run once more in the scenario "30 ms + <rate> MB/s per
connection": the proxy also paces every response body to `--stream-mbps` (default 100; 0
skips the scenario), on its own, as S3 bounds each connection's rate.  Without that cap one
stream on loopback is bounded only by the CPU, so the premise of the sequential targets --
parallel ranged GETs beat one stream -- does not hold.

* cold sparse read: a new process opens the ~231 MB NWB file with h5py and reads one slice
  (`acquisition/ElectricalSeries/data[500000:510000, :8]`), with nothing cached — dandifs
  (fresh mount, empty cache) vs remfile vs fsspec HTTP (block cache) vs rclone mount
  (`--vfs-cache-mode full`, fresh cache) vs s3fs-fuse.  Target: dandifs <= 0.5x remfile.
* warm re-read: the same read in a new process, (a) through the same mount, (b) after a
  remount on the same cache directory; beside it, the peers that keep a cache on disk across
  processes: remfile with its `DiskCache`, fsspec's persistent `blockcache` filesystem
  (`cache_storage`), rclone mount after a remount, and s3fs-fuse through the same mount.
  S3 and API requests are counted.  Target: zero network requests for a published version.
* nwb: the same cold and warm reads of the ~390 MB Neuropixels session (000005), which is
  as rich as labs' files (384 electrodes, 200 units, trials, LFP, behaviour; the raw series
  gzip-compressed in (30,000 x 64) chunks): by pynwb (`NWBHDF5IO(...).read()`, one chunk
  `ElectricalSeriesAP.data[300000:330000, 128:192]`, the spike times of 10 units) and by
  bare h5py (the same chunk, and `units/spike_times` cut by `spike_times_index`).
* sequential read of the 1 GiB file (1 MiB reads, new mount each time) — dandifs vs curl
  (one stream, straight from S3) vs rclone mount vs s3fs-fuse, in MB/s, with the S3
  requests each made; and the peak RSS of the dandifs daemon meanwhile.  Targets:
  > s3fs-fuse and >= 2x curl.
* `ls -lR` and `find` of the 10,000-asset folder: wall time and archive requests.

Each contender runs in its own process; times are measured inside it (interpreter start-up
and imports excluded) except for curl (its own `time_total`) and the listings (wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from bench._localarchive import Archive, running_archive, stop_process
from bench._table import Series, render
from dandifs.localarchive.demodata import LARGE_BIN_PATH, LARGE_NWB_PATH, NEUROPIXELS_PATH

BULK_FOLDER = "bulk"
MiB = 1 << 20
BIN = Path(sys.executable).parent
READY_TIMEOUT = 60.0
CAPPED_LATENCY_MS = 30  # issue 4's sequential target is stated at 30 ms

READ = r"""
import sys, time
kind, target, cache_dir, task = sys.argv[1:5]
import h5py
import numpy as np
if task == "pynwb":
    from pynwb import NWBHDF5IO
if kind.startswith("remfile"):
    import remfile
elif kind.startswith("fsspec"):
    import fsspec
started = time.perf_counter()
if kind == "remfile":
    source = remfile.File(target)
elif kind == "remfile-disk":
    source = remfile.File(target, disk_cache=remfile.DiskCache(cache_dir))
elif kind == "fsspec":
    source = fsspec.filesystem("http").open(target, "rb", block_size=1 << 20, cache_type="blockcache")
elif kind == "fsspec-disk":
    cached = fsspec.filesystem("blockcache", target_protocol="http", cache_storage=cache_dir)
    source = cached.open(target, "rb", block_size=1 << 20)
else:
    source = target
rows, channels = slice(300_000, 330_000), slice(128, 192)  # one (30,000 x 64) chunk
with h5py.File(source, "r") as f:
    if task == "slice":
        data = f["acquisition/ElectricalSeries/data"][500_000:510_000, :8]
        spikes = []
    elif task == "h5py":
        data = f["acquisition/ElectricalSeriesAP/data"][rows, channels]
        ends = f["units/spike_times_index"][:10]
        spikes = np.split(f["units/spike_times"][:ends[-1]], ends[:-1])
    else:
        with NWBHDF5IO(file=f, mode="r") as io:
            nwb = io.read()
            data = nwb.acquisition["ElectricalSeriesAP"].data[rows, channels]
            spikes = nwb.units["spike_times"][:10]
seconds = time.perf_counter() - started
if hasattr(source, "close"):
    source.close()  # fsspec writes its cache's index on closing
print(seconds, int(data.astype("int64").sum()), sum(len(times) for times in spikes))
"""

SEQUENTIAL_READ = r"""
import sys, time
started = time.perf_counter()
total = 0
with open(sys.argv[1], "rb", buffering=0) as f:
    while chunk := f.read(1 << 20):
        total += len(chunk)
print(time.perf_counter() - started, total)
"""


# -- mounts ------------------------------------------------------------------------------------


def is_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(mountpoint) for line in mounts)


def peer_environment() -> dict[str, str]:
    """rclone and s3fs refuse a custom CA bundle for a plain-HTTP endpoint: drop it."""
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


@dataclass
class Mount:
    """A FUSE daemon run in the foreground as a child process."""

    name: str
    mountpoint: Path
    command: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mount:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        log = open(self.mountpoint.with_suffix(".log"), "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + READY_TIMEOUT
        while not is_mounted(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = self.mountpoint.with_suffix(".log").read_text(errors="replace")
                raise RuntimeError(f"{self.name} did not mount:\n{log_text[-2000:]}")
            time.sleep(0.05)
        os.listdir(self.mountpoint)
        return self

    def peak_rss(self) -> int:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False,
                           stderr=subprocess.DEVNULL)
        if self.process is not None:
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                stop_process(self.process, grace=10)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)


class Contenders:
    """Builds mounts of every tool over the same archive, in one scratch directory."""

    def __init__(self, archive: Archive, scratch: Path) -> None:
        self.archive = archive
        self.scratch = scratch
        self._serial = 0

    def _place(self, name: str) -> Path:
        self._serial += 1
        return self.scratch / f"{name}-{self._serial}"

    def dandifs(self, cache: Path | None = None, *extra: str) -> Mount:
        """A dandifs mount; `extra` goes on its command line (`--memory-size 64M`)."""
        place = self._place("dandifs")
        cache = cache or place.with_name(place.name + "-cache")
        return Mount("dandifs", place, [str(BIN / "dandifs"), "mount", str(place), "-f",
                                        "-i", self.archive.api_url, "--cache-dir", str(cache),
                                        *extra])

    def rclone(self, cache: Path | None = None) -> Mount:
        place = self._place("rclone")
        cache = cache or place.with_name(place.name + "-cache")
        env = peer_environment() | {
            "RCLONE_CONFIG_LOCALS3_TYPE": "s3",
            "RCLONE_CONFIG_LOCALS3_PROVIDER": "Other",
            "RCLONE_CONFIG_LOCALS3_ENDPOINT": self.archive.s3_url,
            "RCLONE_CONFIG_LOCALS3_FORCE_PATH_STYLE": "true",
        }
        return Mount("rclone", place, ["rclone", "mount", f"locals3:{self.archive.bucket}",
                                       str(place), "--vfs-cache-mode", "full", "--read-only",
                                       "--cache-dir", str(cache)], env)

    def s3fs(self) -> Mount:
        place = self._place("s3fs")
        return Mount("s3fs", place, ["s3fs", self.archive.bucket, str(place), "-f",
                                     "-o", f"url={self.archive.s3_url}", "-o",
                                     "use_path_request_style", "-o", "public_bucket=1",
                                     "-o", "ro"], peer_environment())


@contextmanager
def mounted(mount: Mount) -> Iterator[Mount]:
    mount.start()
    try:
        yield mount
    finally:
        mount.stop()


def object_key(url: str, bucket: str) -> str:
    return url.split(f"/{bucket}/", 1)[1]


def run_timed(*command: str, env: dict[str, str] | None = None) -> float:
    """Run a timing script; it prints the seconds it measured first."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.split()[0])


def timed_read(kind: str, read: Read, target: str | Path, cache_dir: Path | None = None) -> float:
    """One cold or warm `read` by `kind`; the `-disk` kinds keep their cache in `cache_dir`."""
    return run_timed(sys.executable, "-c", READ, kind, str(target), str(cache_dir or ""),
                     read.task)


def sequential_read(path: Path) -> float:
    return run_timed(sys.executable, "-c", SEQUENTIAL_READ, str(path))


def curl_read(url: str) -> float:
    """Seconds curl takes to fetch `url` in one stream (its own `time_total`)."""
    result = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", url],
                            capture_output=True, text=True, check=True, env=peer_environment(),
                            timeout=900)
    return float(result.stdout)


def mount_stats(mount: Mount) -> dict:
    return json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))


# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """What one new process reads of one published NWB file; `task` picks the code in READ."""

    name: str
    task: str
    dandiset: str
    path: str


SPARSE = Read("sparse read", "slice", "000001", LARGE_NWB_PATH)
SESSION_READS = (
    Read("pynwb read of the Neuropixels session", "pynwb", "000005", NEUROPIXELS_PATH),
    Read("h5py read of the Neuropixels session", "h5py", "000005", NEUROPIXELS_PATH),
)


@dataclass(frozen=True)
class Scenario:
    """How the S3 proxy treats every request of a run: a delay before each answer and, if
    `stream_mbps`, a bandwidth cap on each response body (MB/s per connection)."""

    latency_ms: int
    stream_mbps: float = 0

    @property
    def label(self) -> str:
        if not self.stream_mbps:
            return f"{self.latency_ms} ms"
        return f"{self.latency_ms} ms + {self.stream_mbps:g} MB/s per connection"


@dataclass
class Bench:
    archive: Archive
    contenders: Contenders
    published: dict[str, str]  # dandiset -> its published version
    repeat: int
    tools: set[str]
    results: dict[str, list[Series]] = field(default_factory=dict)
    urls: dict[Read, str] = field(default_factory=dict)

    def add(self, table: str, series: Series) -> Series:
        self.results.setdefault(table, []).append(series)
        return series

    def file_in(self, mount: Mount, read: Read) -> Path:
        """Where `read`'s file is in a dandifs mount."""
        version = self.published[read.dandiset]
        return mount.mountpoint / "dandisets" / read.dandiset / version / read.path

    def url_of(self, read: Read) -> str:
        """The S3 URL of `read`'s file (asked of the archive once)."""
        if read not in self.urls:
            version = self.published[read.dandiset]
            self.urls[read] = self.archive.s3_url_of(read.dandiset, version, read.path)
        return self.urls[read]

    def key_in(self, mount: Mount, read: Read) -> Path:
        """Where `read`'s file is in a mount of the bucket (rclone, s3fs)."""
        return mount.mountpoint / object_key(self.url_of(read), self.archive.bucket)

    def counted(self, measure: Callable[[], float], requests: list[int]) -> float:
        """`measure()`, appending the S3 requests made meanwhile to `requests`."""
        before = self.archive.s3_requests()
        value = measure()
        requests.append(self.archive.s3_requests() - before)
        return value

    def cold(self, scenario: Scenario, read: Read, table: str) -> None:
        """`read` in a new process with nothing cached, by every contender."""
        case = f"cold {read.name} @{scenario.label}"
        url = self.url_of(read)
        readers: list[tuple[Series, Callable[[], float]]] = [
            (Series(case, "dandifs mount"),
             lambda: self.through(self.contenders.dandifs(), read, self.file_in)),
            (Series(case, "remfile"), lambda: timed_read("remfile", read, url)),
            (Series(case, "fsspec http blockcache"), lambda: timed_read("fsspec", read, url)),
        ]
        if "rclone" in self.tools:
            readers.append((Series(case, "rclone mount (full cache)"),
                            lambda: self.through(self.contenders.rclone(), read, self.key_in)))
        if "s3fs" in self.tools:
            readers.append((Series(case, "s3fs-fuse"),
                            lambda: self.through(self.contenders.s3fs(), read, self.key_in)))
        requests: list[list[int]] = [[] for _ in readers]
        for series, _ in readers:
            self.add(table, series)
        for _ in range(self.repeat):  # contenders take turns, so a busy moment hits them all
            for (series, measure), counts in zip(readers, requests):
                series.values.append(self.counted(measure, counts))
        for (series, _), counts in zip(readers, requests):
            series.note = f"S3 requests per read: {sorted(counts)}"

    def through(self, mount: Mount, read: Read, where: Callable[[Mount, Read], Path]) -> float:
        """`read` of the file at `where(mount, read)` in a fresh `mount`."""
        with mounted(mount):
            return timed_read("path", read, where(mount, read))

    def warm(self, scenario: Scenario, read: Read, table: str) -> None:
        """`read` again in a new process, after one read filled each contender's cache."""
        latency = scenario.latency_ms
        same = self.add(table, Series(f"warm {read.name}, same mount @{latency} ms",
                                      "dandifs mount"))
        again = self.add(table, Series(f"warm {read.name}, remounted @{latency} ms",
                                       "dandifs mount"))
        cache = self.contenders.scratch / f"warm-cache-{read.task}-{latency}"
        notes_same, notes_again = [], []
        with mounted(self.contenders.dandifs(cache)) as mount:
            timed_read("path", read, self.file_in(mount, read))  # fill the caches
            for _ in range(self.repeat):
                s3_before, api_before = self.archive.s3_requests(), mount_stats(mount)["archive"]
                same.values.append(timed_read("path", read, self.file_in(mount, read)))
                api_after = mount_stats(mount)["archive"]
                notes_same.append((self.archive.s3_requests() - s3_before,
                                   api_after["requests"] - api_before["requests"]))
        for _ in range(self.repeat):
            with mounted(self.contenders.dandifs(cache)) as mount:
                s3_before = self.archive.s3_requests()
                again.values.append(timed_read("path", read, self.file_in(mount, read)))
                stats = mount_stats(mount)
                notes_again.append((self.archive.s3_requests() - s3_before,
                                    stats["archive"]["api_requests"]))
        same.note = "(S3, API) requests: " + ", ".join(map(str, notes_same))
        again.note = "(S3, API) requests: " + ", ".join(map(str, notes_again))
        url = self.url_of(read)
        for kind, label in (("remfile-disk", "remfile (DiskCache)"),
                            ("fsspec-disk", "fsspec blockcache (cache_storage)")):
            peer_cache = self.contenders.scratch / f"{kind}-warm-cache-{read.task}-{latency}"
            timed_read(kind, read, url, peer_cache)  # fill its disk cache
            self.rereads(table, Series(f"warm {read.name}, new process @{latency} ms", label),
                         lambda: timed_read(kind, read, url, peer_cache))  # noqa: B023
        if "rclone" in self.tools:
            rclone_cache = self.contenders.scratch / f"rclone-warm-cache-{read.task}-{latency}"
            self.through(self.contenders.rclone(rclone_cache), read, self.key_in)
            self.rereads(
                table,
                Series(f"warm {read.name}, remounted @{latency} ms", "rclone mount (full cache)"),
                lambda: self.through(self.contenders.rclone(rclone_cache), read, self.key_in),
            )
        if "s3fs" in self.tools:
            with mounted(self.contenders.s3fs()) as mount:
                timed_read("path", read, self.key_in(mount, read))
                self.rereads(
                    table,
                    Series(f"warm {read.name}, same mount @{latency} ms", "s3fs-fuse"),
                    lambda: timed_read("path", read, self.key_in(mount, read)),  # noqa: B023
                )

    def rereads(self, table: str, series: Series, measure: Callable[[], float]) -> None:
        """`repeat` measurements of a cache-filled reader, with the S3 requests of each."""
        self.add(table, series)
        requests: list[int] = []
        for _ in range(self.repeat):
            series.values.append(self.counted(measure, requests))
        series.note = f"S3 requests: {requests}"

    def sequential(self, scenario: Scenario) -> None:
        case = f"sequential 1 GiB @{scenario.label}"
        url = self.archive.s3_url_of("000004", "draft", LARGE_BIN_PATH)
        key = object_key(url, self.archive.bucket)
        size = int(self.archive.asset("000004", "draft", LARGE_BIN_PATH)["size"])
        mine = self.add("sequential", Series(case, "dandifs mount"))
        curl = self.add("sequential", Series(case, "curl (1 stream)"))
        rclone = self.add("sequential", Series(case, "rclone mount (full cache)"))
        s3fs = self.add("sequential", Series(case, "s3fs-fuse"))
        rss = self.add("memory", Series(
            f"dandifs daemon peak RSS, sequential @{scenario.label}", "dandifs mount"))
        requests: dict[str, list[int]] = {name: [] for name in ("dandifs", "curl", "rclone",
                                                                  "s3fs")}
        rate = lambda seconds: size / seconds / 1e6  # noqa: E731
        for _ in range(self.repeat):
            with mounted(self.contenders.dandifs()) as mount:
                path = mount.mountpoint / "dandisets" / "000004" / "draft" / LARGE_BIN_PATH
                seconds = self.counted(lambda: sequential_read(path), requests["dandifs"])
                mine.values.append(rate(seconds))
                rss.values.append(mount.peak_rss() / MiB)
            curl.values.append(rate(self.counted(lambda: curl_read(url), requests["curl"])))
            if "rclone" in self.tools:
                with mounted(self.contenders.rclone()) as mount:
                    seconds = self.counted(lambda: sequential_read(mount.mountpoint / key),
                                           requests["rclone"])
                    rclone.values.append(rate(seconds))
            if "s3fs" in self.tools:
                with mounted(self.contenders.s3fs()) as mount:
                    seconds = self.counted(lambda: sequential_read(mount.mountpoint / key),
                                           requests["s3fs"])
                    s3fs.values.append(rate(seconds))
        for series, name in ((mine, "dandifs"), (curl, "curl"), (rclone, "rclone"),
                             (s3fs, "s3fs")):
            if requests[name]:
                series.note = f"S3 requests: {requests[name]}"
        rss.note = "memory cache 256 MiB (default)"

    def listing(self) -> None:
        folder = Path("dandisets") / "000004" / "draft" / BULK_FOLDER
        for command, label in ((["ls", "-lR"], "ls -lR"), (["find", "."], "find")):
            cold = self.add("listing", Series(f"{label} of 10,000 assets, cold", "dandifs mount"))
            warm = self.add("listing", Series(f"{label} of 10,000 assets, warm", "dandifs mount"))
            requests_cold, requests_warm = [], []
            for _ in range(self.repeat):
                with mounted(self.contenders.dandifs()) as mount:
                    for series, notes in ((cold, requests_cold), (warm, requests_warm)):
                        before = mount_stats(mount)["archive"]["api_requests"]
                        started = time.perf_counter()
                        listed = subprocess.run(command, cwd=mount.mountpoint / folder,
                                                capture_output=True, text=True, check=True)
                        series.values.append(time.perf_counter() - started)
                        notes.append(mount_stats(mount)["archive"]["api_requests"] - before)
                        assert listed.stdout.count("file-") >= 10_000
            cold.note = f"archive requests: {requests_cold}"
            warm.note = f"archive requests: {requests_warm}"


def available_tools() -> set[str]:
    tools = {name for name in ("rclone", "s3fs", "curl") if shutil.which(name)}
    for name in {"rclone", "s3fs", "curl"} - tools:
        print(f"!!! {name} is not installed: its rows stay empty !!!", file=sys.stderr)
    return tools


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fuse_bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latencies", default="30,0", help="S3 latencies in ms, e.g. 30,0")
    parser.add_argument("--stream-mbps", type=non_negative, default=100.0, metavar="RATE",
                        help="S3 bandwidth per connection (MB/s) of the scenario run at "
                        f"{CAPPED_LATENCY_MS} ms beside the plain latencies; 0 skips it "
                        "(default: %(default)g)")
    parser.add_argument("--cases", default="sparse,warm,nwb,sequential,listing",
                        help="any of sparse, warm, nwb (cold and warm reads of the Neuropixels "
                        "session), sequential, listing (default: %(default)s)")
    args = parser.parse_args(argv or [])
    cases = set(args.cases.split(","))
    latencies = [int(value) for value in args.latencies.split(",")]
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        print("!!! FUSE is not available on this machine: fuse_bench cannot run !!!")
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dandifs-fuse-bench-") as scratch, \
            running_archive("big") as archive:
        published = {
            read.dandiset: archive.api(f"dandisets/{read.dandiset}/")[
                "most_recent_published_version"]["version"]
            for read in (SPARSE, *SESSION_READS)
        }
        bench = Bench(archive, Contenders(archive, Path(scratch)), published, args.repeat,
                      available_tools())
        scenarios = [Scenario(latency) for latency in latencies]
        if args.stream_mbps:
            scenarios.append(Scenario(CAPPED_LATENCY_MS, args.stream_mbps))
        try:
            for scenario in scenarios:
                archive.set_network(scenario.latency_ms, scenario.stream_mbps)
                print(f"-- S3 latency {scenario.label}", flush=True)
                if "sparse" in cases:
                    bench.cold(scenario, SPARSE, "sparse")
                if "nwb" in cases:
                    for read in SESSION_READS:
                        bench.cold(scenario, read, "nwb")
                if not scenario.stream_mbps:  # a warm read has no S3 bytes to cap
                    if "warm" in cases:
                        bench.warm(scenario, SPARSE, "warm")
                    if "nwb" in cases:
                        for read in SESSION_READS:
                            bench.warm(scenario, read, "nwb warm")
                if "sequential" in cases:
                    bench.sequential(scenario)
            archive.set_network(0)
            if "listing" in cases:
                bench.listing()
        finally:
            archive.set_network(0)
    sections = {
        "sparse": ("s", {s.case: "remfile" for s in bench.results.get("sparse", [])}),
        "warm": ("s", {}),
        "nwb": ("s", {s.case: "remfile" for s in bench.results.get("nwb", [])}),
        "nwb warm": ("s", {}),
        "sequential": ("MB/s", {s.case: "curl (1 stream)" for s in bench.results.get("sequential", [])}),
        "memory": ("MiB", {}),
        "listing": ("s", {}),
    }
    for name, (unit, baseline) in sections.items():
        if name in bench.results:
            print(f"\n{name}\n{render(bench.results[name], unit=unit, baseline=baseline)}")
    capped = f", {args.stream_mbps:g} MB/s per connection at {CAPPED_LATENCY_MS} ms" \
        if args.stream_mbps else ""
    print(f"\nfuse_bench took {time.monotonic() - started:.0f} s "
          f"(repeat {args.repeat}, latencies {latencies} ms{capped})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
