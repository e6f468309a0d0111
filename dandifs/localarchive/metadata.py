"""Version and asset metadata as the real archive stores, completes and validates it.

The archive strips the fields it computes from whatever a client sends, stores the rest, and
re-injects its own values on every read or save (dandi-api.md §6).  Validation is dandischema's:
a draft is publishable when its metadata validates as a `PublishedDandiset` with placeholder
publication fields; an asset when its metadata validates as a `PublishedAsset`.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from dandischema.consts import DANDI_SCHEMA_VERSION
from dandischema.exceptions import JsonschemaValidationError, PydanticValidationError
from dandischema.metadata import aggregate_assets_summary, validate

from dandifs.localarchive.settings import ArchiveSettings
from dandifs.localarchive.timestamps import metadata_time, utcnow

SCHEMA_VERSION = DANDI_SCHEMA_VERSION

VERSION_COMPUTED_KEYS = (
    "name",
    "identifier",
    "version",
    "id",
    "url",
    "assetsSummary",
    "citation",
    "doi",
    "dateCreated",
    "datePublished",
    "publishedBy",
    "manifestLocation",
    "releaseNotes",
)
ASSET_COMPUTED_KEYS = (
    "id",
    "access",
    "path",
    "identifier",
    "contentUrl",
    "contentSize",
    "digest",
    "datePublished",
    "publishedBy",
)
EMPTY_SUMMARY = {"schemaKey": "AssetsSummary", "numberOfBytes": 0, "numberOfFiles": 0}


def context_url(schema_version: str) -> str:
    return (
        "https://raw.githubusercontent.com/dandi/schema/master/releases/"
        f"{schema_version}/context.json"
    )


def open_access() -> list[dict[str, Any]]:
    return [{"schemaKey": "AccessRequirements", "status": "dandi:OpenAccess"}]


def embargoed_access(until: str | None) -> list[dict[str, Any]]:
    access: dict[str, Any] = {
        "schemaKey": "AccessRequirements",
        "status": "dandi:EmbargoedAccess",
    }
    if until:
        access["embargoedUntil"] = until
    return [access]


# --- versions -------------------------------------------------------------------------------


def strip_version_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The part of a client's dandiset metadata that the archive keeps as given."""
    stripped = {k: v for k, v in copy.deepcopy(metadata).items() if k not in VERSION_COMPUTED_KEYS}
    access = stripped.get("access")
    if isinstance(access, list) and access and isinstance(access[0], dict):
        access[0].pop("schemaKey", None)
        access[0].pop("status", None)
    return stripped


def _forced_access(
    stored: dict[str, Any], embargo_status: str, embargo_end_date: str | None
) -> list[dict[str, Any]]:
    access = stored.get("access")
    first = dict(access[0]) if isinstance(access, list) and access else {}
    if not isinstance(first, dict):
        first = {}
    first["schemaKey"] = "AccessRequirements"
    first["status"] = "dandi:OpenAccess" if embargo_status == "OPEN" else "dandi:EmbargoedAccess"
    if embargo_end_date:
        first["embargoedUntil"] = embargo_end_date
    rest = access[1:] if isinstance(access, list) else []
    return [first, *rest]


def citation(metadata: dict[str, Any], version: str, url: str, year: int) -> str:
    name = str(metadata.get("name", "")).rstrip(".")
    target = f"https://doi.org/{metadata['doi']}" if metadata.get("doi") else url
    people = [
        c.get("name", "")
        for c in metadata.get("contributor") or []
        if isinstance(c, dict) and c.get("includeInCitation")
    ]
    if people:
        return (
            f"{'; '.join(people)} ({year}) {name} (Version {version}) [Data set]. "
            f"DANDI Archive. {target}"
        )
    return f"{name} ({year}). (Version {version}) [Data set]. DANDI Archive. {target}"


def version_metadata(
    settings: ArchiveSettings,
    *,
    identifier: str,
    version: str,
    name: str,
    stored: dict[str, Any],
    dandiset_created: datetime,
    embargo_status: str,
    embargo_end_date: str | None,
    manifest_url: str | None = None,
) -> dict[str, Any]:
    """Stored metadata completed with the fields the archive computes on every save."""
    metadata = copy.deepcopy(stored)
    metadata.setdefault("schemaKey", "Dandiset")
    metadata.setdefault("schemaVersion", SCHEMA_VERSION)
    url = f"{settings.webui_url}/dandiset/{identifier}/{version}"
    metadata.update(
        {
            "@context": context_url(metadata["schemaVersion"]),
            "manifestLocation": [
                manifest_url or f"{settings.api_url}/dandisets/{identifier}/versions/draft/assets/"
            ],
            "name": name,
            "identifier": f"{settings.instance_name}:{identifier}",
            "version": version,
            "id": f"{settings.instance_name}:{identifier}/{version}",
            "repository": settings.webui_url,
            "url": url,
            "dateCreated": metadata_time(dandiset_created),
            "access": _forced_access(metadata, embargo_status, embargo_end_date),
        }
    )
    metadata.setdefault("assetsSummary", dict(EMPTY_SUMMARY))
    if version != "draft" and settings.doi_prefix:
        metadata["doi"] = doi(settings, identifier, version)
    metadata["citation"] = citation(metadata, version, url, utcnow().year)
    return metadata


def doi(settings: ArchiveSettings, identifier: str, version: str) -> str:
    return f"{settings.doi_prefix}/{settings.instance_name.lower()}.{identifier}/{version}"


def publish_activity(settings: ArchiveSettings, moment: datetime) -> dict[str, Any]:
    when = metadata_time(moment)
    software: dict[str, Any] = {
        "id": uuid.uuid4().urn,
        "name": f"{settings.instance_name} API",
        "version": "0.1.0",
        "schemaKey": "Software",
    }
    if settings.instance_identifier:
        software["identifier"] = settings.instance_identifier
    return {
        "id": uuid.uuid4().urn,
        "name": "DANDI publish",
        "startDate": when,
        "endDate": when,
        "wasAssociatedWith": [software],
        "schemaKey": "PublishActivity",
    }


def contact_person(metadata: dict[str, Any]) -> str:
    for contributor in metadata.get("contributor") or []:
        if isinstance(contributor, dict) and "dcite:ContactPerson" in (
            contributor.get("roleName") or []
        ):
            return str(contributor.get("name", ""))
    return ""


# --- assets ---------------------------------------------------------------------------------


def strip_asset_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    stored = {k: v for k, v in copy.deepcopy(metadata).items() if k not in ASSET_COMPUTED_KEYS}
    stored.setdefault("schemaVersion", SCHEMA_VERSION)
    return stored


def asset_metadata(
    settings: ArchiveSettings,
    *,
    asset_id: str,
    path: str,
    stored: dict[str, Any],
    content_url: str,
    size: int,
    digest: dict[str, Any],
    access: list[dict[str, Any]],
    zarr: bool,
) -> dict[str, Any]:
    """The asset's "full metadata": stored fields plus the archive's computed ones."""
    metadata = copy.deepcopy(stored)
    metadata.update(
        {
            "id": f"dandiasset:{asset_id}",
            "access": access,
            "path": path,
            "identifier": asset_id,
            "contentUrl": [f"{settings.api_url}/assets/{asset_id}/download/", content_url],
            "contentSize": size,
            "digest": digest,
            "@context": context_url(metadata.get("schemaVersion", SCHEMA_VERSION)),
        }
    )
    if zarr:
        metadata["encodingFormat"] = "application/x-zarr"
    return metadata


# --- validation -----------------------------------------------------------------------------

ValidationErrors = list[dict[str, str]]


def _validation_errors(metadata: dict[str, Any], schema_key: str) -> ValidationErrors:
    """dandischema's verdict, formatted as the archive reports it (`field`, `message`)."""
    try:
        validate(
            metadata,
            schema_key=schema_key,
            json_validation=metadata.get("schemaVersion") == SCHEMA_VERSION,
        )
    except PydanticValidationError as exc:
        return [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors
        ]
    except JsonschemaValidationError as exc:
        return [
            {"field": ".".join(str(p) for p in err.path), "message": err.message}
            for err in exc.errors
        ]
    except ValueError as exc:
        return [{"field": "", "message": str(exc)}]
    return []


def asset_validation_errors(
    settings: ArchiveSettings, full_metadata: dict[str, Any]
) -> ValidationErrors:
    candidate = copy.deepcopy(full_metadata)
    moment = utcnow()
    candidate.setdefault("publishedBy", publish_activity(settings, moment))
    candidate.setdefault("datePublished", metadata_time(moment))
    return _validation_errors(candidate, "PublishedAsset")


def version_validation_errors(
    settings: ArchiveSettings,
    metadata: dict[str, Any],
    *,
    identifier: str,
    has_files: bool,
    has_bytes: bool,
) -> ValidationErrors:
    """Would this draft's metadata make a valid published version?"""
    candidate = copy.deepcopy(metadata)
    moment = utcnow()
    placeholder = "0.000000.0000"
    candidate["version"] = placeholder
    candidate["id"] = f"{settings.instance_name}:{identifier}/{placeholder}"
    candidate["url"] = f"{settings.webui_url}/dandiset/{identifier}/{placeholder}"
    prefix = settings.doi_prefix or "10.80507"
    candidate["doi"] = f"{prefix}/{settings.instance_name.lower()}.{identifier}/{placeholder}"
    candidate["publishedBy"] = publish_activity(settings, moment)
    candidate["datePublished"] = metadata_time(moment)
    candidate["assetsSummary"] = {
        "schemaKey": "AssetsSummary",
        "numberOfBytes": 1 if has_bytes else 0,
        "numberOfFiles": 1 if has_files else 0,
    }
    return _validation_errors(candidate, "PublishedDandiset")


def assets_summary(full_metadata: list[dict[str, Any]]) -> dict[str, Any]:
    if not full_metadata:
        return dict(EMPTY_SUMMARY)
    try:
        return aggregate_assets_summary(full_metadata)
    except Exception:  # noqa: BLE001 - the archive keeps the old summary on aggregation errors
        return {
            "schemaKey": "AssetsSummary",
            "numberOfBytes": sum(int(m.get("contentSize", 0)) for m in full_metadata),
            "numberOfFiles": len(full_metadata),
        }
