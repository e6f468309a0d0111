"""The request object handlers see, endpoint declaration, and DRF-like parsing rules."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse, Response

from dandifs.localarchive.auth import User
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.problems import ApiError, detail, fields
from dandifs.localarchive.services.access import require_writer

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TRUE = {"true", "True", "TRUE", "1", "yes", "Yes", "YES", "on", "On", "ON", "t", "T", "y", "Y"}
_FALSE = {"false", "False", "FALSE", "0", "no", "No", "NO", "off", "Off", "OFF", "f", "F", "n",
          "N"}


@dataclass
class Call:
    """One request, read completely, as the synchronous handlers see it."""

    ctx: ArchiveContext
    method: str
    url: str
    query: QueryParams
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    user: User | None = None
    _json: Any = field(default=None, repr=False)

    @property
    def query_dict(self) -> dict[str, str]:
        return dict(self.query)

    def json(self) -> Any:
        """The JSON body (an empty body reads as `{}`, as DRF's request.data does)."""
        if self._json is None:
            if not self.body.strip():
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.body)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise detail(400, f"JSON parse error - {exc}") from None
        return self._json

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise fields(
                400, non_field_errors=f"Invalid data. Expected a dictionary, but got {kind}."
            )
        return data

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise fields(400, **{name: "Must be a valid boolean."})

    @property
    def writer(self) -> User:
        return require_writer(self.user)


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Endpoint:
    """A URL pattern and its handlers by method.

    Unsafe methods need an approved user unless `open_writes` (the reference's
    IsAuthenticatedOrReadOnly default); that check comes before the method check, as DRF's does.
    """

    pattern: str
    handlers: dict[str, Handler]
    open_writes: bool = False
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern + r"\Z"))

    def allowed(self) -> str:
        methods = set(self.handlers) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    def serve(self, call: Call) -> Response:
        method = "GET" if call.method == "HEAD" and "HEAD" not in self.handlers else call.method
        if call.method not in SAFE_METHODS and not self.open_writes:
            require_writer(call.user)
        handler = self.handlers.get(method)
        if handler is None:
            raise ApiError(405, {"detail": f'Method "{call.method}" not allowed.'},
                           headers={"Allow": self.allowed()})
        return handler(call)


def endpoint(pattern: str, *, open_writes: bool = False, **handlers: Handler) -> Endpoint:
    return Endpoint(pattern, handlers, open_writes)


# --- responses -----------------------------------------------------------------------------


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def no_content(status: int = 204) -> Response:
    return Response(status_code=status)


def redirect(location: str, status: int = 302) -> Response:
    """An empty-bodied redirect, typed `text/html` as Django's are."""
    return Response(status_code=status, headers={"Location": location},
                    media_type="text/html; charset=utf-8")


def error_response(error: ApiError) -> Response:
    if error.body is None:
        return Response(b"", status_code=error.status, headers=error.headers,
                        media_type="text/html; charset=utf-8")
    return JSONResponse(error.body, status_code=error.status, headers=error.headers)


# --- request-body rules ---------------------------------------------------------------------

DANDISET_ID = re.compile(r"\d{6}")


def require_fields(data: dict[str, Any], *names: str) -> None:
    missing = {name: "This field is required." for name in names if data.get(name) is None}
    if missing:
        raise fields(400, **missing)


def dandiset_field(value: Any) -> str:
    """The serializers' dandiset identifier: a 6-digit string or an int 0..999999."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 999999:
        return f"{value:06d}"
    if isinstance(value, str) and DANDISET_ID.fullmatch(value):
        return value
    raise fields(400, dandiset="A valid Dandiset identifier is required.")


def integer_field(data: dict[str, Any], name: str, minimum: int | None = None) -> int:
    value = data.get(name)
    if value is None:
        raise fields(400, **{name: "This field is required."})
    try:
        number = int(value)
        if isinstance(value, float) and value != number or isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise fields(400, **{name: "A valid integer is required."}) from None
    if minimum is not None and number < minimum:
        raise fields(400, **{name: f"Ensure this value is greater than or equal to {minimum}."})
    return number
