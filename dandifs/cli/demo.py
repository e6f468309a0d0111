"""`dandifs demo`: a local archive with demo data, served over WebDAV and mounted with FUSE.

    dandifs demo [--data DIR] [--port P] [--mountpoint DIR] [--no-mount] [--check]

Each part runs as its own process, exactly as a user would start it (`dandifs
local-archive`, `dandifs serve`, `dandifs mount -f`), so the demo shows the real commands
and stops them all, the mount first, on Ctrl-C or SIGTERM.  `--check` starts everything,
reads a listing through each front end, copies a file into a fresh dandiset's draft
through the mount and waits until the archive has it as an asset, prints what it saw and
stops: a smoke test.  The mount has the demo token, so its drafts are writable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT = 600.0  # the first run generates the demo data


class DemoError(Exception):
    """A part of the demo did not start; the message says which and why."""


@dataclass
class Part:
    name: str
    process: subprocess.Popen[bytes]

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dandifs demo",
        description="Run a local DANDI archive with demo data, serve it over WebDAV and "
        "mount it with FUSE (where FUSE is available).",
    )
    parser.add_argument("--data", help="data directory of the local archive")
    parser.add_argument("--port", type=int, default=8080, help="WebDAV port (busy: a free one)")
    parser.add_argument("--mountpoint", help="where to mount (default: <tmp>/dandifs-demo)")
    parser.add_argument("--no-mount", action="store_true", help="do not mount with FUSE")
    parser.add_argument(
        "--check", action="store_true", help="start, read through each front end, then stop"
    )
    return parser


def dandifs_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dandifs", *args]


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], part: Part, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if part.process.poll() is not None:
            raise DemoError(f"{part.name} exited with status {part.process.returncode}: see its output above")
        if time.monotonic() > deadline:
            raise DemoError(f"{part.name} did not become ready within {timeout:.0f} s ({what})")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def fuse_available() -> str | None:
    """Why FUSE cannot be used here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "pyfuse3 is not installed (pip install 'dandi-archive-fs[fuse]')"
    return None


@contextlib.contextmanager
def running_demo(options: argparse.Namespace, workdir: Path) -> Iterator[dict[str, str]]:
    parts: list[Part] = []
    facts: dict[str, str] = {}
    try:
        ready_file = workdir / "archive.json"
        archive_args = ["local-archive", "--seed", "demo", "--ready-file", str(ready_file), "--no-access-log"]
        if options.data:
            archive_args += ["--data", options.data]
        archive = Part("local archive", subprocess.Popen(dandifs_command(*archive_args)))
        parts.append(archive)
        wait_until(ready_file.exists, archive, "no ready file", STARTUP_TIMEOUT)
        endpoints = json.loads(ready_file.read_text())
        facts.update(api_url=endpoints["api_url"], token=endpoints["token"], s3_url=endpoints["s3_url"],
                     token_env=endpoints["token_env"])

        port = free_port(options.port)
        webdav_url = f"http://127.0.0.1:{port}/"
        serve = Part("WebDAV server", subprocess.Popen(
            dandifs_command("serve", "-i", facts["api_url"], "--port", str(port), "--quiet")
        ))
        parts.append(serve)
        wait_until(lambda: answers(webdav_url), serve, f"{webdav_url} does not answer", 60)
        facts["webdav_url"] = webdav_url

        reason = "--no-mount was given" if options.no_mount else fuse_available()
        if reason is None:
            mountpoint = Path(options.mountpoint or Path(tempfile.gettempdir()) / "dandifs-demo")
            mountpoint.mkdir(parents=True, exist_ok=True)
            with_token = {**os.environ, facts["token_env"]: facts["token"]}
            mount = Part("FUSE mount", subprocess.Popen(
                dandifs_command("mount", str(mountpoint), "-i", facts["api_url"], "-f"),
                env=with_token,
            ))
            parts.append(mount)
            wait_until(lambda: os.path.ismount(mountpoint), mount, "not mounted", 60)
            facts["mountpoint"] = str(mountpoint)
        else:
            facts["no_mount"] = reason
        yield facts
    finally:
        for part in reversed(parts):
            if part.name == "FUSE mount" and "mountpoint" in facts:
                subprocess.run(["fusermount3", "-u", facts["mountpoint"]], check=False)
            part.stop()


def describe(facts: dict[str, str]) -> str:
    lines = [
        "",
        "dandifs demo is running:",
        f"  local archive API   {facts['api_url']}",
        f"  demo API token      {facts['token']}",
        f"  WebDAV              {facts['webdav_url']}dandisets/",
    ]
    if "mountpoint" in facts:
        lines.append(f"  FUSE mount          {facts['mountpoint']}/dandisets/")
    else:
        lines.append(f"  FUSE mount          not mounted: {facts['no_mount']}")
    lines += [
        "",
        "Try:",
        f"  wget -r -np -nH --cut-dirs=3 {facts['webdav_url']}dandisets/000001/draft/",
        f"  rclone lsl :webdav: --webdav-url {facts['webdav_url']}dandisets/000001/",
    ]
    if "mountpoint" in facts:
        mp = facts["mountpoint"]
        lines += [
            f"  ls -l {mp}/dandisets/000001/latest/sub-mouse01/",
            f"  python -c \"import h5py; f = h5py.File('{mp}/dandisets/000001/latest/"
            "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb'); "
            "print(f['acquisition/ElectricalSeries/data'][500000:500005, :4])\"",
            f"  cp results.nwb {mp}/dandisets/000001/draft/      # becomes an asset",
            f"  getfattr -n user.dandifs.upload {mp}/dandisets/000001/draft/results.nwb",
        ]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


def check(facts: dict[str, str]) -> list[str]:
    """Read one listing through each front end; return what went wrong."""
    problems = []
    listing_url = f"{facts['webdav_url']}dandisets/000001/"
    try:
        with urllib.request.urlopen(listing_url, timeout=30) as response:
            page = response.read().decode()
        print(f"WebDAV {listing_url}: {response.status}, {len(page)} bytes of HTML")
        if "draft" not in page:
            problems.append(f"the WebDAV listing of {listing_url} does not show the draft")
    except OSError as error:
        problems.append(f"WebDAV {listing_url}: {error}")
    if "mountpoint" in facts:
        folder = Path(facts["mountpoint"], "dandisets", "000001", "draft")
        try:
            names = sorted(os.listdir(folder))
            print(f"FUSE {folder}: {names}")
            if "dandiset.yaml" not in names:
                problems.append(f"{folder} has no dandiset.yaml")
        except OSError as error:
            problems.append(f"FUSE {folder}: {error}")
        problems += check_write(facts)
    return problems


def check_write(facts: dict[str, str]) -> list[str]:
    """Copy a file into a fresh dandiset's draft through the mount; it must become an asset."""
    api = facts["api_url"].rstrip("/")
    headers = {"Authorization": f"token {facts['token']}", "Content-Type": "application/json"}
    body = json.dumps({"name": "dandifs demo write", "metadata": {"description": "demo"}}).encode()
    try:
        request = urllib.request.Request(f"{api}/dandisets/", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            dandiset = json.load(response)["identifier"]
        target = Path(facts["mountpoint"], "dandisets", dandiset, "draft", "written.txt")
        data = b"written through the dandifs mount\n"
        with open(target, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # returns once the archive has the asset
        url = f"{api}/dandisets/{dandiset}/versions/draft/assets/?path=written.txt"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            found = json.load(response)["results"]
    except OSError as error:
        return [f"writing into a draft through the mount: {error}"]
    if [(a["path"], a["size"]) for a in found] != [("written.txt", len(data))]:
        return [f"{target} did not become an asset: the archive lists {found}"]
    print(f"FUSE write: {target} became asset {found[0]['asset_id']}")
    return []


def main(argv: list[str]) -> int:
    options = build_parser().parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="dandifs-demo-") as workdir:
        try:
            with running_demo(options, Path(workdir)) as facts:
                print(describe(facts), flush=True)
                if options.check:
                    problems = check(facts)
                    for problem in problems:
                        print(f"dandifs demo: {problem}", file=sys.stderr)
                    return 1 if problems else 0
                stop.wait()
        except DemoError as error:
            print(f"dandifs demo: {error}", file=sys.stderr)
            return 1
    return 0
