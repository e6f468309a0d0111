"""The WebDAV front end's one error-mapping table: domain exception -> HTTP status.

Every refusal the server sends goes through `to_dav_error`, so a status code means the
same thing on every route, and every error body carries a message a person can act on.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from wsgidav.dav_error import ERROR_DESCRIPTIONS, DAVError

from dandifs import errors

log = logging.getLogger(__name__)

BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="DANDI Archive (API token as password)"')

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (errors.NotFound, 404),
    (errors.IsADirectory, 409),
    (errors.NotADirectory, 409),
    (errors.AlreadyExists, 409),
    (errors.NotEmpty, 409),
    (errors.NameRefused, 400),
    (errors.NoSpace, 507),
    (errors.ReadOnly, 403),
    (errors.AuthenticationRequired, 401),
    (errors.PermissionDenied, 403),
    (errors.Stale, 412),
    (errors.Unavailable, 503),
    (errors.ArchiveRejected, 502),
    (errors.UploadFailed, 502),
)


# WsgiDAV writes status lines from its own table, which lacks some codes used here (503
# would go out as "503 Status"); give it the standard reason phrases.
for _code in {status for _, status in STATUS_BY_ERROR} | {413}:
    ERROR_DESCRIPTIONS.setdefault(_code, f"{_code} {HTTPStatus(_code).phrase}")


def status_for(error: Exception) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 500


def to_dav_error(error: Exception) -> DAVError:
    """The HTTP answer for a domain error (500 for anything unexpected)."""
    if isinstance(error, DAVError):
        return error
    status = status_for(error)
    headers: list[tuple[str, str]] = []
    if status == 401:
        headers.append(BASIC_CHALLENGE)
    if isinstance(error, errors.Unavailable):
        headers.append(("Retry-After", str(round(error.retry_after or 5))))
    if status == 500:
        log.error("unexpected error", exc_info=error)
        return DAVError(500, context_info="internal error; the server log has the details")
    return DAVError(status, context_info=str(error), add_headers=headers)
