"""Extraction quality of a run: how many records filled each field, and what the parser lost.

A scheduled crawl of a site that changes its layout does not fail: pages still parse, but a
section the parser no longer recognizes comes out empty on every page (or lands in
``other_sections``). This module makes that visible. Every run counts, per field, the records
that filled it, and sums the pages' extraction reports (headings seen, headings left
unclassified, chrome dropped). The counts go to the ``quality`` table and the ``runs`` row; a
field whose fill rate falls by more than :data:`DROP_POINTS` points against the previous run
that measured it is *flagged*: in the table, in the run summary (a warning line) and in
``pipeline status``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.models import ExtractionReport, Procedure

#: Record fields whose fill rate is measured, in record order.
FIELDS: tuple[str, ...] = (
    "summary", "purpose", "indications", "preparation", "steps", "risks", "benefits",
    "recovery", "alternatives", "duration", "setting", "personnel", "hospital_stay",
    "patient_experience", "similar_codes", "anesthesia", "other_sections",
)  # fmt: skip
#: A fill rate that falls by more than this many percentage points is flagged.
DROP_POINTS = 20.0
#: Runs with fewer records than this are measured but never compared (too few to tell).
MIN_RECORDS = 10


def filled(record: Procedure, name: str) -> bool:
    """True when the record says something in field ``name``."""
    value = getattr(record, name)
    if name == "patient_experience":
        return not record.patient_experience.is_empty()
    return bool(value)


@dataclass(frozen=True, slots=True)
class FieldQuality:
    """One field's fill rate in a run, against the previous run that measured it."""

    field: str
    records: int
    filled: int
    previous_rate: float | None

    @property
    def rate(self) -> float:
        return self.filled / self.records if self.records else 0.0

    @property
    def dropped(self) -> bool:
        """True when the rate fell by more than DROP_POINTS against a comparable run."""
        return (
            self.previous_rate is not None
            and self.records >= MIN_RECORDS
            and (self.previous_rate - self.rate) * 100 > DROP_POINTS
        )

    def describe(self) -> str:
        before = "" if self.previous_rate is None else f" (previous run {self.previous_rate:.0%})"
        return f"{self.field} filled in {self.rate:.0%} of {self.records} records{before}"


@dataclass
class QualityTally:
    """Counts over the records of one run; fed one record (and its report) at a time."""

    records: int = 0
    fills: Counter[str] = field(default_factory=Counter)
    headings: int = 0
    unclassified: int = 0
    chrome_blocks: int = 0

    def add(self, record: Procedure, report: ExtractionReport | None = None) -> None:
        self.records += 1
        for name in FIELDS:
            if filled(record, name):
                self.fills[name] += 1
        if report is not None:
            self.headings += report.headings
            self.unclassified += report.unclassified
            self.chrome_blocks += report.chrome_blocks

    def fields(self, previous: Mapping[str, float]) -> list[FieldQuality]:
        """Every measured field; ``previous`` maps a field to its last comparable rate."""
        return [
            FieldQuality(name, self.records, self.fills[name], previous.get(name))
            for name in FIELDS
        ]

    def counts(self) -> dict[str, int]:
        """The run-level counters that go to the ``runs`` row."""
        return {
            "headings": self.headings,
            "unclassified_headings": self.unclassified,
            "chrome_blocks": self.chrome_blocks,
        }


def summary_lines(fields: list[FieldQuality], counts: Mapping[str, Any]) -> list[str]:
    """Human lines for the run summary: unclassified headings, then every flagged field."""
    lines: list[str] = []
    headings = int(counts.get("headings", 0))
    if headings:
        lines.append(
            f"  headings left unclassified (kept in other_sections): "
            f"{int(counts.get('unclassified_headings', 0))} of {headings}"
        )
    lines.extend(
        f"  WARNING fill rate fell more than {DROP_POINTS:.0f} points: {f.describe()}"
        for f in fields
        if f.dropped
    )
    return lines
