"""Pieces of objects smaller than a block, fetched for small reads over cold connections.

Over a long path a GET's time is its round trips: a new connection (or one idle for longer
than a retransmission timeout) sends 10 segments (~14 KB) in its first round trip and
doubles that each round, so a 256 KiB block costs five round trips where the 14 KB of HDF5
metadata a read wants cost one.  A small read that would wait for whole blocks fetched
over such a connection fetches one window's worth around itself instead: a fragment.  It
grows the connection's window as much as its bytes do, so reads that follow are sized
larger, until whole blocks cost a round trip again and reads go back to blocks.

Fragments live in memory only, bounded in bytes (the oldest dropped first); the blocks
under them are fetched for the disk store once their reader closes (`BlockCache.settle`).
"""

from __future__ import annotations

from collections import OrderedDict

from dandifs.concurrency import Outcome

ALIGN = 4 << 10  # a fragment starts on a page: readers step back a little as often as forward


class Fragments:
    """Fragments by object key; `find` serves a read lying wholly inside one."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
        self._by_object: dict[str, dict[int, int]] = {}  # key -> {start: stop}
        self._flights: dict[str, dict[tuple[int, int], Outcome[bytes | bytearray]]] = {}
        self.bytes = 0

    def find(self, key: str, offset: int, end: int) -> bytes | None:
        """Bytes `[offset, end)` if a held fragment covers them."""
        for start, stop in self._by_object.get(key, {}).items():
            if start <= offset and end <= stop:
                data = self._held[(key, start)]
                self._held.move_to_end((key, start))
                return bytes(memoryview(data)[offset - start : end - start])
        return None

    def in_flight(self, key: str, offset: int, end: int) -> tuple[int, Outcome[bytes | bytearray]] | None:
        """A fragment being fetched that covers `[offset, end)`: its start and outcome."""
        for (start, stop), outcome in self._flights.get(key, {}).items():
            if start <= offset and end <= stop:
                return start, outcome
        return None

    def begin(self, key: str, start: int, stop: int) -> Outcome[bytes | bytearray]:
        outcome: Outcome[bytes | bytearray] = Outcome()
        self._flights.setdefault(key, {})[(start, stop)] = outcome
        return outcome

    def end(self, key: str, start: int, stop: int) -> None:
        flights = self._flights.get(key, {})
        flights.pop((start, stop), None)
        if not flights:
            self._flights.pop(key, None)

    def put(self, key: str, start: int, data: bytes | bytearray) -> None:
        if len(data) > self.capacity:
            return
        self._drop(key, start)
        self._held[(key, start)] = data
        self._by_object.setdefault(key, {})[start] = start + len(data)
        self.bytes += len(data)
        while self.bytes > self.capacity:
            (old_key, old_start), _ = next(iter(self._held.items()))
            self._drop(old_key, old_start)

    def spans(self, key: str) -> list[tuple[int, int]]:
        """The `[start, stop)` byte ranges held of an object."""
        return sorted(self._by_object.get(key, {}).items())

    def _drop(self, key: str, start: int) -> None:
        data = self._held.pop((key, start), None)
        if data is None:
            return
        self.bytes -= len(data)
        spans = self._by_object[key]
        del spans[start]
        if not spans:
            del self._by_object[key]
