"""Where a written file is on its way to becoming an asset: the one value front ends show
(the `user.dandifs.upload` xattr, a WebDAV property, `dandifs uploads`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    """The steps of one upload, in order; `DONE` and `FAILED` end it.  `EMPTY` is a file
    with no bytes, kept locally: the archive cannot hold an empty asset; `LOCAL` a file
    with a hidden name (an editor's swap file, rsync's temporary file), which the archive
    never gets, as `dandi upload` skips such names."""

    WRITING = "writing"
    SPOOLED = "spooled"
    HASHING = "hashing"
    UPLOADING = "uploading"
    VALIDATING = "validating"
    REGISTERING = "registering"
    DONE = "done"
    FAILED = "failed"
    EMPTY = "empty"
    LOCAL = "local"


@dataclass(frozen=True)
class UploadState:
    phase: Phase
    parts_done: int = 0
    parts_total: int = 0
    reason: str | None = None
    """Why it failed (the archive's words), or why it waits (a retry's cause)."""

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FAILED)

    def describe(self) -> str:
        """One line for people: `uploading 3/16 parts`, `failed: <reason>`."""
        if self.phase is Phase.UPLOADING and self.parts_total:
            text = f"uploading {self.parts_done}/{self.parts_total} parts"
        elif self.phase is Phase.LOCAL:
            text = "local: a hidden name stays on this machine (rename it to upload it)"
        elif self.phase is Phase.EMPTY:
            text = "empty: kept on this machine until it has bytes (the archive holds no empty files)"
        else:
            text = self.phase.value
        return f"{text}: {self.reason}" if self.reason else text
