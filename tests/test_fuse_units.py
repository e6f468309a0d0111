"""Pure tests of the FUSE front end's pieces: inode table, errno table, attributes, options."""

from __future__ import annotations

import errno
import stat
from datetime import datetime, timezone
from pathlib import Path

import pyfuse3
import pytest

from dandifs import errors
from dandifs.fuse.attrs import AttrPolicy
from dandifs.fuse.errnos import ERRNO_TABLE, errno_for, fuse_errors, refusal
from dandifs.fuse.inodes import ROOT_INODE, InodeTable
from dandifs.namespace import join_path as child_path, parent_path
from dandifs.fuse.options import (
    MountOptions,
    OptionError,
    apply_options,
    from_environment,
    parse_size,
)
from dandifs.fuse.xattrs import (
    ASSET_ID, DIGEST, METADATA, S3_URL, UPLOAD, VALIDATION, xattr_names,
)
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.upload.state import Phase, UploadState

# -- inode table ---------------------------------------------------------------------------


def test_inode_numbers_are_stable_while_the_kernel_holds_them() -> None:
    table = InodeTable()
    first = table.acquire("/dandisets")
    assert table.acquire("/dandisets") == first
    assert table.lookups(first) == 2
    assert table.path(first) == "/dandisets"
    table.forget(first, 1)
    assert table.path(first) == "/dandisets"
    assert table.acquire("/dandisets/000001") != first


def test_forgotten_inodes_are_released_and_then_stale() -> None:
    table = InodeTable()
    inode = table.acquire("/a")
    table.forget(inode, 1)
    assert table.peek("/a") is None
    with pytest.raises(errors.Stale):
        table.path(inode)
    assert table.acquire("/a") != inode  # a new number: the kernel never mixes the two


def test_a_renamed_folder_keeps_its_numbers_and_so_do_its_children() -> None:
    table = InodeTable()
    folder = table.acquire("/d/draft/a")
    child = table.acquire("/d/draft/a/x.nwb")
    sibling = table.acquire("/d/draft/ab")  # shares a prefix, is not under it
    assert table.move("/d/draft/a", "/d/draft/b") == [folder, child]
    assert table.path(folder) == "/d/draft/b" and table.path(child) == "/d/draft/b/x.nwb"
    assert table.peek("/d/draft/b/x.nwb") == child and table.peek("/d/draft/a") is None
    assert table.path(sibling) == "/d/draft/ab"


def test_a_rename_over_a_file_detaches_the_replaced_number() -> None:
    table = InodeTable()
    moved, replaced = table.acquire("/x"), table.acquire("/y")
    table.move("/x", "/y")
    assert table.peek("/y") == moved
    assert table.path(replaced) == "/y"  # still known to the kernel until it forgets
    table.forget(replaced, 1)
    assert table.peek("/y") == moved  # forgetting the old number leaves the new owner alone


def test_a_removed_path_gets_a_new_number_when_made_again() -> None:
    table = InodeTable()
    old = table.acquire("/d/draft/f")
    table.detach("/d/draft/f")
    new = table.acquire("/d/draft/f")
    assert new != old and table.lookups(old) == 1
    table.forget(old, 1)
    assert table.peek("/d/draft/f") == new


def test_root_is_never_forgotten() -> None:
    table = InodeTable()
    table.forget(ROOT_INODE, 100)
    assert table.path(ROOT_INODE) == "/"
    assert len(table) == 1


@pytest.mark.parametrize(
    ("parent", "name", "joined"),
    [("/", "dandisets", "/dandisets"), ("/dandisets", "000001", "/dandisets/000001")],
)
def test_child_and_parent_paths(parent: str, name: str, joined: str) -> None:
    assert child_path(parent, name) == joined
    assert parent_path(joined) == parent


# -- errno table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("x"), errno.ENOENT),
        (errors.InvalidPath("x"), errno.ENOENT),
        (errors.IsADirectory("x"), errno.EISDIR),
        (errors.NotADirectory("x"), errno.ENOTDIR),
        (errors.ReadOnly("x"), errno.EROFS),
        (errors.InvalidToken("x"), errno.EACCES),
        (errors.PermissionDenied("x"), errno.EACCES),
        (errors.Stale("x"), errno.ESTALE),
        (errors.Unavailable("x"), errno.EIO),
        (errors.ArchiveRejected("x", status=500), errno.EIO),
        (errors.AuthenticationRequired("x"), errno.EACCES),
        (errors.AlreadyExists("x"), errno.EEXIST),
        (errors.NotEmpty("x"), errno.ENOTEMPTY),
        (errors.NameRefused("x"), errno.EINVAL),
        (errors.CannotMove("x"), errno.EXDEV),
        (errors.NoSpace("x"), errno.ENOSPC),
        (errors.UploadFailed("x"), errno.EIO),
    ],
)
def test_domain_errors_map_to_errno(exc: Exception, code: int) -> None:
    assert errno_for(exc) == code
    with pytest.raises(pyfuse3.FUSEError) as raised:
        with fuse_errors("read", 7):
            raise exc
    assert raised.value.errno == code


def test_every_domain_error_has_an_errno() -> None:
    def subclasses(kind: type) -> list[type]:
        found = [kind]
        for sub in kind.__subclasses__():
            found += subclasses(sub)
        return found

    classes = [c for c in subclasses(errors.DandiFSError) if c.__module__ == "dandifs.errors"]
    missing = [c.__name__ for c in classes[1:] if not any(issubclass(c, k) for k, _ in ERRNO_TABLE)]
    assert not missing


def test_an_unexpected_exception_becomes_eio_with_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(pyfuse3.FUSEError) as raised:
        with fuse_errors("read", 7):
            raise KeyError("boom")
    assert raised.value.errno == errno.EIO
    assert "unexpected failure" in caplog.text and "KeyError" in caplog.text


def test_read_only_refusal_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(pyfuse3.FUSEError):
        with fuse_errors("write", "/dandisets/000001/0.1/x"):
            raise errors.ReadOnly("published versions never change")
    assert "published versions never change" in caplog.text and "EROFS" in caplog.text


def test_a_refusal_of_fuse_itself_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(pyfuse3.FUSEError) as raised:
        with fuse_errors("symlink", "/dandisets/000001/draft/l"):
            raise refusal(errno.EPERM, "symlink", "/dandisets/000001/draft/l", "no symbolic links")
    assert raised.value.errno == errno.EPERM
    assert "no symbolic links" in caplog.text and "EPERM" in caplog.text


# -- attributes ----------------------------------------------------------------------------

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def _entry(kind: EntryKind, *, immutable: bool, version: str = "draft", **kw: object) -> Entry:
    return Entry(
        path=f"/dandisets/000001/{version}/x",
        kind=kind,
        immutable=immutable,
        version=version,
        mtime=WHEN,
        ctime=WHEN,
        **kw,  # type: ignore[arg-type]
    )


def test_published_entries_are_read_only_and_cached_long() -> None:
    policy = AttrPolicy(uid=1000, gid=1000, ttl_immutable=3600, ttl_mutable=5)
    attrs = policy.attributes(
        _entry(EntryKind.FILE, immutable=True, version="0.240506.0708", size=1234), 42
    )
    assert stat.S_ISREG(attrs.st_mode) and stat.S_IMODE(attrs.st_mode) == 0o444
    assert attrs.st_size == 1234 and attrs.st_ino == 42 and attrs.st_nlink == 1
    assert attrs.st_blocks == 3
    assert attrs.st_mtime_ns == int(WHEN.timestamp()) * 1_000_000_000
    assert attrs.entry_timeout == attrs.attr_timeout == 3600
    assert (attrs.st_uid, attrs.st_gid) == (1000, 1000)


def test_draft_entries_are_owner_writable_and_cached_briefly() -> None:
    policy = AttrPolicy(uid=0, gid=0, drafts_writable=True, ttl_immutable=3600, ttl_mutable=5)
    folder = policy.attributes(_entry(EntryKind.FOLDER, immutable=False), 2)
    assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o755
    assert folder.attr_timeout == 5 and folder.st_nlink == 1
    file = policy.attributes(_entry(EntryKind.FILE, immutable=False, size=3), 3)
    assert stat.S_IMODE(file.st_mode) == 0o644
    yaml = Entry(path="/dandisets/000001/draft/dandiset.yaml", kind=EntryKind.FILE, version="draft")
    assert stat.S_IMODE(policy.attributes(yaml, 4).st_mode) == 0o444


def test_without_a_token_drafts_are_read_only() -> None:
    policy = AttrPolicy(uid=0, gid=0)
    assert stat.S_IMODE(policy.attributes(_entry(EntryKind.FOLDER, immutable=False), 2).st_mode) == 0o555
    assert stat.S_IMODE(policy.attributes(_entry(EntryKind.FILE, immutable=False), 3).st_mode) == 0o444


def test_symlink_size_is_its_target_length() -> None:
    policy = AttrPolicy(uid=0, gid=0)
    attrs = policy.attributes(
        _entry(EntryKind.SYMLINK, immutable=False, symlink_target="0.240506.0708"), 3
    )
    assert stat.S_ISLNK(attrs.st_mode) and attrs.st_size == len("0.240506.0708")


def test_xattr_names_follow_what_the_entry_knows() -> None:
    blob = _entry(
        EntryKind.FILE, immutable=True, asset_id="a1", etag="e-1", content_url="http://s3/x"
    )
    assert xattr_names(blob) == [ASSET_ID, DIGEST, S3_URL, METADATA]
    assert xattr_names(_entry(EntryKind.FOLDER, immutable=True)) == []


def test_draft_files_show_their_upload_and_assets_their_validation() -> None:
    pending = _entry(EntryKind.FILE, immutable=False, upload=UploadState(Phase.UPLOADING, 3, 16))
    assert xattr_names(pending) == [UPLOAD]
    asset = _entry(EntryKind.FILE, immutable=False, asset_id="a1", etag="e-1")
    assert xattr_names(asset) == [ASSET_ID, DIGEST, METADATA, VALIDATION]
    assert xattr_names(asset, UploadState(Phase.DONE)) == [ASSET_ID, DIGEST, METADATA, VALIDATION, UPLOAD]
    assert UploadState(Phase.UPLOADING, 3, 16).describe() == "uploading 3/16 parts"


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("123", 123), ("512M", 512 * 2**20), ("10G", 10 * 2**30), ("1.5GiB", 3 * 2**29), ("4k", 4096)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_fstab_options_are_applied_and_system_ones_ignored(tmp_path: Path) -> None:
    base = MountOptions(mountpoint=tmp_path)
    options = apply_options(
        base,
        "defaults,_netdev,noauto,user,nofail,ro,x-systemd.automount,allow_other,uid=1000,"
        "gid=100,cache_dir=/var/cache/d,cache_size=20G,instance=dandi-sandbox,"
        "token_file=/etc/dandi.token",
    )
    assert options.allow_other and options.uid == 1000 and options.gid == 100
    assert options.cache_dir == Path("/var/cache/d") and options.cache_size == 20 * 2**30
    assert options.instance == "dandi-sandbox"
    assert options.token_file == Path("/etc/dandi.token")
    assert options.read_only  # `ro` keeps drafts read-only too
    assert not apply_options(options, "rw").read_only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", "unknown mount option 'bogus'"),
        ("uid=alice", "expected a numeric id"),
        ("cache_size=lots", "expected a number of bytes"),
        ("allow_other=yes", "takes no value"),
        ("instance=", "needs a value"),
    ],
)
def test_bad_options_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        apply_options(MountOptions(mountpoint=tmp_path), text)


def test_upload_wait_is_seconds(tmp_path: Path) -> None:
    assert apply_options(MountOptions(mountpoint=tmp_path), "upload_wait=2.5").upload_wait == 2.5
    with pytest.raises(OptionError, match="number of seconds"):
        apply_options(MountOptions(mountpoint=tmp_path), "upload_wait=-1")


def test_sloppy_mode_skips_unknown_options(tmp_path: Path) -> None:
    options = apply_options(MountOptions(mountpoint=tmp_path), "bogus,uid=5", sloppy=True)
    assert options.uid == 5


def test_environment_supplies_defaults(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc123\n")
    options = from_environment(
        tmp_path,
        {"DANDIFS_INSTANCE": "http://127.0.0.1:1/api", "DANDIFS_CACHE_SIZE": "1G",
         "DANDIFS_TOKEN_FILE": str(token)},
    )
    assert options.instance == "http://127.0.0.1:1/api" and options.cache_size == 2**30
    assert options.token() == "abc123"


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("  \n")
    options = MountOptions(mountpoint=tmp_path, token_file=empty)
    with pytest.raises(OptionError, match="is empty"):
        options.token()
