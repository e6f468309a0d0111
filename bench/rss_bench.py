"""The dandifs daemon's memory: peak RSS while streaming, per memory cache bound, beside peers.

    python -m bench rss_bench [-- --repeat 3 --sizes 64M,128M,256M --latency 0
                                   --cases imports,sequential,sparse --env NAME=VALUE ...]

* imports: the resident memory of a new interpreter after `import dandifs.cli.mount` (what
  every daemon costs before it does anything), and the modules that brought in most.
* sequential: a new mount per run streams the 1 GiB file of 000004 (1 MiB reads); the
  daemon's peak RSS (VmHWM) and the MB/s, for each `--memory-size` in `--sizes`, and the
  cache's own count of the most it held under its bound (blocks + reservations + blocks
  waiting for the disk); rclone mount (`--vfs-cache-mode full`) and s3fs-fuse beside it.
  Target: peak RSS <= bound + 64 MiB.
* sparse: the cold h5py slice of fuse_bench (fresh mount, empty cache) per memory size, to
  see whether a smaller bound costs random reads.

`--env NAME=VALUE` is set in the dandifs daemon's environment (e.g. MALLOC_ARENA_MAX=2), to
compare allocator settings.  Needs the `--seed big` data (cached in ~/.cache/dandifs-test).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench._localarchive import running_archive
from bench._table import Series, render
from bench.fuse_bench import (
    SPARSE,
    Bench,
    Contenders,
    Mount,
    available_tools,
    mount_stats,
    mounted,
    object_key,
    sequential_read,
    timed_read,
)
from dandifs.fuse.options import parse_size
from dandifs.localarchive.demodata import LARGE_BIN_PATH

MiB = 1 << 20
SLACK = 64 * MiB  # the target: peak RSS within the memory bound plus this

IMPORTS = r"""
import sys
import dandifs.cli.mount
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
roots = {}
for name in sys.modules:
    roots[name.split(".")[0]] = roots.get(name.split(".")[0], 0) + 1
top = sorted(roots.items(), key=lambda item: -item[1])[:12]
print(rss * 1024, len(sys.modules), " ".join(f"{name}:{count}" for name, count in top))
"""


def imports() -> tuple[float, str]:
    """MiB resident after importing the mount command, and the largest module families."""
    result = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                            check=True)
    rss, modules, top = result.stdout.split(maxsplit=2)
    return int(rss) / MiB, f"{modules} modules; most: {top.strip()}"


def label(size: int) -> str:
    return f"{size // MiB} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rss_bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="64M,128M,256M", help="memory cache bounds")
    parser.add_argument("--latency", type=int, default=0, help="S3 latency in ms")
    parser.add_argument("--cases", default="imports,sequential,sparse")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the dandifs daemon's environment")
    parser.add_argument("--no-peers", action="store_true", help="skip rclone and s3fs")
    args = parser.parse_args(argv or [])
    cases = set(args.cases.split(","))
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    daemon_env = dict(item.split("=", 1) for item in args.env)
    results: list[Series] = []
    started = time.monotonic()
    if "imports" in cases:
        series = Series("RSS after import dandifs.cli.mount", "python")
        for _ in range(args.repeat):
            rss, note = imports()
            series.values.append(rss)
        series.note = note
        results.append(series)
    if not cases & {"sequential", "sparse"}:
        print(render(results, unit="MiB"))
        return 0
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        print("!!! FUSE is not available on this machine: rss_bench cannot mount !!!")
        return 1
    tools = set() if args.no_peers else available_tools()
    speed: list[Series] = []
    sparse: list[Series] = []
    with tempfile.TemporaryDirectory(prefix="dandifs-rss-bench-") as scratch, \
            running_archive("big") as archive:
        archive.set_network(args.latency)
        contenders = Contenders(archive, Path(scratch))
        published = {SPARSE.dandiset: archive.api(f"dandisets/{SPARSE.dandiset}/")[
            "most_recent_published_version"]["version"]}
        bench = Bench(archive, contenders, published, args.repeat, tools)

        def dandifs(size: int) -> Mount:
            mount = contenders.dandifs(None, "--memory-size", str(size))
            mount.env.update(daemon_env)
            return mount

        try:
            if "sequential" in cases:
                url = archive.s3_url_of("000004", "draft", LARGE_BIN_PATH)
                key = object_key(url, archive.bucket)
                total = int(archive.asset("000004", "draft", LARGE_BIN_PATH)["size"])
                case = f"sequential 1 GiB @{args.latency} ms"
                runs: list[tuple[str, Series, Series, Series | None, Callable[[], Mount]]] = []
                for size in sizes:
                    runs.append((
                        f"dandifs {label(size)}",
                        Series(f"peak RSS, {case}", f"dandifs --memory-size {label(size)}"),
                        Series(case, f"dandifs --memory-size {label(size)}"),
                        Series(f"cache's own peak, {case}", f"dandifs {label(size)}"),
                        lambda size=size: dandifs(size),
                    ))
                if "rclone" in tools:
                    runs.append(("rclone", Series(f"peak RSS, {case}", "rclone (full cache)"),
                                 Series(case, "rclone (full cache)"), None, contenders.rclone))
                if "s3fs" in tools:
                    runs.append(("s3fs", Series(f"peak RSS, {case}", "s3fs-fuse"),
                                 Series(case, "s3fs-fuse"), None, contenders.s3fs))
                for _ in range(args.repeat):  # contenders take turns
                    for name, rss, rate, own, make in runs:
                        with mounted(make()) as mount:
                            if name.startswith("dandifs"):
                                path = (mount.mountpoint / "dandisets" / "000004" / "draft"
                                        / LARGE_BIN_PATH)
                            else:
                                path = mount.mountpoint / key
                            seconds = sequential_read(path)
                            rss.values.append(mount.peak_rss() / MiB)
                            rate.values.append(total / seconds / 1e6)
                            if own is not None:
                                blocks = mount_stats(mount)["blocks"]
                                if "memory_peak_bytes" in blocks:  # older daemons lack it
                                    own.values.append(blocks["memory_peak_bytes"] / MiB)
                for name, rss, rate, own, _ in runs:
                    results.append(rss)
                    if own is not None:
                        results.append(own)
                    speed.append(rate)
                for size, (_, rss, _, _, _) in zip(sizes, runs):
                    worst = max(rss.values)
                    verdict = "within" if worst * MiB <= size + SLACK else "OVER"
                    rss.note = f"{verdict} bound + 64 MiB ({label(size + SLACK)})"
            if "sparse" in cases:
                for size in sizes:
                    series = Series(f"cold {SPARSE.name} @{args.latency} ms",
                                    f"dandifs --memory-size {label(size)}")
                    for _ in range(args.repeat):
                        with mounted(dandifs(size)) as mount:
                            series.values.append(
                                timed_read("path", SPARSE, bench.file_in(mount, SPARSE)))
                    sparse.append(series)
        finally:
            archive.set_network(0)
    env_note = f" (daemon env: {' '.join(args.env)})" if args.env else ""
    print(f"\nmemory{env_note}\n{render(results, unit='MiB')}")
    if speed:
        print(f"\nthroughput\n{render(speed, unit='MB/s', lower_is_better=False)}")
    if sparse:
        print(f"\nsparse\n{render(sparse, unit='s')}")
    print(f"\nrss_bench took {time.monotonic() - started:.0f} s (repeat {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
