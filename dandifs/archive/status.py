"""HTTP answers to domain errors: the archive layer's one translation table.

Retryable statuses never reach this table while retries remain (see `retry.py`); what
arrives here is a final answer.  Messages quote what the server said, because the archive's
error bodies (bare strings, `{"detail": ...}`, field lists) are usually the most useful
thing a person can read.
"""

from __future__ import annotations

import json

import httpx

from dandifs import errors

MAX_QUOTED_BODY = 500


def server_message(response: httpx.Response) -> str:
    """The gist of an error body: `detail`, a bare JSON string, a field list, or the text."""
    text = response.text.strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    if isinstance(body, (dict, list)):
        return json.dumps(body)[:MAX_QUOTED_BODY]
    if text.startswith("<") or not text:
        return response.reason_phrase or f"HTTP {response.status_code}"
    return text[:MAX_QUOTED_BODY]


def error_for(response: httpx.Response, *, what: str, authenticated: bool) -> errors.DandiFSError:
    """The domain exception for a final non-success answer to `what` (e.g. "GET <url>")."""
    status = response.status_code
    said = server_message(response)
    if status == 404:
        return errors.NotFound(f"{what}: not found ({said})")
    if status == 401 and authenticated:
        return errors.InvalidToken(
            f"{what}: the archive rejected the API token ({said}); "
            "check DANDI_API_KEY or the keyring entry"
        )
    if status == 401:
        return errors.AuthenticationRequired(
            f"{what}: the archive requires an API token ({said}); set DANDI_API_KEY"
        )
    if status == 403:
        return errors.PermissionDenied(f"{what}: permission denied ({said or 'not an owner'})")
    if status == 405:
        return errors.ReadOnly(f"{what}: refused, only drafts can be modified ({said})")
    if status == 409:
        return errors.AlreadyExists(f"{what}: conflict ({said})")
    if status == 412:
        return errors.Stale(f"{what}: the object changed on the server ({said})")
    if status >= 500:
        return errors.Unavailable(f"{what}: server error {status} ({said})")
    return errors.ArchiveRejected(
        f"{what}: the archive refused with {status} ({said})", status=status, body=response.text
    )

