"""The FUSE mount beside its peers, measured in one run against one local archive over HTTPS.

    python -m bench fuse_bench [-- --rtts 30,80 --repeat 5 --stream-mbps 100
                                   --sequential-rtts 30,0 --flat-latencies 30,0
                                   --cases sparse,warm,nwb,sequential,listing]

The archive runs with `--tls` (HTTPS, a CA made for the run) and every contender trusts its
CA the ordinary way: dandifs and Python's ssl (aiohttp, h5py's ros3 through aws-c-io) by
`SSL_CERT_FILE`, remfile (requests) by `REQUESTS_CA_BUNDLE`, rclone by `--ca-cert`, s3fs-fuse
by `CURL_CA_BUNDLE`, curl by `--cacert`.  Each scenario is set at runtime on both fronts (S3
and API), so one archive serves the whole run:

* "RTT N ms" (`--rtts`, default 30,80): the archive's network model (`rtt_ms`): one RTT per
  request, one per new connection plus the TLS handshake's, bodies in slow-start rounds;
* "RTT 30 ms + R MB/s per connection" (`--stream-mbps R`, default 100; 0 skips it): the same,
  and every S3 response body paced to R MB/s on its own, as S3 bounds one connection;
* "flat N ms" (`--flat-latencies`, none by default): the older model, a fixed delay before
  each S3 answer and nothing else.

Cases:

* cold sparse read (`sparse`): a new process opens the ~231 MB demo NWB with h5py and reads
  `acquisition/ElectricalSeries/data[500000:510000, :8]`, nothing cached: dandifs (fresh mount,
  empty cache) vs remfile vs fsspec HTTP (block cache) vs h5py's ros3 driver vs rclone mount
  (`--vfs-cache-mode full`, fresh cache) vs s3fs-fuse;
* `nwb`: the same for the ~390 MB Neuropixels session of 000005, by pynwb (`read()`, one
  (30,000 x 64) gzip chunk of `ElectricalSeriesAP`, the spike times of 10 units) and by bare
  h5py (the same chunk, `units/spike_times` cut by `spike_times_index`);
* `warm`: each of those reads in a new process after one read filled the caches, at every
  `--rtts`: dandifs through the same mount and after a remount on the same cache directory,
  beside the peers' disk caches (remfile's `DiskCache`, fsspec's persistent `blockcache`,
  rclone after a remount, s3fs-fuse through the same mount); ros3 keeps no cache;
* `sequential`: the 1 GiB file in 1 MiB reads (new mount each time) at each of
  `--sequential-rtts` (default 30,0) and in the capped scenario: dandifs vs curl (one stream)
  vs rclone mount vs s3fs-fuse, in MB/s, and the peak RSS of each daemon (and curl) meanwhile;
* `listing` (not by default): `ls -lR` and `find` of the 10,000-asset folder.

Each cell is the median of `--repeat` fresh processes (min and max beside it), the ratio to
the best peer, and the network model's counters for the timed part only, read from both
fronts' stats before and after: connections opened, TLS handshakes, requests, body MB (a
range `a-b` where the repeats differ).  Times are measured inside each process (interpreter
start-up and imports excluded) except for curl (its own `time_total`) and the listings.
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
from typing import Any, Callable, Iterator

from bench._localarchive import Archive, running_archive, stop_process
from bench._table import Series, render
from dandifs.localarchive.demodata import LARGE_BIN_PATH, LARGE_NWB_PATH, NEUROPIXELS_PATH

BULK_FOLDER = "bulk"
MiB = 1 << 20
BIN = Path(sys.executable).parent
READY_TIMEOUT = 60.0
CAPPED_RTT_MS = 30  # the sequential target is stated at 30 ms
ROS3_VENV = Path(os.environ.get("DANDIFS_ROS3_VENV", "/tmp/ros3-venv"))
DANDIFS = "dandifs mount"

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
options = {}
if kind == "remfile":
    source = remfile.File(target)
elif kind == "remfile-disk":
    source = remfile.File(target, disk_cache=remfile.DiskCache(cache_dir))
elif kind == "fsspec":
    source = fsspec.filesystem("http").open(target, "rb", block_size=1 << 20, cache_type="blockcache")
elif kind == "fsspec-disk":
    cached = fsspec.filesystem("blockcache", target_protocol="http", cache_storage=cache_dir)
    source = cached.open(target, "rb", block_size=1 << 20)
elif kind == "ros3":  # anonymous: empty credentials; the endpoint is AWS_ENDPOINT_URL
    source = target
    options = dict(driver="ros3", aws_region=b"us-east-1", secret_id=b"", secret_key=b"")
else:
    source = target
rows, channels = slice(300_000, 330_000), slice(128, 192)  # one (30,000 x 64) chunk
with h5py.File(source, "r", **options) as f:
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


# -- the network model's counters ------------------------------------------------------------


COUNTERS = ("connections", "handshakes", "total_requests", "bytes")


def traffic(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
            ) -> dict[str, dict[str, int]]:
    """What each front (S3, API) counted between two `Archive.front_stats()`."""
    def flat(stats: dict[str, Any]) -> dict[str, int]:
        return {"connections": stats["connections"], "handshakes": stats["handshakes"],
                "total_requests": stats["total_requests"],
                "bytes": stats["bytes_sent"] + stats["bytes_received"]}
    return {front: {name: flat(after[front])[name] - flat(before[front])[name]
                    for name in COUNTERS} for front in after}


def describe(traffics: list[dict[str, dict[str, int]]]) -> str:
    """The counters of repeated runs: per front, connections/handshakes/requests and MB."""
    def span(values: list[float], fmt: str = "{:g}") -> str:
        low, high = min(values), max(values)
        return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"

    parts = []
    for front in ("S3", "API"):
        rows = [t[front] for t in traffics]
        if not any(any(row.values()) for row in rows):
            parts.append(f"{front} 0")
            continue
        parts.append(f"{front} conn {span([r['connections'] for r in rows])} "
                     f"tls {span([r['handshakes'] for r in rows])} "
                     f"req {span([r['total_requests'] for r in rows])} "
                     f"{span([r['bytes'] / 1e6 for r in rows], '{:.2f}')} MB")
    return "; ".join(parts)


# -- mounts ------------------------------------------------------------------------------------


def is_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(mountpoint) for line in mounts)


def peer_environment() -> dict[str, str]:
    """The environment without a CA bundle of AWS's own: each peer is given the CA its way."""
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

    def trusting(self, **names: str) -> dict[str, str]:
        """The peers' environment with each of `names` (a variable) set to the CA file."""
        env = peer_environment()
        if self.archive.ca_file:
            env |= {name: self.archive.ca_file for name in names.values()}
        return env

    def dandifs(self, cache: Path | None = None, *extra: str) -> Mount:
        """A dandifs mount; `extra` goes on its command line (`--memory-size 64M`)."""
        place = self._place("dandifs")
        cache = cache or place.with_name(place.name + "-cache")
        return Mount("dandifs", place, [str(BIN / "dandifs"), "mount", str(place), "-f",
                                        "-i", self.archive.api_url, "--cache-dir", str(cache),
                                        *extra],
                     self.trusting(python="SSL_CERT_FILE"))

    def rclone(self, cache: Path | None = None) -> Mount:
        place = self._place("rclone")
        cache = cache or place.with_name(place.name + "-cache")
        env = peer_environment() | {
            "RCLONE_CONFIG_LOCALS3_TYPE": "s3",
            "RCLONE_CONFIG_LOCALS3_PROVIDER": "Other",
            "RCLONE_CONFIG_LOCALS3_ENDPOINT": self.archive.s3_url,
            "RCLONE_CONFIG_LOCALS3_FORCE_PATH_STYLE": "true",
        }
        trust = ["--ca-cert", self.archive.ca_file] if self.archive.ca_file else []
        return Mount("rclone", place, ["rclone", "mount", f"locals3:{self.archive.bucket}",
                                       str(place), "--vfs-cache-mode", "full", "--read-only",
                                       "--cache-dir", str(cache), *trust], env)

    def s3fs(self) -> Mount:
        place = self._place("s3fs")
        return Mount("s3fs", place, ["s3fs", self.archive.bucket, str(place), "-f",
                                     "-o", f"url={self.archive.s3_url}", "-o",
                                     "use_path_request_style", "-o", "public_bucket=1",
                                     "-o", "ro"], self.trusting(curl="CURL_CA_BUNDLE"))

    def readers(self) -> dict[str, str]:
        """The environment of remfile (requests) and fsspec (aiohttp, Python's ssl)."""
        return self.trusting(requests="REQUESTS_CA_BUNDLE", python="SSL_CERT_FILE")

    def ros3(self) -> dict[str, str]:
        """h5py's ros3 driver (HDF5 2's aws-c-s3, TLS by aws-c-io with OpenSSL's libcrypto,
        which honours SSL_CERT_FILE; CURL_CA_BUNDLE is not read): anonymous, path-style."""
        env = {k: v for k, v in self.trusting(python="SSL_CERT_FILE").items()
               if not k.startswith("AWS_")}
        return env | {"AWS_ENDPOINT_URL": self.archive.s3_url, "AWS_REGION": "us-east-1",
                      "HDF5_ROS3_VFD_FORCE_PATH_STYLE": "1"}


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


def ros3_python() -> Path | None:
    """The Python of a venv of its own with the `h5py-s3` wheel (h5py built with ros3, which
    would shadow the main venv's h5py) and pynwb; made on first use, None if that fails."""
    python = ROS3_VENV / "bin" / "python"
    check = [str(python), "-c", "import h5py, pynwb; assert 'ros3' in h5py.registered_drivers()"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"-- making {ROS3_VENV} for h5py's ros3 driver (h5py-s3)", flush=True)
    import pynwb

    pip = [str(python), "-m", "pip", "install", "-q"]
    steps = [[sys.executable, "-m", "venv", str(ROS3_VENV)],
             [*pip, f"pynwb=={pynwb.__version__}"],  # pulls plain h5py: replaced next
             [str(python), "-m", "pip", "uninstall", "-q", "-y", "h5py"],
             [*pip, "--no-deps", "--force-reinstall", "h5py-s3"]]
    for step in steps:
        if subprocess.run(step, capture_output=True, timeout=900).returncode != 0:
            break
    if subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"!!! {ROS3_VENV} has no h5py with ros3: its rows stay empty !!!", file=sys.stderr)
    return None


def sequential_read(path: Path) -> float:
    return run_timed(sys.executable, "-c", SEQUENTIAL_READ, str(path))


def curl_read(url: str, ca_file: str | None) -> tuple[float, int]:
    """Seconds curl takes to fetch `url` in one stream (its own `time_total`), and its peak
    RSS in bytes."""
    trust = ["--cacert", ca_file] if ca_file else []
    process = subprocess.Popen(["curl", "-sf", *trust, "-o", "/dev/null", "-w", "%{time_total}",
                                url], stdout=subprocess.PIPE, env=peer_environment())
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"curl failed with {process.returncode}")
    return float(output), usage.ru_maxrss * 1024


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
    """How both fronts treat every request: the network model at `rtt_ms` (0: off), on S3 a
    flat `latency_ms` before each answer and, if `stream_mbps`, a bandwidth cap on each
    response body (MB/s per connection)."""

    rtt_ms: int = 0
    latency_ms: int = 0
    stream_mbps: float = 0

    @property
    def label(self) -> str:
        if self.latency_ms:
            base = f"flat {self.latency_ms} ms"
        else:
            base = f"RTT {self.rtt_ms} ms"
        return base + (f" + {self.stream_mbps:g} MB/s per connection" if self.stream_mbps else "")

    def apply(self, archive: Archive) -> None:
        archive.set_model(self.rtt_ms, self.latency_ms, self.stream_mbps)


Measure = Callable[[], tuple[float, dict[str, dict[str, int]]]]


@dataclass
class Bench:
    archive: Archive
    contenders: Contenders
    published: dict[str, str]  # dandiset -> its published version
    repeat: int
    tools: set[str]
    ros3: Path | None
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
        """The S3 URL of `read`'s file (asked of the archive once, outside any timing)."""
        if read not in self.urls:
            version = self.published[read.dandiset]
            self.urls[read] = self.archive.s3_url_of(read.dandiset, version, read.path)
        return self.urls[read]

    def key_in(self, mount: Mount, read: Read) -> Path:
        """Where `read`'s file is in a mount of the bucket (rclone, s3fs)."""
        return mount.mountpoint / object_key(self.url_of(read), self.archive.bucket)

    def counted(self, measure: Callable[[], float]) -> tuple[float, dict[str, dict[str, int]]]:
        """`measure()` and what both fronts counted meanwhile."""
        before = self.archive.front_stats()
        value = measure()
        return value, traffic(before, self.archive.front_stats())

    def reader(self, kind: str, read: Read, cache_dir: Path | None = None) -> Measure:
        """`read` by remfile, fsspec or ros3 (`kind`) in a new process, counted."""
        if kind == "ros3":
            assert self.ros3 is not None
            python, env = str(self.ros3), self.contenders.ros3()
            target = f"s3://{self.archive.bucket}/{object_key(self.url_of(read), self.archive.bucket)}"
        else:
            python, env, target = sys.executable, self.contenders.readers(), self.url_of(read)
        return lambda: self.counted(lambda: run_timed(
            python, "-c", READ, kind, target, str(cache_dir or ""), read.task, env=env))

    def through(self, mount: Mount, read: Read, where: Callable[[Mount, Read], Path]
                ) -> tuple[float, dict[str, dict[str, int]]]:
        """`read` of the file at `where(mount, read)` in `mount`, started for it; only the
        read is timed and counted."""
        with mounted(mount):
            return self.read_in(mount, read, where)

    def read_in(self, mount: Mount, read: Read, where: Callable[[Mount, Read], Path]
                ) -> tuple[float, dict[str, dict[str, int]]]:
        path = where(mount, read)
        return self.counted(lambda: run_timed(sys.executable, "-c", READ, "path", str(path), "",
                                              read.task))

    def measure(self, rows: list[tuple[Series, Measure]], table: str) -> None:
        """`repeat` rounds of every row, contenders taking turns (a busy moment hits them all),
        each series noted with the counters of its timed parts."""
        counts: list[list[dict[str, dict[str, int]]]] = [[] for _ in rows]
        for series, _ in rows:
            self.add(table, series)
        for _ in range(self.repeat):
            for (series, run), seen in zip(rows, counts):
                value, counted = run()
                series.values.append(value)
                seen.append(counted)
        for (series, _), seen in zip(rows, counts):
            series.note = describe(seen)

    def cold(self, scenario: Scenario, read: Read, table: str) -> None:
        """`read` in a new process with nothing cached, by every contender."""
        case = f"cold {read.name} @{scenario.label}"
        rows: list[tuple[Series, Measure]] = [
            (Series(case, DANDIFS),
             lambda: self.through(self.contenders.dandifs(), read, self.file_in)),
            (Series(case, "remfile"), self.reader("remfile", read)),
            (Series(case, "fsspec http blockcache"), self.reader("fsspec", read)),
        ]
        if self.ros3 is not None:
            rows.append((Series(case, "h5py ros3"), self.reader("ros3", read)))
        if "rclone" in self.tools:
            rows.append((Series(case, "rclone mount (full cache)"),
                         lambda: self.through(self.contenders.rclone(), read, self.key_in)))
        if "s3fs" in self.tools:
            rows.append((Series(case, "s3fs-fuse"),
                         lambda: self.through(self.contenders.s3fs(), read, self.key_in)))
        self.measure(rows, table)

    def warm(self, scenario: Scenario, read: Read, table: str) -> None:
        """`read` again in a new process, after one read filled each contender's cache."""
        case = f"warm {read.name} @{scenario.label}"
        tag = f"{read.task}-{scenario.rtt_ms}-{scenario.latency_ms}"
        cache = self.contenders.scratch / f"warm-cache-{tag}"
        with mounted(self.contenders.dandifs(cache)) as mount:
            self.read_in(mount, read, self.file_in)  # fill the caches
            self.measure([(Series(case, f"{DANDIFS}, same mount"),
                           lambda: self.read_in(mount, read, self.file_in))], table)
        rows: list[tuple[Series, Measure]] = [
            (Series(case, f"{DANDIFS}, remounted"),
             lambda: self.through(self.contenders.dandifs(cache), read, self.file_in)),
        ]
        for kind, name in (("remfile-disk", "remfile (DiskCache)"),
                           ("fsspec-disk", "fsspec blockcache (cache_storage)")):
            run = self.reader(kind, read, self.contenders.scratch / f"{kind}-warm-{tag}")
            run()  # fill its disk cache
            rows.append((Series(case, name), run))
        if "rclone" in self.tools:
            rclone_cache = self.contenders.scratch / f"rclone-warm-cache-{tag}"
            self.through(self.contenders.rclone(rclone_cache), read, self.key_in)
            rows.append((Series(case, "rclone mount (full cache), remounted"),
                         lambda: self.through(self.contenders.rclone(rclone_cache), read,
                                              self.key_in)))
        self.measure(rows, table)
        if "s3fs" in self.tools:
            with mounted(self.contenders.s3fs()) as mount:
                self.read_in(mount, read, self.key_in)
                self.measure([(Series(case, "s3fs-fuse, same mount"),
                               lambda: self.read_in(mount, read, self.key_in))], table)

    def sequential(self, scenario: Scenario) -> None:
        case = f"sequential 1 GiB @{scenario.label}"
        memory_case = f"peak RSS while reading 1 GiB @{scenario.label}"
        url = self.archive.s3_url_of("000004", "draft", LARGE_BIN_PATH)
        key = object_key(url, self.archive.bucket)
        size = int(self.archive.asset("000004", "draft", LARGE_BIN_PATH)["size"])
        rss: dict[str, Series] = {}

        def through(name: str, make: Callable[[], Mount], where: Callable[[Mount], Path]
                    ) -> Measure:
            rss[name] = Series(memory_case, name)

            def run() -> tuple[float, dict[str, dict[str, int]]]:
                with mounted(make()) as mount:
                    seconds, counted = self.counted(lambda: sequential_read(where(mount)))
                    rss[name].values.append(mount.peak_rss() / MiB)
                return size / seconds / 1e6, counted
            return run

        def curl() -> tuple[float, dict[str, dict[str, int]]]:
            peak = []

            def timed() -> float:
                seconds, rss_bytes = curl_read(url, self.archive.ca_file)
                peak.append(rss_bytes)
                return seconds
            seconds, counted = self.counted(timed)
            rss["curl (1 stream)"].values.append(peak[0] / MiB)
            return size / seconds / 1e6, counted

        rows: list[tuple[Series, Measure]] = [
            (Series(case, DANDIFS), through(
                DANDIFS, self.contenders.dandifs,
                lambda m: m.mountpoint / "dandisets" / "000004" / "draft" / LARGE_BIN_PATH)),
        ]
        if "curl" in self.tools:
            rss["curl (1 stream)"] = Series(memory_case, "curl (1 stream)")
            rows.append((Series(case, "curl (1 stream)"), curl))
        if "rclone" in self.tools:
            rows.append((Series(case, "rclone mount (full cache)"), through(
                "rclone mount (full cache)", self.contenders.rclone,
                lambda m: m.mountpoint / key)))
        if "s3fs" in self.tools:
            rows.append((Series(case, "s3fs-fuse"), through(
                "s3fs-fuse", self.contenders.s3fs, lambda m: m.mountpoint / key)))
        self.measure(rows, "sequential")
        for series in rss.values():
            self.add("memory", series)
        rss[DANDIFS].note = "memory cache 256 MiB (default)"

    def listing(self) -> None:
        folder = Path("dandisets") / "000004" / "draft" / BULK_FOLDER
        for command, label in ((["ls", "-lR"], "ls -lR"), (["find", "."], "find")):
            cold = self.add("listing", Series(f"{label} of 10,000 assets, cold", DANDIFS))
            warm = self.add("listing", Series(f"{label} of 10,000 assets, warm", DANDIFS))
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


def best_peers(series: list[Series], higher_is_better: bool = False) -> dict[str, str]:
    """For each case, the peer (not dandifs) with the best median: the ratios' baseline."""
    best: dict[str, Series] = {}
    for s in series:
        if s.contender.startswith(DANDIFS) or not s.values:
            continue
        held = best.get(s.case)
        if held is None or (s.median > held.median if higher_is_better
                            else s.median < held.median):
            best[s.case] = s
    return {case: s.contender for case, s in best.items()}


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


def milliseconds(text: str) -> list[int]:
    """A comma-separated list of whole milliseconds ("" for none)."""
    try:
        values = [int(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of ms: {text!r}") from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return values


class LoadWatch:
    """The 1-minute load average, sampled at every scenario: what the machine was doing."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def sample(self) -> float:
        self.samples.append(os.getloadavg()[0])
        return self.samples[-1]

    def summary(self) -> str:
        return (f"1-min load average {min(self.samples):.1f}-{max(self.samples):.1f} "
                f"(median {sorted(self.samples)[len(self.samples) // 2]:.1f}, "
                f"{len(self.samples)} samples, {os.cpu_count()} CPUs)")


SECTIONS = {"cold": ("s", False), "warm": ("s", False), "sequential": ("MB/s", True),
            "memory": ("MiB", False), "listing": ("s", False)}


def report(bench: Bench, printed: dict[str, int]) -> None:
    """Print the rows not printed yet (`printed`: rows per table so far), so that a run cut
    short still leaves its figures."""
    for name, (unit, higher) in SECTIONS.items():
        table = bench.results.get(name, [])[printed.get(name, 0):]
        if table:
            print(f"\n{name}\n{render(table, unit=unit, baseline=best_peers(table, higher))}",
                  flush=True)
            printed[name] = printed.get(name, 0) + len(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fuse_bench")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rtts", type=milliseconds, default=[30, 80],
                        help="RTTs of the network model, ms (default 30,80)")
    parser.add_argument("--flat-latencies", type=milliseconds, default=[], metavar="MS",
                        help="also run the flat per-request S3 latency model at these ms")
    parser.add_argument("--sequential-rtts", type=milliseconds, default=[30, 0],
                        help="RTTs of the sequential case (default 30,0)")
    parser.add_argument("--stream-mbps", type=non_negative, default=0.0, metavar="RATE",
                        help="also run the sparse and sequential cases at RTT "
                        f"{CAPPED_RTT_MS} ms with this S3 bandwidth per connection (MB/s), "
                        "e.g. 100 (default: 0, not run)")
    parser.add_argument("--cases", default="sparse,warm,nwb,sequential",
                        help="any of sparse, warm, nwb, sequential, listing "
                        "(default: %(default)s)")
    parser.add_argument("--no-ros3", action="store_true", help="leave h5py's ros3 out")
    args = parser.parse_args(argv or [])
    cases = set(args.cases.split(","))
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        print("!!! FUSE is not available on this machine: fuse_bench cannot run !!!")
        return 1
    ros3 = None if args.no_ros3 or not cases & {"sparse", "nwb"} else ros3_python()
    read_scenarios = [Scenario(rtt) for rtt in args.rtts]
    read_scenarios += [Scenario(latency_ms=latency) for latency in args.flat_latencies]
    capped = Scenario(CAPPED_RTT_MS, stream_mbps=args.stream_mbps) if args.stream_mbps else None
    sequential_scenarios = [Scenario(rtt) for rtt in args.sequential_rtts]
    scenarios = list(dict.fromkeys([*read_scenarios, *sequential_scenarios,
                                    *([capped] if capped else [])]))
    load = LoadWatch()
    printed: dict[str, int] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dandifs-fuse-bench-") as scratch, \
            running_archive("big", None, "--tls") as archive:
        published = {
            read.dandiset: archive.api(f"dandisets/{read.dandiset}/")[
                "most_recent_published_version"]["version"]
            for read in (SPARSE, *SESSION_READS)
        }
        bench = Bench(archive, Contenders(archive, Path(scratch)), published, args.repeat,
                      available_tools(), ros3)
        try:
            for scenario in scenarios:
                scenario.apply(archive)
                print(f"-- {scenario.label} (load {load.sample():.1f}, "
                      f"{time.monotonic() - started:.0f} s)", flush=True)
                if scenario in read_scenarios or scenario == capped:
                    if "sparse" in cases:
                        bench.cold(scenario, SPARSE, "cold")
                if scenario in read_scenarios:
                    if "nwb" in cases:
                        for read in SESSION_READS:
                            bench.cold(scenario, read, "cold")
                    if "warm" in cases and scenario == read_scenarios[0]:
                        for read in (SPARSE, *SESSION_READS) if "nwb" in cases else (SPARSE,):
                            bench.warm(scenario, read, "warm")
                if "sequential" in cases and (scenario in sequential_scenarios
                                              or scenario == capped):
                    bench.sequential(scenario)
                report(bench, printed)
            if "listing" in cases:
                scenario = Scenario(args.rtts[0] if args.rtts else 0)
                scenario.apply(archive)
                print(f"-- listing @{scenario.label} (load {load.sample():.1f})", flush=True)
                bench.listing()
        finally:
            load.sample()
            archive.set_model(0)
    print("\n== all results")
    report(bench, {})
    print(f"\nfuse_bench took {time.monotonic() - started:.0f} s: HTTPS (TLS 1.3), repeat "
          f"{args.repeat}, scenarios {', '.join(s.label for s in scenarios)}; {load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
