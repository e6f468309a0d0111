"""Asset metadata of a written file, compared with what the real `dandi upload` sent.

Each file is uploaded with `dandi upload` (dandi-cli) into a scratch dandiset of the local
archive; the same bytes are spooled as the upload pipeline spools them (`Spool`, named as
the asset, mtime set as a `cp -p` or `touch` through the mount sets it) and
`asset_metadata` of the spooled file must equal the metadata the archive got from dandi-cli,
except for what legitimately differs between two runs or what the archive adds:

* `dateModified` and the "Metadata generation" activity's `id`, `startDate`, `endDate`:
  the moment and a random id of each run;
* the order of `approach`, `measurementTechnique` and `variableMeasured`: dandi-cli
  collects them in sets (`process_ndtypes`), so each process lists them in its own order;
* `id`, `identifier`, `contentUrl`, `@context` and the `dandi:sha2-256` digest: the
  archive's own fields (§6.2 of dandi-api.md), never sent by a client.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import test_dandi_cli
from test_dandi_cli import dandi, write_nwb

from dandifs.upload.metadata import asset_metadata, encoding_format, minimal_asset_metadata
from dandifs.upload.spool import Spool

ARCHIVE_FIELDS = ("id", "identifier", "contentUrl", "@context")
RUN_FIELDS = ("id", "startDate", "endDate")
UNORDERED_FIELDS = ("approach", "measurementTechnique", "variableMeasured")

api = test_dandi_cli.api  # the fixtures of the dandi-cli tests: an API client, a scratch dandiset
scratch_dandiset = test_dandi_cli.scratch_dandiset


def comparable(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` without the fields that differ between runs or that the archive adds."""
    kept = {k: v for k, v in metadata.items() if k not in ARCHIVE_FIELDS + ("dateModified",)}
    kept["digest"] = {k: v for k, v in metadata["digest"].items() if k != "dandi:sha2-256"}
    kept["wasGeneratedBy"] = [
        {k: v for k, v in activity.items() if k not in RUN_FIELDS}
        if activity.get("name") == "Metadata generation" else activity
        for activity in metadata.get("wasGeneratedBy", [])
    ]
    for key in UNORDERED_FIELDS:
        if key in kept:
            kept[key] = sorted(kept[key], key=lambda item: json.dumps(item, sort_keys=True))
    return kept


def spooled_copy(spool: Spool, source: Path) -> tuple[Path, str]:
    """`source` written into the spool in 64 KiB appends, as a `cp` through the mount
    writes it, with its mtime; the spooled file and its dandi-etag."""
    spooled = spool.create(source.name)
    with source.open("rb") as data:
        offset = 0
        while chunk := data.read(65536):
            offset += spooled.write(offset, chunk)
    spooled.commit()
    digest = spooled.digest()
    spooled.close()
    times = source.stat()
    os.utime(spooled.path, ns=(times.st_atime_ns, times.st_mtime_ns))
    return spooled.path, digest


def uploaded_metadata(api, dandiset: str, path: str) -> dict[str, Any]:
    listing = api.get(f"/dandisets/{dandiset}/versions/draft/assets/",
                      params={"path": path}).json()["results"]
    assert [item["path"] for item in listing] == [path]
    return api.get(f"/dandisets/{dandiset}/versions/draft/assets/"
                   f"{listing[0]['asset_id']}/").json()


def dandiset_folder(tmp_path: Path, identifier: str) -> Path:
    root = tmp_path / identifier
    root.mkdir()
    (root / "dandiset.yaml").write_text(f"identifier: '{identifier}'\n")
    return root


@pytest.fixture(scope="module")
def demo_nwb(local_archive) -> Path:
    """A demo NWB file with subject, session and acquisition data (so dandi-cli extracts
    approach, measurement technique and variables measured, not only the subject)."""
    from dandifs.localarchive.demodata import build_demo_data

    data = build_demo_data(Path(local_archive.data_dir) / "demo-cache")
    return next(asset.source for dandiset in data.dandisets for asset in dandiset.draft
                if asset.path.endswith("_ecephys.nwb"))


def test_nwb_metadata_is_what_dandi_upload_sent(local_archive, archive_env, api, demo_nwb,
                                                scratch_dandiset, tmp_path: Path) -> None:
    root = dandiset_folder(tmp_path, scratch_dandiset)
    path = "sub-meta01/sub-meta01_ses-1_ecephys.nwb"
    (root / path).parent.mkdir()
    shutil.copy2(demo_nwb, root / path)
    dandi(["upload", "-i", local_archive.api_url, path], archive_env, cwd=root)
    sent = uploaded_metadata(api, scratch_dandiset, path)

    spooled, digest = spooled_copy(Spool(tmp_path / "spool"), root / path)
    ours = asset_metadata(spooled, path, size=spooled.stat().st_size, digest=digest)

    assert ours["digest"] == {"dandi:dandi-etag": sent["digest"]["dandi:dandi-etag"]}
    assert ours["wasAttributedTo"][0]["schemaKey"] == "Participant"  # extracted from the file
    assert ours["variableMeasured"] and ours["measurementTechnique"]
    assert comparable(ours) == comparable(sent)


def test_generic_file_metadata_is_what_dandi_upload_sent(local_archive, archive_env, api,
                                                         scratch_dandiset, tmp_path: Path) -> None:
    """A file dandi-cli has no type for: `dandi upload` sends it only with its development
    option `--allow-any-path` (dandifs uploads every file written into a draft)."""
    root = dandiset_folder(tmp_path, scratch_dandiset)
    path = "derivatives/summary.json"
    (root / path).parent.mkdir()
    (root / path).write_text('{"units": 12}\n')
    os.utime(root / path, (1_700_000_000.25, 1_700_000_000.25))
    dandi(["upload", "--allow-any-path", "-i", local_archive.api_url, path],
          {**archive_env, "DANDI_DEVEL": "1"}, cwd=root)
    sent = uploaded_metadata(api, scratch_dandiset, path)

    spooled, digest = spooled_copy(Spool(tmp_path / "spool"), root / path)
    ours = asset_metadata(spooled, path, size=spooled.stat().st_size, digest=digest)

    assert ours["encodingFormat"] == "application/json"
    assert ours["blobDateModified"] == sent["blobDateModified"]
    assert comparable(ours) == comparable(sent)


def test_unreadable_nwb_gets_generic_metadata_and_a_warning(
    local_archive, archive_env, api, scratch_dandiset, tmp_path: Path, caplog
) -> None:
    """Bytes that are not HDF5 under an `.nwb` name: the upload is not lost; the metadata is
    what `dandi upload --allow-any-path --validation skip` sends for that file."""
    root = dandiset_folder(tmp_path, scratch_dandiset)
    path = "sub-meta02/sub-meta02_ses-1.nwb"
    (root / path).parent.mkdir()
    (root / path).write_bytes(b"not an HDF5 file\n" * 100)
    dandi(["upload", "--allow-any-path", "--validation", "skip", "-i", local_archive.api_url,
           path], {**archive_env, "DANDI_DEVEL": "1"}, cwd=root)
    sent = uploaded_metadata(api, scratch_dandiset, path)

    spooled, digest = spooled_copy(Spool(tmp_path / "spool"), root / path)
    with caplog.at_level(logging.WARNING, logger="dandifs.upload.metadata"):
        ours = asset_metadata(spooled, path, size=spooled.stat().st_size, digest=digest)

    assert [r.getMessage() for r in caplog.records if r.name == "dandifs.upload.metadata"
            and path in r.getMessage()], caplog.text
    assert "wasAttributedTo" not in ours
    assert comparable(ours) == comparable(sent)


def test_asset_path_overrides_the_local_name(tmp_path: Path) -> None:
    """A file called dandiset.yaml below the root is an ordinary asset to dandi-cli."""
    spooled, digest = spooled_copy(Spool(tmp_path / "spool"), _text(tmp_path, "dandiset.yaml"))
    ours = asset_metadata(spooled, "sub-1/dandiset.yaml", size=3, digest=digest)
    assert ours["path"] == "sub-1/dandiset.yaml"
    assert ours["schemaKey"] == "Asset" and ours["contentSize"] == 3
    assert ours["digest"] == {"dandi:dandi-etag": digest}


def test_a_file_renamed_after_spooling_is_read_under_the_asset_name(demo_nwb: Path,
                                                                  tmp_path: Path) -> None:
    """The kind of file and its format go by the asset's name, the mtime by the file's;
    the link made for that is gone afterwards."""
    spooled, digest = spooled_copy(Spool(tmp_path / "spool"), demo_nwb)
    renamed = spooled.rename(spooled.with_name("written.part"))
    ours = asset_metadata(renamed, "sub-1/sub-1_ses-1_ecephys.nwb",
                          size=renamed.stat().st_size, digest=digest)
    assert ours["encodingFormat"] == "application/x-nwb"
    assert ours["wasAttributedTo"][0]["schemaKey"] == "Participant"
    same = minimal_asset_metadata(renamed, "x.nwb", size=1, digest=digest)
    assert ours["blobDateModified"] == same["blobDateModified"]
    assert list(renamed.parent.iterdir()) == [renamed]


def _text(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("x:\n")
    return path


@pytest.fixture
def without_dandi_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as if the `dandi` package were not installed (imports of it fail)."""
    for name in [n for n in sys.modules if n == "dandi" or n.startswith("dandi.")] + ["dandi"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_minimal_fields_have_dandi_clis_values(tmp_path: Path) -> None:
    """The fallback's fields have the values dandi-cli gives them, for several kinds of file."""
    for name in ("notes.txt", "table.tsv", "summary.json", "movie.mp4", "stack.tif",
                 "archive.tar.gz", "blob.zzunknown"):
        spooled, digest = spooled_copy(Spool(tmp_path / "spool"), _text(tmp_path, name))
        full = asset_metadata(spooled, f"sub-1/{name}", size=3, digest=digest)
        minimal = minimal_asset_metadata(spooled, f"sub-1/{name}", size=3, digest=digest)
        assert minimal == {key: full[key] for key in minimal}, name
        assert set(minimal) == {"schemaKey", "schemaVersion", "path", "contentSize", "digest",
                                "encodingFormat", "blobDateModified"}


def test_without_dandi_cli_asset_metadata_is_the_minimal_one(tmp_path: Path,
                                                            without_dandi_cli) -> None:
    nwb = tmp_path / "u" / "sub-1_ses-1.nwb"
    write_nwb(nwb)
    digest = "0" * 32 + "-1"
    ours = asset_metadata(nwb, "sub-1/sub-1_ses-1.nwb", size=nwb.stat().st_size, digest=digest)
    assert ours == minimal_asset_metadata(nwb, "sub-1/sub-1_ses-1.nwb",
                                          size=nwb.stat().st_size, digest=digest)
    assert ours["encodingFormat"] == "application/x-nwb"


def test_encoding_format_is_dandi_clis_guess() -> None:
    from dandi.utils import get_mime_type

    for name in ("a.txt", "a.json", "a.csv", "a.tsv", "a.mp4", "a.avi", "a.png", "a.tif",
                 "a.tar.gz", "a.gz", "a.bz2", "a.xz", "a.h5", "a.yaml", "a", "a.zzunknown"):
        assert encoding_format(name) == get_mime_type(name), name
    assert encoding_format("x.nwb") == "application/x-nwb"


@pytest.mark.anyio
async def test_extraction_runs_in_worker_threads(demo_nwb: Path, tmp_path: Path) -> None:
    """The pipeline extracts in worker threads, several files at once: each gets the
    metadata it gets alone."""
    import anyio

    spool = Spool(tmp_path / "spool")
    files = [spooled_copy(spool, demo_nwb) for _ in range(3)]
    alone = comparable(asset_metadata(files[0][0], "a.nwb", size=demo_nwb.stat().st_size,
                                      digest=files[0][1]))
    results: list[dict[str, Any]] = []

    async def extract(spooled: Path, digest: str) -> None:
        results.append(await anyio.to_thread.run_sync(
            lambda: asset_metadata(spooled, "a.nwb", size=spooled.stat().st_size, digest=digest)))

    async with anyio.create_task_group() as tasks:
        for spooled, digest in files:
            tasks.start_soon(extract, spooled, digest)
    assert [comparable(result) for result in results] == [alone] * len(files)
