"""The metadata of a file written into a draft, as `dandi upload` sends it for that file.

With dandi-cli installed (the `dandi` package), the metadata comes from dandi-cli's own
functions, the ones `dandi upload` calls: `dandi_file(...).get_metadata(digest=...)` dumped
as JSON without nulls, with `schemaKey` set to `Asset` by `set_asset_schema_key`.  So an NWB
file carries what dandi-cli extracts from it (subject, session, species, approach, ...), and
any other file dandi-cli's generic fields.  Without dandi-cli, the asset gets the fields the
archive needs to list and validate it (`minimal_asset_metadata`).
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

NWB_FORMAT = "application/x-nwb"
DANDI_ETAG = "dandi:dandi-etag"
ZARR_CHECKSUM = "dandi:dandi-zarr-checksum"
ZARR_FORMAT = "application/x-zarr"


def asset_metadata(
    local_file: Path,
    asset_path: str,
    *,
    size: int,
    digest: str,
    digest_algorithm: str = DANDI_ETAG,
) -> dict[str, Any]:
    """The metadata `dandi upload` sends for `local_file` uploaded as `asset_path`.

    `size` and `digest` are those of the uploaded blob.  dandi-cli picks the file's kind and
    `encodingFormat` by its name, so a `local_file` named otherwise than the asset (a file
    renamed after it was spooled) is read through a link with the asset's name; and it takes
    `blobDateModified` from the file's mtime.

    Blocking: NWB extraction opens the file with h5py and pynwb (seconds on a large file),
    so an async caller runs this in a worker thread (`anyio.to_thread.run_sync`).

    An NWB file whose metadata dandi-cli cannot extract still becomes an asset, with
    dandi-cli's metadata of a generic file (what `dandi upload --allow-any-path` sends),
    and a warning in the log: the bytes are already in the archive and the person wrote
    them on purpose; refusing a broken NWB is the job of validation, which reports it on
    the asset.
    """
    try:
        import dandi.files  # noqa: F401 (only: is dandi-cli there?)
    except ImportError:
        return minimal_asset_metadata(
            local_file, asset_path, size=size, digest=digest, digest_algorithm=digest_algorithm
        )
    with _named_as(local_file, PurePosixPath(asset_path).name) as named:
        return _dandi_cli_metadata(named, asset_path, size, digest, digest_algorithm)


def _dandi_cli_metadata(
    local_file: Path, asset_path: str, size: int, digest: str, digest_algorithm: str
) -> dict[str, Any]:
    from dandi.dandiapi import set_asset_schema_key
    from dandi.files import GenericAsset, LocalFileAsset, NWBAsset, dandi_file
    from dandi.misctypes import Digest
    from dandischema.models import DigestType

    generic = GenericAsset(filepath=local_file, path=asset_path, dandiset_path=None)
    dfile = dandi_file(local_file, dandiset_path=local_file.parent)
    if isinstance(dfile, LocalFileAsset):
        dfile = dataclasses.replace(dfile, path=asset_path)
    else:
        # A file named dandiset.yaml is the dandiset's metadata to dandi-cli only at the
        # root; anywhere else `dandi upload` sends it as a generic file.
        dfile = generic
    blob_digest = Digest(algorithm=DigestType(digest_algorithm), value=digest)
    try:
        bare = dfile.get_metadata(digest=blob_digest, ignore_errors=False)
    except Exception as exc:
        if not isinstance(dfile, NWBAsset):
            raise
        log.warning(
            "%s: dandi-cli could not read the NWB metadata of this file (%s: %s); the asset "
            "gets the metadata of a generic file, and the archive's validation will say "
            "what is wrong with it",
            asset_path, type(exc).__name__, exc,
        )
        bare = generic.get_metadata(digest=blob_digest, ignore_errors=True)
    metadata: dict[str, Any] = bare.model_dump(mode="json", exclude_none=True)
    set_asset_schema_key(metadata)
    # The metadata describes the blob that was uploaded, whatever the file holds now.
    metadata["contentSize"] = size
    return metadata


@contextmanager
def _named_as(local_file: Path, name: str) -> Iterator[Path]:
    """`local_file` under `name`: itself, or a symlink beside it (same mtime and bytes)."""
    if local_file.name == name:
        yield local_file
        return
    with tempfile.TemporaryDirectory(dir=local_file.parent, prefix=".named-") as folder:
        link = Path(folder) / name
        link.symlink_to(local_file.resolve())
        yield link


def minimal_asset_metadata(
    local_file: Path,
    asset_path: str,
    *,
    size: int,
    digest: str,
    digest_algorithm: str = DANDI_ETAG,
) -> dict[str, Any]:
    """The asset metadata without dandi-cli: what the archive needs to list the asset and
    to find it valid (`schemaKey`, `encodingFormat`), plus `blobDateModified`, which
    dandi-cli compares with a local file's mtime before it replaces an asset."""
    metadata: dict[str, Any] = {
        "schemaKey": "Asset",
        "path": asset_path,
        "contentSize": size,
        "digest": {digest_algorithm: digest},
        "encodingFormat": encoding_format(PurePosixPath(asset_path).name),
        "blobDateModified": _iso(datetime.fromtimestamp(local_file.stat().st_mtime).astimezone()),
    }
    return _with_schema_version(metadata)


def zarr_asset_metadata(asset_path: str, *, size: int, checksum: str) -> dict[str, Any]:
    """The metadata of a Zarr asset made from files written into a draft: what dandi-cli
    sends for a Zarr it uploads, less what it reads from a local folder's times."""
    return _with_schema_version({
        "schemaKey": "Asset",
        "path": asset_path,
        "contentSize": size,
        "encodingFormat": ZARR_FORMAT,
        "digest": {ZARR_CHECKSUM: checksum},
    })


def _with_schema_version(metadata: dict[str, Any]) -> dict[str, Any]:
    try:
        from dandischema.consts import DANDI_SCHEMA_VERSION
    except ImportError:
        pass  # the archive then fills in its own schema version
    else:
        metadata["schemaVersion"] = DANDI_SCHEMA_VERSION
    return metadata


def encoding_format(name: str) -> str:
    """The MIME type of a file called `name`, as dandi-cli guesses it: NWB by its
    extension, a compressed file by its compression, unknown as octet-stream."""
    if name.endswith(".nwb"):
        return NWB_FORMAT
    mime, encoding = mimetypes.guess_type(name, strict=False)
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None:
        return f"application/x-{encoding}"
    return mime or "application/octet-stream"


def _iso(moment: datetime) -> str:
    """ISO 8601 as pydantic writes it (and so dandi-cli): UTC as `Z`."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
