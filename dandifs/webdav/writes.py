"""What the WebDAV front end needs to change drafts, before and around the core's write API.

Which paths may be written is decided twice: here from the path alone (so a PUT to a
published version is a 403 before any credentials are asked for or any archive request is
made), and by the core (`Core.check_writable`: token, the archive's path rules).  A PUT
body streams into a `FileWriter` one block per portal hop; a body shorter than its
Content-Length is discarded, so a client that stopped half-way leaves nothing behind.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from wsgidav.dav_error import DAVError

from dandifs import errors
from dandifs.core.portal import CorePortal
from dandifs.namespace import routes
from dandifs.webdav.errors import to_dav_error

if TYPE_CHECKING:
    from dandifs.core.core import FileWriter

WRITE_METHODS = frozenset({"PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "UNLOCK"})
READ_ALLOW = "OPTIONS, GET, HEAD, PROPFIND"
WRITE_ALLOW = f"{READ_ALLOW}, PUT, DELETE, MKCOL, MOVE, COPY, PROPPATCH, LOCK, UNLOCK"


def destination_path(environ: dict) -> str | None:
    """The path of a MOVE/COPY Destination (an absolute URL or a path), decoded."""
    header = environ.get("HTTP_DESTINATION")
    if not header:
        return None
    path = unquote(urlsplit(header).path)
    return path or None


def expected_length(environ: dict) -> int | None:
    """The body length a request announced (None: chunked or none given)."""
    value = environ.get("CONTENT_LENGTH")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise DAVError(400, context_info=f"invalid Content-Length {value!r}") from None


def mtime_from(value: object) -> datetime:
    """A time as PROPPATCH (an HTTP date: getlastmodified, Win32LastModifiedTime) or
    X-OC-Mtime (epoch seconds) gives it."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    text = str(value or "").strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), timezone.utc)
        return parsedate_to_datetime(text).astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise DAVError(400, context_info=f"{text!r} is not a date") from None


class BodySink:
    """The file WsgiDAV's PUT writes the request body into: each block goes straight to
    the core's `FileWriter`, and the bytes received are counted for the length check."""

    def __init__(self, portal: CorePortal, writer: FileWriter) -> None:
        self.portal = portal
        self.writer = writer
        self.received = 0

    def write(self, data: bytes) -> int:
        try:
            self.portal.call(self.writer.write, self.received, data)
        except errors.DandiFSError as exc:
            raise to_dav_error(exc) from None
        self.received += len(data)
        return len(data)

    def writelines(self, blocks) -> None:
        for block in blocks:
            self.write(block)

    def close(self) -> None:
        """Nothing yet: the provider commits or discards once the length is checked."""


def short_body(received: int, expected: int) -> DAVError:
    return DAVError(
        400,
        context_info=(
            f"the request body ended after {received} of the {expected} bytes its "
            "Content-Length announced; nothing was kept"
        ),
    )
