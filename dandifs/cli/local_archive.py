"""`dandifs local-archive`: run a DANDI-compatible archive on this machine."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from dandifs.errors import DandiFSError
from dandifs.localarchive.runner import RunnerOptions, default_data_dir, print_endpoints, run
from dandifs.localarchive.s3proxy import FaultConfig


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dandifs local-archive",
        description=(
            "Run a local DANDI-compatible archive: the REST API, its S3 (SeaweedFS) behind a "
            "proxy that can add latency and faults, and demo dandisets. Prints the API URL, "
            "the S3 URL and a demo API token; stops on Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--data", type=Path, default=None, metavar="DIR",
        help=f"data directory (default: $DANDIFS_DATA or {default_data_dir()})",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=0,
                        help="API port; 0 picks a free one (default)")
    parser.add_argument("--s3-port", type=_port, default=0,
                        help="S3 proxy port; 0 picks a free one (default)")
    parser.add_argument(
        "--seed", choices=("demo", "big", "none"), default="demo",
        help="demo dandisets to load: demo, big (demo plus a 10,000-asset folder and a 1 GiB "
        "file), or none",
    )
    parser.add_argument("--tls", action="store_true",
                        help="serve the API and S3 over HTTPS, with a certificate authority "
                        "made at start (its file is printed, and how to make clients trust it)")
    parser.add_argument("--tls-version", choices=("1.3", "1.2"), default="1.3",
                        help="highest TLS version offered (default: %(default)s); a TLS 1.2 "
                        "handshake costs two round trips under --rtt-ms, 1.3 one")
    parser.add_argument("--rtt-ms", type=_non_negative, default=0.0, metavar="MS",
                        help="network model on the API and S3: this round-trip time per "
                        "request, per new connection (plus the TLS handshake's), and between "
                        "rounds of each connection's congestion window; 0 (default) is off")
    parser.add_argument("--window-max-kib", type=_non_negative, default=4096.0, metavar="KIB",
                        help="largest congestion window of the network model (default: "
                        "%(default)s KiB)")
    parser.add_argument("--s3-latency", type=_non_negative, default=0.0, metavar="MS",
                        help="flat delay added to every S3 request, in milliseconds")
    parser.add_argument("--s3-stream-mbps", type=_non_negative, default=0.0, metavar="MB/S",
                        help="bandwidth of each S3 response body, in MB/s (10^6 bytes), as "
                        "one S3 connection has; parallel GETs each get it; 0 (default) is "
                        "unlimited")
    parser.add_argument("--s3-error-rate", type=_rate, default=0.0, metavar="F",
                        help="fraction of S3 requests answered 500/503")
    parser.add_argument("--s3-reset-rate", type=_rate, default=0.0, metavar="F",
                        help="fraction of S3 connections reset instead of answered")
    parser.add_argument("--s3-truncate-rate", type=_rate, default=0.0, metavar="F",
                        help="fraction of S3 GETs whose body is cut short")
    parser.add_argument("--s3-stall-rate", type=_rate, default=0.0, metavar="F",
                        help="fraction of S3 GETs that stop half-way for --s3-stall-seconds")
    parser.add_argument("--s3-stall-seconds", type=_non_negative, default=5.0, metavar="S",
                        help="how long a stalled S3 GET sends nothing (default: %(default)s)")
    parser.add_argument("--s3-fault-seed", type=int, default=None, metavar="N",
                        help="seed of the fault generator, for repeatable runs")
    parser.add_argument("--s3-public-url", default=None, metavar="URL",
                        help="S3 base URL put into presigned URLs (default: this proxy's own)")
    parser.add_argument("--token", default=None,
                        help="demo API token (default: one kept in the data directory)")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                        help="write the endpoints as JSON to FILE once everything answers")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log every API request")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        network = {"rtt_ms": args.rtt_ms, "window_max_kib": args.window_max_kib}
        faults = FaultConfig(
            latency_ms=args.s3_latency,
            error_rate=args.s3_error_rate,
            reset_rate=args.s3_reset_rate,
            truncate_rate=args.s3_truncate_rate,
            stall_rate=args.s3_stall_rate,
            stall_seconds=args.s3_stall_seconds,
            seed=args.s3_fault_seed,
            stream_mbps=args.s3_stream_mbps,
            **network,
        )
        api_faults = FaultConfig(**network)
    except ValueError as exc:
        parser.error(str(exc))
    if args.s3_public_url and not args.s3_public_url.startswith(("http://", "https://")):
        parser.error(f"--s3-public-url must be an http(s) URL, got {args.s3_public_url!r}")
    options = RunnerOptions(
        data_dir=args.data if args.data is not None else default_data_dir(),
        host=args.host,
        port=args.port,
        s3_port=args.s3_port,
        seed=args.seed,
        faults=faults,
        api_faults=api_faults,
        tls=args.tls,
        tls_version=args.tls_version,
        s3_public_url=args.s3_public_url,
        token=args.token,
        ready_file=args.ready_file,
        access_log=args.access_log,
    )
    try:
        asyncio.run(run(options, on_ready=print_endpoints))
    except DandiFSError as exc:
        print(f"dandifs local-archive: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a data directory that cannot be written
        print(f"dandifs local-archive: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
