"""The archive's bucket: server-side S3 operations and the presigned URLs handed to clients.

Two S3 clients share one bucket. The *direct* client talks to SeaweedFS itself for the
archive's own reads and writes. The *signer* never sends a request: it only presigns URLs for
the public base (the S3 front proxy, or whatever stands in front of it), because a presigned
URL names the host the client will connect to. SeaweedFS without identities accepts any
signature, so URLs signed for the proxy's host work when the proxy forwards them.

Embargo is modelled the way the real archive does it with a bucket policy: some keys are
private, and anonymous (unsigned) reads of them are refused at the proxy (`PrivateKeys`).
Calls are synchronous and thread-safe; the web app calls them from worker threads.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

DEFAULT_BUCKET = "dandi-dandisets"
DOWNLOAD_URL_SECONDS = 6 * 3600
UPLOAD_PART_URL_SECONDS = 7 * 24 * 3600
_DELETE_BATCH = 1000
_PART_THREADS = 4  # parts uploaded at once by put_file, as dandi-cli does (it uses up to 5)


@dataclass(frozen=True)
class ObjectHead:
    key: str
    size: int
    etag: str  # without quotes
    last_modified: datetime


class PrivateKeys:
    """Keys and key prefixes that anonymous clients may not read.

    An entry ending in `/` covers every key under it; any other entry covers that exact key and
    every key under `<entry>/` (so `zarr/<id>` and `zarr/<id>/` both cover a whole Zarr). With a
    `path`, the set is kept in a JSON file so it survives restarts of the archive.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: frozenset[str] = frozenset(self._load())

    def _load(self) -> list[str]:
        if self._path is None or not self._path.exists():
            return []
        return [str(entry) for entry in json.loads(self._path.read_text())]

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        tmp.write_text(json.dumps(sorted(self._entries)))
        os.replace(tmp, self._path)

    def set(self, key_or_prefix: str, private: bool) -> None:
        with self._lock:
            entries = set(self._entries)
            if private:
                entries.add(key_or_prefix)
            else:
                entries.discard(key_or_prefix)
                entries.discard(key_or_prefix.rstrip("/"))
                entries.discard(key_or_prefix.rstrip("/") + "/")
            self._entries = frozenset(entries)
            self._save()

    def is_private(self, key: str) -> bool:
        """Lock-free: readers see the last published (immutable) set."""
        entries = self._entries
        if not entries:
            return False
        if key in entries:
            return True
        # Walk the key's ancestors: `a/b/c` is covered by `a/b/`, `a/b`, `a/` and `a`.
        end = key.rfind("/")
        while end > 0:
            parent = key[:end]
            if parent in entries or parent + "/" in entries:
                return True
            end = key.rfind("/", 0, end)
        return False

    def __len__(self) -> int:
        return len(self._entries)


def _s3_client(endpoint_url: str, max_connections: int = 32) -> BaseClient:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id="dandifs-local",
        aws_secret_access_key="dandifs-local-secret",
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=max_connections,
            retries={"max_attempts": 3, "mode": "standard"},
            # Newer botocore adds CRC32 checksums to every upload; keep requests plain S3.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _unquote_etag(etag: str) -> str:
    return etag.strip('"')


class ObjectStore:
    """One bucket of the local archive, reached directly at `endpoint_url` (SeaweedFS) and
    published to clients at `public_url` (the S3 front proxy)."""

    def __init__(
        self,
        endpoint_url: str,
        public_url: str,
        *,
        bucket: str = DEFAULT_BUCKET,
        private_keys: PrivateKeys | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.private_keys = private_keys if private_keys is not None else PrivateKeys()
        self._s3 = _s3_client(self.endpoint_url)
        self._signer = _s3_client(self.public_url)

    # -- URLs -------------------------------------------------------------------------------

    def object_url(self, key: str) -> str:
        """The unsigned public URL: a presigned URL with its query stripped."""
        return f"{self.public_url}/{self.bucket}/{quote(key)}"

    def _presign(self, operation: str, params: dict[str, object], expires: int) -> str:
        return self._signer.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires
        )

    def presign_get(self, key: str, *, filename: str | None = None) -> str:
        params: dict[str, object] = {"Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = _attachment(filename)
        return self._presign("get_object", params, DOWNLOAD_URL_SECONDS)

    def presign_head(self, key: str) -> str:
        return self._presign("head_object", {"Key": key}, DOWNLOAD_URL_SECONDS)

    def presign_put(self, key: str, *, content_md5_b64: str | None = None) -> str:
        """A single-request upload URL; with `content_md5_b64` the client must send that
        `Content-MD5` (it is a signed header) and S3 checks the body against it."""
        params: dict[str, object] = {"Key": key}
        if content_md5_b64 is not None:
            params["ContentMD5"] = content_md5_b64
        return self._presign("put_object", params, DOWNLOAD_URL_SECONDS)

    def presign_upload_part(self, key: str, upload_id: str, part_number: int) -> str:
        params = {"Key": key, "UploadId": upload_id, "PartNumber": part_number}
        return self._presign("upload_part", params, UPLOAD_PART_URL_SECONDS)

    def presign_complete_multipart(self, key: str, upload_id: str) -> str:
        """The URL a client POSTs the CompleteMultipartUpload XML to."""
        params = {"Key": key, "UploadId": upload_id}
        return self._presign("complete_multipart_upload", params, UPLOAD_PART_URL_SECONDS)

    # -- writes -----------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        return _unquote_etag(response["ETag"])

    def put_file(self, key: str, path: Path, *, part_size: int | None = None) -> str:
        """Upload a local file; in parts of `part_size` bytes when given (ETag `md5-N`), several
        parts at a time."""
        if part_size is None:
            with open(path, "rb") as body:
                response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            return _unquote_etag(response["ETag"])
        if part_size < 1:
            raise ValueError(f"part_size must be positive, got {part_size}")
        size = path.stat().st_size
        offsets = list(range(0, size, part_size)) or [0]  # an empty file is one empty part
        upload_id = self.create_multipart(key)
        try:
            with open(path, "rb") as source, ThreadPoolExecutor(_PART_THREADS) as pool:

                def upload(number: int) -> tuple[int, str]:
                    offset = offsets[number - 1]
                    data = os.pread(source.fileno(), min(part_size, size - offset), offset)
                    return number, self._upload_part(key, upload_id, number, data)

                parts = list(pool.map(upload, range(1, len(offsets) + 1)))
            return self.complete_multipart(key, upload_id, parts)
        except BaseException:
            self.abort_multipart(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        response = self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return _unquote_etag(response["ETag"])

    def create_multipart(self, key: str) -> str:
        response = self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType="application/octet-stream"
        )
        return response["UploadId"]

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
        ordered = sorted(parts)
        response = self._s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": f'"{_unquote_etag(e)}"'} for n, e in ordered]
            },
        )
        return _unquote_etag(response["ETag"])

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError:
            pass  # already completed or aborted

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [head.key for head in self.iter_objects(prefix)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            self._s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )

    def set_private(self, key_or_prefix: str, private: bool) -> None:
        self.private_keys.set(key_or_prefix, private)

    def is_private(self, key: str) -> bool:
        return self.private_keys.is_private(key)

    # -- reads ------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectHead | None:
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return ObjectHead(
            key=key,
            size=int(response["ContentLength"]),
            etag=_unquote_etag(response["ETag"]),
            last_modified=_utc(response["LastModified"]),
        )

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """Bytes `start..end` (inclusive, like an HTTP Range) or the whole object."""
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        response = self._s3.get_object(Bucket=self.bucket, Key=key, **extra)
        with response["Body"] as body:
            return body.read()

    def list(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> tuple[list[ObjectHead], bool]:
        """Up to `limit` (at most 1000) objects under `prefix` after key `start_after`, in
        bytewise key order, and whether more follow."""
        params: dict[str, object] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": max(0, min(limit, 1000)),
        }
        if start_after:
            params["StartAfter"] = start_after
        response = self._s3.list_objects_v2(**params)
        heads = [
            ObjectHead(
                key=item["Key"],
                size=int(item["Size"]),
                etag=_unquote_etag(item["ETag"]),
                last_modified=_utc(item["LastModified"]),
            )
            for item in response.get("Contents", [])
        ]
        return heads, bool(response.get("IsTruncated"))

    def iter_objects(self, prefix: str) -> Iterator[ObjectHead]:
        """Every object under `prefix`, page by page."""
        after = ""
        while True:
            heads, truncated = self.list(prefix, start_after=after)
            yield from heads
            if not truncated or not heads:
                return
            after = heads[-1].key


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _attachment(filename: str) -> str:
    """A Content-Disposition naming the download, ASCII-safe as RFC 6266 asks."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
    if ascii_name == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
