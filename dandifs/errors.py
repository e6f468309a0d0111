"""The domain exception tree.

Every layer raises these; each front end translates them exactly once (FUSE to errno,
WebDAV to HTTP status) in its own error-mapping table.  Messages are meant for people:
they say what was refused and what to do about it.
"""

from __future__ import annotations


class DandiFSError(Exception):
    """Base of every error dandifs raises on purpose."""


class NotFound(DandiFSError):
    """The path, dandiset, version, asset or object does not exist (ENOENT / 404)."""


class InvalidPath(NotFound):
    """The path can never exist: bad grammar, `..`, NUL, an over-long name (refused before I/O)."""


class IsADirectory(DandiFSError):
    """A file operation was asked of a folder (EISDIR / 409)."""


class NotADirectory(DandiFSError):
    """A folder operation was asked of a file (ENOTDIR / 409)."""


class AlreadyExists(DandiFSError):
    """Something is already at that path or has that identity (EEXIST / 409)."""


class NotEmpty(DandiFSError):
    """A folder that still holds something was to be removed or replaced (ENOTEMPTY / 409)."""


class NameRefused(DandiFSError):
    """A name the archive's path rules refuse, for a new asset or folder (EINVAL / 400)."""


class CannotMove(NameRefused):
    """A rename the archive cannot make in one step (into another dandiset; a folder into,
    out of or inside a Zarr): it is a copy and a delete, which `mv` does by itself on
    EXDEV (EXDEV / 400)."""


class NoSpace(DandiFSError):
    """No room to keep written bytes until the archive has them: a full spool disk, or
    the archive's quota (ENOSPC / 507)."""


class ReadOnly(DandiFSError):
    """A write outside a draft, or to a published version (EROFS / 403)."""


class PermissionDenied(DandiFSError):
    """The archive refused the caller: no token, a wrong token, or not an owner (EACCES / 401, 403)."""


class AuthenticationRequired(PermissionDenied):
    """No credentials were given where the archive needs them (401)."""


class InvalidToken(AuthenticationRequired):
    """The archive rejected the API token (401)."""


class Stale(DandiFSError):
    """The remote object changed under an open handle (ESTALE / 412)."""


class Unavailable(DandiFSError):
    """The archive or S3 stayed unavailable after retries (EIO / 502, 503)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ArchiveRejected(DandiFSError):
    """The archive answered a request with an error that has no better domain meaning (EIO / 502).

    Carries the status and body so that a log line can show what the archive said.
    """

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class UploadFailed(DandiFSError):
    """A spooled file could not be made into an asset; the spool is kept for a retry (EIO / 502)."""
