"""Fill rates of a run and the flag on a fall (``pipeline/quality.py``)."""

from __future__ import annotations

import pytest

from pipeline.load.quality import (
    DROP_POINTS,
    MIN_RECORDS,
    FieldQuality,
    QualityTally,
    summary_lines,
)
from pipeline.models import ExtractionReport, Procedure


@pytest.mark.parametrize(
    ("records", "filled", "previous", "dropped"),
    [
        (20, 0, 1.0, True),  # a section the parser no longer finds
        (20, 16, 1.0, False),  # 20 points exactly: not more than DROP_POINTS
        (20, 15, 1.0, True),  # 25 points
        (20, 20, 0.5, False),  # a rise is never flagged
        (20, 0, None, False),  # the first run has nothing to compare with
        (MIN_RECORDS - 1, 0, 1.0, False),  # too few records to tell
        (MIN_RECORDS, 0, 1.0, True),
        (0, 0, 1.0, False),  # a run that parsed nothing
    ],
)
def test_a_fall_of_more_than_the_limit_is_flagged(
    records: int, filled: int, previous: float | None, dropped: bool
) -> None:
    assert DROP_POINTS == 20.0
    assert FieldQuality("risks", records, filled, previous).dropped is dropped


def _record(**fields: object) -> Procedure:
    base: dict[str, object] = {
        "source": "x", "code": "29881", "code_system": "CPT", "title": "Knee arthroscopy",
        "summary": "A look inside the knee.",
    }  # fmt: skip
    return Procedure.model_validate({**base, **fields})


def test_tally_counts_fields_and_reports() -> None:
    tally = QualityTally()
    report = ExtractionReport(headings=5, unclassified=2, chrome_blocks=3, chrome_chars=40)
    tally.add(_record(risks=["Bleeding"]), report)
    tally.add(_record(patient_experience={"during": ["Pressure"]}))
    fields = {f.field: f for f in tally.fields({"risks": 1.0})}
    assert (fields["risks"].filled, fields["risks"].records) == (1, 2)
    assert fields["risks"].previous_rate == 1.0
    assert fields["patient_experience"].filled == 1
    assert fields["steps"].filled == 0
    assert fields["summary"].rate == 1.0
    assert tally.counts() == {"headings": 5, "unclassified_headings": 2, "chrome_blocks": 3}


def test_summary_lines_name_unclassified_headings_and_flagged_fields() -> None:
    fields = [FieldQuality("steps", 30, 3, 0.9), FieldQuality("risks", 30, 30, 1.0)]
    lines = summary_lines(fields, {"headings": 120, "unclassified_headings": 7})
    assert lines == [
        "  headings left unclassified (kept in other_sections): 7 of 120",
        "  WARNING fill rate fell more than 20 points: steps filled in 10% of 30 records "
        "(previous run 90%)",
    ]
    assert summary_lines([], {}) == []
