"""The WebDAV server assembled: core loop, a core per caller's token, provider, app, cheroot."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path

from dandifs.core import CacheConfig, Core, CoreConfig, CorePool, default_cache_dir, open_core
from dandifs.core.cachedir import uploads_dir
from dandifs.webdav.app import make_app
from dandifs.webdav.delivery import RedirectMode
from dandifs.core.portal import CorePortal
from dandifs.webdav.provider import DandiProvider
from dandifs.webdav.server import bound_url, make_server, serve_forever

MiB = 1 << 20
ANONYMOUS_CORE = CoreConfig(cache=CacheConfig(memory_bytes=128 * MiB))
TOKEN_CORE = CoreConfig(cache=CacheConfig(memory_bytes=32 * MiB))
"""Block caches are per core and in memory only: the server streams rarely (redirects
are the default), and blocks of one caller's embargoed data must not outlive that caller's
core or reach a disk.  With the pool's default of 64 token cores the worst case is
128 MiB + 64 x 32 MiB, reached only if every one of them streams at once."""

CORE_CLOSE_SECONDS = 10


class WebDAVService:
    """Owns everything a running server needs, and stops it in the right order."""

    def __init__(
        self,
        instance: str | None,
        *,
        redirect: RedirectMode = RedirectMode.S3,
        default_token: str | None = None,
        threads: int = 32,
        cache_dir: Path | None = None,
    ) -> None:
        self.instance = instance
        """A dandi-cli instance name or an API URL (None: the DANDI Archive)."""
        self.api_url: str | None = None
        self.redirect = redirect
        self.default_token = default_token
        self.threads = threads
        self.token_core = replace(TOKEN_CORE, spool_dir=uploads_dir(cache_dir or default_cache_dir()))
        """Files written into drafts wait in `uploads/` of the cache directory, where
        `dandifs uploads` and a later server or mount find what was not uploaded yet."""
        self.portal = CorePortal()
        self.cores: CorePool | None = None
        self.server = None

    def _open(self, token: str | None) -> AbstractAsyncContextManager[Core]:
        """A caller's core.  Callers without credentials get the server's own token, if
        it has one, and otherwise no token at all (never one from the environment)."""
        token = token or self.default_token
        if token is None:
            return open_core(self.instance, anonymous=True, config=ANONYMOUS_CORE)
        source = "--token" if token == self.default_token else "the caller's credentials"
        return open_core(self.instance, token=token, token_source=source, config=self.token_core)

    async def _make_pool(self) -> CorePool:
        return CorePool(self._open)  # made on the loop: its events belong to it

    def start(self, host: str, port: int):
        """Start the core loop, open the core for callers without credentials (so that a
        refused `--token` stops the server here), and bind the port (serving starts with
        `serve_forever`)."""
        self.portal.start()
        self.cores = self.portal.call(self._make_pool)
        self._cores_done = self.portal.start_task(self.cores.run)
        first = self.portal.call(self.cores.get, None)
        self.api_url = first.instance.api_url
        provider = DandiProvider(
            self.portal, self.cores, api_url=self.api_url, redirect=self.redirect
        )
        self.server = make_server(make_app(provider), host, port, threads=self.threads)
        return self.server

    @property
    def url(self) -> str:
        return bound_url(self.server)

    def serve_forever(self) -> None:
        serve_forever(self.server)

    def stop(self) -> None:
        """Stop accepting requests, finish those in flight, close every core, stop the loop."""
        if self.server is not None:
            self.server.stop()
        if self.cores is not None:
            self.portal.call(self.cores.aclose)
            self._cores_done.result(timeout=CORE_CLOSE_SECONDS)
            self.cores = None
        self.portal.stop()
