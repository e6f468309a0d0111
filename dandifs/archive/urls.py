"""The archive's URL shapes: the download URLs it answers with a redirect to S3, and how
an asset's S3 URL is told apart from them.  Every URL dandifs builds or recognises for
archive objects is built or recognised here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_S3_KEY = re.compile(
    rf"/(?:blobs/[0-9a-f]{{3}}/[0-9a-f]{{3}}/{UUID_PATTERN}|zarr/{UUID_PATTERN}/?)$"
)
_API_DOWNLOAD = re.compile(r"/assets/[^/]+/download/?$")
_ZARR_FILES = re.compile(r"/zarr/[^/]+/files/?$")


def blob_download_url(api_url: str, asset_id: str) -> str:
    """The API URL that redirects to a presigned S3 URL (works for embargoed blobs, with a token)."""
    return f"{api_url}/assets/{asset_id}/download/"


def zarr_file_download_url(api_url: str, zarr_id: str, key: str) -> str:
    return f"{api_url}/zarr/{zarr_id}/files/?prefix={quote(key, safe='/')}&download=true"


def zarr_file_s3_url(zarr_url: str, key: str) -> str:
    """The S3 URL of one object of a Zarr, from the Zarr's S3 prefix URL."""
    return f"{zarr_url.rstrip('/')}/{quote(key, safe='/')}"


def is_api_download_url(url: str) -> bool:
    """Whether `url` is an archive download URL (`.../assets/<id>/download/`, or a Zarr
    file's `.../zarr/<id>/files/?...download=true`): a redirect to S3, whatever host or
    spelling of the archive it names."""
    parts = urlsplit(url)
    if _API_DOWNLOAD.search(parts.path):
        return True
    return bool(_ZARR_FILES.search(parts.path)) and "download=true" in parts.query


def s3_url_of(content_urls: Iterable[str], api_url: str) -> str | None:
    """The S3 URL among an asset's `contentUrl`s.

    Told apart from the archive's download URL by what each is rather than by a prefix:
    the archive may call itself by another spelling than the one it was reached by
    (`127.0.0.1` for `localhost`, a trailing slash, `http` behind an `https` proxy), and a
    download URL taken for the S3 URL costs a redirect per read.  A URL naming an S3 key
    (`blobs/...`, `zarr/<id>/`) wins; otherwise the first that is not a download URL nor
    under `api_url`.
    """
    api_prefix = api_url.rstrip("/") + "/"
    candidates = [
        url for url in content_urls
        if not is_api_download_url(url) and not url.startswith(api_prefix)
    ]
    for url in candidates:
        if _S3_KEY.search(urlsplit(url).path):
            return url
    return candidates[0] if candidates else None


