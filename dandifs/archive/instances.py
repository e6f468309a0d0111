"""Which archive to talk to: dandi-cli's instance names, or an API URL given directly.

An instance is named the way dandi-cli names it (`dandi`, `dandi-sandbox`, ...) so that the
same token environment variables and keyring entries work for both tools.  A URL that is not
one of the known API URLs becomes an unnamed instance, which dandi-cli calls by its API
URL's `host[:port]`: its token is `<HOST:PORT>_API_KEY` (then `DANDI_API_KEY`) or the
keyring entry `dandi-api-<host:port>`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dandifs.errors import DandiFSError

DEFAULT_INSTANCE = "dandi"


class UnknownInstance(DandiFSError):
    """The name is neither a known instance nor an http(s) URL."""


@dataclass(frozen=True)
class Instance:
    """An archive deployment: its dandi-cli name (None for a bare URL) and its API base URL.

    `api_url` always ends in `/api` with no trailing slash, so endpoint paths are appended as
    `f"{api_url}/dandisets/"`.
    """

    name: str | None
    api_url: str
    web_url: str | None = None

    @property
    def origin(self) -> str:
        """`scheme://host[:port]` of the API: the only place a token is ever sent."""
        return origin_of(self.api_url)

    @property
    def cli_name(self) -> str:
        """What dandi-cli calls this instance: its name, or for a bare URL the API URL's
        host with its port when one is written (`127.0.0.1:8443`, `[::1]:8443`)."""
        if self.name is not None:
            return self.name
        parts = urlsplit(self.api_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return host if parts.port is None else f"{host}:{parts.port}"

    @property
    def token_env_var(self) -> str:
        """The environment variable dandi-cli reads this instance's token from."""
        return self.cli_name.upper().replace("-", "_") + "_API_KEY"

    @property
    def token_env_vars(self) -> tuple[str, ...]:
        """Where dandifs looks for the token, in order: dandi-cli's variable, and for a
        bare URL also `DANDI_API_KEY`, which earlier dandifs releases read."""
        if self.name is None:
            return (self.token_env_var, "DANDI_API_KEY")
        return (self.token_env_var,)

    @property
    def keyring_service(self) -> str:
        """dandi-cli's keyring service for this instance (user `key`)."""
        return f"dandi-api-{self.cli_name}"


def _docker_host() -> str:
    return os.environ.get("DANDI_INSTANCEHOST", "localhost")


def known_instances() -> dict[str, Instance]:
    """dandi-cli's built-in instances (its `dandi/consts.py`), by name."""
    host = _docker_host()
    table = {
        "dandi": ("https://api.dandiarchive.org/api", "https://dandiarchive.org"),
        "dandi-sandbox": (
            "https://api.sandbox.dandiarchive.org/api",
            "https://sandbox.dandiarchive.org",
        ),
        "dandi-api-local-docker-tests": (f"http://{host}:8000/api", f"http://{host}:8085"),
        "linc": ("https://api.lincbrain.org/api", "https://lincbrain.org"),
        "linc-staging": ("https://staging-api.lincbrain.org/api", "https://staging.lincbrain.org"),
        "ember-dandi": (
            "https://api-dandi.emberarchive.org/api",
            "https://dandi.emberarchive.org",
        ),
        "ember-dandi-sandbox": (
            "https://api-dandi.sandbox.emberarchive.org/api",
            "https://dandi.sandbox.emberarchive.org",
        ),
    }
    return {name: Instance(name, api, web) for name, (api, web) in table.items()}


#: Where known instances serve object bytes from (their public buckets), by instance name.
OBJECT_ORIGINS = {"dandi": ("https://dandiarchive.s3.amazonaws.com",)}


def object_origins(instance: Instance) -> tuple[str, ...]:
    """The origins `instance` is known to serve bytes from before it says so (may be none)."""
    return OBJECT_ORIGINS.get(instance.name or "", ())


def origin_of(url: str) -> str:
    """`scheme://host[:port]`, lower-cased, default ports dropped: what "same host" means."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_api_url(url: str) -> str:
    """Drop query, fragment and trailing slashes, and make the path end in `/api`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise UnknownInstance(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/api"):
        path += "/api"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def resolve_instance(name_or_url: str | None = None) -> Instance:
    """An instance from a dandi-cli name or an API URL (default: `$DANDI_INSTANCE` or `dandi`).

    A URL of a known instance (its API URL, or its web UI such as `https://dandiarchive.org`)
    gives that instance, so its token is found where dandi-cli keeps it.
    """
    value = (name_or_url or os.environ.get("DANDI_INSTANCE") or DEFAULT_INSTANCE).strip()
    known = known_instances()
    if value in known:
        return known[value]
    if "://" not in value:
        if value == "dandi-staging":
            raise UnknownInstance("the instance 'dandi-staging' was renamed 'dandi-sandbox'")
        names = ", ".join(sorted(known))
        raise UnknownInstance(f"unknown instance {value!r}: use one of {names}, or an API URL")
    api_url = normalize_api_url(value)
    for instance in known.values():
        web = instance.web_url and origin_of(instance.web_url)
        if instance.api_url == api_url or (web == origin_of(value) and web != instance.origin):
            return instance
    return Instance(None, api_url)


def apply_server_info(instance: Instance, info: dict[str, Any]) -> Instance:
    """The instance as the server describes itself in `/info/` (`services.api.url`).

    dandi-cli trusts the advertised URLs the same way; a server that advertises nothing
    usable leaves the instance unchanged.
    """
    services = info.get("services") or {}
    api = (services.get("api") or {}).get("url")
    web = (services.get("webui") or {}).get("url") or instance.web_url
    try:
        api_url = normalize_api_url(api) if isinstance(api, str) else instance.api_url
    except UnknownInstance:
        api_url = instance.api_url
    return Instance(instance.name, api_url, web)
