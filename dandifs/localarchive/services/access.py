"""Who may see and change a dandiset: lookups with the reference's refusal order."""

from __future__ import annotations

from dandifs.localarchive.auth import User
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.problems import (
    ApiError,
    detail,
    guardian_forbidden,
    no_credentials,
    not_found,
    NO_PERMISSION,
)


def dandiset_row(ctx: ArchiveContext, identifier: str | int) -> Row | None:
    try:
        number = int(identifier)
    except (TypeError, ValueError):
        return None
    return ctx.db.one("SELECT * FROM dandisets WHERE id = ?", (number,))


def require_dandiset(ctx: ArchiveContext, identifier: str | int) -> Row:
    row = dandiset_row(ctx, identifier)
    if row is None:
        raise not_found()
    return row


def is_owner(ctx: ArchiveContext, dandiset_id: int, user: User | None) -> bool:
    if user is None:
        return False
    if user.admin:
        return True
    return (
        ctx.db.one(
            "SELECT 1 FROM owners WHERE dandiset_id = ? AND user_id = ?", (dandiset_id, user.id)
        )
        is not None
    )


def visible(ctx: ArchiveContext, dandiset: Row, user: User | None) -> bool:
    return dandiset["embargo_status"] == "OPEN" or is_owner(ctx, dandiset["id"], user)


def require_readable(ctx: ArchiveContext, identifier: str, user: User | None) -> Row:
    """A dandiset the caller may read: 404 if missing, 401/403 if embargoed and not theirs."""
    dandiset = require_dandiset(ctx, identifier)
    if dandiset["embargo_status"] != "OPEN":
        if user is None:
            raise no_credentials()
        if not is_owner(ctx, dandiset["id"], user):
            raise detail(403, NO_PERMISSION)
    return dandiset


def require_owner(ctx: ArchiveContext, identifier: str, user: User | None) -> Row:
    """The owner-decorator check: 404 if missing, 403 with an empty body if not an owner."""
    dandiset = require_dandiset(ctx, identifier)
    if not is_owner(ctx, dandiset["id"], user):
        raise guardian_forbidden()
    return dandiset


def require_writer(user: User | None) -> User:
    """The global rule for unsafe methods: authenticated (401) and approved (403)."""
    if user is None:
        raise no_credentials()
    if not user.approved:
        raise detail(403, NO_PERMISSION)
    return user


def refuse_during_unembargo(dandiset: Row) -> None:
    if dandiset["embargo_status"] == "UNEMBARGOING":
        raise ApiError(400, "Dandiset modification not allowed during unembargo")


def require_version(ctx: ArchiveContext, dandiset: Row, version: str) -> Row:
    row = ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? AND version = ?", (dandiset["id"], version)
    )
    if row is None:
        raise not_found()
    return row


def draft_of(ctx: ArchiveContext, dandiset_id: int) -> Row:
    return ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? AND version = 'draft'", (dandiset_id,)
    )
