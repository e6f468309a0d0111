"""How a file's bytes reach the client: a redirect to where they live, or streamed through.

Redirecting keeps this server out of the data path: S3 serves the bytes, Range requests
and all.  Some clients cannot follow a redirect to another host: the neon-based ones
(davfs2 with its default `follow_redirect 0`, cadaver, litmus) turn a 307 into an error or
an empty file, so they are always served through the block reader instead.
"""

from __future__ import annotations

from enum import Enum

from dandifs.core import Entry

# User-Agent fragments of clients that cannot follow a cross-host redirect on GET.
NON_REDIRECTING_AGENTS = ("neon/", "davfs2/", "cadaver/", "litmus/")


class RedirectMode(str, Enum):
    """`--redirect`: where a file GET points the client."""

    S3 = "s3"  # straight to the object in S3: one hop, no token involved
    API = "api"  # to the archive's download URL (which redirects to S3 itself)
    STREAM = "stream"  # never redirect: bytes flow through this server


def follows_redirects(user_agent: str) -> bool:
    agent = user_agent.lower()
    return not any(fragment in agent for fragment in NON_REDIRECTING_AGENTS)


def redirect_target(entry: Entry, mode: RedirectMode, api_url: str) -> str | None:
    """The URL to send the client to, or None when the bytes must be streamed.

    `dandiset.yaml` has no remote copy, so it is streamed.  Embargoed content lives behind
    the archive's download URL, which needs the caller's token: the provider resolves that
    URL itself (`needs_token`) and sends the client to the presigned S3 URL it leads to,
    so the token never leaves this server.
    """
    if mode is RedirectMode.STREAM or entry.content_url is None:
        return None
    if mode is RedirectMode.API and entry.asset_id is not None and entry.zarr_id is None:
        return f"{api_url.rstrip('/')}/assets/{entry.asset_id}/download/"
    return entry.content_url


def choose_target(entry: Entry, mode: RedirectMode, api_url: str, user_agent: str) -> str | None:
    """`redirect_target`, except that clients that cannot follow a redirect get the bytes."""
    if not follows_redirects(user_agent):
        return None
    return redirect_target(entry, mode, api_url)


def needs_token(entry: Entry) -> bool:
    """True when the redirect target must first be resolved with the caller's token."""
    return entry.embargoed
