"""zarr-python reading an OME-Zarr image through the mount beside zarr over HTTP and over S3.

    python -m bench zarr_bench [-- --repeat 3 --rtts 30,80 --latencies 30 --seed demo|big
                                   --images demo,big --cases whole,region,plane
                                   --contenders mount,http,s3fs --network JSON]

Over HTTPS (the archive's `--tls`, every contender trusting its CA the ordinary way: the
mount and fsspec by `SSL_CERT_FILE`, s3fs by `AWS_CA_BUNDLE`), on the local archive's
network model at each of `--rtts` (both fronts: connection set-up, TLS handshakes and slow
start cost what they cost on a real network), and in the flat-latency mode at each of
`--latencies` if given (a fixed delay per S3 request, no model).

Images: `demo` is 000002's `sub-mouse04/sub-mouse04_sample.ome.zarr` (2 levels, 1,152 chunk
files); `big` (`--seed big`) is 000006's light-sheet volume (3 levels, 23,360 chunk files).
Cases, each read with `zarr.open_group` and numpy indexing:

* whole image: every level, read in z-slabs of at most 128 MiB (every chunk file once);
* region: a box a quarter of level 0 on each axis, at its centre, shifted by half a chunk
  (as a viewer asks for a box that is not aligned to chunks);
* z-plane: the middle plane of level 0 (every chunk of one chunk-row in z, mostly unused).

Contenders, all on the same S3 objects of one local archive:

* dandifs mount: `zarr.open_group(<mount>/dandisets/<id>/draft/<path>)` (a local store);
* zarr over fsspec HTTP: `zarr.open_group("http://<s3>/<bucket>/zarr/<id>/")` (the asset's
  S3 `contentUrl`);
* zarr over s3fs: `zarr.open_group("s3://<bucket>/zarr/<id>", storage_options={"anon": True,
  "client_kwargs": {"endpoint_url": <s3>}})`.

Cold is a new process (and for the mount a new mount on an empty cache directory); warm is
the same read again in the same process (the mount: the same mount).  zarr-python keeps no
chunk cache, and neither store of the peers caches object bytes: their warm rows say "no
cache".  Times are measured inside the process (from `open_group` to the last value read;
interpreter start-up and imports excluded).  The notes give the requests the S3 proxy
counted for each read (until its counters stand still for two seconds: the mount's read-ahead
goes on after the read that set it off), of them the HEADs (s3fs sends one before each GET of
a whole object), and for the mount its archive API requests.

Every read is hashed (SHA-256 of the values, their shape and dtype) and compared with the
same read by zarr over s3fs straight from SeaweedFS (behind the proxy, so neither delayed nor
counted); a difference stops the benchmark.  `--network '{"field": value}'` adds fields to
the S3 proxy's fault config (`PUT /__dandifs__/faults`) beside each scenario.  The notes
end with the model's counters of each front (connections, TLS handshakes, requests, MB).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._localarchive import Archive, running_archive
from bench._table import Series, render
from bench.fuse_bench import LoadWatch, Scenario, describe, milliseconds, traffic
from dandifs.localarchive.demodata import BIG_ZARR_PATH, ZARR_PATH
from tests.fuse_support import MountProcess, fuse_missing_reason, version_path

SLAB_BYTES = 128 << 20
READ_TIMEOUT = 1800.0
QUIET = 2.0
QUIET_TIMEOUT = 300.0
BASELINE = "zarr + fsspec HTTP"


@dataclass(frozen=True)
class Image:
    name: str
    dandiset: str
    path: str


IMAGES = {
    "demo": Image("demo", "000002", ZARR_PATH),
    "big": Image("big", "000006", BIG_ZARR_PATH),
}

READER = r"""
import hashlib, json, sys, time
kind, target, endpoint, reads = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
import zarr
options = {"anon": True, "client_kwargs": {"endpoint_url": endpoint}} if kind == "s3" else None
for _ in sys.stdin:  # one line per pass
    started = time.perf_counter()
    image = zarr.open_group(target, mode="r", storage_options=options)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for level, box in reads:
        started = time.perf_counter()
        data = image[level][tuple(slice(*bounds) for bounds in box)]
        seconds += time.perf_counter() - started
        digest.update(repr((level, data.shape, data.dtype.str)).encode())
        digest.update(data)  # C-contiguous: hashed in place
    print(json.dumps({"seconds": seconds, "sha256": digest.hexdigest()}), flush=True)
"""

Box = list[list[int]]  # [start, stop] per axis
Reads = list[tuple[str, Box]]  # (level, box) in order


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    reads: Reads


@dataclass(frozen=True)
class Level:
    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    itemsize: int


def chunks_touched(level: Level, box: Box) -> int:
    return math.prod((stop - 1) // side - start // side + 1
                     for (start, stop), side in zip(box, level.chunks))


def cases_of(levels: list[Level]) -> list[Case]:
    """The whole image, a region and a z-plane of level 0, as reads of (level, box)."""
    whole: Reads = []
    for level in levels:
        plane_bytes = math.prod(level.shape[1:]) * level.itemsize
        depth = max(level.chunks[0],
                    SLAB_BYTES // plane_bytes // level.chunks[0] * level.chunks[0])
        for z in range(0, level.shape[0], depth):
            box = [[z, min(z + depth, level.shape[0])]] + [[0, n] for n in level.shape[1:]]
            whole.append((level.path, box))
    base = levels[0]
    region = []
    for size, side in zip(base.shape, base.chunks):
        extent = max(side, size // 4 // side * side)
        start = min((size // 2 - extent // 2) // side * side + side // 2, size - extent)
        region.append([start, start + extent])
    middle = base.shape[0] // 2
    plane = [[middle, middle + 1]] + [[0, n] for n in base.shape[1:]]
    total = sum(chunks_touched(lv, [[0, n] for n in lv.shape]) for lv in levels)
    return [
        Case("whole", f"whole image ({len(levels)} levels, {total:,} chunks)", whole),
        Case("region", "region {} of level 0 ({:,} chunks)".format(
            "x".join(str(b - a) for a, b in region), chunks_touched(base, region)),
            [(base.path, region)]),
        Case("plane", f"z-plane {middle} of level 0 ({chunks_touched(base, plane):,} chunks)",
             [(base.path, plane)]),
    ]


def image_levels(url: str, endpoint: str) -> list[Level]:
    """The levels an image's `multiscales` lists, read over s3fs from `endpoint`."""
    import zarr

    group = zarr.open_group(url, mode="r", storage_options=s3_options(endpoint))
    datasets = group.attrs["multiscales"][0]["datasets"]
    arrays = [group[dataset["path"]] for dataset in datasets]
    return [Level(dataset["path"], array.shape, array.chunks, array.dtype.itemsize)
            for dataset, array in zip(datasets, arrays)]


def trusting(ca_file: str | None) -> dict[str, str]:
    """The environment of a reader or mount that trusts the archive's CA (if it has one)."""
    trust = {"SSL_CERT_FILE": ca_file, "AWS_CA_BUNDLE": ca_file} if ca_file else {}
    return {**os.environ, **trust}


def s3_options(endpoint: str) -> dict[str, Any]:
    return {"anon": True, "client_kwargs": {"endpoint_url": endpoint}}


class Reader:
    """A reading process: each `read()` is one pass (open the image, read the case)."""

    def __init__(self, kind: str, target: str, case: Case, endpoint: str, log: Path,
                 ca_file: str | None = None) -> None:
        self.log = log
        self._stderr = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER, kind, target, endpoint, json.dumps(case.reads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=trusting(ca_file),
        )

    def read(self) -> tuple[float, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the reader failed:\n{self.log.read_text()[-3000:]}")
        answer = json.loads(line)
        return float(answer["seconds"]), answer["sha256"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(READ_TIMEOUT)
        finally:
            self._stderr.close()


@dataclass
class Contender:
    name: str
    kind: str  # "path" (a local path or an http URL) or "s3"
    cached: bool


CONTENDERS = {
    "mount": Contender("dandifs mount", "path", cached=True),
    "http": Contender(BASELINE, "path", cached=False),
    "s3fs": Contender("zarr + s3fs", "s3", cached=False),
}


@dataclass
class Counts:
    """Requests of each pass, as notes."""

    s3: list[int] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)
    api: list[int] = field(default_factory=list)
    traffics: list[dict[str, dict[str, int]]] = field(default_factory=list)

    def note(self, cached: bool) -> str:
        text = f"S3 requests: {self.s3}"
        if any(self.heads):
            text += f" (HEAD: {self.heads})"
        if self.api:
            text += f"; API requests: {self.api}"
        if not cached:
            text += "; no cache"
        return f"{text}; {describe(self.traffics)}" if self.traffics else text


@dataclass
class Bench:
    archive: Archive
    scratch: Path
    repeat: int
    contenders: list[str]
    series: list[Series] = field(default_factory=list)
    references: dict[tuple[str, str], str] = field(default_factory=dict)
    _serial: int = 0

    def place(self, name: str) -> Path:
        self._serial += 1
        return self.scratch / f"{name}-{self._serial}"

    def run_image(self, image: Image, case_names: list[str], latency: str) -> None:
        s3_url = self.archive.s3_url_of(image.dandiset, "draft", image.path)
        key = s3_url.split(f"/{self.archive.bucket}/", 1)[1].rstrip("/")
        s3_path = f"s3://{self.archive.bucket}/{key}"
        levels = image_levels(s3_path, self.archive.ready["s3_direct_url"])
        for case in cases_of(levels):
            if case.name not in case_names:
                continue
            expected = self.reference(s3_path, case)
            rows = {}
            for name in self.contenders:
                contender = CONTENDERS[name]
                rows[name] = {
                    phase: (Series(f"{image.name} {case.label}, {phase} @{latency}",
                                   contender.name), Counts())
                    for phase in ("cold", "warm")
                }
            targets = {"http": s3_url, "s3fs": s3_path}
            for _ in range(self.repeat):
                for name in self.contenders:
                    self.measure(name, image, case, targets.get(name), expected, rows[name])
            for name in self.contenders:
                for series, counts in rows[name].values():
                    series.note = counts.note(CONTENDERS[name].cached)
                    self.series.append(series)

    def reference(self, s3_path: str, case: Case) -> str:
        """The digest of `case` read by zarr over s3fs from SeaweedFS directly."""
        if (s3_path, case.name) in self.references:
            return self.references[s3_path, case.name]
        reader = Reader("s3", s3_path, case, self.archive.ready["s3_direct_url"],
                        self.place("reference").with_suffix(".log"))
        try:
            self.references[s3_path, case.name] = reader.read()[1]
        finally:
            reader.close()
        return self.references[s3_path, case.name]

    def measure(self, name: str, image: Image, case: Case, target: str | None,
                expected: str, rows: dict[str, tuple[Series, Counts]]) -> None:
        """One cold and one warm pass of `case` in a new process (the mount: a new mount on
        an empty cache directory; `target` None)."""
        contender = CONTENDERS[name]
        mount = None
        if target is None:
            place = self.place("mount")
            mount = MountProcess(place, self.archive.api_url, place.with_name(place.name + "-cache"),
                                 env={"SSL_CERT_FILE": self.archive.ca_file or ""}
                                 if self.archive.ca_file else {})
            mount.start()
            target = str(version_path(place, image.dandiset, "draft") / image.path)
        try:
            reader = Reader(contender.kind, target, case, self.archive.s3_url,
                            self.place("reader").with_suffix(".log"), self.archive.ca_file)
            try:
                for phase in ("cold", "warm"):
                    series, counts = rows[phase]
                    s3_before = quiet_s3_requests(self.archive)
                    fronts_before = self.archive.front_stats()
                    api_before = api_requests(mount) if mount else 0
                    seconds, digest = reader.read()
                    s3_after = quiet_s3_requests(self.archive)
                    counts.traffics.append(traffic(fronts_before, self.archive.front_stats()))
                    counts.s3.append(s3_after["total_requests"] - s3_before["total_requests"])
                    counts.heads.append(s3_after["requests"].get("HEAD", 0)
                                        - s3_before["requests"].get("HEAD", 0))
                    if mount:
                        counts.api.append(api_requests(mount) - api_before)
                    if digest != expected:
                        raise RuntimeError(
                            f"{contender.name} read other values than S3 holds for "
                            f"{image.name} {case.label} ({phase}): {digest} != {expected}")
                    series.values.append(seconds)
            finally:
                reader.close()
        finally:
            if mount:
                mount.stop()


def quiet_s3_requests(archive: Archive) -> dict[str, Any]:
    """The S3 proxy's counters once they have not moved for QUIET seconds: a mount's
    read-ahead goes on after the read that started it, and its requests belong to that read."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    stats = archive.control("GET", "stats")
    while time.monotonic() < deadline:
        time.sleep(QUIET)
        again = archive.control("GET", "stats")
        if again["total_requests"] == stats["total_requests"]:
            return again
        stats = again
    raise RuntimeError(f"S3 requests went on for {QUIET_TIMEOUT:.0f} s after a read")


def api_requests(mount: MountProcess) -> int:
    stats = json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))
    return int(stats["archive"]["api_requests"])


def network_fields(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of fault-config fields")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench zarr_bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtts", type=milliseconds, default=[30, 80],
                        help="RTTs of the network model in ms, e.g. 30,80 ('' for none)")
    parser.add_argument("--latencies", type=milliseconds, default=[],
                        help="flat S3 latencies in ms (no model), e.g. 30,0")
    parser.add_argument("--seed", choices=("demo", "big"), default="demo",
                        help="the local archive's seed; `big` adds the big image")
    parser.add_argument("--images", help="demo,big (default: every image the seed has)")
    parser.add_argument("--cases", default="whole,region,plane")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--network", type=network_fields, default={}, metavar="JSON",
                        help="more fields of the S3 proxy's fault config for every run")
    args = parser.parse_args(argv or [])
    images = (args.images or ("demo,big" if args.seed == "big" else "demo")).split(",")
    if "big" in images and args.seed != "big":
        parser.error("the big image is seeded by --seed big only")
    contenders = args.contenders.split(",")
    unknown = set(images) - set(IMAGES) | set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown image(s) or contender(s): {sorted(unknown)}")
    scenarios = [Scenario(rtt_ms=rtt) for rtt in args.rtts]
    scenarios += [Scenario(latency_ms=latency) for latency in args.latencies]
    if not scenarios:
        parser.error("no scenario: give --rtts or --latencies")
    reason = fuse_missing_reason() if "mount" in contenders else None
    if reason:
        print(f"!!! FUSE is not available on this machine ({reason}): zarr_bench cannot run !!!")
        return 1
    import zarr

    started = time.monotonic()
    load = LoadWatch()
    with tempfile.TemporaryDirectory(prefix="dandifs-zarr-bench-") as scratch, \
            running_archive(args.seed, None, "--tls") as archive:
        bench = Bench(archive, Path(scratch), args.repeat, contenders)
        try:
            for scenario in scenarios:
                scenario.apply(archive)
                load.sample()
                if args.network:
                    archive.control("PUT", "faults", args.network)
                label = scenario.label + (f" {json.dumps(args.network)}" if args.network else "")
                print(f"-- {label}", flush=True)
                for name in images:
                    bench.run_image(IMAGES[name], args.cases.split(","), label)
                    load.sample()
        finally:
            archive.set_model(0)
    baseline = {s.case: BASELINE for s in bench.series}
    print(f"\n{render(bench.series, baseline=baseline)}")
    print(f"\nzarr_bench took {time.monotonic() - started:.0f} s (repeat {args.repeat}, "
          f"{', '.join(s.label for s in scenarios)}, zarr {zarr.__version__}, async.concurrency "
          f"{zarr.config.get('async.concurrency')}; {load.summary()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
