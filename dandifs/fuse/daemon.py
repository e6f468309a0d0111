"""Background mode: detach from the terminal, but only after the mount answers.

`mount(8)`, fstab at boot and scripts expect the mount command to return once the
filesystem is usable, and to fail with a message when it is not.  So the command forks:
the child mounts and serves; the parent waits on a pipe until the child says "ready" (exit
0) or reports why it could not mount (the message is printed, exit 1).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Callable

READY = b"ready\n"

Work = Callable[[Callable[[], None]], int]


def run_in_background(work: Work, *, log_file: Path) -> int:
    """Run `work(ready)` in a detached child; return when it calls `ready()` or fails.

    Call this before any thread or trio run has started (it forks).  The child's standard
    streams go to `log_file`.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return _wait_for_child(read_end, pid, log_file)
    os.close(read_end)
    _detach(log_file)
    status = 1
    try:
        status = work(lambda: _signal_ready(write_end))
    except BaseException as exc:  # the parent must hear why, whatever it was
        traceback.print_exc()
        _send(write_end, f"{exc}\n".encode() if str(exc) else repr(exc).encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _wait_for_child(read_end: int, pid: int, log_file: Path) -> int:
    chunks = []
    try:
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
            if b"".join(chunks).startswith(READY):
                return 0
    finally:
        os.close(read_end)
    message = b"".join(chunks).decode(errors="replace").strip()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    reason = message or f"the mount process exited with status {code}"
    print(f"dandifs: mount failed: {reason} (log: {log_file})", file=sys.stderr)
    return 1


def _detach(log_file: Path) -> None:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    os.chdir("/")


def _signal_ready(write_end: int) -> None:
    _send(write_end, READY)


def _send(write_end: int, data: bytes) -> None:
    try:
        os.write(write_end, data)
        os.close(write_end)
    except OSError:
        pass  # already told, or the parent is gone: nothing left to say
