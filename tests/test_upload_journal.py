"""The upload journal keeps every upload's progress across a process that dies: a second
process opening the same file sees the rows, the parts already done, and only its own
token's unfinished uploads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from dandifs.upload.journal import Journal, owner_of
from dandifs.upload.state import Phase


def test_progress_survives_a_killed_process_and_resumes_for_its_owner_only(tmp_path) -> None:
    path = tmp_path / "uploads.sqlite"
    writer = textwrap.dedent(f"""
        import os
        from dandifs.upload.journal import Journal, owner_of
        from dandifs.upload.state import Phase
        journal = Journal(__import__("pathlib").Path({str(path)!r}))
        mine = journal.add(owner=owner_of("token-a"), dandiset_id="000001",
                           path="sub-01/a.nwb", spool="s/a.nwb", size=150_000_000)
        journal.update(mine.id, phase=Phase.UPLOADING, upload_id="u1", parts_total=3,
                       digest="0" * 32 + "-3")
        journal.part_done(mine.id, 1, "e1")
        journal.part_done(mine.id, 3, "e3")
        other = journal.add(owner=owner_of("token-b"), dandiset_id="000001",
                            path="sub-01/b.nwb", spool="s/b.nwb", size=10)
        done = journal.add(owner=owner_of("token-a"), dandiset_id="000001",
                           path="sub-01/c.nwb", spool="s/c.nwb", size=10)
        journal.update(done.id, phase=Phase.DONE)
        os._exit(9)  # no close, no clean-up: as a kill -9 leaves it
    """)
    died = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True)
    assert died.returncode == 9, died.stderr

    journal = Journal(path)
    resumed = journal.unfinished(owner_of("token-a"))
    assert [record.path for record in resumed] == ["sub-01/a.nwb"]
    record = resumed[0]
    assert (record.phase, record.upload_id, record.parts) == (Phase.UPLOADING, "u1", {1: "e1", 3: "e3"})
    assert record.state.describe() == "uploading 2/3 parts"
    assert [r.path for r in journal.unfinished(owner_of("token-b"))] == ["sub-01/b.nwb"]
    assert len(journal.all()) == 3
    failed = journal.update(record.id, phase=Phase.FAILED, reason="the archive said: 403")
    assert failed.state.describe() == "failed: the archive said: 403"
    assert journal.unfinished(owner_of("token-a")) == []
    journal.remove(record.id)
    assert len(journal.all()) == 2
    journal.close()


def test_an_unknown_field_is_refused(tmp_path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    record = journal.add(owner=owner_of(None), dandiset_id="000001", path="a", spool="a", size=1)
    try:
        journal.update(record.id, owner="someone else")
    except ValueError as exc:
        assert "owner" in str(exc)
    else:
        raise AssertionError("the owner of a row must not change")
    journal.close()


def test_a_full_disk_is_no_space_and_the_rows_already_there_stay(tmp_path):
    import pytest

    from dandifs.errors import NoSpace

    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("SKIPPED LOUDLY: cannot mount a tmpfs here (not root?): the full-disk case is untested")
    try:
        journal = Journal(disk / "journal.sqlite")
        kept = journal.add(owner="o", dandiset_id="000001", path="kept.bin", spool="/s/kept", size=1)
        with open(disk / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        with pytest.raises(NoSpace, match="upload journal"):
            for index in range(1000):
                journal.add(owner="o", dandiset_id="000001", path=f"p{index}" * 50,
                            spool="/s/" + "x" * 2000, size=index)
        assert journal.get(kept.id).path == "kept.bin"
        journal.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)])
