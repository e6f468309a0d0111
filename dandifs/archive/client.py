"""`ArchiveClient`: the DANDI REST API as async methods returning `dandifs.model` values.

    async with ArchiveClient("dandi") as archive:
        for asset in await archive.list_assets("000027", "draft"):
            head = await archive.objects.read_range(asset.content_urls[1], 0, 1024)

Lists are returned whole (the paginated walk happens inside, see `pagination.py`).  Every
failure is a `dandifs.errors` exception; see `status.py` for the mapping.  Two connection
pools: a small one for the API, a large one for parallel range reads from S3.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from dandifs import __version__
from dandifs.archive.auth import TokenPolicy, locate_token
from dandifs.archive.urls import blob_download_url
from dandifs.archive.instances import Instance, apply_server_info, resolve_instance
from dandifs.archive.objects import ObjectStore
from dandifs.archive.pagination import collect
from dandifs.archive.rawhttp import RangeClient
from dandifs.archive.retry import RetryPolicy
from dandifs.archive.session import HttpSession, RequestStats
from dandifs.archive.values import BlobExists, Completion, UploadedPart, UploadStarted
from dandifs.errors import ArchiveRejected, InvalidToken, NotFound
from dandifs.model import (
    Asset,
    AssetPath,
    Blob,
    Dandiset,
    VersionInfo,
    VersionSummary,
    ZarrArchive,
    ZarrFile,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

LIST_PAGE_SIZE = 1000
METADATA_PAGE_SIZE = 200
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=120.0)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ArchiveRejected(
            f"{what}: unexpected answer ({exc.error_count()} problems, first: "
            f"{exc.errors()[0]['msg']})",
            status=200,
            body=str(data)[:500],
        ) from exc


def _decode(response: httpx.Response) -> Any:
    """The JSON body of a successful answer (None when there is none)."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise ArchiveRejected(
            f"{response.request.method} {response.request.url}: answer is not JSON",
            status=response.status_code,
            body=response.text[:500],
        ) from exc


class ArchiveClient:
    """One archive instance, with or without a token; use as an async context manager.

    `token` overrides the lookup (`locate_token`; `token_source` names it in messages);
    `anonymous=True` ignores every stored token.  `discover=True` asks the server's `/info/` for its API URL first, as dandi-cli
    does.  `stats` counts the requests made (API and objects separately).
    """

    def __init__(
        self,
        instance: Instance | str | None = None,
        *,
        token: str | None = None,
        token_source: str = "the token given",
        anonymous: bool = False,
        discover: bool = False,
        policy: RetryPolicy | None = None,
        api_connections: int = 16,
        object_connections: int = 32,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.instance = instance if isinstance(instance, Instance) else resolve_instance(instance)
        found = None if anonymous else locate_token(
            self.instance, token, explicit_source=token_source
        )
        self.token = found.value if found else None
        self.token_source = found.source if found else None
        """Where the token was found (an option, an environment variable, the keyring)."""
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        self._discover = discover
        headers = {"User-Agent": f"dandifs/{__version__} httpx/{httpx.__version__}"}
        # One trust decision for both HTTP clients (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
        tls = httpx.create_ssl_context()
        self._api_http = httpx.AsyncClient(
            headers={**headers, "Accept": "application/json"},
            verify=tls,
            timeout=timeout,
            limits=httpx.Limits(max_connections=api_connections),
        )
        self._object_http = httpx.AsyncClient(
            headers=headers,
            verify=tls,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=object_connections, max_keepalive_connections=object_connections
            ),
        )
        self._ranges = RangeClient(
            user_agent=headers["User-Agent"],
            connect_timeout=timeout.connect,
            read_timeout=timeout.read,
            max_idle_per_origin=object_connections,
            ssl_context=tls,
        )
        self._open_sessions()

    def _open_sessions(self) -> None:
        tokens = TokenPolicy.for_instance(self.instance, self.token)
        self.api = HttpSession(self._api_http, tokens=tokens, policy=self.policy, stats=self.stats)
        self.objects = ObjectStore(
            HttpSession(self._object_http, tokens=tokens, policy=self.policy, stats=self.stats),
            ranges=self._ranges,
        )

    async def __aenter__(self) -> ArchiveClient:
        if self._discover:
            described = apply_server_info(self.instance, await self.info())
            if described.api_url != self.instance.api_url:
                log.debug("%s advertises API %s", self.instance.api_url, described.api_url)
            self.instance = described
            self._open_sessions()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api_http.aclose()
        await self._object_http.aclose()
        await self._ranges.aclose()

    @property
    def authenticated(self) -> bool:
        return bool(self.token)

    # -- plumbing ---------------------------------------------------------------------

    def url(self, *segments: str) -> str:
        """The API URL of an endpoint: `url("dandisets", "000001")` -> `<api>/dandisets/000001/`."""
        path = "/".join(quote(str(segment), safe="") for segment in segments)
        return f"{self.instance.api_url}/{path}/"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        response = await self.api.request(
            method, url, params=params, json=json, idempotent=idempotent
        )
        self.api.raise_for_status(response, what=f"{method} {response.request.url}")
        return response

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return _decode(await self._call(method, url, **kwargs))

    async def _fetch_page(
        self, url: str, params: dict[str, Any] | None
    ) -> tuple[dict[str, Any], str]:
        response = await self._call("GET", url, params=params)
        page = _decode(response)
        if not isinstance(page, dict):
            raise ArchiveRejected(
                f"GET {url}: page is not an object", status=200, body=str(page)[:500]
            )
        return page, str(response.request.url)

    async def _list(self, model: type[M], url: str, params: dict[str, Any]) -> list[M]:
        items = await collect(self._fetch_page, url, params)
        return [_parse(model, item, f"GET {url}") for item in items]

    # -- server -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """`/info/`: schema version, CLI version bounds, advertised service URLs."""
        return await self._json("GET", self.url("info"))

    async def check_token(self) -> None:
        """Raise `InvalidToken`, naming where the token came from, unless the archive
        accepts it.

        Asks `/users/me/`, which any valid token may read (dandi-cli's `/auth/token/` check
        also refuses valid tokens of users not yet approved, who may still read)."""
        try:
            await self._call("GET", self.url("users", "me"))
        except InvalidToken as exc:
            raise InvalidToken(
                f"the archive at {self.instance.api_url} refused the API token from "
                f"{self.token_source}: {exc}"
            ) from None

    async def current_user(self) -> dict[str, Any]:
        """`/users/me/`: username, name, admin flag and approval status."""
        return await self._json("GET", self.url("users", "me"))

    # -- dandisets --------------------------------------------------------------------

    async def list_dandisets(
        self,
        *,
        draft: bool = True,
        empty: bool = True,
        embargoed: bool = False,
        mine: bool = False,
        search: str | None = None,
        ordering: str | None = None,
    ) -> list[Dandiset]:
        """Dandisets visible to us; `embargoed=True` adds our own embargoed ones."""
        params: dict[str, Any] = {
            "draft": _flag(draft),
            "empty": _flag(empty),
            "embargoed": _flag(embargoed),
            "page_size": LIST_PAGE_SIZE,
        }
        if mine:
            params["user"] = "me"
        if search:
            params["search"] = search
        if ordering:
            params["ordering"] = ordering
        return await self._list(Dandiset, self.url("dandisets"), params)

    async def get_dandiset(self, dandiset_id: str) -> Dandiset:
        url = self.url("dandisets", dandiset_id)
        return _parse(Dandiset, await self._json("GET", url), f"GET {url}")

    async def create_dandiset(
        self, name: str, metadata: dict[str, Any], *, embargo: bool = False
    ) -> Dandiset:
        url = self.url("dandisets")
        data = await self._json(
            "POST",
            url,
            params={"embargo": _flag(embargo)},
            json={"name": name, "metadata": metadata},
        )
        return _parse(Dandiset, data, f"POST {url}")

    async def dandiset_owners(self, dandiset_id: str) -> list[str]:
        """The usernames of the dandiset's owners."""
        users = await self._json("GET", self.url("dandisets", dandiset_id, "users"))
        return [user["username"] for user in users]

    async def delete_dandiset(self, dandiset_id: str) -> None:
        await self._call("DELETE", self.url("dandisets", dandiset_id))

    # -- versions ---------------------------------------------------------------------

    async def list_versions(
        self, dandiset_id: str, *, order: str | None = None
    ) -> list[VersionSummary]:
        """Versions oldest first (draft first), or as `order` (`created` / `-created`) says."""
        params: dict[str, Any] = {"page_size": LIST_PAGE_SIZE}
        if order:
            params["order"] = order
        return await self._list(
            VersionSummary, self.url("dandisets", dandiset_id, "versions"), params
        )

    async def get_version(self, dandiset_id: str, version: str) -> VersionInfo:
        """The version with its metadata (`…/versions/<v>/info/`)."""
        url = self.url("dandisets", dandiset_id, "versions", version, "info")
        return _parse(VersionInfo, await self._json("GET", url), f"GET {url}")

    async def get_version_metadata(self, dandiset_id: str, version: str) -> dict[str, Any]:
        """The raw version metadata: what `dandiset.yaml` holds."""
        return await self._json("GET", self.url("dandisets", dandiset_id, "versions", version))

    async def update_version(
        self, dandiset_id: str, name: str, metadata: dict[str, Any], *, version: str = "draft"
    ) -> VersionInfo:
        url = self.url("dandisets", dandiset_id, "versions", version)
        data = await self._json("PUT", url, json={"name": name, "metadata": metadata})
        return _parse(VersionInfo, data, f"PUT {url}")

    async def publish(self, dandiset_id: str, *, release_notes: str | None = None) -> None:
        """Start publishing the draft; the archive finishes asynchronously (poll the draft)."""
        body = {"release_notes": release_notes} if release_notes is not None else None
        await self._call(
            "POST", self.url("dandisets", dandiset_id, "versions", "draft", "publish"), json=body
        )

    # -- assets -----------------------------------------------------------------------

    def _assets_url(self, dandiset_id: str, version: str, *rest: str) -> str:
        return self.url("dandisets", dandiset_id, "versions", version, "assets", *rest)

    async def list_assets(
        self,
        dandiset_id: str,
        version: str,
        *,
        path: str | None = None,
        glob: str | None = None,
        order: str | None = None,
        metadata: bool = False,
        zarr_only: bool = False,
    ) -> list[Asset]:
        """Assets of a version; `path` is the archive's prefix filter (or exact match), `glob`
        matches whole paths with `*`."""
        params: dict[str, Any] = {"page_size": METADATA_PAGE_SIZE if metadata else LIST_PAGE_SIZE}
        if path is not None:
            params["path"] = path
        if glob is not None:
            params["glob"] = glob
        if order:
            params["order"] = order
        if metadata:
            params["metadata"] = "true"
        if zarr_only:
            params["zarr"] = "true"
        return await self._list(Asset, self._assets_url(dandiset_id, version), params)

    async def get_asset(self, dandiset_id: str, version: str, asset_id: str) -> Asset:
        """An asset record with its metadata."""
        url = self._assets_url(dandiset_id, version, asset_id, "info")
        return _parse(Asset, await self._json("GET", url), f"GET {url}")

    async def asset_validation(self, dandiset_id: str, version: str, asset_id: str) -> dict[str, Any]:
        """The archive's check of an asset's metadata: `status` and `validation_errors`."""
        return await self._json("GET", self._assets_url(dandiset_id, version, asset_id, "validation"))

    async def get_asset_by_path(self, dandiset_id: str, version: str, path: str) -> Asset:
        """The asset at exactly `path` (case-sensitive), with its metadata."""
        for asset in await self.list_assets(dandiset_id, version, path=path, metadata=True):
            if asset.path == path:
                return asset
        raise NotFound(f"no asset at {path!r} in dandiset {dandiset_id} version {version}")

    async def create_asset(
        self,
        dandiset_id: str,
        metadata: dict[str, Any],
        *,
        blob_id: str | None = None,
        zarr_id: str | None = None,
    ) -> Asset:
        """Add an asset to the draft; `metadata["path"]` says where."""
        url = self._assets_url(dandiset_id, "draft")
        data = await self._json("POST", url, json=_asset_body(metadata, blob_id, zarr_id))
        return _parse(Asset, data, f"POST {url}")

    async def replace_asset(
        self,
        dandiset_id: str,
        asset_id: str,
        metadata: dict[str, Any],
        *,
        blob_id: str | None = None,
        zarr_id: str | None = None,
    ) -> Asset:
        """Replace (or rename) a draft asset; the answer usually carries a new asset id."""
        url = self._assets_url(dandiset_id, "draft", asset_id)
        data = await self._json("PUT", url, json=_asset_body(metadata, blob_id, zarr_id))
        return _parse(Asset, data, f"PUT {url}")

    async def delete_asset(self, dandiset_id: str, asset_id: str) -> None:
        await self._call("DELETE", self._assets_url(dandiset_id, "draft", asset_id))

    async def list_asset_paths(
        self, dandiset_id: str, version: str, path_prefix: str = ""
    ) -> list[AssetPath]:
        """The direct children of a folder ("" is the root): one paginated walk."""
        params = {"path_prefix": path_prefix.strip("/"), "page_size": LIST_PAGE_SIZE}
        return await self._list(AssetPath, self._assets_url(dandiset_id, version, "paths"), params)

    def download_url(self, asset_id: str) -> str:
        """The archive's download URL of a blob asset (redirects to S3; needed for embargoed
        data, where it is fetched with the token)."""
        return blob_download_url(self.instance.api_url, asset_id)

    # -- zarr -------------------------------------------------------------------------

    async def create_zarr(self, name: str, dandiset_id: str) -> ZarrArchive:
        url = self.url("zarr")
        data = await self._json("POST", url, json={"name": name, "dandiset": dandiset_id})
        return _parse(ZarrArchive, data, f"POST {url}")

    async def get_zarr(self, zarr_id: str) -> ZarrArchive:
        url = self.url("zarr", zarr_id)
        return _parse(ZarrArchive, await self._json("GET", url), f"GET {url}")

    async def list_zarrs(
        self, *, dandiset_id: str | None = None, name: str | None = None
    ) -> list[ZarrArchive]:
        params: dict[str, Any] = {"page_size": LIST_PAGE_SIZE}
        if dandiset_id is not None:
            params["dandiset"] = dandiset_id
        if name is not None:
            params["name"] = name
        return await self._list(ZarrArchive, self.url("zarr"), params)

    async def list_zarr_files(
        self, zarr_id: str, *, prefix: str = "", after: str = ""
    ) -> list[ZarrFile]:
        """Objects of a Zarr under `prefix` (plain string prefix), keys after `after`."""
        params: dict[str, Any] = {}
        if prefix:
            params["prefix"] = prefix
        if after:
            params["after"] = after
        return await self._list(ZarrFile, self.url("zarr", zarr_id, "files"), params)

    async def zarr_upload_urls(self, zarr_id: str, files: Sequence[tuple[str, str]]) -> list[str]:
        """Presigned PUT URLs for `(path, base64 MD5)` pairs, in the same order.

        The PUTs must send `Content-MD5` (and `x-amz-tagging` when the URL signs it)."""
        body = [{"path": path, "base64md5": md5} for path, md5 in files]
        urls = await self._json(
            "POST", self.url("zarr", zarr_id, "files"), json=body, idempotent=True
        )
        return [str(url) for url in urls]

    async def delete_zarr_files(self, zarr_id: str, paths: Iterable[str]) -> None:
        body = [{"path": path} for path in paths]
        await self._call("DELETE", self.url("zarr", zarr_id, "files"), json=body)

    async def finalize_zarr(self, zarr_id: str) -> None:
        """Ask the archive to ingest the Zarr (checksum, size); poll `get_zarr` for Complete."""
        await self._call("POST", self.url("zarr", zarr_id, "finalize"))

    # -- uploads ----------------------------------------------------------------------

    async def initialize_upload(
        self, dandiset_id: str, size: int, dandi_etag: str
    ) -> UploadStarted | BlobExists:
        """Start a blob upload, or learn that the archive already has these bytes."""
        url = self.url("uploads", "initialize")
        body = {
            "contentSize": size,
            "digest": {"algorithm": "dandi:dandi-etag", "value": dandi_etag},
            "dandiset": dandiset_id,
        }
        response = await self.api.request("POST", url, json=body)
        if response.status_code == 409 and response.headers.get("location"):
            return BlobExists(blob_id=response.headers["location"].rstrip("/").rsplit("/", 1)[-1])
        self.api.raise_for_status(response, what=f"POST {url}")
        return _parse(UploadStarted, _decode(response), f"POST {url}")

    async def complete_upload(self, upload_id: str, parts: Sequence[UploadedPart]) -> Completion:
        url = self.url("uploads", upload_id, "complete")
        body = {"parts": [part.model_dump() for part in parts]}
        data = await self._json("POST", url, json=body, idempotent=True)
        return _parse(Completion, data, f"POST {url}")

    async def validate_upload(self, upload_id: str) -> Blob:
        """Turn a completed upload into a blob (the archive checks size and ETag)."""
        url = self.url("uploads", upload_id, "validate")
        return _parse(Blob, await self._json("POST", url, json={}), f"POST {url}")

    async def blob_by_digest(self, value: str, *, algorithm: str = "dandi:dandi-etag") -> Blob:
        url = self.url("blobs", "digest")
        data = await self._json(
            "POST", url, json={"algorithm": algorithm, "value": value}, idempotent=True
        )
        return _parse(Blob, data, f"POST {url}")


def _asset_body(
    metadata: dict[str, Any], blob_id: str | None, zarr_id: str | None
) -> dict[str, Any]:
    if (blob_id is None) == (zarr_id is None):
        raise ValueError("exactly one of blob_id and zarr_id is needed")
    key, value = ("blob_id", blob_id) if blob_id is not None else ("zarr_id", zarr_id)
    return {"metadata": metadata, key: value}
