"""One local archive process: SeaweedFS, the REST API and their front proxies on one event loop.

Clients talk to the fronts (`s3proxy.py`): the S3 proxy before SeaweedFS, the API front before
uvicorn. They add HTTPS (`--tls`, with a CA made at start), the network model and faults; the
servers behind them listen on loopback only, in plain HTTP.

Layout of the data directory:

    <data>/token              the demo user's API token (kept: stable across restarts)
    <data>/demo-cache/        generated demo files (kept: generating them is the slow part)
    <data>/runs/<pid>/        this run's state: SQLite database, SeaweedFS volumes, private keys

Each run builds its state afresh and removes it when it stops, which keeps the database and
the object store consistent with each other by construction (seeding from the cached demo
files takes seconds), and lets several archives (several test sessions) share one data
directory and its demo cache. A run holds a lock on its state directory, so the state of runs
that were killed is recognised and removed by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import uvicorn

from dandifs.errors import Unavailable
from dandifs.localarchive.objectstore import DEFAULT_BUCKET, ObjectStore, PrivateKeys
from dandifs.localarchive.s3proxy import ApiFront, FaultConfig, S3Proxy
from dandifs.localarchive.seaweed import SeaweedServer
from dandifs.localarchive.tls import (
    TlsVersion,
    client_context,
    new_authority,
    server_context,
    trust_lines,
)

if TYPE_CHECKING:  # imported when used: they take seconds to import, `--help` should not
    from starlette.applications import Starlette

    from dandifs.localarchive.settings import ArchiveSettings
    from dandifs.localarchive.spec import DemoData

SeedKind = Literal["demo", "big", "none"]
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_STAGING_GRACE_SECONDS = 60
_CONTROL = "/__dandifs__/faults"


def default_data_dir() -> Path:
    configured = os.environ.get("DANDIFS_DATA")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("dandifs")) / "local-archive"


@dataclass(frozen=True)
class RunnerOptions:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 0
    s3_port: int = 0
    seed: SeedKind = "demo"
    faults: FaultConfig = field(default_factory=FaultConfig)
    api_faults: FaultConfig = field(default_factory=FaultConfig)  # the network model only
    tls: bool = False
    tls_version: TlsVersion = "1.3"
    s3_public_url: str | None = None
    token: str | None = None
    ready_file: Path | None = None
    access_log: bool = True


@dataclass(frozen=True)
class ArchiveEndpoints:
    """What clients need, as printed at start and written to the ready file."""

    api_url: str
    api_front_url: str  # the API's origin, which answers /__dandifs__/ control requests
    api_direct_url: str  # uvicorn itself: plain HTTP, no network model (for comparisons)
    s3_url: str  # the public S3 base in presigned URLs
    s3_proxy_url: str  # our proxy, which answers /__dandifs__/ control requests
    s3_direct_url: str  # SeaweedFS itself: no latency, faults or embargo (for comparisons)
    ca_file: str | None  # the CA to trust with --tls, else None
    token: str
    pid: int
    data_dir: str
    startup_seconds: float
    startup_phases: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """The ready file: the endpoints, and `token_env`, the variable dandi-cli and
        dandifs read the token from (`env '<token_env>=<token>' dandi upload ...`)."""
        return {
            **vars(self),
            "startup_phases": dict(self.startup_phases),
            "token_env": _token_variable(self.api_url),
        }


class DataDirectory:
    """The files of one data directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def demo_cache(self) -> Path:
        return self.root / "demo-cache"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def token(self, override: str | None) -> str:
        """The demo token: `override` if given, else the stored one, else a new stored one."""
        if override:
            return override
        path = self.root / "token"
        self.root.mkdir(parents=True, exist_ok=True)
        candidate = secrets.token_hex(20)  # the form of real DANDI API keys: 40 hex digits
        try:
            # Exclusive creation: concurrent first starts agree on one token.
            with open(path, "x") as new:
                os.chmod(path, 0o600)
                new.write(candidate + "\n")
        except FileExistsError:
            pass
        for _ in range(50):
            stored = path.read_text().strip()
            if stored:
                return stored
            time.sleep(0.01)  # another process created it and is writing it
        raise Unavailable(f"the token file {path} is empty; delete it or pass --token")

    @contextlib.contextmanager
    def run_state(self) -> Iterator[RunState]:
        """A fresh state directory for this run, locked while it runs, removed afterwards."""
        self.runs.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned_runs()
        state = RunState(self.runs / str(os.getpid()))
        shutil.rmtree(state.root, ignore_errors=True)
        # Lock first, then publish under the final name: no one sees it unlocked.
        staging = self.runs / f".{os.getpid()}.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        with open(staging / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            staging.rename(state.root)
            try:
                yield state
            finally:
                shutil.rmtree(state.root, ignore_errors=True)

    def _remove_abandoned_runs(self) -> None:
        for run in self.runs.iterdir():
            if run.name.startswith("."):
                if time.time() - run.stat().st_mtime > _STAGING_GRACE_SECONDS:
                    shutil.rmtree(run, ignore_errors=True)
                continue
            try:
                with open(run / "lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(run, ignore_errors=True)
            except BlockingIOError:
                continue  # a live archive holds it
            except OSError:
                shutil.rmtree(run, ignore_errors=True)  # half-removed by an earlier clean-up


@dataclass(frozen=True)
class RunState:
    """Where one run keeps its database and bytes."""

    root: Path

    @property
    def seaweed(self) -> Path:
        return self.root / "seaweed"

    @property
    def database(self) -> Path:
        return self.root / "archive.sqlite3"

    @property
    def private_keys(self) -> Path:
        return self.root / "private-keys.json"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGINT/SIGTERM, so that it can
    stop the proxy and SeaweedFS after the API (uvicorn would re-raise the signal instead)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in _WILDCARD_HOSTS else host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted
    # sockets that say they are TCP, and with Nagle on, a body written after its head waits
    # for the client's delayed ACK: 40 ms on every request of a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen for the API on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _answers(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _load_demo_data(cache_dir: Path, seed: SeedKind) -> DemoData | None:
    """The demo data to seed; also imports the API and the seeder, which takes a second or
    two, so that it happens while SeaweedFS starts rather than after."""
    import dandifs.localarchive.app  # noqa: F401
    import dandifs.localarchive.seed  # noqa: F401

    if seed == "none":
        return None
    from dandifs.localarchive.demodata import build_demo_data

    return build_demo_data(cache_dir, big=seed == "big")


def _build_app(
    settings: ArchiveSettings, store: ObjectStore, demo_data: DemoData | None
) -> Starlette:
    """The REST API app, seeded with `demo_data` (None: an empty archive)."""
    from dandifs.localarchive.app import create_app

    app = create_app(settings, store)
    if demo_data is not None:
        from dandifs.localarchive.seed import seed

        seed(app, demo_data)
    return app


def _settings(state: RunState, api_url: str, token: str) -> ArchiveSettings:
    from dandifs.localarchive.settings import ArchiveSettings

    return ArchiveSettings(
        api_url=api_url, data_dir=state.root, db_path=state.database, demo_token=token
    )


async def run(
    options: RunnerOptions,
    *,
    on_ready: Callable[[ArchiveEndpoints], None] | None = None,
) -> None:
    """Run the archive until SIGINT/SIGTERM (or cancellation), then stop everything it started."""
    data = DataDirectory(options.data_dir)
    token = data.token(options.token)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        with data.run_state() as state:
            await _serve(options, data, state, token, stop, on_ready)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _serve(
    options: RunnerOptions,
    data: DataDirectory,
    state: RunState,
    token: str,
    stop: asyncio.Event,
    on_ready: Callable[[ArchiveEndpoints], None] | None,
) -> None:
    started = time.monotonic()
    phases: dict[str, float] = {}  # seconds from start until each step was done
    seaweed = SeaweedServer(state.seaweed, buckets=[DEFAULT_BUCKET])
    # Forked from this (long-lived) thread: SeaweedFS dies with it (see SeaweedServer.start).
    seaweed.start()
    proxy: S3Proxy | None = None
    front: ApiFront | None = None
    server: _Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        demo_loading = asyncio.create_task(
            asyncio.to_thread(_load_demo_data, data.demo_cache, options.seed)
        )
        await _until_stopped(asyncio.to_thread(seaweed.wait_ready), stop)
        await _until_stopped(asyncio.to_thread(seaweed.create_bucket, DEFAULT_BUCKET), stop)
        phases["seaweedfs"] = time.monotonic() - started
        assert seaweed.ports is not None
        tls = (server_context(new_authority(state.ca_file), options.tls_version)
               if options.tls else None)
        proxy = S3Proxy(
            seaweed.host,
            seaweed.ports.s3,
            private_keys=PrivateKeys(state.private_keys),
            faults=options.faults,
            tls=tls,
        )
        try:
            await proxy.start(options.host, options.s3_port)
        except OSError as exc:
            raise Unavailable(
                f"cannot listen for S3 on {options.host}:{options.s3_port}: address in use or "
                "not available"
            ) from exc
        shown_host = _url_host(_display_host(options.host))
        scheme = proxy.scheme
        proxy_url = f"{scheme}://{shown_host}:{proxy.port}"
        public_url = (options.s3_public_url or proxy_url).rstrip("/")
        store = ObjectStore(
            seaweed.s3_url, public_url, bucket=DEFAULT_BUCKET, private_keys=proxy.private_keys
        )

        api_socket = _bind(options.host, options.port)
        front_url = f"{scheme}://{shown_host}:{api_socket.getsockname()[1]}"
        api_url = f"{front_url}/api"
        # uvicorn listens on loopback behind the front, which adds the network model and TLS.
        direct_socket = _bind("127.0.0.1", 0)
        direct_url = f"http://127.0.0.1:{direct_socket.getsockname()[1]}"
        front = ApiFront("127.0.0.1", direct_socket.getsockname()[1],
                         faults=options.api_faults, tls=tls)
        settings = _settings(state, api_url, token)
        demo_data = await _until_stopped(demo_loading, stop)
        phases["demo_data"] = time.monotonic() - started
        app = await _until_stopped(
            asyncio.to_thread(_build_app, settings, store, demo_data), stop
        )
        phases["seeded"] = time.monotonic() - started

        server = _Server(
            uvicorn.Config(
                app,
                log_level="info" if options.access_log else "warning",
                access_log=options.access_log,
                timeout_graceful_shutdown=3,
                lifespan="auto",
                proxy_headers=True,  # the front's X-Forwarded-Proto: URLs say https with TLS
                forwarded_allow_ips="127.0.0.1",
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[direct_socket]))
        await _until_stopped(_wait_until_started(server, serving), stop)
        await front.start_on(api_socket)  # connections made before wait in its backlog
        trust = client_context(state.ca_file) if options.tls else None
        urls = [f"{api_url}/info/", f"{front_url}{_CONTROL}", f"{proxy_url}{_CONTROL}"]
        await _until_stopped(_check_answering(urls, trust), stop)

        endpoints = ArchiveEndpoints(
            api_url=api_url,
            api_front_url=front_url,
            api_direct_url=direct_url,
            s3_url=public_url,
            s3_proxy_url=proxy_url,
            s3_direct_url=seaweed.s3_url,
            ca_file=str(state.ca_file) if options.tls else None,
            token=token,
            pid=os.getpid(),
            data_dir=str(data.root),
            startup_seconds=round(time.monotonic() - started, 2),
            startup_phases={name: round(seconds, 2) for name, seconds in phases.items()},
        )
        if options.ready_file is not None:
            _write_json_atomically(options.ready_file, endpoints.to_json())
        if on_ready is not None:
            on_ready(endpoints)
        await _until_stopped(asyncio.shield(serving), stop)
    except _Stopped:
        pass
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
        for relay in (front, proxy):
            if relay is not None:
                await relay.close()
        seaweed.stop(grace=0)  # its data is removed with the run's state right after
        if options.ready_file is not None:
            options.ready_file.unlink(missing_ok=True)


class _Stopped(Exception):
    """SIGINT/SIGTERM arrived."""


async def _until_stopped(awaitable: Any, stop: asyncio.Event) -> Any:
    """Await `awaitable` unless `stop` is set first (then raise `_Stopped`)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise _Stopped


async def _wait_until_started(server: _Server, serving: asyncio.Task[None]) -> None:
    while not server.started:
        if serving.done():
            serving.result()  # re-raise why uvicorn stopped
            raise Unavailable("the API server stopped while starting")
        await asyncio.sleep(0.02)


async def _check_answering(urls: list[str], trust: ssl.SSLContext | None) -> None:
    for url in urls:
        if not await asyncio.to_thread(_answers, url, trust):
            raise Unavailable(f"the local archive does not answer at {url}")


def _phases_text(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} at {seconds:.1f} s" for name, seconds in phases.items())


def _cli_name(api_url: str) -> str:
    """dandi-cli's name for an archive it knows only by URL: the API URL's `host:port`."""
    return urlsplit(api_url).netloc


def _token_variable(api_url: str) -> str:
    """The environment variable dandi-cli (and dandifs) read this archive's token from; its
    name holds a `:`, so it is set with `env`, not a shell assignment."""
    return _cli_name(api_url).upper().replace("-", "_") + "_API_KEY"


def print_endpoints(endpoints: ArchiveEndpoints) -> None:
    print(
        f"dandifs local archive ready in {endpoints.startup_seconds:.1f} s "
        f"({_phases_text(endpoints.startup_phases)})\n"
        f"  API:   {endpoints.api_url}\n"
        f"  S3:    {endpoints.s3_url}\n"
        f"  token: {endpoints.token}\n"
        f"  data:  {endpoints.data_dir}\n"
        + (f"  CA:    {endpoints.ca_file}\nTrust it (HTTPS with a CA made for this run):\n"
           + "".join(f"  {line}\n" for line in trust_lines(Path(endpoints.ca_file)))
           if endpoints.ca_file else "")
        + "Use it with dandi-cli and dandifs (dandi-cli names this archive "
        f"{_cli_name(endpoints.api_url)}):\n"
        f"  env '{_token_variable(endpoints.api_url)}={endpoints.token}' "
        f"dandi upload -i {endpoints.api_url} ...\n"
        "Stop with Ctrl-C.",
        flush=True,
    )
    sys.stdout.flush()
