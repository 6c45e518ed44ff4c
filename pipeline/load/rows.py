"""Records to rows: one validated record becomes a row of ``procedures`` and rows of its child
tables. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.load import tables as T
from pipeline.load.layout import Row
from pipeline.models import LIST_SECTIONS, Procedure

# --- records to rows (pure) ------------------------------------------------------------------


def utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused (their zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _opt_text(value: str | None) -> str | None:
    """Optional text with empty strings as null (CSV cannot tell the two apart)."""
    return value if value else None


def required(value: str, what: str) -> str:
    """Non-empty text for a non-nullable column (CSV could not tell ``""`` from null)."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _procedure_row(
    record: Procedure,
    *,
    source_url: str,
    content_hash: str,
    fetched_at: datetime | None,
    parsed_at: datetime,
    parser_version: str,
) -> Row:
    duration, setting, stay = record.duration, record.setting, record.hospital_stay
    return {
        "code_system": record.code_system.value,
        "code": record.code,
        "title": record.title,
        "summary": _opt_text(record.summary),
        "purpose": _opt_text(record.purpose),
        "duration_text": duration.text if duration else None,
        "duration_min_minutes": duration.min_minutes if duration else None,
        "duration_max_minutes": duration.max_minutes if duration else None,
        "setting_text": setting.text if setting else None,
        "venues": [v.value for v in setting.venues] if setting else [],
        "hospital_stay_text": stay.text if stay else None,
        "hospital_stay_min_days": stay.min_days if stay else None,
        "hospital_stay_max_days": stay.max_days if stay else None,
        "anesthesia": [a.value for a in record.anesthesia],
        "source_url": required(source_url, "source_url"),
        "content_hash": required(content_hash, "content_hash"),
        "fetched_at": utc(fetched_at, "fetched_at") if fetched_at is not None else None,
        "parsed_at": utc(parsed_at, "parsed_at"),
        "parser_version": required(parser_version, "parser_version"),
        "gone": False,
        "gone_at": None,
    }


def _child_rows(record: Procedure) -> dict[str, list[Row]]:
    key = {"code_system": record.code_system.value, "code": record.code}
    rows: dict[str, list[Row]] = {
        name: [
            {**key, "ordinal": i, "text": text} for i, text in enumerate(getattr(record, name), 1)
        ]
        for name in LIST_SECTIONS
    }
    rows["personnel"] = [
        {**key, "ordinal": i, "text": p.text, "role": p.role.value}
        for i, p in enumerate(record.personnel, 1)
    ]
    experience = record.patient_experience
    phased = [(phase, text) for phase in T.PHASES for text in getattr(experience, phase)]
    rows["patient_experience"] = [
        {**key, "ordinal": i, "phase": phase, "text": text}
        for i, (phase, text) in enumerate(phased, 1)
    ]
    rows["similar_codes"] = [
        {
            **key,
            "ordinal": i,
            "similar_code": s.code,
            "similar_code_system": s.code_system.value,
            "similar_title": _opt_text(s.title),
        }
        for i, s in enumerate(record.similar_codes, 1)
    ]
    rows["other_sections"] = [
        {**key, "ordinal": i, "heading": o.heading, "text": _opt_text(o.text)}
        for i, o in enumerate(record.other_sections, 1)
    ]
    return rows


def record_to_rows(
    record: Procedure,
    *,
    source_url: str,
    content_hash: str,
    fetched_at: datetime | None,
    parsed_at: datetime,
    parser_version: str,
) -> dict[str, list[Row]]:
    """One record as rows of ``procedures`` and of every child table (each key present).

    Pure: values are plain Python (enum values as their text, datetimes in UTC), ordinals count
    from 1 in page order, the page is live (``gone`` false), empty optional text is null. Raises
    ValueError for naive datetimes and for an empty source_url, content_hash or parser_version.
    """
    procedure = _procedure_row(
        record,
        source_url=source_url,
        content_hash=content_hash,
        fetched_at=fetched_at,
        parsed_at=parsed_at,
        parser_version=parser_version,
    )
    return {T.PROCEDURES.name: [procedure], **_child_rows(record)}
