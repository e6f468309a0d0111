"""Where the API token comes from, and where it may go.

The lookup order is dandi-cli's, so a user who has run `dandi upload` once needs no extra
set-up: an explicit token, then `<INSTANCE>_API_KEY`, then the keyring entry
`dandi-api-<instance>` / `key`.  An instance given as a bare URL is named as dandi-cli names
it, `host:port` (its variable `<HOST:PORT>_API_KEY`, then `DANDI_API_KEY`).
The token is a credential for the API host only; `TokenPolicy` decides per request URL,
so neither S3 nor the target of a cross-host redirect ever sees it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from dandifs.archive.instances import Instance, origin_of

log = logging.getLogger(__name__)

KEYRING_USERNAME = "key"


def token_from_keyring(service: str) -> str | None:
    """The keyring's password for (`service`, "key"); None if absent or the backend fails.

    A broken or locked keyring backend must not stop read-only use, so every failure
    is logged and treated as "no token".
    """
    try:
        import keyring

        return keyring.get_password(service, KEYRING_USERNAME) or None
    except Exception as exc:  # any backend may raise anything
        log.debug("keyring lookup for %s failed: %s", service, exc)
        return None


@dataclass(frozen=True)
class FoundToken:
    """An API token and where it was found, for messages when the archive refuses it."""

    value: str
    source: str


def locate_token(
    instance: Instance,
    explicit: str | None = None,
    *,
    explicit_source: str = "the token given",
    environ: Mapping[str, str] | None = None,
    use_keyring: bool = True,
) -> FoundToken | None:
    """The API token for `instance` and its source, or None for anonymous access."""
    if explicit and explicit.strip():
        return FoundToken(explicit.strip(), explicit_source)
    env = os.environ if environ is None else environ
    for variable in instance.token_env_vars:
        from_env = env.get(variable, "").strip()
        if from_env:
            return FoundToken(from_env, f"the environment variable {variable}")
    if use_keyring:
        from_keyring = token_from_keyring(instance.keyring_service)
        if from_keyring:
            return FoundToken(
                from_keyring,
                f"the keyring entry {instance.keyring_service!r} (user {KEYRING_USERNAME!r})",
            )
    return None


def find_token(
    instance: Instance,
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_keyring: bool = True,
) -> str | None:
    """The API token for `instance`, or None for anonymous access."""
    found = locate_token(instance, explicit, environ=environ, use_keyring=use_keyring)
    return found.value if found else None


@dataclass(frozen=True)
class TokenPolicy:
    """Adds `Authorization: token <key>` to requests for the API origin, and to nothing else."""

    token: str | None
    api_origin: str

    @classmethod
    def for_instance(cls, instance: Instance, token: str | None) -> TokenPolicy:
        return cls(token, instance.origin)

    def headers_for(self, url: str) -> dict[str, str]:
        if self.token and origin_of(url) == self.api_origin:
            return {"Authorization": f"token {self.token}"}
        return {}

    @property
    def authenticated(self) -> bool:
        return bool(self.token)
