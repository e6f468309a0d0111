"""HTTP-level refusals with the exact bodies the real archive sends.

The reference server mixes four error body shapes (see dandi-api.md §2.4); each
constructor here names one of them so that call sites read like the reference.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal: status, JSON body (or None for an empty body) and extra headers."""

    def __init__(
        self, status: int, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def detail(status: int, message: str, **headers: str) -> ApiError:
    """DRF's standard `{"detail": ...}` body."""
    return ApiError(status, {"detail": message}, headers=headers)


def message(status: int, text: str, **headers: str) -> ApiError:
    """A bare JSON string, as the reference's service-layer errors produce."""
    return ApiError(status, text, headers=headers)


def fields(status: int = 400, **errors: str | list[str]) -> ApiError:
    """A serializer validation error: `{"field": ["msg", ...]}`."""
    body = {k: v if isinstance(v, list) else [v] for k, v in errors.items()}
    return ApiError(status, body)


def listing(status: int, text: str) -> ApiError:
    """A bare list `["msg"]` (a view raising ValidationError with a plain string)."""
    return ApiError(status, [text])


def guardian_forbidden() -> ApiError:
    """The owner decorator's refusal: 403 with an empty body."""
    return ApiError(403, None)


NOT_FOUND = "Not found."
NO_PERMISSION = "You do not have permission to perform this action."
NO_CREDENTIALS = "Authentication credentials were not provided."
DRAFT_ONLY = "Only draft versions can be modified."


def not_found() -> ApiError:
    return detail(404, NOT_FOUND)


def no_credentials() -> ApiError:
    return detail(401, NO_CREDENTIALS, **{"WWW-Authenticate": 'Bearer realm="api"'})


def forbidden() -> ApiError:
    return detail(403, NO_PERMISSION)
