"""A local archive for benchmarks: start `dandifs local-archive`, control its S3 proxy, stop it."""

from __future__ import annotations

import json
import os
import signal
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

    def control(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(
            method, f"{self.s3_proxy_url}/__dandifs__/{name}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

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
        response = httpx.get(f"{self.api_url}/{endpoint.lstrip('/')}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()

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
                    *extra_args: str) -> Iterator[Archive]:
    """A local archive seeded with `seed` (and `extra_args` on its command line), stopped
    (SIGTERM) when the block ends. Its ready file's fields are in `Archive.ready`."""
    data_dir = data_dir or default_data_dir()
    with tempfile.TemporaryDirectory(prefix="dandifs-bench-") as scratch:
        ready_file = Path(scratch) / "ready.json"
        log_path = Path(scratch) / "archive.log"
        command = [sys.executable, "-m", "dandifs", "local-archive", "--data", str(data_dir),
                   "--port", "0", "--seed", seed, "--ready-file", str(ready_file),
                   "--no-access-log", *extra_args]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        try:
            while not ready_file.exists():
                if process.poll() is not None:
                    raise RuntimeError(f"local archive exited:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            ready = json.loads(ready_file.read_text())
            yield Archive(ready["api_url"], ready["s3_url"], ready["s3_proxy_url"], ready["token"],
                          ready=ready)
        finally:
            stop_process(process)


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
