"""A local archive for benchmarks: start `dandifs local-archive`, control its S3 proxy, stop it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx


def default_data_dir() -> Path:
    """The test suite's data directory, so benchmarks reuse its generated demo files."""
    configured = os.environ.get("DANDIFS_TEST_DATA")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "dandifs-test"


@dataclass(frozen=True)
class Archive:
    api_url: str
    s3_url: str
    s3_proxy_url: str
    token: str
    bucket: str = "dandi-dandisets"
    ready: dict[str, Any] = field(default_factory=dict)
    client: httpx.Client | None = None  # kept alive: a control request then costs no handshake
    log_path: Path | None = None  # its output: with `access_log`, one line per API request

    @property
    def ca_file(self) -> str | None:
        """The CA to trust when the archive runs with `--tls`, else None."""
        return self.ready.get("ca_file")

    @property
    def api_front_url(self) -> str:
        return self.ready.get("api_front_url") or self.api_url.removesuffix("/api")

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.client is not None:
            response = self.client.request(method, url, **kwargs)
        else:
            response = httpx.request(method, url, verify=trust(self.ca_file), **kwargs)
        response.raise_for_status()
        return response

    def control(self, method: str, name: str, body: dict[str, Any] | None = None, *,
                front: str | None = None) -> Any:
        """A control request to the S3 proxy, or to the front at `front` (an origin)."""
        origin = front or self.s3_proxy_url
        return self._request(method, f"{origin}/__dandifs__/{name}", json=body,
                             timeout=10).json()

    def set_model(self, rtt_ms: float, latency_ms: float = 0, stream_mbps: float = 0) -> None:
        """The network model at `rtt_ms` (0: off) on both fronts; on S3 also a flat latency
        per request and a bandwidth cap per connection (0: unlimited); no faults."""
        self.control("PUT", "faults", {"rtt_ms": rtt_ms, "latency_ms": latency_ms,
                                       "stream_mbps": stream_mbps, "error_rate": 0,
                                       "reset_rate": 0, "truncate_rate": 0})
        self.control("PUT", "faults", {"rtt_ms": rtt_ms}, front=self.api_front_url)

    def front_stats(self) -> dict[str, dict[str, Any]]:
        """The counters of both fronts: {"S3": ..., "API": ...}."""
        return {"S3": self.control("GET", "stats"),
                "API": self.control("GET", "stats", front=self.api_front_url)}

    def set_network(self, latency_ms: float, stream_mbps: float = 0,
                    extra: dict[str, Any] | None = None) -> None:
        """S3 latency per request and bandwidth per connection (0: unlimited); no faults.
        `extra` adds fields of the proxy's fault config as they are (it refuses unknown ones)."""
        self.control("PUT", "faults", {"latency_ms": latency_ms, "stream_mbps": stream_mbps,
                                       "error_rate": 0, "reset_rate": 0, "truncate_rate": 0,
                                       **(extra or {})})

    def s3_requests(self) -> int:
        return int(self.control("GET", "stats")["total_requests"])

    def api(self, endpoint: str, **params: Any) -> Any:
        return self._request("GET", f"{self.api_url}/{endpoint.lstrip('/')}", params=params,
                             timeout=60).json()

    def asset(self, dandiset: str, version: str, path: str) -> dict[str, Any]:
        page = self.api(f"dandisets/{dandiset}/versions/{version}/assets/", path=path,
                        metadata="true")
        [record] = [item for item in page["results"] if item["path"] == path]
        return record

    def s3_url_of(self, dandiset: str, version: str, path: str) -> str:
        record = self.asset(dandiset, version, path)
        urls = record["metadata"]["contentUrl"]
        return next(url for url in urls if not url.startswith(self.api_url))


@contextmanager
def running_archive(seed: str = "big", data_dir: Path | None = None,
                    *extra_args: str, access_log: bool = False) -> Iterator[Archive]:
    """A local archive seeded with `seed` (and `extra_args` on its command line), stopped
    (SIGTERM) when the block ends. Its ready file's fields are in `Archive.ready`; with
    `access_log` its log (`Archive.log_path`) has a line per API request."""
    data_dir = data_dir or default_data_dir()
    with tempfile.TemporaryDirectory(prefix="dandifs-bench-") as scratch:
        ready_file = Path(scratch) / "ready.json"
        log_path = Path(scratch) / "archive.log"
        command = [sys.executable, "-m", "dandifs", "local-archive", "--data", str(data_dir),
                   "--port", "0", "--seed", seed, "--ready-file", str(ready_file),
                   *([] if access_log else ["--no-access-log"]), *extra_args]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        try:
            while not ready_file.exists():
                if process.poll() is not None:
                    raise RuntimeError(f"local archive exited:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            ready = json.loads(ready_file.read_text())
            with httpx.Client(verify=trust(ready.get("ca_file"))) as client:
                yield Archive(ready["api_url"], ready["s3_url"], ready["s3_proxy_url"],
                              ready["token"], ready=ready, client=client, log_path=log_path)
        finally:
            stop_process(process)


def trust(ca_file: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies with: the archive's CA under `--tls`, else the default."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def stop_process(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
