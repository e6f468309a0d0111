"""Uploads into a draft: the mount (`cp`), WebDAV (rclone) and `dandi upload`, one archive.

    python -m bench upload_bench [-- --repeat 2 --cases big,small --big-mib 1024
                                     --small-count 200 --stream-mbps 100 --rtt-ms 30
                                     --scenarios 0,model --contenders mount,webdav,dandi
                                     --requests]

An empty local archive runs with `--tls`; every contender uploads the same data to it in
the same run, taking turns (a busy moment hits them all), each run into a dandiset of its
own made for it:

* `big`: one file of `--big-mib` MiB (default 1024: 1 GiB);
* `small`: a folder of `--small-count` files (default 200) of random sizes 64 KiB..1 MiB.

Contenders:

* "dandifs mount (cp)": `cp` / `cp -r` into /dandisets/<id>/draft/ of a `dandifs mount`
  started (untimed) for the run with the token, then waiting until the archive lists every
  asset at its size: the time until the LAST asset exists, what a user waits for (`cp`
  returns as soon as the bytes are spooled; the uploads go on in the background);
* "dandifs serve + rclone copy": `rclone copy` (its default 4 transfers) to a `dandifs
  serve` with the token, then the same wait (a PUT is answered once the asset exists, so it
  is over when rclone is); run only when this tree's `dandifs serve` writes (`--cache-dir`);
* "dandi upload": dandi-cli 0.81 (5 assets at once, 5 threads per asset) with
  `DANDI_DEVEL=1 --allow-any-path --validation skip`, its token in `<HOST:PORT>_API_KEY`,
  timed from its start to its exit (interpreter start-up and imports included: its own
  start-up, measured once, is in the note), then the same check that the assets are there.

Scenarios, set at runtime on both fronts: RTT 0 ms (the network model off) and RTT
`--rtt-ms` ms + `--stream-mbps` MB/s per connection (the archive's network model; the cap
paces every body on its own, uploaded ones too: N part PUTs at once move N times as much).

Every run sends new bytes: each file's first 16 bytes are new random ones before every run,
so the archive's dedup (a 409 on initialize for a digest it has) never skips an upload; the
S3 proxy's `bytes_received` during the run is printed beside the payload's size and a run
that sent less than the payload is marked `!!`.  Each cell is the median of `--repeat`
runs with min and max, and the ratio to `dandi upload`; the notes give the requests each
front counted during the run (the bench's own polls of the asset list taken off) and the MB
S3 received.  The wait polls the draft's asset count and size every 50 ms, so a time is late
by at most that and one request.

Capacity: the archive keeps every run's blobs (deleting the run's dandiset frees none), and
its SeaweedFS answered part PUTs with 500 once ~17 GB were stored in one run, so the
default `--repeat 2` keeps a full run (3 contenders x 2 scenarios x 1 GiB per repeat) below
that; for more repeats run the scenarios one at a time (`--scenarios 0`, `--scenarios model`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import numpy as np

from bench._localarchive import Archive, running_archive, stop_process
from bench._table import Series, render
from bench.fuse_bench import LoadWatch, Mount, Scenario, mounted, non_negative, peer_environment

MiB = 1 << 20
BIN = Path(sys.executable).parent
HEADER = 16  # bytes rewritten at the start of every file before every run
POLL = 0.05
WAIT_TIMEOUT = 1800.0
MOUNT = "dandifs mount (cp)"
WEBDAV = "dandifs serve + rclone copy"
DANDI = "dandi upload"
BIG_NAME = "big.bin"
SMALL_FOLDER = "small"


# -- the data ----------------------------------------------------------------------------------


@dataclass
class Payload:
    """Files under `root` (a dandiset folder), uploaded as the asset paths they have there."""

    name: str
    root: Path
    top: str  # what is copied: a file or a folder directly under root
    files: list[str]

    @property
    def size(self) -> int:
        return sum((self.root / path).stat().st_size for path in self.files)

    def sizes(self) -> dict[str, int]:
        return {path: (self.root / path).stat().st_size for path in self.files}

    def renew(self) -> None:
        """New first bytes in every file: new digests, so nothing is deduplicated."""
        for path in self.files:
            with open(self.root / path, "r+b") as f:
                f.write(os.urandom(HEADER))


def make_payloads(root: Path, big_mib: int, small_count: int) -> dict[str, Payload]:
    rng = np.random.default_rng(10)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / BIG_NAME, "wb") as f:
        for _ in range(0, big_mib, 16):
            f.write(rng.bytes(16 * MiB))
        f.truncate(big_mib * MiB)
    folder = root / SMALL_FOLDER
    folder.mkdir()
    names = []
    for index, size in enumerate(rng.integers(64 << 10, MiB, small_count, endpoint=True)):
        name = f"{SMALL_FOLDER}/file-{index:03d}.bin"
        (root / name).write_bytes(rng.bytes(int(size)))
        names.append(name)
    big = f"{big_mib / 1024:g} GiB" if big_mib % 1024 == 0 else f"{big_mib} MiB"
    return {"big": Payload(f"one {big} file", root, BIG_NAME, [BIG_NAME]),
            "small": Payload(f"{small_count} files of 64 KiB..1 MiB", root, SMALL_FOLDER,
                             names)}


# -- the archive side --------------------------------------------------------------------------


@dataclass
class Target:
    """The archive, as the bench itself speaks to it (with the token)."""

    archive: Archive
    polls: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.archive.token}"}

    def new_dandiset(self, label: str) -> str:
        response = self.archive._request(
            "POST", f"{self.archive.api_url}/dandisets/", headers=self.auth, timeout=60,
            json={"name": f"upload bench: {label}", "metadata": {"description": label}})
        return response.json()["identifier"]

    def delete_dandiset(self, identifier: str) -> None:
        self.archive._request("DELETE", f"{self.archive.api_url}/dandisets/{identifier}/",
                              headers=self.auth, timeout=60)

    def draft_totals(self, identifier: str) -> tuple[int, int]:
        self.polls += 1
        info = self.archive._request(
            "GET", f"{self.archive.api_url}/dandisets/{identifier}/versions/draft/info/",
            headers=self.auth, timeout=60).json()
        return int(info["asset_count"]), int(info["size"])

    def wait_for(self, identifier: str, payload: Payload, timeout: float = WAIT_TIMEOUT
                 ) -> float:
        """Poll the draft until it has the payload's assets at their size; the moment seen."""
        wanted = (len(payload.files), payload.size)
        deadline = time.perf_counter() + timeout
        while True:
            if self.draft_totals(identifier) == wanted:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"dandiset {identifier}: the assets did not all arrive "
                                   f"in {timeout:.0f} s (have {self.draft_totals(identifier)}, "
                                   f"want {wanted})")
            time.sleep(POLL)

    def check_assets(self, identifier: str, payload: Payload) -> None:
        """Every file is an asset at its path with its size (the totals could coincide)."""
        have: dict[str, int] = {}
        url = (f"{self.archive.api_url}/dandisets/{identifier}/versions/draft/assets/"
               "?page_size=1000")
        while url:
            page = self.archive._request("GET", url, headers=self.auth, timeout=60).json()
            have |= {item["path"]: int(item["size"]) for item in page["results"]}
            url = page.get("next")
        if have != payload.sizes():
            missing = sorted(set(payload.sizes()) ^ set(have))[:5]
            raise RuntimeError(f"dandiset {identifier}: assets differ from the files "
                               f"(e.g. {missing})")


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    s3_received: int
    counts: dict[str, int]
    phases: dict[str, float]  # seconds of a part of the run (the mount: until cp returned)
    kinds: Counter[str] = field(default_factory=Counter)  # API requests by kind (access log)


class ContenderFailed(RuntimeError):
    """A contender's client reported failure: its run has no figure, the reason is noted."""


Upload = Callable[[str, Payload], tuple[float, dict[str, float]]]
"""(dandiset id, payload) -> seconds until the archive has every asset, and of its parts."""

ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def request_kind(method: str, path: str, status: str) -> str:
    """A logged API request with its ids and query left out."""
    path = UUID.sub("{id}", path.split("?", 1)[0])
    return f"{method} {re.sub(r'/dandisets/[0-9]{6}/', '/dandisets/{d}/', path)} {status}"


def logged_kinds(log_path: Path, start: int) -> Counter[str]:
    with open(log_path, "rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    return Counter(request_kind(m["method"], m["path"], m["status"])
                   for m in ACCESS_LINE.finditer(text))


@dataclass
class Contenders:
    archive: Archive
    target: Target
    scratch: Path
    serial: int = 0
    token_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host_port = urlsplit(self.archive.api_url).netloc.upper()
        self.token_env = {f"{host_port}_API_KEY": self.archive.token}

    def place(self, name: str) -> Path:
        self.serial += 1
        path = self.scratch / f"{name}-{self.serial}"
        path.mkdir(parents=True)
        return path

    def environment(self, **trust: str) -> dict[str, str]:
        """The environment with the token in dandi-cli's variable, and the CA under `trust`'s
        variable names; `DANDI_API_KEY` left out, as a user of a URL instance would have it."""
        env = {k: v for k, v in peer_environment().items() if k != "DANDI_API_KEY"}
        if self.archive.ca_file:
            env |= {name: self.archive.ca_file for name in trust.values()}
        return env | self.token_env | {"DANDI_NO_ET": "1"}

    def mount(self, identifier: str, payload: Payload) -> tuple[float, dict[str, float]]:
        place = self.place("mount")
        mountpoint = place / "mnt"
        command = [str(BIN / "dandifs"), "mount", str(mountpoint), "-f", "-i",
                   self.archive.api_url, "--cache-dir", str(place / "cache")]
        with mounted(Mount("dandifs", mountpoint, command,
                           self.environment(python="SSL_CERT_FILE"))):
            draft = mountpoint / "dandisets" / identifier / "draft"
            started = time.perf_counter()
            subprocess.run(["cp", "-r", str(payload.root / payload.top), str(draft) + "/"],
                           check=True)
            copied = time.perf_counter()
            done = self.target.wait_for(identifier, payload)
        shutil.rmtree(place, ignore_errors=True)
        return done - started, {"cp": copied - started}

    @contextmanager
    def serving(self) -> Iterator[str]:
        """A `dandifs serve` with the token; its URL."""
        place = self.place("serve")
        command = [str(BIN / "dandifs"), "serve", "-i", self.archive.api_url, "--port", "0",
                   "--token", self.archive.token, "--cache-dir", str(place / "cache"),
                   "--quiet"]
        log_path = place / "serve.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                       stdin=subprocess.DEVNULL,
                                       env=self.environment(python="SSL_CERT_FILE"))
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode()
            if " at " not in line:
                raise RuntimeError(f"dandifs serve did not start: {line}\n"
                                   f"{log_path.read_text()[-2000:]}")
            yield line.rsplit(" at ", 1)[1].strip()
        finally:
            stop_process(process)
            shutil.rmtree(place, ignore_errors=True)

    def webdav(self, identifier: str, payload: Payload) -> tuple[float, dict[str, float]]:
        with self.serving() as url:
            source = payload.root / payload.top
            remote = f":webdav:/dandisets/{identifier}/draft/{payload.top}"
            command = ["rclone", "copyto" if source.is_file() else "copy", str(source), remote,
                       "--webdav-url", url, "--webdav-vendor", "other", "--config", "/dev/null",
                       "-q"]
            started = time.perf_counter()
            result = subprocess.run(command, env=peer_environment(), capture_output=True,
                                    text=True)
            copied = time.perf_counter()
            if result.returncode:
                errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
                raise ContenderFailed(f"rclone exited {result.returncode} after "
                                      f"{copied - started:.0f} s, {len(errors)} errors, "
                                      f"first: {(errors or [''])[0][:160]}")
            done = self.target.wait_for(identifier, payload)
        return done - started, {"rclone": copied - started}

    def dandi(self, identifier: str, payload: Payload) -> tuple[float, dict[str, float]]:
        (payload.root / "dandiset.yaml").write_text(f"identifier: '{identifier}'\n")
        command = [str(BIN / "dandi"), "upload", "-i", self.archive.api_url,
                   "--allow-any-path", "--validation", "skip", payload.top]
        env = self.environment(requests="REQUESTS_CA_BUNDLE") | {"DANDI_DEVEL": "1"}
        started = time.perf_counter()
        result = subprocess.run(command, cwd=payload.root, env=env, capture_output=True,
                                text=True)
        ended = time.perf_counter()
        if result.returncode:
            raise RuntimeError(f"dandi upload exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        self.target.wait_for(identifier, payload, timeout=10)
        return ended - started, {}


def dandi_start_up() -> float:
    """Seconds `dandi upload` spends before it does anything: the interpreter and imports."""
    code = "import dandi.upload, dandi.dandiapi, dandi.cli.command"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ,
                                                                   "DANDI_NO_ET": "1"})
    return time.perf_counter() - started


def serve_writes() -> bool:
    """Whether this tree's `dandifs serve` accepts writes (it has a spool: `--cache-dir`)."""
    shown = subprocess.run([str(BIN / "dandifs"), "serve", "--help"], capture_output=True,
                           text=True)
    return "--cache-dir" in shown.stdout


# -- the bench ---------------------------------------------------------------------------------


COUNTED = ("S3", "API")


@dataclass
class Bench:
    archive: Archive
    target: Target
    contenders: Contenders
    repeat: int
    requests: bool = False  # tally the API requests of each run by kind (the access log)
    results: dict[str, list[Series]] = field(default_factory=dict)

    def one(self, upload: Upload, payload: Payload, label: str) -> Run:
        """One fresh run: a new dandiset, new bytes, the upload, what the fronts counted."""
        identifier = self.target.new_dandiset(label)
        payload.renew()
        try:
            return self._measured(upload, payload, identifier)
        finally:
            self.target.delete_dandiset(identifier)

    def _measured(self, upload: Upload, payload: Payload, identifier: str) -> Run:
        log = self.archive.log_path
        offset = log.stat().st_size if log else 0
        before, polls = self.archive.front_stats(), self.target.polls
        seconds, phases = upload(identifier, payload)
        after, polls = self.archive.front_stats(), self.target.polls - polls
        kinds = logged_kinds(log, offset) if log and self.requests else Counter()
        self.target.check_assets(identifier, payload)
        counts = {"S3 req": after["S3"]["total_requests"] - before["S3"]["total_requests"],
                  "API req": after["API"]["total_requests"] - before["API"]["total_requests"]
                  - polls}
        for method, number in after["S3"]["requests"].items():
            counts[f"S3 {method}"] = number - before["S3"]["requests"].get(method, 0)
        received = after["S3"]["bytes_received"] - before["S3"]["bytes_received"]
        return Run(seconds, received, counts, phases, kinds)

    def case(self, scenario: Scenario, payload: Payload,
             rows: list[tuple[str, Upload]], notes: dict[str, str]) -> None:
        case = f"{payload.name} @{scenario.label}"
        series = {name: (Series(case, name), Series(case, name)) for name, _ in rows}
        runs: dict[str, list[Run]] = {name: [] for name, _ in rows}
        failures: dict[str, list[str]] = {}
        for attempt in range(self.repeat):
            for name, upload in rows:
                try:
                    run = self.one(upload, payload, f"{name} {case} #{attempt + 1}")
                except ContenderFailed as failure:
                    failures.setdefault(name, []).append(f"#{attempt + 1}: {failure}")
                    print(f"   {name}: FAILED {failure}", flush=True)
                    continue
                runs[name].append(run)
                seconds, rate = series[name]
                seconds.values.append(run.seconds)
                rate.values.append(payload.size / run.seconds / 1e6)
                print(f"   {name}: {run.seconds:.2f} s, S3 received "
                      f"{run.s3_received / 1e6:.1f} MB", flush=True)
        if self.requests:
            print(request_table(case, runs), flush=True)
        for name, _ in rows:
            note = describe(runs[name], payload.size) if runs[name] else ""
            if notes.get(name):
                note += f"; {notes[name]}"
            if failures.get(name):
                note += f"; FAILED {len(failures[name])} of {self.repeat} runs ({failures[name][0]})"
            for table, s in zip(("seconds", "MB/s"), series[name]):
                s.note = note
                self.results.setdefault(table, []).append(s)


def describe(runs: list[Run], payload_size: int) -> str:
    def span(values: list[float], fmt: str = "{:g}") -> str:
        low, high = min(values), max(values)
        return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"

    received = [run.s3_received for run in runs]
    short = any(value < payload_size for value in received)
    keys = sorted({key for run in runs for key in run.counts if run.counts[key]},
                  key=lambda key: (not key.endswith(" req"), key))
    counted = " ".join(f"{key} {span([run.counts.get(key, 0) for run in runs])}"
                       for key in keys)
    phases = "".join(f"; {name} returned after {span([run.phases[name] for run in runs], '{:.1f}')} s"
                     for name in runs[0].phases)
    return (f"{'!! ' if short else ''}S3 received "
            f"{span([value / 1e6 for value in received], '{:.1f}')} MB of "
            f"{payload_size / 1e6:.1f}; {counted}{phases}")


def request_table(case: str, runs: dict[str, list[Run]]) -> str:
    """API requests by kind, per contender (the median over its runs); the bench's own
    (creating, polling and listing the dandiset) included, the same for every contender."""
    names = list(runs)
    kinds = sorted({kind for name in names for run in runs[name] for kind in run.kinds})
    def median(name: str, kind: str) -> str:
        values = sorted(run.kinds.get(kind, 0) for run in runs[name])
        return str(values[len(values) // 2]) if values else "-"
    rows = [("API requests: " + case, *names)]
    rows += [(kind, *(median(name, kind) for name in names)) for kind in kinds]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def report(bench: Bench, printed: dict[str, int]) -> None:
    for table, higher in (("seconds", False), ("MB/s", True)):
        rows = bench.results.get(table, [])[printed.get(table, 0):]
        if rows:
            baseline = {s.case: DANDI for s in rows}
            unit = "s" if table == "seconds" else table
            shown = render(rows, unit=unit, baseline=baseline, lower_is_better=not higher)
            print(f"\n{table}\n{shown}", flush=True)
            printed[table] = printed.get(table, 0) + len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench upload_bench")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cases", default="big,small", help="big, small (default: both)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file, MiB")
    parser.add_argument("--small-count", type=int, default=200, help="files in the folder")
    parser.add_argument("--rtt-ms", type=int, default=30, help="RTT of the second scenario")
    parser.add_argument("--stream-mbps", type=non_negative, default=100.0,
                        help="MB/s per connection in the second scenario (default 100)")
    parser.add_argument("--contenders", default="mount,webdav,dandi",
                        help="any of mount, webdav, dandi (default: all)")
    parser.add_argument("--scenarios", default="0,model",
                        help="0 (the model off) and/or model (--rtt-ms + --stream-mbps)")
    parser.add_argument("--requests", action="store_true",
                        help="also print each case's API requests by kind per contender "
                        "(the archive's access log on)")
    args = parser.parse_args(argv or [])
    cases = [case for case in args.cases.split(",") if case]
    wanted = set(args.contenders.split(","))
    if "mount" in wanted and (not Path("/dev/fuse").exists() or not shutil.which("fusermount3")):
        print("!!! FUSE is not available: the mount's rows stay empty !!!", file=sys.stderr)
        wanted.discard("mount")
    if "webdav" in wanted and not (shutil.which("rclone") and serve_writes()):
        print("!!! dandifs serve in this tree does not write (or rclone is missing): the "
              "WebDAV rows are left out !!!", file=sys.stderr)
        wanted.discard("webdav")
    chosen = set(args.scenarios.split(","))
    scenarios = [scenario for key, scenario in (
        ("0", Scenario(0)), ("model", Scenario(args.rtt_ms, stream_mbps=args.stream_mbps)))
        if key in chosen]
    load = LoadWatch()
    printed: dict[str, int] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dandifs-upload-bench-") as scratch_name:
        scratch = Path(scratch_name)
        payloads = make_payloads(scratch / "dandiset", args.big_mib, args.small_count)
        start_up = dandi_start_up()
        with running_archive("none", scratch / "archive", "--tls",
                             access_log=args.requests) as archive:
            target = Target(archive)
            contenders = Contenders(archive, target, scratch / "runs")
            rows = [(name, upload) for key, name, upload in (
                ("mount", MOUNT, contenders.mount), ("webdav", WEBDAV, contenders.webdav),
                ("dandi", DANDI, contenders.dandi)) if key in wanted]
            notes = {DANDI: f"its start-up (imports) {start_up:.1f} s included"}
            bench = Bench(archive, target, contenders, args.repeat, args.requests)
            try:
                for scenario in scenarios:
                    scenario.apply(archive)
                    for case in cases:
                        payload = payloads[case]
                        print(f"-- {payload.name} @{scenario.label} (load {load.sample():.1f}, "
                              f"{time.monotonic() - started:.0f} s)", flush=True)
                        bench.case(scenario, payload, rows, notes)
                        report(bench, printed)
            finally:
                load.sample()
                archive.set_model(0)
    print("\n== all results")
    report(bench, {})
    print(f"\nupload_bench took {time.monotonic() - started:.0f} s: HTTPS (TLS 1.3), repeat "
          f"{args.repeat}; {load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
