"""`mount.dandifs`: the mount(8) helper, so `mount -t dandifs` and fstab lines work.

mount(8) runs `/sbin/mount.dandifs SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS]` with the
fstab source (here the instance: `dandi`, `dandi-sandbox` or an API URL) and the fstab
options.  The helper returns once the filesystem answers (background mode), as mount(8)
expects.  Install it with `ln -s "$(command -v mount.dandifs)" /sbin/mount.dandifs`; then

    mount -t dandifs dandi /mnt/dandi -o allow_other,cache_dir=/var/cache/dandifs
    # /etc/fstab:
    dandi  /mnt/dandi  dandifs  _netdev,nofail,allow_other,cache_size=20G  0  0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dandifs.fuse.options import OptionError, apply_options, from_environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mount.dandifs",
        description="Mount a DANDI archive instance (mount(8) helper for type dandifs).",
    )
    parser.add_argument("instance", help="dandi-cli instance name (dandi, dandi-sandbox) or API URL")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS")
    parser.add_argument("-s", dest="sloppy", action="store_true", help="tolerate unknown options")
    parser.add_argument("-f", dest="fake", action="store_true", help="do everything but mount")
    parser.add_argument("-n", dest="no_mtab", action="store_true", help="(ignored: no mtab)")
    parser.add_argument("-v", dest="verbose", action="store_true", help="log debug messages")
    parser.add_argument("-N", dest="namespace", help="(ignored: mount namespace)")
    parser.add_argument("-t", dest="type", help="(ignored: the filesystem type)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dandifs.cli.mount import check_mountpoint, mount

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        options = from_environment(args.mountpoint.absolute())
        options = apply_options(options, f"instance={args.instance}")
        for text in args.options:
            options = apply_options(options, text, sloppy=args.sloppy)
        if args.verbose:
            options = apply_options(options, "debug")
        check_mountpoint(options.mountpoint)
    except OptionError as exc:
        print(f"mount.dandifs: {exc}", file=sys.stderr)
        return 1
    if args.fake:
        return 0
    return mount(options)
