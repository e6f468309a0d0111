"""Values of the upload protocol (`/uploads/...`), as the archive sends and expects them."""

from __future__ import annotations

from dandifs.model import Frozen


class UploadPart(Frozen):
    """One part the archive asks for: PUT `size` bytes from offset
    `(part_number - 1) * first_part_size` to `upload_url` (presigned, no token)."""

    part_number: int
    size: int
    upload_url: str


class UploadStarted(Frozen):
    upload_id: str
    parts: tuple[UploadPart, ...]


class BlobExists(Frozen):
    """`initialize` answered 409: the archive already has a blob with this dandi-etag."""

    blob_id: str


class UploadedPart(Frozen):
    """A part as S3 acknowledged it (ETag without quotes), for `complete`."""

    part_number: int
    size: int
    etag: str


class Completion(Frozen):
    """Where and what to POST to finish the S3 multipart upload."""

    complete_url: str
    body: str
