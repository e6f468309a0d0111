"""Benchmark results as a table: median, min and max of repeated runs, and ratios to a baseline."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Series:
    """Repeated measurements of one contender in one case (seconds, or any unit)."""

    case: str
    contender: str
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def render(series: list[Series], *, unit: str = "s", baseline: dict[str, str] | None = None,
           lower_is_better: bool = True) -> str:
    """One row per (case, contender); `ratio` is the median over the case's baseline median."""
    baseline = baseline or {}
    medians = {(s.case, s.contender): s.median for s in series}
    rows = [("case", "contender", f"median {unit}", "min", "max", "n", "ratio", "note")]
    for s in series:
        base_name = baseline.get(s.case)
        base = medians.get((s.case, base_name)) if base_name else None
        ratio = f"{s.median / base:.2f}x {base_name}" if base and s.values else ""
        if not s.values:
            rows.append((s.case, s.contender, "-", "-", "-", "0", "", s.note))
            continue
        rows.append((s.case, s.contender, _fmt(s.median), _fmt(min(s.values)),
                     _fmt(max(s.values)), str(len(s.values)), ratio, s.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"
