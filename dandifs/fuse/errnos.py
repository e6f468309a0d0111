"""The FUSE front end's one error table: domain exceptions become errno values here, and only here.

pyfuse3 accepts nothing but `FUSEError` from a request handler; anything else escapes into
its main loop and takes the whole mount down (or leaves the calling process hanging).  So
every handler runs inside `fuse_errors`, which translates what it knows and turns anything
it does not know into EIO with the traceback in the log.  What FUSE refuses by itself, with
no domain meaning (symlinks, hard links, device nodes, RENAME_EXCHANGE), goes through
`refusal`, so those are logged the same way.
"""

from __future__ import annotations

import errno
import logging
from contextlib import contextmanager
from typing import Iterator

import pyfuse3

from dandifs import errors

log = logging.getLogger(__name__)

#: Most specific first: the first class an exception is an instance of decides its errno.
ERRNO_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (errors.NotFound, errno.ENOENT),
    (errors.IsADirectory, errno.EISDIR),
    (errors.NotADirectory, errno.ENOTDIR),
    (errors.AlreadyExists, errno.EEXIST),
    (errors.NotEmpty, errno.ENOTEMPTY),
    (errors.CannotMove, errno.EXDEV),
    (errors.NameRefused, errno.EINVAL),
    (errors.NoSpace, errno.ENOSPC),
    (errors.ReadOnly, errno.EROFS),
    (errors.PermissionDenied, errno.EACCES),
    (errors.Stale, errno.ESTALE),
    (errors.Unavailable, errno.EIO),
    (errors.ArchiveRejected, errno.EIO),
    (errors.UploadFailed, errno.EIO),
)

#: Errors that are part of normal traffic (a shell probing for files) log quietly.
_ROUTINE = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def errno_for(exc: BaseException) -> int | None:
    """The errno for a domain exception, or None when the exception is not a domain one."""
    for kind, code in ERRNO_TABLE:
        if isinstance(exc, kind):
            return code
    return None


@contextmanager
def fuse_errors(operation: str, target: object = "") -> Iterator[None]:
    """Run one request handler's body, answering the kernel with an errno whatever happens.

    `operation` and `target` (an inode, a path) only make the log lines say what failed.
    """
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except errors.DandiFSError as exc:
        code = errno_for(exc)
        assert code is not None, f"{type(exc).__name__} is missing from ERRNO_TABLE"
        level = logging.DEBUG if code in _ROUTINE else logging.WARNING
        text = str(exc)
        if target != "" and not text.startswith(str(target)):  # most messages name their path
            text = f"{target}: {text}"
        log.log(level, "%s %s -> %s", operation, text, errno.errorcode[code])
        raise pyfuse3.FUSEError(code) from None
    except Exception:
        log.exception("%s %s: unexpected failure, answering EIO", operation, target)
        raise pyfuse3.FUSEError(errno.EIO) from None


def refusal(code: int, operation: str, target: object, reason: str) -> pyfuse3.FUSEError:
    """The error for a request this front end refuses by itself, logged with its reason
    like the domain refusals (raise what it returns)."""
    log.warning("%s %s: %s -> %s", operation, target, reason, errno.errorcode[code])
    return pyfuse3.FUSEError(code)
