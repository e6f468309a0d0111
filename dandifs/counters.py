"""The one shape of every tally the layers keep: named integer counters, read as a dict."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Counters:
    """Integer fields, plus totals derived from them (`derived`), read by `snapshot`:
    what benchmarks, logs and the mount's statistics attribute print."""

    def derived(self) -> dict[str, int]:
        return {}

    def snapshot(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)} | self.derived()
