"""Shared fixtures: a real local archive (`dandifs local-archive`) for the whole test session.

`local_archive` starts one archive process seeded with the demo dandisets and yields a
`LocalArchive` handle; `archive_env` is the environment dandi-cli needs to talk to it. It runs
over HTTPS (`--tls`), as real DANDI does, and every client the tests run trusts its CA the
ordinary way: `trusted_cas` points SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
AWS_CA_BUNDLE (boto3), for the whole session, at a bundle of certifi's roots plus each
archive's CA (its `path` for the clients told by option: wget, rclone). The `--seed big`
archive is over HTTPS too. `plain_archive` is a second demo archive over plain HTTP, for the
few tests that keep that path working. The demo files are generated once into
`$DANDIFS_TEST_DATA` (default `~/.cache/dandifs-test`) and reused by later sessions; each
session gets its own archive state.

Tests that switch S3 faults on should use `with local_archive.s3_faults(...)`, which switches
them off again, since the archive is shared by the whole session.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
import pytest

START_TIMEOUT_SECONDS = float(os.environ.get("DANDIFS_TEST_START_TIMEOUT", "900"))
STOP_TIMEOUT_SECONDS = 20
_PR_SET_PDEATHSIG = 1
TRUST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on trio, as the product does."""
    return "trio"

def test_data_dir() -> Path:
    configured = os.environ.get("DANDIFS_TEST_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "dandifs-test"


@dataclass
class LocalArchive:
    """A running local archive: its URLs, the demo token, and S3 fault/counter controls."""

    api_url: str
    s3_url: str
    s3_proxy_url: str
    s3_direct_url: str  # SeaweedFS without the proxy: no faults, latency or embargo
    token: str
    data_dir: Path
    pid: int
    log_path: Path
    api_front_url: str  # the API's origin: its /__dandifs__/ controls the API's network model
    ca_file: str | None = None  # with --tls: the CA that clients must trust

    @classmethod
    def from_ready(cls, ready: dict[str, Any], log_path: Path) -> LocalArchive:
        """The archive a ready file describes."""
        return cls(
            api_url=ready["api_url"],
            s3_url=ready["s3_url"],
            s3_proxy_url=ready["s3_proxy_url"],
            s3_direct_url=ready["s3_direct_url"],
            token=ready["token"],
            data_dir=Path(ready["data_dir"]),
            pid=ready["pid"],
            log_path=log_path,
            api_front_url=ready["api_front_url"],
            ca_file=ready["ca_file"],
        )

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx needs to trust this archive."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True

    def _control(self, method: str, name: str, body: dict[str, Any] | None = None,
                 origin: str | None = None) -> Any:
        response = httpx.request(
            method, f"{origin or self.s3_proxy_url}/__dandifs__/{name}", json=body, timeout=10,
            verify=self.verify,
        )
        response.raise_for_status()
        return response.json()

    def api_network(self, **settings: Any) -> dict[str, Any]:
        """Replace the API front's settings (`rtt_ms`, `window_max_kib`...; others to 0)."""
        return self._control("PUT", "faults", settings, origin=self.api_front_url)

    def api_stats(self, reset: bool = False) -> dict[str, Any]:
        """Counters of the API front (as `s3_stats`); with `reset`, zero them."""
        return self._control("DELETE" if reset else "GET", "stats", origin=self.api_front_url)

    def set_s3_faults(
        self,
        *,
        latency_ms: float = 0,
        error_rate: float = 0,
        reset_rate: float = 0,
        truncate_rate: float = 0,
        stall_rate: float = 0,
        stall_seconds: float = 5,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the S3 proxy's fault settings (unnamed ones go back to zero)."""
        return self._control(
            "PUT",
            "faults",
            {
                "latency_ms": latency_ms,
                "error_rate": error_rate,
                "reset_rate": reset_rate,
                "truncate_rate": truncate_rate,
                "stall_rate": stall_rate,
                "stall_seconds": stall_seconds,
                "seed": seed,
            },
        )

    def reset_s3_faults(self) -> None:
        self.set_s3_faults()

    @contextlib.contextmanager
    def s3_faults(self, **faults: Any) -> Iterator[dict[str, Any]]:
        """Faults on for the `with` block, off afterwards."""
        applied = self.set_s3_faults(**faults)
        try:
            yield applied
        finally:
            self.reset_s3_faults()

    def s3_stats(self) -> dict[str, Any]:
        """Counters of the S3 proxy: `requests` by method, `total_requests`, `statuses`,
        `faults`, `denied`, `bytes_sent`, `bytes_received`."""
        return self._control("GET", "stats")

    def reset_s3_stats(self) -> None:
        self._control("DELETE", "stats")

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM it (a clean stop) if the test session dies."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_local_archive(
    data_dir: Path,
    ready_file: Path,
    log_path: Path,
    *extra_args: str,
    timeout: float = START_TIMEOUT_SECONDS,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `dandifs local-archive` and wait for its ready file; fail with its output if it
    exits first or takes longer than `timeout`."""
    ready_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "dandifs", "local-archive",
        "--data", str(data_dir), "--port", "0", "--ready-file", str(ready_file),
        *extra_args,
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_terminate_with_parent,
        )
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process.poll() is not None:
            pytest.fail(
                f"local archive exited with status {process.returncode} before it was ready; "
                f"its output ({log_path}):\n{_tail(log_path, 60)}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            stop_local_archive(process)
            pytest.fail(
                f"local archive not ready after {timeout:.0f} s; its output ({log_path}):\n"
                f"{_tail(log_path, 60)}",
                pytrace=False,
            )
        time.sleep(0.1)
    return process, json.loads(ready_file.read_text())


def stop_local_archive(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class TrustBundle:
    """A CA bundle file: certifi's roots (so real hosts still verify) and the CAs added."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(Path(certifi.where()).read_bytes())

    def add(self, ca_file: str | None) -> None:
        """Trust `ca_file` too; clients read the bundle when they make a TLS context."""
        if ca_file:
            with open(self.path, "ab") as bundle:
                bundle.write(b"\n" + Path(ca_file).read_bytes())


@pytest.fixture(scope="session", autouse=True)
def trusted_cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustBundle]:
    """Every client of the session, subprocesses too, trusts the bundle through its
    environment variable (clients told by option, as wget and rclone, use its `path`); the
    variables are restored at the end."""
    trust = TrustBundle(tmp_path_factory.mktemp("trust") / "ca-bundle.pem")
    saved = {name: os.environ.get(name) for name in TRUST_VARIABLES}
    os.environ.update({name: str(trust.path) for name in TRUST_VARIABLES})
    try:
        yield trust
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _session_archive(
    tmp_path_factory: pytest.TempPathFactory, trust: TrustBundle, name: str, *args: str
) -> Iterator[LocalArchive]:
    run_dir = tmp_path_factory.mktemp(name)
    log_path = run_dir / f"{name}.log"
    process, ready = start_local_archive(
        test_data_dir(), run_dir / "ready.json", log_path, "--seed", "demo", *args
    )
    trust.add(ready["ca_file"])
    archive = LocalArchive.from_ready(ready, log_path)
    try:
        yield archive
    finally:
        stop_local_archive(process)


def empty_archive(
    tmp_path_factory: pytest.TempPathFactory, trust: TrustBundle, name: str, token: str
) -> Iterator[LocalArchive]:
    """A local archive of a module's own, over HTTPS, with no dandisets and `token` as its
    owner's: for tests that change what the archive holds."""
    run_dir = tmp_path_factory.mktemp(name)
    process, ready = start_local_archive(
        run_dir / "data", run_dir / "ready.json", run_dir / "archive.log",
        "--seed", "none", "--token", token, "--tls",
    )
    trust.add(ready["ca_file"])
    try:
        yield LocalArchive.from_ready(ready, run_dir / "archive.log")
    finally:
        stop_local_archive(process)


def server_root_client(archive: LocalArchive) -> Iterator[httpx.Client]:
    """The archive's server root, as the flows in `localarchive_app` address it (`/api/...`)."""
    with httpx.Client(base_url=archive.api_url.removesuffix("/api"), timeout=30) as client:
        yield client


def published_version(api_url: str, dandiset: str) -> str:
    """The version id of `dandiset`'s most recent publication, as the archive names it."""
    record = httpx.get(f"{api_url}/dandisets/{dandiset}/", timeout=30).json()
    return record["most_recent_published_version"]["version"]


@pytest.fixture(scope="session")
def published(local_archive: LocalArchive) -> str:
    """The published version of 000001 in the demo archive."""
    return published_version(local_archive.api_url, "000001")


@pytest.fixture(scope="session")
def big_archive(
    tmp_path_factory: pytest.TempPathFactory, trusted_cas: TrustBundle
) -> Iterator[dict[str, Any]]:
    """The `--seed big` archive over HTTPS (its ready file's endpoints), started once for the
    slow tests that need its large dandisets."""
    run_dir = tmp_path_factory.mktemp("big-archive")
    process, ready = start_local_archive(
        test_data_dir(), run_dir / "ready.json", run_dir / "archive.log", "--seed", "big", "--tls"
    )
    trusted_cas.add(ready["ca_file"])
    try:
        yield ready
    finally:
        stop_local_archive(process)


@pytest.fixture(scope="session")
def big_mount(big_archive: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    """A `dandifs mount` of the `--seed big` archive, shared by the tests that read it."""
    from fuse_support import MountProcess, require_fuse

    require_fuse()
    run_dir = tmp_path_factory.mktemp("big-mount")
    with MountProcess(run_dir / "mnt", big_archive["api_url"], run_dir / "cache") as mount:
        yield mount


@pytest.fixture(scope="session")
def local_archive(
    tmp_path_factory: pytest.TempPathFactory, trusted_cas: TrustBundle
) -> Iterator[LocalArchive]:
    """The demo archive over HTTPS, shared by the session (its demo files cached across
    sessions); its CA (`ca_file`) is in the session's trust bundle."""
    yield from _session_archive(tmp_path_factory, trusted_cas, "local-archive", "--tls")


@pytest.fixture(scope="session")
def plain_archive(
    tmp_path_factory: pytest.TempPathFactory, trusted_cas: TrustBundle
) -> Iterator[LocalArchive]:
    """A second demo archive over plain HTTP, for the tests of the plain-HTTP paths
    (zero-copy bodies, http:// URLs)."""
    yield from _session_archive(tmp_path_factory, trusted_cas, "plain-archive")


def dandi_cli_env(archive: LocalArchive) -> dict[str, str]:
    """Environment for running `dandi` against `archive` as the demo user: dandi-cli names an
    instance given by URL `host:port` and reads `<HOST:PORT>_API_KEY` only (the variable the
    local archive's start-up lines print), so `DANDI_API_KEY` is left out on purpose."""
    host_port = urlsplit(archive.api_url).netloc
    environ = {key: value for key, value in os.environ.items() if key != "DANDI_API_KEY"}
    return {**environ, "DANDI_NO_ET": "1", f"{host_port.upper()}_API_KEY": archive.token}


@pytest.fixture(scope="session")
def archive_env(local_archive: LocalArchive) -> dict[str, str]:
    """Environment for running `dandi` against the local archive as the demo user."""
    return dandi_cli_env(local_archive)
