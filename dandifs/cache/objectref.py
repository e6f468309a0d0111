"""Which object a block belongs to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectRef:
    """An object's bytes as one immutable thing: where to fetch them and what they are.

    Blocks are keyed by `identity` (the URL unless a steadier name is given, e.g. for
    presigned URLs that change on every request) together with the ETag, so a changed
    object never shares blocks with its former self.  Without an ETag the bytes cannot be
    told apart from a later version, so they are kept in memory only, never on disk.
    """

    url: str
    size: int
    etag: str | None = None
    identity: str = ""
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"object size must not be negative, not {self.size}")
        if not self.identity:
            object.__setattr__(self, "identity", self.url)
        digest = hashlib.sha256(f"{self.identity}\n{self.etag or ''}".encode()).hexdigest()
        object.__setattr__(self, "key", digest)

    @property
    def persistent(self) -> bool:
        """Whether its blocks may be kept on disk across processes."""
        return bool(self.etag)

    @property
    def record_identity(self) -> str:
        """What a disk record stores to prove which object it describes."""
        return f"{self.identity}\n{self.etag or ''}"
