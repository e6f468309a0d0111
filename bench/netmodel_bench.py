"""Calibration of the local archive's network model (`--rtt-ms`) with plain http.client.

At an RTT of R, the model should give: a 1 KiB GET on a reused connection ~1 R; on a new one
2 R (TCP set-up), 3 R with TLS 1.3, 4 R with TLS 1.2; 8 MiB on a cold connection the 10
rounds of slow start from 10 segments (~10 R); on a warm one (window at its 4 MiB maximum)
2 rounds (~2 R). Each case is timed on the client and its rounds counted at the proxy.

    ./dev bench netmodel_bench -- --rtt 30 --repeat 5
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import time
from collections.abc import Callable

import httpx

from bench._localarchive import running_archive
from bench._table import Series, render

SMALL, LARGE = 1024, 8 << 20


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="netmodel_bench")
    parser.add_argument("--rtt", type=float, default=30.0, help="RTT in ms (default 30)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    series: list[Series] = []
    for label, extra in (("http", []), ("https TLS 1.3", ["--tls"]),
                         ("https TLS 1.2", ["--tls", "--tls-version", "1.2"])):
        with running_archive("none", None, "--rtt-ms", str(args.rtt), *extra) as archive:
            series += _measure(archive.ready, label, args.rtt / 1000, args.repeat,
                               both_sizes=label == "http")
    print(render(series, unit="RTT"))
    return 0


def _measure(ready: dict, label: str, rtt: float, repeat: int, *, both_sizes: bool) -> list[Series]:
    ca = ready["ca_file"]
    verify = ssl.create_default_context(cafile=ca) if ca else True
    bucket = "dandi-dandisets"
    for name, size in (("small", SMALL), ("large", LARGE)):
        httpx.put(f"{ready['s3_direct_url']}/{bucket}/calibration/{name}",
                  content=os.urandom(size)).raise_for_status()
    proxy = ready["s3_proxy_url"]
    host, port = proxy.rsplit("//", 1)[1].rsplit(":", 1)

    def connect() -> http.client.HTTPConnection:
        if ca:
            return http.client.HTTPSConnection(host, int(port), timeout=60, context=verify)
        return http.client.HTTPConnection(host, int(port), timeout=60)

    def rounds() -> int:
        return httpx.get(f"{proxy}/__dandifs__/stats", verify=verify).json()["rounds_sent"]

    def get(connection: http.client.HTTPConnection, name: str) -> float:
        started = time.monotonic()
        connection.request("GET", f"/{bucket}/calibration/{name}")
        response = connection.getresponse()
        response.read()
        return (time.monotonic() - started) / rtt

    cases: dict[str, Callable[[], tuple[float, int]]] = {}

    def counted(run: Callable[[], float]) -> tuple[float, int]:
        before = rounds()
        value = run()
        return value, rounds() - before

    def on_new(name: str) -> Callable[[], tuple[float, int]]:
        def run() -> float:
            connection = connect()
            started = time.monotonic()
            try:
                get(connection, name)
                return (time.monotonic() - started) / rtt
            finally:
                connection.close()
        return lambda: counted(run)

    def on_warm(name: str, warm_with: str) -> Callable[[], tuple[float, int]]:
        """`name` right after `warm_with` on the same connection; the rounds are of both."""
        def run() -> float:
            connection = connect()
            try:
                get(connection, warm_with)
                return get(connection, name)
            finally:
                connection.close()
        return lambda: counted(run)

    cases[f"1 KiB, new connection ({label})"] = on_new("small")
    if both_sizes:
        cases["1 KiB, reused connection"] = on_warm("small", "small")
        cases["8 MiB, new (cold) connection"] = on_new("large")
        cases["8 MiB, warm connection"] = on_warm("large", "large")
    result = []
    for case, run in cases.items():
        s = Series(case, label)
        counts = set()
        for _ in range(repeat):
            value, count = run()
            s.values.append(value)
            counts.add(count)
        warm = "" if "new" in case else " (with the warm-up GET)"
        s.note = f"rounds {'/'.join(map(str, sorted(counts)))}{warm}"
        result.append(s)
    return result

