"""What the resolver needs from the archive client: a few list and get calls.

Written as a Protocol so that the resolver depends on these calls only, not on how the
client pages, retries or authenticates.  List calls return the whole list (all pages).
"""

from __future__ import annotations

from typing import Protocol

from dandifs.model import Asset, AssetPath, Dandiset, VersionInfo, VersionSummary, ZarrFile


class HasApiUrl(Protocol):
    api_url: str
    """The API base, ending in `/api` (download URLs are built from it)."""


class MetadataSource(Protocol):
    """`dandifs.archive.ArchiveClient` is one."""

    instance: HasApiUrl

    @property
    def authenticated(self) -> bool: ...

    async def list_dandisets(self, *, embargoed: bool = False) -> list[Dandiset]: ...

    async def get_dandiset(self, dandiset_id: str) -> Dandiset: ...

    async def list_versions(self, dandiset_id: str) -> list[VersionSummary]: ...

    async def get_version(self, dandiset_id: str, version: str) -> VersionInfo: ...

    async def list_assets(
        self,
        dandiset_id: str,
        version: str,
        *,
        path: str | None = None,
        glob: str | None = None,
        metadata: bool = False,
        order: str | None = None,
    ) -> list[Asset]: ...

    async def get_asset(self, dandiset_id: str, version: str, asset_id: str) -> Asset: ...

    async def list_asset_paths(
        self, dandiset_id: str, version: str, path_prefix: str = ""
    ) -> list[AssetPath]: ...

    async def list_zarr_files(self, zarr_id: str, *, prefix: str = "") -> list[ZarrFile]: ...
