"""Frozen values shared by every layer: the archive's objects as dandifs uses them.

These parse the archive's JSON directly (unknown fields are ignored, so a newer archive
does not break us) and are immutable, so they can be cached and shared between tasks.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EmbargoStatus(str, Enum):
    OPEN = "OPEN"
    EMBARGOED = "EMBARGOED"
    UNEMBARGOING = "UNEMBARGOING"


class VersionStatus(str, Enum):
    PENDING = "Pending"
    VALIDATING = "Validating"
    VALID = "Valid"
    INVALID = "Invalid"
    PUBLISHING = "Publishing"
    PUBLISHED = "Published"


class VersionSummary(Frozen):
    """A version as it appears inside a dandiset record or a version list."""

    version: str
    name: str
    asset_count: int
    size: int
    status: VersionStatus
    created: datetime
    modified: datetime
    release_notes: Optional[str] = None

    @property
    def is_draft(self) -> bool:
        return self.version == "draft"


class Dandiset(Frozen):
    identifier: str
    created: datetime
    modified: datetime
    contact_person: str = ""
    embargo_status: EmbargoStatus = EmbargoStatus.OPEN
    draft_version: Optional[VersionSummary] = None
    most_recent_published_version: Optional[VersionSummary] = None

    @property
    def embargoed(self) -> bool:
        return self.embargo_status is not EmbargoStatus.OPEN


class VersionInfo(VersionSummary):
    """A version with its full metadata (`…/versions/{v}/info/`)."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    dandiset: Optional[Dandiset] = None
    """The dandiset's record as the archive nests it (its embargo status says who may read)."""


class Asset(Frozen):
    """An asset record; `metadata` is filled only when it was asked for."""

    asset_id: str
    path: str
    size: int
    blob: Optional[str] = None
    zarr: Optional[str] = None
    created: datetime
    modified: datetime
    metadata: Optional[dict[str, Any]] = None

    @property
    def is_zarr(self) -> bool:
        return self.zarr is not None

    @property
    def digest(self) -> Optional[str]:
        """The dandi-etag (blobs) or zarr checksum from the metadata, when known."""
        digests = (self.metadata or {}).get("digest") or {}
        return digests.get("dandi:dandi-etag") or digests.get("dandi:dandi-zarr-checksum")

    @property
    def content_urls(self) -> list[str]:
        return list((self.metadata or {}).get("contentUrl") or [])


class AssetRef(Frozen):
    asset_id: str
    url: str


class AssetPath(Frozen):
    """One child of a folder listing (`…/assets/paths/`): a file when `asset` is set, else a folder."""

    path: str
    aggregate_files: int
    aggregate_size: int
    asset: Optional[AssetRef] = None

    @property
    def is_folder(self) -> bool:
        return self.asset is None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class ZarrStatus(str, Enum):
    PENDING = "Pending"
    UPLOADED = "Uploaded"
    INGESTING = "Ingesting"
    COMPLETE = "Complete"


class ZarrArchive(Frozen):
    zarr_id: str
    name: str
    dandiset: str
    status: ZarrStatus
    checksum: Optional[str] = None
    file_count: int = 0
    size: int = 0


class ZarrFile(Frozen):
    """One object inside a Zarr archive (`/zarr/{id}/files/`)."""

    key: str = Field(alias="Key")
    size: int = Field(alias="Size", default=0)
    etag: str = Field(alias="ETag", default="")
    last_modified: Optional[datetime] = Field(alias="LastModified", default=None)


class Blob(Frozen):
    blob_id: str
    etag: str
    sha256: Optional[str] = None
    size: int


class ObjectInfo(Frozen):
    """What S3 said of an object: the basis of the block cache's ETag check."""

    url: str
    size: int
    etag: str
    last_modified: Optional[datetime] = None
