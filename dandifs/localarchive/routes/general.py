"""Server information, tokens and the current user."""

from __future__ import annotations

import secrets

from dandischema.conf import get_instance_config
from dandischema.consts import ALLOWED_INPUT_SCHEMAS, DANDI_SCHEMA_VERSION
from starlette.responses import Response

from dandifs.localarchive.problems import no_credentials, not_found
from dandifs.localarchive.routes.common import Call, endpoint, ok

SERVER_VERSION = "0.1.0"
# dandi-cli refuses to run when its version is below this; the local archive accepts all.
CLI_MINIMAL_VERSION = "0.60.0"


def info(call: Call) -> Response:
    settings = call.ctx.settings
    licenses = sorted(lic.value for lic in get_instance_config().licenses)
    return ok(
        {
            "instance_config": {
                "instance_name": settings.instance_name,
                "instance_identifier": settings.instance_identifier,
                "instance_url": settings.webui_url + "/",
                "doi_prefix": settings.doi_prefix,
                "licenses": licenses,
            },
            "schema_version": DANDI_SCHEMA_VERSION,
            "schema_url": f"{settings.api_url}/schemas/?model=Dandiset",
            "allowed_schema_versions": list(ALLOWED_INPUT_SCHEMAS),
            "version": SERVER_VERSION,
            "services": {
                "api": {"url": settings.api_url},
                "webui": {"url": settings.webui_url},
                "jupyterhub": {"url": "https://hub.dandiarchive.org/"},
            },
            "cli-minimal-version": CLI_MINIMAL_VERSION,
            "cli-requires-python": ">=3.10",
            "cli-bad-versions": [],
        }
    )


def token(call: Call) -> Response:
    user = call.writer
    key = call.ctx.db.scalar("SELECT token FROM users WHERE id = ?", (user.id,))
    if not key:
        raise not_found()
    return ok(key)


def new_token(call: Call) -> Response:
    """POST /auth/token/: replace the caller's key with a new one."""
    user = call.writer
    key = secrets.token_hex(20)
    with call.ctx.db.tx() as conn:
        conn.execute("UPDATE users SET token = ? WHERE id = ?", (key, user.id))
    return ok(key)


def me(call: Call) -> Response:
    if call.user is None:
        raise no_credentials()
    user = call.user
    return ok({"username": user.username, "name": user.full_name, "admin": user.admin,
               "status": user.status})


def stats(call: Call) -> Response:
    db = call.ctx.db
    return ok(
        {
            "dandiset_count": db.scalar("SELECT COUNT(*) FROM dandisets"),
            "published_dandiset_count": db.scalar(
                "SELECT COUNT(DISTINCT dandiset_id) FROM versions WHERE version != 'draft'"
            ),
            "user_count": db.scalar("SELECT COUNT(*) FROM users"),
            "size": db.scalar("SELECT COALESCE(SUM(size), 0) FROM blobs")
            + db.scalar("SELECT COALESCE(SUM(size), 0) FROM zarrs"),
        }
    )


ENDPOINTS = [
    endpoint("/api/info/", GET=info),
    endpoint("/api/auth/token/", GET=token, POST=new_token),
    endpoint("/api/users/me/", GET=me),
    endpoint("/api/stats/", GET=stats),
]
