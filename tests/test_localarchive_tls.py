"""The local archive over HTTPS (`--tls`), as real DANDI is: the clients trust its CA the
ordinary way (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, curl --cacert), nothing turns verification
off, and a client without the CA is refused. Also the API front's network model.

The session's `local_archive` is such an archive; these tests tell each client about its CA
alone, not about the session's bundle, and `plain_archive` checks that plain HTTP still is."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import httpx
import pytest
from conftest import TRUST_VARIABLES, LocalArchive, dandi_cli_env
from test_dandi_cli import dandi

from dandifs.localarchive.demodata import build_demo_data

SMALL_ASSET = "sub-mouse01/sub-mouse01_ses-20240102_behavior+ophys.nwb"


@pytest.fixture(scope="module")
def trusted_env(local_archive: LocalArchive) -> dict[str, str]:
    """dandi-cli (requests) and httpx told to trust the archive's CA, as printed at start."""
    assert local_archive.ca_file is not None
    return {
        **dandi_cli_env(local_archive),
        "REQUESTS_CA_BUNDLE": local_archive.ca_file,
        "SSL_CERT_FILE": local_archive.ca_file,
    }


@pytest.fixture
def trusting_httpx(local_archive: LocalArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_archive.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", local_archive.ca_file)


def _source(local_archive: LocalArchive, path: str) -> Path:
    data = build_demo_data(local_archive.data_dir / "demo-cache")
    [dandiset] = [d for d in data.dandisets if d.identifier == "000001"]
    return next(asset.source for asset in dandiset.draft if asset.path == path)


def test_every_url_is_https(local_archive: LocalArchive, trusting_httpx: None) -> None:
    assert local_archive.api_url.startswith("https://")
    assert local_archive.s3_url.startswith("https://")
    assert Path(local_archive.ca_file or "").read_text().startswith("-----BEGIN CERTIFICATE-----")
    info = httpx.get(f"{local_archive.api_url}/info/").json()
    assert info["services"]["api"]["url"].rstrip("/") == local_archive.api_url
    page = httpx.get(f"{local_archive.api_url}/dandisets/", params={"page_size": 1}).json()
    assert page["next"].startswith(f"{local_archive.api_url}/dandisets/?")
    assert httpx.get(f"{local_archive.api_url}/dandisets").headers["location"] == "/api/dandisets/"


def test_dandi_cli_lists_and_downloads(local_archive: LocalArchive, trusted_env: dict[str, str],
                                       tmp_path: Path) -> None:
    listed = dandi(["ls", "-r", "-f", "json_pp",
                    f"{local_archive.api_url}/dandisets/000001/versions/draft/"], trusted_env)
    assert SMALL_ASSET in listed
    dandi(["download", "-o", str(tmp_path),
           f"{local_archive.api_url}/dandisets/000001/versions/draft/assets/?path={SMALL_ASSET}"],
          trusted_env)
    [downloaded] = [p for p in tmp_path.rglob("*.nwb")]
    assert downloaded.read_bytes() == _source(local_archive, SMALL_ASSET).read_bytes()


def test_curl_fetches_the_presigned_url_of_a_download(
    local_archive: LocalArchive, trusting_httpx: None, tmp_path: Path
) -> None:
    assets = httpx.get(f"{local_archive.api_url}/dandisets/000001/versions/draft/assets/",
                       params={"path": SMALL_ASSET}).json()["results"]
    redirect = httpx.get(f"{local_archive.api_url}/assets/{assets[0]['asset_id']}/download/")
    assert redirect.status_code == 302
    presigned = redirect.headers["location"]
    assert presigned.startswith(f"{local_archive.s3_url}/") and "X-Amz-Signature=" in presigned
    out = tmp_path / "asset.nwb"
    fetched = subprocess.run(
        ["curl", "-sSf", "--cacert", str(local_archive.ca_file), "-o", str(out), presigned],
        capture_output=True, text=True, timeout=120,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes() == _source(local_archive, SMALL_ASSET).read_bytes()


def test_clients_without_the_ca_are_refused(local_archive: LocalArchive) -> None:
    for url in (f"{local_archive.api_url}/info/", f"{local_archive.s3_url}/"):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            # the public roots only (a default context would read SSL_CERT_FILE: the bundle)
            httpx.get(url, verify=ssl.create_default_context(cafile=certifi.where()))
        untrusting = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}
        refused = subprocess.run(["curl", "-sS", "-o", os.devnull, url], capture_output=True,
                                 text=True, timeout=60, env=untrusting)
        assert refused.returncode == 60, refused.stderr  # "peer certificate cannot be verified"


def test_api_front_models_the_network(local_archive: LocalArchive) -> None:
    """Each new connection pays TCP set-up and a TLS 1.3 handshake; kept-alive requests pay
    one round trip each, and bodies go in rounds of the window."""
    local_archive.api_network(rtt_ms=10)
    try:
        local_archive.api_stats(reset=True)
        host, port = urlsplit(local_archive.api_url).hostname, urlsplit(local_archive.api_url).port
        context = ssl.create_default_context(cafile=local_archive.ca_file)
        for _ in range(2):
            connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
            try:
                for _ in range(3):
                    connection.request("GET", "/api/dandisets/?page_size=100")
                    response = connection.getresponse()
                    assert response.status == 200
                    body = response.read()
            finally:
                connection.close()
        stats = local_archive.api_stats()
        assert (stats["connections"], stats["handshakes"], stats["total_requests"]) == (2, 2, 6)
        assert len(body) < 14_480 and stats["rounds_sent"] == 6  # one round each
        refused = httpx.put(f"{local_archive.api_front_url}/__dandifs__/faults",
                            json={"error_rate": 0.5}, verify=local_archive.verify)
        assert refused.status_code == 400 and "error_rate" in refused.json()["detail"]
    finally:
        local_archive.api_network()


def test_the_plain_archive_is_plain_http(plain_archive: LocalArchive) -> None:
    """The plain archive's URLs, and those it writes, say http; it needs no CA."""
    assert plain_archive.ca_file is None
    assert plain_archive.api_url.startswith("http://")
    assert plain_archive.s3_url.startswith("http://")
    assets = httpx.get(f"{plain_archive.api_url}/dandisets/000001/versions/draft/assets/",
                       params={"path": SMALL_ASSET}).json()["results"]
    redirect = httpx.get(f"{plain_archive.api_url}/assets/{assets[0]['asset_id']}/download/")
    assert redirect.headers["location"].startswith(f"{plain_archive.s3_url}/")
    assert httpx.get(redirect.headers["location"]).content == (
        _source(plain_archive, SMALL_ASSET).read_bytes())
