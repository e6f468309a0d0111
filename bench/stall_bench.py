"""Reads through a mount while S3 GETs stall half-way, beside the same reads without stalls.

    python -m bench stall_bench [-- --repeat 1 --stall-rate 0.005 --stall-seconds 30
                                    --reads 50]

Against one local archive (`--seed big`), each run mounts afresh (empty cache) and starts, at
once, eight reader processes of random ranges (4 KiB to 1 MiB, each of `--reads` reads at
random offsets of the ~231 MB NWB file) and one sequential reader of the 1 GiB file (1 MiB
reads).  The S3 proxy makes `--stall-rate` of its GETs send their head and half their body,
then nothing for `--stall-seconds`, then the rest; the scenario runs once more without
stalls.  Printed: the slowest single read of all nine readers, the time of the sequential
1 GiB, and the stalls the proxy made, the S3 requests, and (for dandifs) the GETs it gave up
as stalled and hedged.  dandifs runs, and s3fs-fuse too when installed.
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
from dataclasses import dataclass
from pathlib import Path

from bench._localarchive import Archive, running_archive
from bench._table import Series, render
from bench.fuse_bench import Contenders, Mount, mounted, non_negative, object_key
from dandifs.localarchive.demodata import LARGE_BIN_PATH, LARGE_NWB_PATH

READERS = 8

READ = r"""
import json, os, random, sys, time
mode, path, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
chooser = random.Random(seed)
slowest, total = 0.0, 0
started = time.perf_counter()
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
offset = 0
while True:
    if mode == "random":
        if count == 0:
            break
        count -= 1
        length = chooser.randrange(4096, 1 << 20)
        offset = chooser.randrange(0, size - length)
    else:
        length = 1 << 20
    began = time.perf_counter()
    data = os.pread(fd, length, offset)
    slowest = max(slowest, time.perf_counter() - began)
    total += len(data)
    if mode == "sequential":
        if not data:
            break
        offset += len(data)
os.close(fd)
print(json.dumps({"seconds": time.perf_counter() - started, "slowest": slowest, "bytes": total}))
"""


@dataclass(frozen=True)
class Files:
    """Where the two files are in a mount: of dandifs, or of the bucket (s3fs)."""

    random: Path
    sequential: Path


def run_readers(files: Files, reads: int, seed: int) -> tuple[float, float]:
    """(slowest single read of all readers, seconds of the sequential reader), all at once."""
    commands = [[sys.executable, "-c", READ, "random", str(files.random), str(seed + k),
                 str(reads)] for k in range(READERS)]
    commands.append([sys.executable, "-c", READ, "sequential", str(files.sequential), "0", "0"])
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for command in commands]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"a reader failed:\n{err[-2000:]}")
        results.append(json.loads(out))
    return max(result["slowest"] for result in results), results[-1]["seconds"]


def proxy_counts(archive: Archive) -> tuple[int, int]:
    """(S3 requests, stalls) the proxy counted so far."""
    stats = archive.control("GET", "stats")
    return int(stats["total_requests"]), int(stats["faults"].get("stall", 0))


def mount_counts(mount: Mount) -> tuple[int, int]:
    """(GETs given up as stalled, hedged GETs) a dandifs mount counted so far."""
    archive = json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))["archive"]
    return archive["stalled_requests"], archive["hedged_requests"]


@dataclass
class Run:
    """One contender's mount and what one scenario's run measures on it."""

    archive: Archive
    build: Contenders
    published: str  # the version of 000001 whose NWB file the random readers read
    reads: int

    def files(self, name: str, mount: Mount) -> Files:
        root = mount.mountpoint
        if name == "dandifs":
            return Files(root / "dandisets" / "000001" / self.published / LARGE_NWB_PATH,
                         root / "dandisets" / "000004" / "draft" / LARGE_BIN_PATH)
        urls = (self.archive.s3_url_of("000001", self.published, LARGE_NWB_PATH),
                self.archive.s3_url_of("000004", "draft", LARGE_BIN_PATH))
        return Files(*(root / object_key(url, self.archive.bucket) for url in urls))

    def measure(self, name: str, faults: dict[str, float], seed: int) -> tuple[float, float, str]:
        """(slowest read, sequential seconds, a note of the counts) on a fresh mount."""
        mount = self.build.dandifs() if name == "dandifs" else self.build.s3fs()
        dandifs = name == "dandifs"
        with mounted(mount):
            files = self.files(name, mount)
            files.random.stat(), files.sequential.stat()  # metadata first: only S3 is faulted
            self.archive.control("PUT", "faults", {**faults, "seed": seed})
            try:
                requests0, stalls0 = proxy_counts(self.archive)
                given0, hedged0 = mount_counts(mount) if dandifs else (0, 0)
                slowest, seconds = run_readers(files, self.reads, seed)
                requests1, stalls1 = proxy_counts(self.archive)
                given1, hedged1 = mount_counts(mount) if dandifs else (0, 0)
            finally:
                self.archive.control("PUT", "faults", {})
        note = f"S3 requests {requests1 - requests0}, stalls {stalls1 - stalls0}"
        if dandifs:
            note += f", given up {given1 - given0}, hedged {hedged1 - hedged0}"
        return slowest, seconds, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench stall_bench")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stall-rate", type=non_negative, default=0.005)
    parser.add_argument("--stall-seconds", type=non_negative, default=30.0)
    parser.add_argument("--reads", type=int, default=50, help="reads per random reader")
    args = parser.parse_args(argv or [])
    if not Path("/dev/fuse").exists():
        print("!!! FUSE is not available on this machine: stall_bench cannot run !!!")
        return 1
    contenders = ["dandifs"] + (["s3fs"] if shutil.which("s3fs") else [])
    scenarios = {
        "no stalls": {},
        f"{args.stall_rate:.1%} of GETs stall {args.stall_seconds:g} s": {
            "stall_rate": args.stall_rate, "stall_seconds": args.stall_seconds},
    }
    started = time.monotonic()
    slowest: list[Series] = []
    sequential: list[Series] = []
    with tempfile.TemporaryDirectory(prefix="dandifs-stall-bench-") as scratch, \
            running_archive("big") as archive:
        published = archive.api("dandisets/000001/")["most_recent_published_version"]["version"]
        run = Run(archive, Contenders(archive, Path(scratch)), published, args.reads)
        for label, faults in scenarios.items():
            for name in contenders:
                slow, whole = Series(label, name), Series(label, name)
                notes = []
                for repeat in range(args.repeat):
                    worst, seconds, note = run.measure(name, faults, seed=1000 + repeat)
                    slow.values.append(worst)
                    whole.values.append(seconds)
                    notes.append(note)
                slow.note = whole.note = "; ".join(notes)
                slowest.append(slow)
                sequential.append(whole)
    print(f"\nslowest single read (8 random readers + 1 sequential, all at once)\n"
          f"{render(slowest, unit='s')}")
    print(f"\nsequential 1 GiB (beside the random readers)\n{render(sequential, unit='s')}")
    print(f"\nstall_bench took {time.monotonic() - started:.0f} s (repeat {args.repeat}, "
          f"{args.reads} reads per random reader)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
