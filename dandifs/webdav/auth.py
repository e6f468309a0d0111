"""Who is asking: the caller's DANDI API token, from Basic or Bearer credentials.

Any DAV client can send the token as a Basic-auth password (the user name is ignored);
scripts may send `Authorization: Bearer <token>` (or dandi-cli's `token <token>`).  No
credentials means anonymous access to public data.  Credentials the archive rejects are
answered with 401 and a Basic challenge, never silently downgraded to anonymous: a user
who typed a wrong token should be told so.  The token stays on this server's side: it is
used for archive API requests only, and never forwarded to S3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from dandifs.webdav.errors import BASIC_CHALLENGE

TOKEN_KEY = "dandifs.token"
TOKEN_SCHEMES = {"bearer", "token"}


class MalformedCredentials(ValueError):
    """The Authorization header cannot be read."""


def token_from_authorization(header: str) -> str | None:
    """The API token in an Authorization header value; None when the header is blank."""
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if not scheme:
        return None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MalformedCredentials("Basic credentials are not valid base64 UTF-8") from exc
        _, separator, password = decoded.partition(":")
        if not separator or not password:
            raise MalformedCredentials("give your DANDI API token as the password")
        return password
    if scheme.lower() in TOKEN_SCHEMES and credentials:
        return credentials
    raise MalformedCredentials(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")


def caller_label(token: str | None) -> str:
    """How the access log names a caller without writing the token down."""
    if token is None:
        return "(anonymous)"
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]


class TokenAuthenticator(BaseMiddleware):
    """Puts the caller's validated token (or None) into `environ["dandifs.token"]`.

    Validation is the provider's job (`provider.token_is_valid`), because only the core
    can ask the archive, and it caches the answer.
    """

    def __call__(self, environ, start_response):
        environ[TOKEN_KEY] = None
        header = environ.get("HTTP_AUTHORIZATION", "")
        try:
            token = token_from_authorization(header)
        except MalformedCredentials as exc:
            raise DAVError(401, context_info=str(exc), add_headers=[BASIC_CHALLENGE]) from None
        if token is not None:
            provider = environ.get("wsgidav.provider")
            if provider is None or not provider.token_is_valid(token):
                raise DAVError(
                    401,
                    context_info="the archive rejected this API token",
                    add_headers=[BASIC_CHALLENGE],
                )
            environ[TOKEN_KEY] = token
        environ["wsgidav.auth.user_name"] = caller_label(token)
        return self.next_app(environ, start_response)
