"""What the core hands a front end to read one open file with."""

from __future__ import annotations

from typing import Protocol


class FileReader(Protocol):
    """The bytes of one open file; one per handle, so read-ahead follows that handle alone."""

    async def read(self, offset: int, size: int) -> bytes: ...

    async def aclose(self) -> None: ...
