"""The path grammar, listing rules and `dandiset.yaml` rendering: pure, worked examples."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dandifs.errors import InvalidPath, NotFound
from dandifs.namespace import listing, names
from dandifs.namespace.dandiset_yaml import (
    dandiset_identifier,
    render_dandiset_yaml,
    render_dandiset_yaml_bytes,
)
from dandifs.namespace.routes import (
    DandisetFolder,
    DandisetsFolder,
    DandisetYaml,
    InVersion,
    ReleasesFolder,
    Root,
    VersionAddress,
    VersionRoot,
    join_path,
    parent_path,
    parse_path,
)

RECORDINGS = Path(__file__).parent / "data" / "real-archive" / "recordings"


# --- routes: what each path means -------------------------------------------------------


@pytest.mark.parametrize(
    "path, route",
    [
        ("/", Root()),
        ("/dandisets", DandisetsFolder()),
        ("/dandisets/", DandisetsFolder()),
        ("/dandisets/000027", DandisetFolder("000027")),
        ("/dandisets/000027/", DandisetFolder("000027")),
        ("/dandisets/000027/releases", ReleasesFolder("000027")),
        ("/dandisets/000027/draft", VersionRoot(VersionAddress("000027", "draft"))),
        ("/dandisets/000027/latest/", VersionRoot(VersionAddress("000027", "latest"))),
        (
            "/dandisets/000027/0.210831.2033",
            VersionRoot(VersionAddress("000027", "0.210831.2033")),
        ),
        (
            "/dandisets/000027/releases/0.210831.2033/",
            VersionRoot(VersionAddress("000027", "0.210831.2033", via_releases=True)),
        ),
        (
            "/dandisets/000027/draft/dandiset.yaml",
            DandisetYaml(VersionAddress("000027", "draft")),
        ),
        (
            "/dandisets/000027/releases/0.210831.2033/dandiset.yaml",
            DandisetYaml(VersionAddress("000027", "0.210831.2033", via_releases=True)),
        ),
        (
            "/dandisets/000027/draft/sub-RAT123/sub-RAT123.nwb",
            InVersion(VersionAddress("000027", "draft"), "sub-RAT123/sub-RAT123.nwb"),
        ),
        (
            "/dandisets/000027/latest/sub-RAT123/",
            InVersion(VersionAddress("000027", "latest"), "sub-RAT123"),
        ),
        # dandiset.yaml is only virtual at the version root; deeper it is an ordinary name
        (
            "/dandisets/000027/draft/sub-1/dandiset.yaml",
            InVersion(VersionAddress("000027", "draft"), "sub-1/dandiset.yaml"),
        ),
        # case-sensitive: Dandiset.yaml is an asset path, not the virtual file
        (
            "/dandisets/000027/draft/Dandiset.yaml",
            InVersion(VersionAddress("000027", "draft"), "Dandiset.yaml"),
        ),
        (
            "/dandisets/000027/draft/a b/ünïcode name.nwb",
            InVersion(VersionAddress("000027", "draft"), "a b/ünïcode name.nwb"),
        ),
    ],
)
def test_parse_path_routes(path, route):
    assert parse_path(path) == route


def test_route_paths_are_canonical():
    assert parse_path("/dandisets/").path == "/dandisets"
    assert parse_path("/dandisets/000001/").path == "/dandisets/000001"
    assert parse_path("/dandisets/000001/releases/").path == "/dandisets/000001/releases"
    assert parse_path("/dandisets/000001/draft/").path == "/dandisets/000001/draft"
    assert parse_path("/dandisets/000001/draft/a/b/").path == "/dandisets/000001/draft/a/b"
    assert (
        parse_path("/dandisets/000001/releases/0.230101.0000/dandiset.yaml").path
        == "/dandisets/000001/releases/0.230101.0000/dandiset.yaml"
    )


def test_version_address_paths():
    address = VersionAddress("000001", "0.230101.0000", via_releases=True)
    assert address.root_path == "/dandisets/000001/releases/0.230101.0000"
    assert address.path_of("") == address.root_path
    assert address.path_of("a/b.nwb") == "/dandisets/000001/releases/0.230101.0000/a/b.nwb"
    assert not address.is_draft and not address.is_latest
    assert VersionAddress("000001", "draft").is_draft
    assert VersionAddress("000001", "latest").is_latest


@pytest.mark.parametrize(
    "path, reason",
    [
        ("", "not absolute"),
        ("dandisets/000001", "not absolute"),
        ("//", "empty segment"),
        ("/dandisets//000001", "empty segment"),
        ("/dandisets/000001//", "empty segment"),
        ("/dandisets/000001/draft/a//b", "empty segment"),
        ("/dandisets/./000001", "'.'"),
        ("/dandisets/000001/draft/..", "'..'"),
        ("/dandisets/000001/draft/a/../b", "'..'"),
        ("/dandisets/000001/draft/a\x00b", "NUL"),
        ("/dandisets/000001/draft/" + "x" * 256, "256 bytes long"),
        # 128 two-byte characters: 256 bytes although only 128 characters
        ("/dandisets/000001/draft/" + "é" * 128, "256 bytes long"),
        ("/dandisets/000001/draft/" + "/".join(["a" * 200] * 21), "the limit is 4096"),
        ("/foo", "only /dandisets/"),
        ("/Dandisets/000001", "only /dandisets/"),
        ("/zarrs/", "only /dandisets/"),
        ("/dandisets/1", "six digits"),
        ("/dandisets/0000001", "six digits"),
        ("/dandisets/abcdef", "six digits"),
        ("/dandisets/draft", "six digits"),
        ("/dandisets/000001/Draft", "not a version"),
        ("/dandisets/000001/dandiset.yaml", "not a version"),
        ("/dandisets/000001/1.0.0", "not a version"),
        ("/dandisets/000001/0.21083.2033", "not a version"),
        ("/dandisets/000001/0.210831.203", "not a version"),
        ("/dandisets/000001/releases/draft", "not a published version id"),
        ("/dandisets/000001/releases/latest/x", "not a published version id"),
        ("/dandisets/000001/releases/0.1.2", "not a published version id"),
        ("/dandisets/000001/\udcff", "not valid Unicode"),
    ],
)
def test_parse_path_refusals(path, reason):
    with pytest.raises(InvalidPath, match=reason.replace(".", r"\.").replace("(", r"\(")):
        parse_path(path)


def test_invalid_path_is_a_not_found():
    """Front ends map InvalidPath like NotFound (ENOENT / 404) unless they want more."""
    assert issubclass(InvalidPath, NotFound)


def test_parse_path_refuses_non_text():
    with pytest.raises(InvalidPath, match="must be text"):
        parse_path(b"/dandisets")  # type: ignore[arg-type]


def test_limits_are_inclusive():
    name = "x" * 255
    assert parse_path(f"/dandisets/000001/draft/{name}").relative == name
    prefix = "/dandisets/000001/draft/"
    path = prefix + "/".join(["a" * 254] * 15)  # 24 + 15 * 255 - 1 = 3848 bytes
    path += "/" + "b" * (4096 - len(path) - 1)
    assert len(path.encode()) == 4096
    assert isinstance(parse_path(path), InVersion)
    with pytest.raises(InvalidPath):
        parse_path(path + "b")


def test_zarr_splits_are_candidates_shallowest_first():
    route = parse_path("/dandisets/000001/draft/a.zarr/b.ngff/0/1")
    assert isinstance(route, InVersion)
    assert route.zarr_splits() == [("a.zarr", "b.ngff/0/1"), ("a.zarr/b.ngff", "0/1")]
    # the last segment alone is never a split: it is the Zarr asset itself
    assert parse_path("/dandisets/000001/draft/sub/x.zarr").zarr_splits() == []
    assert parse_path("/dandisets/000001/draft/x.zarr/.zattrs").zarr_splits() == [
        ("x.zarr", ".zattrs")
    ]
    # suffixes are matched case-sensitively, as the archive does
    assert parse_path("/dandisets/000001/draft/X.ZARR/0").zarr_splits() == []


@pytest.mark.parametrize(
    "name",
    [
        ".git",
        ".svn",
        ".hg",
        ".DS_Store",
        ".ds_store",
        "._sub-01.nwb",
        "desktop.ini",
        "Desktop.ini",
        "Thumbs.db",
        "autorun.inf",
        ".Trash-1000",
        ".Spotlight-V100",
    ],
)
def test_never_remote_names(name):
    assert names.never_exists_remotely(name)
    route = parse_path(f"/dandisets/000001/draft/sub-01/{name}")
    assert isinstance(route, InVersion) and route.never_exists
    deeper = parse_path(f"/dandisets/000001/draft/{name}/objects/x")
    assert isinstance(deeper, InVersion) and deeper.never_exists


@pytest.mark.parametrize(
    "name", [".zattrs", ".zgroup", ".zarray", ".hidden", "git", "sub-01.nwb", "a._b", "dandiset.yaml"]
)
def test_ordinary_names_may_exist(name):
    assert not names.never_exists_remotely(name)
    route = parse_path(f"/dandisets/000001/draft/x.zarr/{name}")
    assert isinstance(route, InVersion) and not route.never_exists


def test_parent_and_join():
    assert parent_path("/") == "/"
    assert parent_path("/dandisets") == "/"
    assert parent_path("/dandisets/000001/draft/a/b") == "/dandisets/000001/draft/a"
    assert parent_path("/dandisets/000001/") == "/dandisets"
    assert join_path("/", "dandisets") == "/dandisets"
    assert join_path("/dandisets/", "000001") == "/dandisets/000001"


# --- listing rules --------------------------------------------------------------------


def test_dandiset_children():
    assert listing.dandiset_children([]) == ["draft"]
    assert listing.dandiset_children(["0.230102.0000", "0.210101.1200", "0.230102.0000"]) == [
        "draft",
        "latest",
        "0.210101.1200",
        "0.230102.0000",
    ]
    assert listing.ROOT_CHILDREN == ("dandisets",)
    assert listing.latest_target("0.230102.0000") == "0.230102.0000"


def test_modes():
    assert listing.file_mode(False) == stat.S_IFREG | 0o444
    assert listing.file_mode(True) == stat.S_IFREG | 0o644
    assert listing.folder_mode(False) == stat.S_IFDIR | 0o555
    assert listing.folder_mode(True) == stat.S_IFDIR | 0o755
    assert stat.S_ISLNK(listing.symlink_mode())


# --- dandiset.yaml --------------------------------------------------------------------


def _recorded_metadata(name: str) -> dict:
    return json.loads((RECORDINGS / name).read_text())["response"]["body"]


def test_dandiset_yaml_worked_example():
    metadata = {
        "identifier": "DANDI:000027",
        "name": "Test",
        "contributor": [{"name": "Doe, Jane", "roleName": ["dcite:ContactPerson"]}],
        "@context": "https://example.org/context.json",
        "assetsSummary": {"numberOfFiles": 2, "numberOfBytes": 10},
    }
    assert render_dandiset_yaml(metadata) == (
        "# DO NOT EDIT THIS FILE LOCALLY. ALL LOCAL UPDATES WILL BE LOST.\n"
        "# It can be edited online at https://dandiarchive.org/dandiset/000027\n"
        "# and obtained from the dandiarchive.\n"
        "'@context': https://example.org/context.json\n"
        "assetsSummary:\n"
        "  numberOfBytes: 10\n"
        "  numberOfFiles: 2\n"
        "contributor:\n"
        "- name: Doe, Jane\n"
        "  roleName:\n"
        "  - dcite:ContactPerson\n"
        "identifier: DANDI:000027\n"
        "name: Test\n"
    )


def test_dandiset_yaml_without_identifier():
    assert render_dandiset_yaml({"name": "x"}) == (
        "# DO NOT EDIT THIS FILE LOCALLY. ALL LOCAL UPDATES WILL BE LOST.\n"
        "# It can be obtained from the dandiarchive.\n"
        "name: x\n"
    )


def test_dandiset_identifier_lookup():
    assert dandiset_identifier({"identifier": "DANDI:000027"}) == "000027"
    assert dandiset_identifier({"identifier": "000123"}) == "000123"
    assert dandiset_identifier({"dandiset": {"identifier": "000001"}, "identifier": "X:2"}) == "000001"
    assert dandiset_identifier({"dandiset": "not a mapping", "identifier": "X:000002"}) == "000002"
    assert dandiset_identifier({"identifier": 27}) is None
    assert dandiset_identifier({}) is None


TRICKY_METADATA = {
    "identifier": "DANDI:000042",
    "name": "Ünïcödé naïve — “quotes” 日本語",
    "description": "line one\nline two\n\n  indented line three with trailing space \n"
    + "long " * 40,
    "keywords": ["yes", "no", "on", "off", "null", "~", "true", "1e3", "010", "0o10", "0x1F"],
    "dates": ["2021-08-31", "2021-08-31T20:33:00+00:00", "12:30", "1:20:30"],
    "numbers": [0, -1, 1.5, 1e100, float("inf"), 10**20],
    "special": [":", "- x", "#comment", "a: b", "@at", "`tick", "%percent", "!bang", "&amp", "*star"],
    "empty": {"list": [], "dict": {}, "string": "", "none": None},
    "nested": [[1, [2, [3]]], {"b": {"a": [{"z": 1, "y": 2}]}}],
    "booleans": [True, False],
    "Zupper": 1,
    "_underscore": 2,
    "10": "numeric key",
}


LONG_DESCRIPTION_METADATA = {
    "identifier": "DANDI:000123",
    "name": "Ünïcödé place cells — “quotes” 日本語 in a name that is longer than eighty characters",
    "description": (
        "Extracellular recordings with 64-channel silicon probes and two-photon calcium imaging "
        "from CA1 of head-fixed mice (Ünïcödé — 日本語) running on a virtual linear track.\n\n"
        "Second paragraph: each session has the raw voltage or imaging frames, sorted units "
        "or segmented cells, and the animal's position and running speed. " * 3
    ),
    "url": "https://dandiarchive.org/dandiset/000123/draft/" + "x" * 90,
    "keywords": ["a keyword that is long enough to be folded when it is dumped in a list item"],
}


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(_recorded_metadata("version_published_GET_metadata.json"), id="published"),
        pytest.param(LONG_DESCRIPTION_METADATA, id="long-description"),
        pytest.param(_recorded_metadata("version_draft_GET_metadata.json"), id="draft"),
        pytest.param(TRICKY_METADATA, id="tricky"),
        pytest.param({"name": "no identifier"}, id="no-identifier"),
    ],
)
def test_dandiset_yaml_equals_what_dandi_cli_writes(metadata, tmp_path):
    """Compare with the file `dandi download` writes, produced by the installed dandi-cli."""
    from dandi.dandiset import Dandiset  # dandi-cli: test-only, never imported by dandifs

    Dandiset(tmp_path, allow_empty=True).update_metadata(metadata)
    written = (tmp_path / "dandiset.yaml").read_bytes()
    assert render_dandiset_yaml_bytes(metadata) == written


WRITE_IN_ENVIRONMENT = """
import json, sys, tempfile
for name in sys.argv[2:]:
    sys.modules[name] = None  # as if not installed
metadata = json.load(sys.stdin)
if sys.argv[1] == "dandi-cli":
    from pathlib import Path
    from dandi.dandiset import Dandiset
    with tempfile.TemporaryDirectory() as folder:
        Dandiset(folder, allow_empty=True).update_metadata(metadata)
        sys.stdout.buffer.write((Path(folder) / "dandiset.yaml").read_bytes())
else:
    from dandifs.namespace.dandiset_yaml import render_dandiset_yaml_bytes
    sys.stdout.buffer.write(render_dandiset_yaml_bytes(metadata))
"""
C_EMITTER = "_ruamel_yaml"  # ruamel.yaml.clib's module; ruamel.yaml falls back without it


def _written(writer: str, metadata: dict, *, without: tuple[str, ...] = ()) -> bytes:
    """`dandiset.yaml` as dandi-cli or dandifs writes it in a Python without `without`."""
    result = subprocess.run(
        [sys.executable, "-c", WRITE_IN_ENVIRONMENT, writer, *without],
        input=json.dumps(metadata).encode(), capture_output=True, check=True, timeout=120,
        env={**os.environ, "DANDI_NO_ET": "1"},
    )
    return result.stdout


@pytest.mark.parametrize("without", [(), (C_EMITTER,)], ids=["as-installed", "no-c-emitter"])
def test_dandiset_yaml_folds_as_dandi_cli_of_the_same_environment(without):
    """With or without ruamel's C emitter, dandifs folds long lines as dandi-cli beside it."""
    metadata = LONG_DESCRIPTION_METADATA
    assert _written("dandifs", metadata, without=without) == _written(
        "dandi-cli", metadata, without=without)


def test_dandiset_yaml_without_dandi_cli_folds_as_the_pure_emitter():
    """Without dandi-cli, the folding does not depend on whether the C emitter is installed:
    it is that of dandi-cli on ruamel.yaml's pure-Python emitter."""
    metadata = LONG_DESCRIPTION_METADATA
    expected = _written("dandi-cli", metadata, without=(C_EMITTER,))
    assert _written("dandifs", metadata, without=("dandi",)) == expected
    assert _written("dandifs", metadata, without=("dandi", C_EMITTER)) == expected
    assert max(len(line) for line in expected.decode().splitlines()) > 80  # folding mattered


def test_dandiset_yaml_round_trips():
    from ruamel.yaml import YAML

    text = render_dandiset_yaml(TRICKY_METADATA)
    assert YAML(typ="safe").load(text) == TRICKY_METADATA
