"""`dandifs serve`: the archive over WebDAV; drafts are writable with a token.

    dandifs serve [-i INSTANCE] [--host H] [--port P] [--redirect s3|api|stream] [--token T]
                  [--cache-dir D]

Callers authenticate per request (their API token as the Basic-auth password, or
`Authorization: Bearer <token>`); `--token` only sets what callers *without* credentials
see, for a personal server on a trusted machine.  Options fall back to `DANDIFS_HOST`,
`DANDIFS_PORT`, `DANDIFS_REDIRECT` and `DANDIFS_INSTANCE`/`DANDI_INSTANCE`.  The server
stops gracefully on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from dandifs.errors import DandiFSError

log = logging.getLogger("dandifs.serve")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="dandifs serve", description="Serve the DANDI Archive over WebDAV (drafts writable with a token)."
    )
    parser.add_argument(
        "-i", "--instance",
        default=env("DANDIFS_INSTANCE") or env("DANDI_INSTANCE"),
        help="dandi-cli instance name or API URL (default: dandi)",
    )
    parser.add_argument("--host", default=env("DANDIFS_HOST", "127.0.0.1"), help="address to listen on")
    parser.add_argument("--port", type=int, default=int(env("DANDIFS_PORT", "8080")), help="0 picks a free port")
    parser.add_argument(
        "--redirect", choices=("s3", "api", "stream"), default=env("DANDIFS_REDIRECT", "s3"),
        help="file GETs: redirect to S3 (default), to the archive's download URL, or stream "
        "the bytes through this server (always done for davfs2, cadaver and litmus)",
    )
    parser.add_argument(
        "--token", default=None,
        help="API token used for callers that send no credentials (a personal server)",
    )
    parser.add_argument("--threads", type=int, default=32, help="worker threads (default 32)")
    parser.add_argument(
        "--cache-dir", default=env("DANDIFS_CACHE_DIR"),
        help="cache directory whose uploads/ keeps files written into drafts until the "
        "archive has them (default: the machine's dandifs cache)",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("-d", "--debug", action="store_true", help="log every archive request")
    return parser


def configure_logging(debug: bool, quiet: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if quiet:
        logging.getLogger("dandifs.webdav.access").setLevel(logging.WARNING)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: a port is a number from 0 to 65535")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    configure_logging(args.debug, args.quiet)

    from dandifs.webdav.delivery import RedirectMode
    from dandifs.webdav.service import WebDAVService

    if args.token and not is_loopback(args.host):
        log.warning("--token with --host %s: anyone who reaches this port sees that token's data", args.host)
    service = WebDAVService(
        args.instance, redirect=RedirectMode(args.redirect), default_token=args.token,
        threads=args.threads, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    try:
        service.start(args.host, args.port)
    except DandiFSError as exc:
        service.stop()
        print(f"dandifs serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        service.stop()
        reason = exc.strerror or str(exc)
        print(f"dandifs serve: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    print(f"dandifs serve: {service.api_url} at {service.url}", flush=True)
    try:
        service.serve_forever()
    finally:
        service.stop()
    print("dandifs serve: stopped", flush=True)
    return 0
