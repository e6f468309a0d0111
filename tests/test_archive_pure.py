"""Pure parts of the archive layer: instances, token lookup, retry arithmetic, URL rules."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

import keyring

import pytest
from keyring.backend import KeyringBackend

from dandifs.archive.auth import TokenPolicy, find_token
from dandifs.archive.instances import (
    Instance,
    UnknownInstance,
    apply_server_info,
    normalize_api_url,
    origin_of,
    resolve_instance,
)
from dandifs.archive.objects import (
    ContentRange,
    normalize_etag,
    parse_content_range,
    signed_tagging,
)
from dandifs.archive.pagination import is_next_page_of, page_count
from dandifs.archive.presigned import PresignedTargets, presigned_expiry, redact
from dandifs.archive.retry import RetryPolicy, parse_retry_after

# -- instances --------------------------------------------------------------------------


def test_known_instance_names_resolve_to_their_api():
    assert resolve_instance("dandi").api_url == "https://api.dandiarchive.org/api"
    sandbox = resolve_instance("dandi-sandbox")
    assert sandbox.api_url == "https://api.sandbox.dandiarchive.org/api"
    assert sandbox.token_env_var == "DANDI_SANDBOX_API_KEY"
    assert sandbox.keyring_service == "dandi-api-dandi-sandbox"
    assert resolve_instance("ember-dandi").api_url == "https://api-dandi.emberarchive.org/api"


def test_default_instance_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("DANDI_INSTANCE", raising=False)
    assert resolve_instance().name == "dandi"
    monkeypatch.setenv("DANDI_INSTANCE", "linc")
    assert resolve_instance().api_url == "https://api.lincbrain.org/api"


def test_docker_instance_follows_instancehost(monkeypatch):
    monkeypatch.setenv("DANDI_INSTANCEHOST", "10.0.0.5")
    instance = resolve_instance("dandi-api-local-docker-tests")
    assert instance.api_url == "http://10.0.0.5:8000/api"
    assert instance.token_env_var == "DANDI_API_LOCAL_DOCKER_TESTS_API_KEY"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123/api"),
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123/api"),
        ("http://127.0.0.1:8123/api/", "http://127.0.0.1:8123/api"),
        ("http://127.0.0.1:8123/api?x=1#f", "http://127.0.0.1:8123/api"),
        ("https://example.org/sub/api", "https://example.org/sub/api"),
    ],
)
def test_api_urls_are_normalized_to_end_in_api(given, expected):
    assert normalize_api_url(given) == expected
    instance = resolve_instance(given)
    assert instance.api_url == expected
    assert instance.name is None
    host_port = urlsplit(expected).netloc
    assert instance.cli_name == host_port
    assert instance.token_env_vars == (f"{host_port.upper()}_API_KEY", "DANDI_API_KEY")
    assert instance.keyring_service == f"dandi-api-{host_port}"


def test_a_known_url_takes_the_instance_name():
    assert resolve_instance("https://api.sandbox.dandiarchive.org/api/").name == "dandi-sandbox"
    assert resolve_instance("https://dandiarchive.org").name == "dandi"
    assert resolve_instance("https://dandiarchive.org/dandiset/000027").name == "dandi"


def test_unknown_names_are_refused_with_a_hint():
    with pytest.raises(UnknownInstance, match="dandi-sandbox"):
        resolve_instance("dandi-staging")
    with pytest.raises(UnknownInstance, match="unknown instance 'nope'"):
        resolve_instance("nope")
    with pytest.raises(UnknownInstance, match="http"):
        resolve_instance("ftp://example.org/api")


def test_server_info_replaces_the_api_url():
    instance = Instance(None, "http://127.0.0.1:9/api")
    info = {"services": {"api": {"url": "http://localhost:9/api"}, "webui": {"url": "http://w"}}}
    described = apply_server_info(instance, info)
    assert described.api_url == "http://localhost:9/api"
    assert described.web_url == "http://w"
    assert apply_server_info(instance, {"services": {"api": {"url": 5}}}) == instance
    assert apply_server_info(instance, {}) == instance


def test_origins_ignore_default_ports_and_case():
    assert origin_of("HTTPS://API.Example.org:443/api/x") == "https://api.example.org"
    assert origin_of("http://h:80/") == "http://h"
    assert origin_of("http://h:8080/") == "http://h:8080"


# -- tokens -----------------------------------------------------------------------------


class DictKeyring(KeyringBackend):
    """A real keyring backend kept in memory, so lookups go through the keyring API."""

    priority = 1

    def __init__(self, entries: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self.entries = entries

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


class BrokenKeyring(DictKeyring):
    def get_password(self, service, username):
        raise RuntimeError("the keyring is locked")


@pytest.fixture
def keyring_entries():
    previous = keyring.get_keyring()
    entries: dict[tuple[str, str], str] = {}
    keyring.set_keyring(DictKeyring(entries))
    yield entries
    keyring.set_keyring(previous)


def test_token_lookup_order(keyring_entries):
    sandbox = resolve_instance("dandi-sandbox")
    keyring_entries[("dandi-api-dandi-sandbox", "key")] = "from-keyring"
    env = {"DANDI_SANDBOX_API_KEY": "from-env", "DANDI_API_KEY": "other-instance"}
    assert find_token(sandbox, "explicit", environ=env) == "explicit"
    assert find_token(sandbox, environ=env) == "from-env"
    assert find_token(sandbox, environ={"DANDI_API_KEY": "other-instance"}) == "from-keyring"
    assert find_token(sandbox, environ={}, use_keyring=False) is None
    keyring_entries.clear()
    assert find_token(sandbox, environ={}) is None


def test_a_bare_url_is_named_as_dandi_cli_names_it(keyring_entries):
    """dandi-cli calls an archive it knows only by URL `host:port`: the same variable and
    keyring entry give dandifs the token, and `DANDI_API_KEY` still does."""
    local = resolve_instance("http://127.0.0.1:5000/api")
    keyring_entries[("dandi-api-dandi", "key")] = "not-for-this-instance"
    both = {"127.0.0.1:5000_API_KEY": "cli", "DANDI_API_KEY": "k"}
    assert find_token(local, environ=both) == "cli"
    assert find_token(local, environ={"DANDI_API_KEY": "k"}) == "k"
    assert find_token(local, environ={}) is None
    keyring_entries[("dandi-api-127.0.0.1:5000", "key")] = "from-keyring"
    assert find_token(local, environ={}) == "from-keyring"


def test_keyring_backend_failure_is_not_fatal():
    previous = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring({}))
    try:
        assert find_token(resolve_instance("dandi"), environ={}) is None
    finally:
        keyring.set_keyring(previous)


def test_keyrings_alt_file_backend(tmp_path, monkeypatch):
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    backend.set_password("dandi-api-linc", "key", "alt-token")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        assert find_token(resolve_instance("linc"), environ={}) == "alt-token"
    finally:
        keyring.set_keyring(previous)


def test_token_goes_to_the_api_origin_only():
    policy = TokenPolicy("secret", "http://127.0.0.1:8000")
    assert policy.headers_for("http://127.0.0.1:8000/api/dandisets/") == {
        "Authorization": "token secret"
    }
    assert policy.headers_for("http://127.0.0.1:9000/bucket/blobs/x") == {}
    assert policy.headers_for("https://127.0.0.1:8000/api/") == {}
    assert TokenPolicy(None, "http://127.0.0.1:8000").headers_for("http://127.0.0.1:8000/") == {}


# -- retry arithmetic -------------------------------------------------------------------


def test_backoff_grows_exponentially_with_bounded_jitter():
    no_jitter = RetryPolicy(base_delay=0.5, multiplier=2, max_delay=3, random=lambda: 0.0)
    assert [no_jitter.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    full_jitter = RetryPolicy(
        base_delay=0.5, multiplier=2, max_delay=3, jitter=0.5, random=lambda: 1.0
    )
    assert [full_jitter.backoff(n) for n in range(1, 4)] == [0.25, 0.5, 1.0]


def test_retry_after_replaces_backoff_and_is_capped():
    policy = RetryPolicy(max_retry_after=30, random=lambda: 0.0)
    assert policy.delay_after(1, 7.0) == 7.0
    assert policy.delay_after(1, 3600.0) == 30.0
    assert policy.delay_after(1, -5.0) == 0.0
    assert policy.delay_after(1, None) == policy.base_delay


def test_parse_retry_after():
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:45 GMT", now=now) == 45.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


# -- pagination, ranges, presigned URLs -------------------------------------------------


def test_next_page_detection():
    first = "http://h/api/dandisets/?page_size=100&draft=true"
    assert is_next_page_of("http://h/api/dandisets/?draft=true&page=2&page_size=100", first)
    assert not is_next_page_of("http://h/api/dandisets/?draft=true&page=3&page_size=100", first)
    assert not is_next_page_of("http://other/api/dandisets/?draft=true&page=2&page_size=100", first)
    assert not is_next_page_of("http://h/api/dandisets/?page=2", first)
    assert page_count(950, 100) == 10
    assert page_count(1000, 100) == 10
    assert page_count(0, 100) == 1


def test_content_range_and_etag_parsing():
    assert parse_content_range("bytes 100-199/1000") == ContentRange(100, 199, 1000)
    assert parse_content_range("bytes */1000") == ContentRange(None, None, 1000)
    assert parse_content_range("bytes 0-9/*") == ContentRange(0, 9, None)
    assert parse_content_range("items 0-9/10") is None
    assert (
        normalize_etag('"af5da9f45af7a300e3aded972f8ff687-1"')
        == "af5da9f45af7a300e3aded972f8ff687-1"
    )
    assert normalize_etag('W/"abc"') == "abc"
    assert normalize_etag(None) == ""


def test_presigned_expiry_and_cache():
    v4 = "http://s3/b/k?X-Amz-Date=20261122T120000Z&X-Amz-Expires=3600&X-Amz-Signature=s"
    signed_at = datetime(2026, 11, 22, 12, tzinfo=timezone.utc).timestamp()
    assert presigned_expiry(v4) == signed_at + 3600
    assert presigned_expiry("http://s3/b/k?Expires=1700000000") == 1700000000.0
    assert presigned_expiry("http://s3/b/k") is None

    now = [signed_at]
    targets = PresignedTargets(clock=lambda: now[0])
    targets.put("api/1", v4)
    assert targets.get("api/1") == v4
    now[0] = signed_at + 3600 - 300  # within the safety margin before expiry
    assert targets.get("api/1") is None
    targets.put("api/2", "http://s3/b/unsigned")
    now[0] += 59
    assert targets.get("api/2") == "http://s3/b/unsigned"
    now[0] += 2
    assert targets.get("api/2") is None


def test_embargoed_zarr_puts_carry_the_signed_tag():
    tagged = "http://s3/b/zarr/z/0?X-Amz-SignedHeaders=content-md5%3Bhost%3Bx-amz-tagging&X-Amz-Signature=s"
    assert signed_tagging(tagged) == {"x-amz-tagging": "embargoed=true"}
    assert signed_tagging("http://s3/b/zarr/z/0?X-Amz-SignedHeaders=content-md5%3Bhost") == {}
    assert signed_tagging("http://s3/b/zarr/z/0") == {}


def test_signed_urls_are_redacted_in_messages():
    signed = "http://s3/b/k?X-Amz-Date=20261122T120000Z&X-Amz-Signature=abc"
    assert redact(signed) == "http://s3/b/k?<signed>"
    assert redact("http://h/api/dandisets/?page=2") == "http://h/api/dandisets/?page=2"
