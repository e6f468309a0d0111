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
    started = time.monotonic()
    slowest: list[Series] = []
    sequential: list[Series] = []
    with tempfile.TemporaryDirectory(prefix="dandifs-stall-bench-") as scratch, \
            running_archive("big") as archive:
        published = archive.api("dandisets/000001/")["most_recent_published_version"]["version"]
        nwb_url = archive.s3_url_of("000001", published, LARGE_NWB_PATH)
        bin_url = archive.s3_url_of("000004", "draft", LARGE_BIN_PATH)
        build = Contenders(archive, Path(scratch))
        scenarios = [("no stalls", 0.0),
                     (f"{args.stall_rate:.1%} of GETs stall {args.stall_seconds:g} s",
                      args.stall_rate)]
        try:
            for label, rate in scenarios:
                for name in contenders:
                    slow = Series(label, name)
                    whole = Series(label, name)
                    notes: list[str] = []
                    for run in range(args.repeat):
                        mount = build.dandifs() if name == "dandifs" else build.s3fs()
                        with mounted(mount):
                            root = mount.mountpoint
                            if name == "dandifs":
                                files = Files(
                                    root / "dandisets" / "000001" / published / LARGE_NWB_PATH,
                                    root / "dandisets" / "000004" / "draft" / LARGE_BIN_PATH)
                            else:
                                files = Files(root / object_key(nwb_url, archive.bucket),
                                              root / object_key(bin_url, archive.bucket))
                            files.random.stat(), files.sequential.stat()  # metadata first
                            archive.control("PUT", "faults", {
                                "stall_rate": rate, "stall_seconds": args.stall_seconds,
                                "seed": 1000 + run})
                            requests0, stalls0 = proxy_counts(archive)
                            given0, hedged0 = mount_counts(mount) if name == "dandifs" else (0, 0)
                            worst, seconds = run_readers(files, args.reads, seed=10 * run)
                            requests1, stalls1 = proxy_counts(archive)
                            archive.control("PUT", "faults", {})
                            note = f"S3 requests {requests1 - requests0}, stalls {stalls1 - stalls0}"
                            if name == "dandifs":
                                given1, hedged1 = mount_counts(mount)
                                note += f", given up {given1 - given0}, hedged {hedged1 - hedged0}"
                            notes.append(note)
                            slow.values.append(worst)
                            whole.values.append(seconds)
                    slow.note = whole.note = "; ".join(notes)
                    slowest.append(slow)
                    sequential.append(whole)
        finally:
            archive.control("PUT", "faults", {})
    print(f"\nslowest single read (8 random readers + 1 sequential, all at once)\n"
          f"{render(slowest, unit='s')}")
    print(f"\nsequential 1 GiB (beside the random readers)\n{render(sequential, unit='s')}")
    print(f"\nstall_bench took {time.monotonic() - started:.0f} s (repeat {args.repeat}, "
          f"{args.reads} reads per random reader)")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
