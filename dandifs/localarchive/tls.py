"""A throwaway certificate authority, made at start, for serving the local archive over HTTPS.

Real DANDI is HTTPS everywhere; clients of the local archive should pay for TLS and verify
certificates as they do there. The CA's certificate is written to a file that clients are told
to trust (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, rclone's `--ca-cert`);
nothing needs verification turned off.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import trustme

TlsVersion = Literal["1.2", "1.3"]
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


def new_authority(ca_file: Path) -> trustme.CA:
    """A new CA, its certificate written to `ca_file`."""
    import trustme  # imported when used: only `--tls` needs it

    ca = trustme.CA(organization_name="dandifs local archive")
    ca.cert_pem.write_to_path(str(ca_file))
    return ca


def server_context(authority: trustme.CA, version: TlsVersion = "1.3") -> ssl.SSLContext:
    """A server context with a certificate for the loopback names issued by `authority`; TLS
    up to `version` (1.2 costs one more round trip)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*SERVER_NAMES).configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only the archive's CA."""
    return ssl.create_default_context(cafile=str(ca_file))


def trust_lines(ca_file: Path) -> list[str]:
    """How each client is told to trust `ca_file`: lines to show to the user."""
    return [
        f"export SSL_CERT_FILE={ca_file}        # dandifs, httpx, Python's ssl",
        f"export REQUESTS_CA_BUNDLE={ca_file}   # dandi-cli, requests",
        f"export CURL_CA_BUNDLE={ca_file}       # curl, s3fs-fuse (or curl --cacert)",
        f"rclone --ca-cert {ca_file} ...",
    ]
