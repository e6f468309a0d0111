"""Mounting and unmounting as users and the system do it: background mode, mount(8) and
its helper, fusermount3 -u, SIGTERM/SIGINT, and clear refusals."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuse_support import MountProcess, is_mounted, require_fuse

BIN = Path(sys.executable).parent
HELPER_LINK = Path("/sbin/mount.dandifs")


def daemons_serving(mountpoint: Path) -> list[int]:
    """Pids of processes whose command line names `mountpoint` (the mount daemons)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(mountpoint).encode() in arguments and any(b"dandifs" in a for a in arguments):
            pids.append(int(entry.name))
    return pids


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def places(tmp_path):
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    yield mountpoint, tmp_path / "cache"
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], check=False)
    for pid in daemons_serving(mountpoint):
        os.kill(pid, signal.SIGKILL)


def test_background_mount_answers_when_the_command_returns_and_fusermount_ends_it(
    local_archive, places
) -> None:
    mountpoint, cache = places
    result = subprocess.run(
        [str(BIN / "dandifs"), "mount", str(mountpoint), "-i", local_archive.api_url,
         "--cache-dir", str(cache)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # No waiting: the command returned only once the mount answered.
    assert is_mounted(mountpoint)
    assert "000001" in os.listdir(mountpoint / "dandisets")
    [daemon] = daemons_serving(mountpoint)
    subprocess.run(["fusermount3", "-u", str(mountpoint)], check=True)
    assert wait_for(lambda: not Path(f"/proc/{daemon}").exists()), "daemon still running"
    assert not is_mounted(mountpoint)
    assert "unmounted" in (cache / "mount.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_unmounts_cleanly_even_with_a_file_open(local_archive, places, signum) -> None:
    mountpoint, cache = places
    mount = MountProcess(mountpoint, local_archive.api_url, cache).start()
    version = mountpoint / "dandisets" / "000001" / "draft"
    first_file = next(path for path in version.rglob("*.nwb"))
    handle = open(first_file, "rb", buffering=0)
    assert handle.read(8) == b"\x89HDF\r\n\x1a\n"
    status = mount.stop(signum)
    # The open handle now fails at once (no hang): its filesystem is gone.
    with pytest.raises(OSError) as gone:
        handle.close()
    assert gone.value.errno == errno.ENOTCONN
    assert status == 0, mount.log()
    assert not is_mounted(mountpoint)
    assert f"received {signal.Signals(signum).name}" in mount.log()


def test_mount_helper_follows_mount8_conventions(local_archive, places) -> None:
    mountpoint, cache = places
    result = subprocess.run(
        [str(BIN / "mount.dandifs"), local_archive.api_url, str(mountpoint), "-n", "-o",
         f"rw,_netdev,nofail,noauto,x-systemd.automount,user,defaults,cache_dir={cache},"
         "uid=4321,gid=4322,cache_size=1G"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = (mountpoint / "dandisets").stat()
    assert (info.st_uid, info.st_gid) == (4321, 4322)
    subprocess.run(["umount", str(mountpoint)], check=True)
    assert wait_for(lambda: not daemons_serving(mountpoint))


def test_mount_t_dandifs_runs_the_helper(local_archive, places) -> None:
    """`mount -t dandifs SOURCE DIR` finds /sbin/mount.dandifs (installed here if absent)."""
    mountpoint, cache = places
    if os.geteuid() != 0:
        pytest.skip("!!! mount(8) with a helper needs root here !!!")
    installed = False
    if not HELPER_LINK.exists():
        HELPER_LINK.symlink_to(BIN / "mount.dandifs")
        installed = True
    try:
        result = subprocess.run(
            ["mount", "-t", "dandifs", "-o", f"cache_dir={cache},_netdev", local_archive.api_url,
             str(mountpoint)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "draft" in os.listdir(mountpoint / "dandisets" / "000001")
        subprocess.run(["umount", str(mountpoint)], check=True)
        assert wait_for(lambda: not daemons_serving(mountpoint))
    finally:
        if installed:
            HELPER_LINK.unlink()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "is not an existing folder"),
        (["{mnt}", "-o", "colour=blue"], "unknown mount option 'colour'"),
        (["{mnt}", "-o", "uid=alice"], "expected a numeric id"),
        (["{mnt}", "--cache-size", "huge"], "expected a number of bytes"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(places, arguments, message) -> None:
    mountpoint, _ = places
    argv = [a.format(missing=mountpoint / "missing", mnt=mountpoint) for a in arguments]
    result = subprocess.run(
        [str(BIN / "dandifs"), "mount", *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not is_mounted(mountpoint)


def test_a_mount_that_cannot_start_reports_why_in_background_mode(places) -> None:
    mountpoint, cache = places
    result = subprocess.run(
        [str(BIN / "dandifs"), "mount", str(mountpoint), "-i", "no-such-instance",
         "--cache-dir", str(cache)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "unknown instance 'no-such-instance'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not is_mounted(mountpoint)
    assert not daemons_serving(mountpoint)


def test_token_file_shows_embargoed_dandisets_only_to_its_holder(local_archive, places, tmp_path) -> None:
    mountpoint, cache = places
    anonymous = MountProcess(mountpoint, local_archive.api_url, cache,
                             env={"DANDI_API_KEY": ""}).start()
    try:
        assert "000003" not in os.listdir(mountpoint / "dandisets")
        with pytest.raises(FileNotFoundError):
            (mountpoint / "dandisets" / "000003").stat()
    finally:
        anonymous.stop()
    token_file = tmp_path / "token"
    token_file.write_text(local_archive.token + "\n")
    owner = MountProcess(mountpoint, local_archive.api_url, cache,
                         options=[f"token_file={token_file}"], env={"DANDI_API_KEY": ""}).start()
    try:
        draft = mountpoint / "dandisets" / "000003" / "draft"
        nwb = next(draft.rglob("*.nwb"))
        with open(nwb, "rb") as handle:
            assert handle.read(8) == b"\x89HDF\r\n\x1a\n"
        assert "with a token" in owner.log()
    finally:
        owner.stop()
