"""Properties of the pure layers, checked with Hypothesis: the path grammar (routes round-trip,
refusals happen on the text alone) and the block arithmetic of the cache.

Examples are few and there is no deadline, so that the checks stay quick and honest on a
loaded machine.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dandifs.cache.blocks import BlockLayout, runs, split
from dandifs.errors import InvalidPath
from dandifs.namespace import names
from dandifs.namespace.routes import (
    DandisetFolder,
    DandisetYaml,
    InVersion,
    ReleasesFolder,
    VersionRoot,
    join_path,
    parent_path,
    parse_path,
    split_segments,
)

quick = settings(max_examples=100, deadline=None)

dandiset_ids = st.from_regex(names.DANDISET_ID, fullmatch=True)
version_ids = st.from_regex(names.VERSION_ID, fullmatch=True)
versions = st.one_of(st.just(names.DRAFT), st.just(names.LATEST), version_ids)
# A plain name: no slash or NUL, not "." or "..", at most MAX_NAME_BYTES in UTF-8.
plain_names = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1, max_size=40,
).filter(lambda name: name not in (".", "..")
         and len(name.encode()) <= names.MAX_NAME_BYTES)
relative_paths = st.lists(plain_names, min_size=1, max_size=6).map("/".join)


@quick
@given(dandiset_ids, versions, relative_paths)
def test_a_path_inside_a_version_round_trips(dandiset: str, version: str, relative: str) -> None:
    path = f"/dandisets/{dandiset}/{version}/{relative}"
    route = parse_path(path)
    if relative == names.DANDISET_YAML:
        assert route == DandisetYaml(route.address)
    else:
        assert isinstance(route, InVersion) and route.relative == relative
    assert route.path == path
    assert parse_path(route.path) == route
    assert parse_path(path + "/") == route  # a trailing slash changes nothing


@quick
@given(dandiset_ids, version_ids, st.one_of(st.just(""), relative_paths))
def test_the_releases_alias_names_the_same_version(dandiset: str, version: str,
                                                   relative: str) -> None:
    direct = parse_path(f"/dandisets/{dandiset}/{version}" + (f"/{relative}" if relative else ""))
    alias = parse_path(f"/dandisets/{dandiset}/releases/{version}"
                       + (f"/{relative}" if relative else ""))
    assert alias.address.via_releases and not direct.address.via_releases
    assert (alias.address.dandiset_id, alias.address.version) == (dandiset, version)
    assert type(alias) is type(direct)
    assert parse_path(alias.path) == alias


@quick
@given(dandiset_ids)
def test_dandiset_and_releases_folders(dandiset: str) -> None:
    assert parse_path(f"/dandisets/{dandiset}") == DandisetFolder(dandiset)
    assert parse_path(f"/dandisets/{dandiset}/releases/") == ReleasesFolder(dandiset)
    assert isinstance(parse_path(f"/dandisets/{dandiset}/draft"), VersionRoot)


@quick
@given(st.lists(plain_names, min_size=1, max_size=8))
def test_parent_and_join_undo_each_other(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert split_segments(path) == segments
    assert join_path(parent_path(path), segments[-1]) == path


@quick
@given(dandiset_ids, relative_paths, st.sampled_from([".", ".."]), st.integers(0, 6))
def test_dot_segments_are_refused_wherever_they_are(dandiset: str, relative: str, dots: str,
                                                    where: int) -> None:
    segments = ["dandisets", dandiset, "draft", *relative.split("/")]
    segments.insert(min(where, len(segments)), dots)
    with pytest.raises(InvalidPath, match="only plain names"):
        parse_path("/" + "/".join(segments))


@quick
@given(relative_paths, st.integers(0, 200))
def test_nul_is_refused_anywhere(relative: str, where: int) -> None:
    path = f"/dandisets/000001/draft/{relative}"
    where = min(where, len(path))
    with pytest.raises(InvalidPath, match="NUL"):
        parse_path(path[:where] + "\x00" + path[where:])


@quick
@given(st.text(st.sampled_from("aé漢"), min_size=1, max_size=300))
def test_names_over_the_limit_are_refused_and_the_rest_accepted(name: str) -> None:
    path = f"/dandisets/000001/draft/{name}"
    if len(name.encode()) > names.MAX_NAME_BYTES:
        with pytest.raises(InvalidPath, match="the limit is 255"):
            parse_path(path)
    else:
        assert parse_path(path).relative == name


@quick
@given(st.text(min_size=1, max_size=8).filter(lambda text: not names.is_dandiset_id(text)
                                               and "/" not in text and "\x00" not in text
                                               and text not in (".", "..")))
def test_anything_but_six_digits_is_not_a_dandiset(text: str) -> None:
    with pytest.raises(InvalidPath):
        parse_path(f"/dandisets/{text}")


@quick
@given(st.text(st.sampled_from("/a."), max_size=12))
def test_parsing_never_fails_otherwise(path: str) -> None:
    """Any text is a route or an `InvalidPath`: never another exception."""
    try:
        parse_path(path)
    except InvalidPath:
        pass


# -- block arithmetic ----------------------------------------------------------------------------

layouts = st.builds(BlockLayout, block_size=st.integers(1, 1 << 20),
                    object_size=st.integers(0, 1 << 34))


@quick
@given(layouts)
def test_blocks_tile_the_object(layout: BlockLayout) -> None:
    count = layout.block_count
    assert count * layout.block_size >= layout.object_size > (count - 1) * layout.block_size \
        or count == layout.object_size == 0
    if count:
        assert layout.bounds(0)[0] == 0 and layout.bounds(count - 1)[1] == layout.object_size
        assert 0 < layout.block_length(count - 1) <= layout.block_size
        with pytest.raises(IndexError):
            layout.bounds(count)


@quick
@given(layouts, st.data())
def test_a_span_holds_exactly_the_range(layout: BlockLayout, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, layout.object_size + 10))
    size = data.draw(st.integers(0, 1 << 24))
    blocks = layout.span(offset, size)
    end = min(offset + size, layout.object_size)
    if offset >= end:
        assert len(blocks) == 0
        return
    start_byte, end_byte = layout.byte_range(blocks)
    assert start_byte <= offset < start_byte + layout.block_size  # no block too many before
    assert end_byte >= end > end_byte - layout.block_length(blocks.stop - 1)  # nor after
    assert (blocks.start, blocks.stop - 1) == (layout.block_of(offset), layout.block_of(end - 1))


@quick
@given(st.sets(st.integers(0, 500), max_size=60), st.integers(1, 20))
def test_runs_group_sorted_indices_without_loss(indices: set[int], most: int) -> None:
    grouped = list(runs(sorted(indices), most))
    assert [i for run in grouped for i in run] == sorted(indices)
    assert all(1 <= len(run) <= most for run in grouped)
    # A run ends only at a gap or at the cap.
    for before, after in zip(grouped, grouped[1:]):
        assert after.start > before.stop or len(before) == most


@quick
@given(st.integers(0, 1000), st.integers(0, 300), st.integers(1, 50))
def test_split_cuts_a_run_into_capped_pieces(start: int, length: int, most: int) -> None:
    pieces = list(split(range(start, start + length), most))
    assert [i for piece in pieces for i in piece] == list(range(start, start + length))
    assert all(1 <= len(piece) <= most for piece in pieces)
    assert all(len(piece) == most for piece in pieces[:-1])
