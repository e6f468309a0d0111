"""Running a real `dandifs mount` for tests and benchmarks: start, wait until it answers, stop.

The mount runs as its own process (as users run it), so tests see exactly what a user sees,
can measure its memory, and can stop it with a signal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY_TIMEOUT = 60.0


def fuse_missing_reason() -> str | None:
    """Why FUSE cannot run here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse does not exist"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse cannot be opened: {exc.strerror}"
    return None


def require_fuse() -> None:
    """Skip — loudly — only on a machine truly without FUSE."""
    reason = fuse_missing_reason()
    if reason:
        message = f"!!! FUSE TESTS NOT RUN: {reason} — this machine cannot mount FUSE !!!"
        print(message, file=sys.stderr)
        pytest.skip(message)


def is_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(mountpoint) for line in mounts)


@dataclass
class MountProcess:
    """A `dandifs mount -f` child process serving `mountpoint`."""

    mountpoint: Path
    instance: str
    cache_dir: Path
    options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "dandifs", "mount", str(self.mountpoint), "-f",
                   "-i", self.instance, "--cache-dir", str(self.cache_dir)]
        for option in self.options:
            command += ["-o", option]
        return command

    def start(self) -> MountProcess:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_path or self.cache_dir.parent / f"{self.mountpoint.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "DANDI_NO_ET": "1", **self.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=environment
            )
        wait_until_mounted(self.mountpoint, self.process, self.log_path)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stats(self) -> dict:
        """The daemon's counters (`archive`, `metadata`, `blocks`): its statistics attribute."""
        return json.loads(os.getxattr(self.mountpoint, "user.dandifs.stats"))

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the daemon with `sig`; returns its exit status.  Never leaves a mount behind."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        return status

    def __enter__(self) -> MountProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_until_mounted(
    mountpoint: Path, process: subprocess.Popen[bytes] | None, log_path: Path | None
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path else ""
            raise RuntimeError(f"dandifs mount exited with {process.returncode}:\n{log}")
        if is_mounted(mountpoint):
            os.listdir(mountpoint)  # answers only once the daemon serves
            return
        time.sleep(0.05)
    raise TimeoutError(f"{mountpoint} was not mounted within {READY_TIMEOUT} s")


def _status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def version_path(mountpoint: Path, dandiset: str, version: str) -> Path:
    return mountpoint / "dandisets" / dandiset / version


def dandi_download(api_url: str, dandiset: str, version: str, target: Path, env: dict[str, str]) -> Path:
    """Download a version with the real dandi-cli; returns the dandiset folder it made."""
    url = f"{api_url.rstrip('/')}/dandisets/{dandiset}/versions/{version}/"
    target.mkdir(parents=True, exist_ok=True)
    dandi = Path(sys.executable).with_name("dandi")
    result = subprocess.run(
        [str(dandi), "download", "--existing", "overwrite", "-o", str(target), url],
        env={**os.environ, "DANDI_NO_ET": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dandi download failed:\n{result.stdout}\n{result.stderr}")
    return target / dandiset


def libc_listing_with_seek(folder: Path, first_count: int) -> tuple[list[str], list[str], list[str]]:
    """Read a folder with opendir/readdir, take a telldir() cookie after `first_count` names,
    read on, then seekdir() back to the cookie and read again: (all names, after the cookie,
    re-read from the cookie)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    class Dirent(ctypes.Structure):
        _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                    ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                    ("d_name", ctypes.c_char * 256)]

    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]

    def read_all(handle: int) -> list[str]:
        names = []
        while entry := libc.readdir(handle):
            names.append(entry.contents.d_name.decode())
        return names

    handle = libc.opendir(os.fsencode(folder))
    assert handle, f"opendir({folder}) failed"
    try:
        first = [libc.readdir(handle).contents.d_name.decode() for _ in range(first_count)]
        cookie = libc.telldir(handle)
        rest = read_all(handle)
        libc.seekdir(handle, cookie)
        again = read_all(handle)
    finally:
        libc.closedir(handle)
    return first + rest, rest, again
