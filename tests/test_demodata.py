"""The demo data: real NWB files and a real Zarr, checked with the tools that read DANDI data.

The demo set is generated once into `<test data>/demo-cache`, the cache the test archive uses
(`$DANDIFS_TEST_DATA`, default `~/.cache/dandifs-test`), so a machine generates it only once.
The slow big-mode test leaves its 1 GiB file and its Neuropixels session there too, for the
benchmarks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from pynwb import NWBHDF5IO

from dandifs.errors import NameRefused
from dandifs.localarchive.demo.blueprint import AssetPlan, DandisetPlan, Part, SourceFile
from dandifs.localarchive.demo.bulkfiles import write_random_bytes
from dandifs.localarchive.demo.cache import STAMP, ensure_generated
from dandifs.localarchive.demo.catalog import DEMO, NPX01
from dandifs.localarchive.demo.neuropixels import ProbeRecording, ProbeSignals, write_neuropixels
from dandifs.localarchive.demo.nwbfiles import session
from dandifs.localarchive.demodata import (
    LARGE_BIN_PATH,
    LARGE_NWB_PATH,
    NEUROPIXELS_PATH,
    ONE_SLICE,
    ONE_SLICE_DATASET,
    ZARR_PATH,
    build_demo_data,
)
from dandifs.localarchive.spec import DemoAsset, DemoData, DemoDandiset
from dandifs.namespace.assetpaths import check_asset_path

from conftest import test_data_dir as shared_test_data_dir

DANDI = Path(sys.executable).with_name("dandi")
MB = 1000 * 1000


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return shared_test_data_dir() / "demo-cache"


@pytest.fixture(scope="module")
def demo(cache_dir: Path) -> DemoData:
    return build_demo_data(cache_dir)


def by_id(demo: DemoData) -> dict[str, DemoDandiset]:
    return {dandiset.identifier: dandiset for dandiset in demo.dandisets}


def all_assets(demo: DemoData) -> list[DemoAsset]:
    return [
        asset
        for dandiset in demo.dandisets
        for version in (dandiset.published or (), dandiset.draft)
        for asset in version
    ]


def nwb_assets(demo: DemoData) -> dict[Path, DemoAsset]:
    """Each distinct NWB file once, with an asset path that serves it."""
    return {asset.source: asset for asset in all_assets(demo) if asset.path.endswith(".nwb")}


# -- what the demo set contains ----------------------------------------------------------------


def test_dandisets_and_their_versions(demo: DemoData) -> None:
    dandisets = by_id(demo)
    assert sorted(dandisets) == ["000001", "000002", "000003"]
    assert dandisets["000001"].published is not None
    assert dandisets["000002"].published is None and dandisets["000003"].published is None
    assert [d.embargoed for d in demo.dandisets] == [False, False, True]
    for dandiset in demo.dandisets:
        for asset in dandiset.draft:
            assert asset.source.exists(), asset


def test_draft_differs_from_published(demo: DemoData) -> None:
    dandiset = by_id(demo)["000001"]
    published = {asset.path: asset.source for asset in dandiset.published}
    draft = {asset.path: asset.source for asset in dandiset.draft}
    assert set(draft) - set(published) == {
        "sub-mouse03/sub-mouse03_ses-20240110_behavior+ophys.nwb"
    }
    assert set(published) <= set(draft)
    changed = [path for path in published if published[path] != draft[path]]
    assert changed == ["sub-mouse02/sub-mouse02_ses-20240103_ecephys.nwb"]
    before, after = published[changed[0]], draft[changed[0]]
    assert before.stat().st_size == after.stat().st_size  # same size, other bytes
    assert before.read_bytes() != after.read_bytes()
    with NWBHDF5IO(before, "r") as old, NWBHDF5IO(after, "r") as new:
        old_quality = list(old.read().units["quality"].data[:])
        new_quality = list(new.read().units["quality"].data[:])
    assert set(old_quality) == {"good"} and "mua" in new_quality


def test_asset_paths_follow_dandi_rules(demo: DemoData) -> None:
    assets = all_assets(demo)
    assert assets
    for asset in assets:
        assert is_valid_asset_path(asset.path), asset.path
    for dandiset in demo.dandisets:
        for version in (dandiset.published, dandiset.draft):
            paths = [asset.path for asset in version or ()]
            assert len(paths) == len(set(paths)), dandiset.identifier


def is_valid_asset_path(path: str) -> bool:
    """The archive's rule (the vectors are in test_namespace_assetpaths)."""
    try:
        check_asset_path(path)
    except NameRefused:
        return False
    return True


def test_dandiset_metadata_is_valid_for_the_schema(demo: DemoData) -> None:
    """The seeded metadata plus the fields the archive computes form a valid Dandiset."""
    from dandischema import models
    from dandischema.metadata import validate

    for dandiset in demo.dandisets:
        contacts = [
            person
            for person in dandiset.extra_metadata["contributor"]
            if "dcite:ContactPerson" in person["roleName"]
        ]
        assert contacts and all(person.get("email") for person in contacts)
        ident = dandiset.identifier
        metadata = {
            "schemaKey": "Dandiset",
            "schemaVersion": models.get_schema_version(),
            "id": f"DANDI:{ident}/draft",
            "identifier": f"DANDI:{ident}",
            "version": "draft",
            "url": f"http://127.0.0.1/dandiset/{ident}/draft",
            "repository": "http://127.0.0.1/",
            "citation": f"{dandiset.name} (Version draft)",
            "dateCreated": "2024-01-01T00:00:00Z",
            "manifestLocation": [f"http://127.0.0.1/dandisets/{ident}/draft/assets.yaml"],
            "assetsSummary": {"schemaKey": "AssetsSummary", "numberOfBytes": 1, "numberOfFiles": 1},
            "name": dandiset.name,
            "description": dandiset.description,
            **dandiset.extra_metadata,
        }
        validate(metadata, schema_key="Dandiset", json_validation=True)


# -- the NWB files -----------------------------------------------------------------------------


_NWB_NAME = re.compile(
    r"sub-(?P<subject>[^_/]+)/sub-(?P=subject)_ses-(?P<session>\d{8})_[a-z+]+\.nwb"
)


def test_every_nwb_opens_with_its_subject_and_session(demo: DemoData) -> None:
    files = nwb_assets(demo)
    assert len(files) == 9
    for source, asset in files.items():
        labels = _NWB_NAME.fullmatch(asset.path)
        assert labels, asset.path
        with NWBHDF5IO(source, "r") as io:
            nwbfile = io.read()
            subject = nwbfile.subject
            assert subject.subject_id == labels["subject"]
            assert subject.species in {"Mus musculus", "Rattus norvegicus"}
            assert subject.sex in {"M", "F"}
            assert re.fullmatch(r"P\d+D", subject.age)
            assert nwbfile.session_id == labels["session"]
            assert nwbfile.session_start_time.strftime("%Y%m%d") == labels["session"]
            assert nwbfile.session_start_time.tzinfo is not None
            assert nwbfile.institution and nwbfile.lab and nwbfile.experimenter
            if asset.path.endswith("_ecephys.nwb"):
                assert len(nwbfile.electrodes) > 0 and len(nwbfile.units) > 0
                assert "running_speed" in nwbfile.acquisition
            else:
                assert "TwoPhotonSeries" in nwbfile.acquisition
                assert ("behavior" in nwbfile.processing) == ("+" in asset.path)


def test_large_nwb_has_the_benchmark_dataset(demo: DemoData) -> None:
    [large] = [a for a in by_id(demo)["000001"].published if a.path == LARGE_NWB_PATH]
    assert large.source.stat().st_size >= 200 * 1024 * 1024
    with h5py.File(large.source, "r") as h5:
        data = h5[ONE_SLICE_DATASET]
        assert data.shape == (1_800_000, 64)
        assert data.dtype == np.int16
        assert data.chunks == (10_000, 64)
        assert data.compression is None
        one_slice = data[ONE_SLICE]
        assert one_slice.shape == (10_000, 8)
        assert one_slice.std() > 10  # a signal, not a constant fill
        assert h5["general/extracellular_ephys/electrodes/id"].shape == (64,)
        assert h5["units/spike_times"].shape[0] > 1000
        assert h5["acquisition/running_speed/data"].shape == (6000,)
    with NWBHDF5IO(large.source, "r") as io:
        series = io.read().acquisition["ElectricalSeries"]
        assert series.rate == 30_000.0
        assert np.array_equal(series.data[ONE_SLICE], one_slice)


@pytest.mark.parametrize(
    "name",
    [
        "000001@draft/sub-mouse02/sub-mouse02_ses-20240103_ecephys.nwb",
        "000001/sub-mouse02/sub-mouse02_ses-20240104_behavior+ophys.nwb",
        f"000002/{ZARR_PATH}",
    ],
)
def test_files_are_deterministic(cache_dir: Path, tmp_path: Path, name: str) -> None:
    """Writing again gives the bytes in the cache, so checksums are stable between runs."""
    cached = ensure_generated(cache_dir, DEMO) / name
    [source] = [s for s in DEMO.sources() if s.name == name]
    again = tmp_path / cached.name
    source.write(again)
    assert tree_bytes(again) == tree_bytes(cached)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """A file's bytes, or every file's bytes by relative path for a directory."""
    if root.is_file():
        return {"": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- the Zarr ----------------------------------------------------------------------------------


def test_zarr_is_ngff_format_2_with_over_1000_chunk_files(demo: DemoData) -> None:
    [asset] = [a for a in by_id(demo)["000002"].draft if a.path == ZARR_PATH]
    assert asset.source.is_dir()
    chunk_files = [
        p for p in asset.source.rglob("*") if p.is_file() and not p.name.startswith(".")
    ]
    assert len(chunk_files) >= 1000
    group = zarr.open_group(str(asset.source), mode="r")
    assert group.metadata.zarr_format == 2
    [multiscale] = group.attrs["multiscales"]
    assert [level["path"] for level in multiscale["datasets"]] == ["0", "1"]
    full, half = group["0"], group["1"]
    assert full.shape == (64, 512, 512) and full.chunks == (4, 64, 64)
    assert full.dtype == np.uint16 and half.shape == (32, 256, 256)
    assert json.loads((asset.source / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    assert np.array_equal(half[:], full[::2, ::2, ::2])
    assert full[:4, :64, :64].min() > 0


# -- what DANDI's own tools make of it ---------------------------------------------------------


@pytest.fixture(scope="module")
def dandiset_dirs(demo: DemoData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each draft laid out as a local dandiset (symlinks to the cache plus dandiset.yaml)."""
    return {
        dandiset.identifier: local_dandiset(
            dandiset, tmp_path_factory.mktemp(f"dandiset-{dandiset.identifier}")
        )
        for dandiset in demo.dandisets
    }


def local_dandiset(dandiset: DemoDandiset, root: Path) -> Path:
    """The draft laid out as a local dandiset in `root` (symlinks plus dandiset.yaml)."""
    (root / "dandiset.yaml").write_text(
        f"identifier: DANDI:{dandiset.identifier}\nname: {dandiset.name}\n"
    )
    for asset in dandiset.draft:
        (root / asset.path).parent.mkdir(parents=True, exist_ok=True)
        (root / asset.path).symlink_to(asset.source)
    return root


def assert_dandi_validate_finds_nothing(root: Path) -> None:
    result = subprocess.run(
        [DANDI, "validate", "--min-severity", "HINT", "-f", "json_lines", root],
        capture_output=True,
        text=True,
        env={**os.environ, "DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("identifier", ["000001", "000002", "000003"])
def test_dandi_validate_finds_nothing(dandiset_dirs: dict[str, Path], identifier: str) -> None:
    assert_dandi_validate_finds_nothing(dandiset_dirs[identifier])


def test_dandi_extracts_nwb_metadata_as_for_upload(dandiset_dirs: dict[str, Path]) -> None:
    """The metadata `dandi upload` would send for a small file carries the file's content."""
    from dandi.files import dandi_file
    from dandi.misctypes import Digest
    from dandi.support.digests import get_dandietag

    root = dandiset_dirs["000001"]
    path = "sub-mouse02/sub-mouse02_ses-20240104_behavior+ophys.nwb"
    etag = get_dandietag(root / path).as_str()
    metadata = dandi_file(root / path, root).get_metadata(
        digest=Digest.dandi_etag(etag), ignore_errors=False
    )
    assert metadata.path == path
    assert metadata.encodingFormat == "application/x-nwb"
    assert metadata.contentSize == (root / path).stat().st_size
    [participant] = metadata.wasAttributedTo
    assert participant.identifier == "mouse02"
    assert participant.species.name.startswith("Mus musculus")
    assert participant.sex.name == "Female"
    assert participant.age.value == "P88D"
    session_activity = metadata.wasGeneratedBy[0]
    assert session_activity.identifier == "20240104"
    assert session_activity.startDate.isoformat().startswith("2024-01-04T10:00:00")
    techniques = {technique.name for technique in metadata.measurementTechnique}
    assert "two-photon microscopy technique" in techniques


# -- the cache ---------------------------------------------------------------------------------


def test_second_call_writes_nothing_and_is_identical(demo: DemoData, cache_dir: Path) -> None:
    """Reusing the cache generates nothing: every file and folder is the one already there."""

    def tree() -> dict[Path, tuple[int, int]]:
        return {path: (path.stat().st_ino, path.stat().st_mtime_ns)
                for path in [cache_dir, *cache_dir.rglob("*")]}

    before = tree()
    again = build_demo_data(cache_dir)
    assert again == demo
    assert tree() == before


class TinyPart:
    """A two-file part whose writers record every call, for exercising the cache."""

    def __init__(self, version: int = 1, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on
        sources = [SourceFile(name, self._writer(name)) for name in ("a/one.txt", "two.txt")]
        plan = DandisetPlan(
            identifier="000009",
            name="tiny",
            description="tiny",
            draft=tuple(AssetPlan(s.name, s) for s in sources),
        )
        self.part = Part("tiny", version=version, dandisets=(plan,))

    def _writer(self, name: str):
        def write(path: Path) -> None:
            self.calls.append(name)
            path.write_text(f"{name} v{self.part.version}\n")
            if name == self.fail_on:
                raise OSError("No space left on device")

        return write


def debris(cache_dir: Path) -> list[str]:
    leftovers = (".partial-", ".stale-")
    return sorted(p.name for p in cache_dir.iterdir() if any(m in p.name for m in leftovers))


def test_cache_generates_once_then_reuses(tmp_path: Path) -> None:
    tiny = TinyPart()
    root = ensure_generated(tmp_path, tiny.part)
    assert root == tmp_path / "tiny"
    assert (root / "a" / "one.txt").read_text() == "a/one.txt v1\n"
    assert json.loads((root / STAMP).read_text())["version"] == 1
    assert ensure_generated(tmp_path, tiny.part) == root
    assert tiny.calls == ["a/one.txt", "two.txt"]


def test_cache_failed_generation_leaves_nothing_behind(tmp_path: Path) -> None:
    failing = TinyPart(fail_on="two.txt")
    with pytest.raises(OSError, match="No space left"):
        ensure_generated(tmp_path, failing.part)
    assert not (tmp_path / "tiny").exists()
    assert debris(tmp_path) == []
    tiny = TinyPart()
    ensure_generated(tmp_path, tiny.part)
    assert tiny.calls == ["a/one.txt", "two.txt"]


def test_cache_redoes_a_tree_left_by_a_crash(tmp_path: Path) -> None:
    # A killed run leaves its staging tree; a copy made by hand lacks the stamp.
    (tmp_path / ".tiny.partial-x1y2" / "a").mkdir(parents=True)
    (tmp_path / ".tiny.partial-x1y2" / "a" / "one.txt").write_text("half")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "two.txt").write_text("unstamped")
    tiny = TinyPart()
    root = ensure_generated(tmp_path, tiny.part)
    assert (root / "two.txt").read_text() == "two.txt v1\n"
    assert debris(tmp_path) == []


def test_cache_regenerates_for_a_new_version_or_a_missing_file(tmp_path: Path) -> None:
    ensure_generated(tmp_path, TinyPart(version=1).part)
    newer = TinyPart(version=2)
    root = ensure_generated(tmp_path, newer.part)
    assert (root / "two.txt").read_text() == "two.txt v2\n"
    assert newer.calls == ["a/one.txt", "two.txt"]
    assert debris(tmp_path) == []
    (root / "a" / "one.txt").unlink()
    same = TinyPart(version=2)
    ensure_generated(tmp_path, same.part)
    assert (root / "a" / "one.txt").exists() and same.calls == ["a/one.txt", "two.txt"]


def _generate_logged(cache_dir: Path, log: Path) -> None:
    """Generate a part whose writer is slow and logs each call, so two runs would overlap."""

    def write(path: Path) -> None:
        with log.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        path.write_text("done\n")

    source = SourceFile("only.txt", write)
    plan = DandisetPlan("000009", "t", "t", draft=(AssetPlan("only.txt", source),))
    ensure_generated(cache_dir, Part("logged", version=1, dandisets=(plan,)))


def test_cache_concurrent_processes_generate_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    log = tmp_path / "calls.log"
    workers = [
        context.Process(target=_generate_logged, args=(tmp_path / "cache", log)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert (tmp_path / "cache" / "logged" / "only.txt").read_text() == "done\n"


# -- plain files -------------------------------------------------------------------------------


def test_random_bytes_worked_vector(tmp_path: Path) -> None:
    """The first PCG64 word for seed 0 is 11749869230777074271, written little-endian."""
    write_random_bytes(tmp_path / "r.bin", 20, seed=0)
    assert (tmp_path / "r.bin").read_bytes().hex() == "5f82c2d9cfeb0fa321d7d982f8bd1045b8e8cd4e"


def test_random_bytes_continue_across_write_blocks(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024 + 13  # one full 64 MiB block and a ragged tail
    write_random_bytes(tmp_path / "r.bin", size, seed=7)
    expected = np.random.PCG64(7).random_raw(-(-size // 8)).astype("<u8").tobytes()[:size]
    assert (tmp_path / "r.bin").read_bytes() == expected


@pytest.mark.slow
def test_big_mode_adds_the_benchmark_dandisets(
    cache_dir: Path, demo: DemoData, tmp_path: Path
) -> None:
    big = build_demo_data(cache_dir, big=True)
    assert big.dandisets[:3] == demo.dandisets
    bulk = by_id(big)["000004"]
    assert bulk.published is None and not bulk.embargoed
    files = [a for a in bulk.draft if a.path.startswith("bulk/")]
    assert [a.path for a in files[:2]] == ["bulk/file-00000.dat", "bulk/file-00001.dat"]
    assert len(files) == 10_000 and files[-1].path == "bulk/file-09999.dat"
    assert len({a.source for a in files}) == 1  # one shared blob
    [large] = [a for a in bulk.draft if a.path == LARGE_BIN_PATH]
    assert large.source.stat().st_size == 1 << 30
    with large.source.open("rb") as handle:
        head = handle.read(16)
    assert head == np.random.PCG64(4002).random_raw(2).astype("<u8").tobytes()
    session = by_id(big)["000005"]
    assert not session.embargoed and session.published == session.draft
    [nwb] = session.published
    assert nwb.path == NEUROPIXELS_PATH and is_valid_asset_path(nwb.path)
    with h5py.File(nwb.source, "r") as h5:
        raw = h5["acquisition/ElectricalSeriesAP/data"]
        assert raw.shape == (1_000_000, 384) and raw.chunks == (30_000, 64)
        # gzip makes realistic noise about 2.3 times smaller; zeros would shrink far more
        assert 0.3 < raw.id.get_storage_size() / raw.nbytes < 0.6
    assert_dandi_validate_finds_nothing(local_dandiset(session, tmp_path))


SMALL_PROBE = ProbeRecording(samples=120_000, channels=96, units=20)


def test_neuropixels_writer_is_deterministic_and_its_spikes_are_in_the_data(
    tmp_path: Path,
) -> None:
    recorded = session(NPX01, "20240101", "short session", 7)
    first, second = tmp_path / "a.nwb", tmp_path / "b.nwb"
    write_neuropixels(first, recorded, SMALL_PROBE)
    write_neuropixels(second, recorded, SMALL_PROBE)
    assert first.read_bytes() == second.read_bytes()
    signals = ProbeSignals(SMALL_PROBE, seed=7)
    with NWBHDF5IO(first, "r") as io:
        nwb = io.read()
        data = nwb.acquisition["ElectricalSeriesAP"].data
        assert len(nwb.electrodes) == 96 and len(nwb.units) == 20
        for unit in (0, 7, 19):
            times = nwb.units.get_unit_spike_times(unit)
            samples = np.rint(times * SMALL_PROBE.rate).astype(int)
            assert np.array_equal(samples, signals.trains[unit])
            assert np.all(np.diff(samples) >= 30)  # 1 ms refractory period
            peak = int(nwb.units["peak_channel"][unit])
            troughs = data[:, peak][samples]
            # spikes stand out of the noise at the peak channel by their template's trough
            assert troughs.mean() < -0.8 * signals.peak_amplitude[unit]
