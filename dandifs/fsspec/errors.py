"""The fsspec front end's one error table: domain exceptions become Python's OSErrors here.

Programs over fsspec catch the built-in classes (`FileNotFoundError` means "no such key" to
zarr and xarray, `IsADirectoryError` to `fs.get`), so each domain error becomes the class a
local file system would raise, with the errno the FUSE mount answers for it and the path.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from dandifs import errors

#: Most specific first: the first class an exception is an instance of decides its mapping.
EXCEPTION_TABLE: tuple[tuple[type[errors.DandiFSError], type[OSError], int], ...] = (
    (errors.NotFound, FileNotFoundError, errno.ENOENT),
    (errors.IsADirectory, IsADirectoryError, errno.EISDIR),
    (errors.NotADirectory, NotADirectoryError, errno.ENOTDIR),
    (errors.AlreadyExists, FileExistsError, errno.EEXIST),
    (errors.NotEmpty, OSError, errno.ENOTEMPTY),
    (errors.CannotMove, OSError, errno.EXDEV),
    (errors.NameRefused, OSError, errno.EINVAL),
    (errors.NoSpace, OSError, errno.ENOSPC),
    (errors.ReadOnly, PermissionError, errno.EROFS),
    (errors.PermissionDenied, PermissionError, errno.EACCES),
    (errors.Stale, OSError, errno.ESTALE),
    (errors.Unavailable, OSError, errno.EIO),
    (errors.ArchiveRejected, OSError, errno.EIO),
    (errors.UploadFailed, OSError, errno.EIO),
)


def python_error(error: errors.DandiFSError, path: str | None = None) -> OSError:
    """The built-in exception for a domain error, carrying its errno, message and path."""
    for kind, exception, code in EXCEPTION_TABLE:
        if isinstance(error, kind):
            return exception(code, str(error) or type(error).__name__, path)
    return OSError(errno.EIO, str(error) or type(error).__name__, path)


@contextmanager
def mapped_errors(path: str | None = None) -> Iterator[None]:
    """Raise domain errors from the block as their built-in exceptions (other ones as
    they are: they are Python's already)."""
    try:
        yield
    except errors.DandiFSError as exc:
        raise python_error(exc, path) from exc
