"""The WSGI application: WsgiDAV configured for the archive, plus an access log.

In front of WsgiDAV: the access log, then the request guard (refusals that need no I/O).
Inside it, the middleware stack is WsgiDAV's own error printer, the token authenticator
and WsgiDAV's request resolver.  WsgiDAV's directory browser is left out (listings are
rendered by the provider).  Its lock manager and property manager are kept in memory:
locks (class 2, which Finder, Windows and davfs2 need to write) last as long as the server,
and dead properties set by PROPPATCH (Windows' Win32 times, litmus's) are kept for the
server's lifetime but never reach the archive, which has no place for them; a PROPPATCH of
`getlastmodified` (or Win32LastModifiedTime) sets the written file's time, which becomes
its asset's blobDateModified.  One server process: in-memory locks are not shared between
processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from dandifs.webdav.auth import TokenAuthenticator
from dandifs.webdav.guard import RequestGuard
from dandifs.webdav.provider import DandiProvider

access_log = logging.getLogger("dandifs.webdav.access")

STREAM_BLOCK_SIZE = 1 << 20
"""Bytes per read when streaming a file through: one core call per MiB, not per 8 KiB."""


def wsgidav_config(provider: DandiProvider) -> dict:
    return {
        "provider_mapping": {"/": provider},
        "middleware_stack": [ErrorPrinter, TokenAuthenticator, RequestResolver],
        "lock_storage": True,
        "property_manager": True,
        "mutable_live_props": ["{DAV:}getlastmodified"],
        "hotfixes": {"emulate_win32_lastmod": True},
        "block_size": STREAM_BLOCK_SIZE,
        "add_header_MS_Author_Via": True,
        "suppress_version_info": True,
        "dir_browser": {"enable": False},
        "http_authenticator": {"domain_controller": None, "accept_basic": False},
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
    }


class AccessLog:
    """One line per request: client, caller, method, path, status, bytes sent, seconds,
    and how many archive/S3 requests were made meanwhile (exact when requests do not overlap).
    """

    def __init__(self, app, archive_requests: Callable[[], int]) -> None:
        self.app = app
        self.archive_requests = archive_requests

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        requests_before = self.archive_requests()
        status_line = ["-"]

        def record_status(status, headers, exc_info=None):
            status_line[0] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        sent = 0
        try:
            for chunk in self.app(environ, record_status):
                sent += len(chunk)
                yield chunk
        finally:
            access_log.info(
                '%s %s "%s %s" %s %d %.3fs archive=%d "%s"',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("wsgidav.auth.user_name") or "-",
                environ.get("REQUEST_METHOD"),
                environ.get("REQUEST_URI") or environ.get("PATH_INFO"),
                status_line[0],
                sent,
                time.perf_counter() - started,
                self.archive_requests() - requests_before,
                environ.get("HTTP_USER_AGENT", "-"),
            )


def make_app(provider: DandiProvider):
    dav = WsgiDAVApp(wsgidav_config(provider))
    return AccessLog(RequestGuard(dav), provider.cores.requests_made)
