"""The WebDAV server assembled: core loop, per-caller sessions, provider, app, cheroot."""

from __future__ import annotations

from dandifs.archive.instances import Instance
from dandifs.webdav.app import make_app
from dandifs.webdav.archive_session import open_archive_session
from dandifs.webdav.delivery import RedirectMode
from dandifs.webdav.portal import CorePortal
from dandifs.webdav.provider import DandiProvider
from dandifs.webdav.server import bound_url, make_server, serve_forever
from dandifs.webdav.sessions import Sessions


SESSION_CLOSE_SECONDS = 10


class WebDAVService:
    """Owns everything a running server needs, and stops it in the right order."""

    def __init__(
        self,
        instance: Instance,
        *,
        redirect: RedirectMode = RedirectMode.S3,
        default_token: str | None = None,
        threads: int = 32,
    ) -> None:
        self.instance = instance
        self.redirect = redirect
        self.default_token = default_token
        self.threads = threads
        self.portal = CorePortal()
        self.sessions: Sessions | None = None
        self.server = None

    def _open(self, token: str | None):
        return open_archive_session(self.instance, token or self.default_token)

    async def _make_sessions(self) -> Sessions:
        return Sessions(self._open)  # made on the loop: its lock and events belong to it

    def start(self, host: str, port: int):
        """Start the core and bind the port (serving starts with `serve_forever`)."""
        self.portal.start()
        self.sessions = self.portal.call(self._make_sessions)
        self._sessions_done = self.portal.start_task(self.sessions.run)
        provider = DandiProvider(
            self.portal, self.sessions, api_url=self.instance.api_url, redirect=self.redirect
        )
        self.server = make_server(make_app(provider), host, port, threads=self.threads)
        return self.server

    @property
    def url(self) -> str:
        return bound_url(self.server)

    def serve_forever(self) -> None:
        serve_forever(self.server)

    def stop(self) -> None:
        """Stop accepting requests, finish those in flight, close every session, stop the loop."""
        if self.server is not None:
            self.server.stop()
        if self.sessions is not None:
            self.portal.call(self.sessions.aclose)
            self._sessions_done.result(timeout=SESSION_CLOSE_SECONDS)
            self.sessions = None
        self.portal.stop()
