"""The table contract (pipeline.load.tables) and the pure record-to-rows conversion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.load import tables as T
from pipeline.load.rows import record_to_rows
from pipeline.models import (
    AnesthesiaKind,
    CodeSystem,
    Duration,
    HospitalStay,
    PatientExperience,
    Person,
    Procedure,
    Role,
    Setting,
    SimilarCode,
    Venue,
)

SPEC_TABLES = {
    "procedures",
    "indications",
    "preparation",
    "steps",
    "risks",
    "benefits",
    "recovery",
    "alternatives",
    "personnel",
    "patient_experience",
    "similar_codes",
    "other_sections",
    "rejects",
    "runs",
    "changes",
    "quality",
}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def osteotomy() -> Procedure:
    """CPT 22212 much as the reference page gives it."""
    return Procedure(
        source="https://www.example.org/code/cpt4/22212-osteotomy-of-spine",
        code="22212",
        code_system=CodeSystem.CPT,
        title="Osteotomy of spine, posterior or posterolateral approach, 1 vertebral segment; "
        "thoracic",
        summary="A spinal osteotomy removes a wedge of bone.\n\nIt corrects the spine's curve.",
        purpose="To correct a fixed deformity of the thoracic spine.",
        indications=["Kyphosis that does not respond to bracing"],
        steps=["The surgeon makes an incision.", "A wedge of bone is removed."],
        risks=["Bleeding", "Infection"],
        duration=Duration(text="3 to 6 hours", min_minutes=180, max_minutes=360),
        setting=Setting(text="Hospital operating room", venues=[Venue.HOSPITAL]),
        personnel=[
            Person(text="Spine surgeon (orthopedic or neurosurgeon)", role=Role.SURGEON),
            Person(text="Anesthesiologist", role=Role.ANESTHESIA),
        ],
        hospital_stay=HospitalStay(text="a hospital stay of 3 to 7 days", min_days=3, max_days=7),
        patient_experience=PatientExperience(
            during=["You will be asleep."], after=["Soreness.", "Fatigue."], notes=["Ask early."]
        ),
        similar_codes=[
            SimilarCode(code="22214", code_system=CodeSystem.CPT, title="Osteotomy; lumbar"),
            SimilarCode(code="22216", code_system=CodeSystem.CPT, title=""),
        ],
        anesthesia=[AnesthesiaKind.GENERAL, AnesthesiaKind.REGIONAL],
    )


def rows_of(record: Procedure, **kw: object) -> dict[str, list[dict[str, object]]]:
    args: dict[str, object] = {
        "source_url": record.source,
        "content_hash": "sha256:abc",
        "fetched_at": T0,
        "parsed_at": T0 + timedelta(seconds=1),
        "parser_version": "1.0.0",
    }
    args.update(kw)
    return record_to_rows(record, **args)  # type: ignore[arg-type]


# --- the specs -------------------------------------------------------------------------------


def test_every_table_of_the_spec_has_exactly_one_spec() -> None:
    assert {t.name for t in T.TABLES} == SPEC_TABLES
    assert len(T.TABLES) == len(SPEC_TABLES)


@pytest.mark.parametrize("spec", T.TABLES, ids=lambda s: s.name)
def test_spec_is_explicit_and_documented(spec: T.TableSpec) -> None:
    assert spec.key
    assert spec.description
    for column in spec.columns:
        assert isinstance(column.dtype, pl.DataType)
        assert column.description.strip()
    for name in spec.key:
        assert not spec.column(name).nullable
    assert list(spec.schema) == spec.names
    assert spec.empty().schema == spec.schema


def test_page_tables_are_keyed_by_page_and_ordinal() -> None:
    assert T.PROCEDURES.key == ("code_system", "code")
    for spec in T.CHILD_TABLES:
        assert spec.key == ("code_system", "code", "ordinal"), spec.name
    assert T.REJECTS.key == ("source",)
    assert T.RUNS.key == ("run_id",)
    assert T.CHANGES.key == ("run_id", "code_system", "code")


def test_enums_come_from_the_models() -> None:
    assert T.CODE_SYSTEM.categories.to_list() == [c.value for c in CodeSystem]
    assert T.PERSONNEL.column("role").dtype == pl.Enum(Role)
    assert T.PROCEDURES.column("venues").dtype == pl.List(pl.Enum(Venue))
    assert T.PROCEDURES.column("anesthesia").dtype == pl.List(pl.Enum(AnesthesiaKind))
    assert T.PROCEDURES.column("parsed_at").dtype == pl.Datetime("us", "UTC")


def test_unknown_table_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no table called 'nope'"):
        T.table("nope")


def test_spec_refuses_nullable_key() -> None:
    with pytest.raises(ValueError, match="must not be nullable"):
        T.TableSpec("x", "x", "log", ("a",), (T.Column("a", pl.String(), True, "a"),))


# --- the contract ----------------------------------------------------------------------------


def test_contract_lists_columns_dtypes_nullability_and_keys() -> None:
    document = T.contract()
    assert set(document["tables"]) == SPEC_TABLES
    procedures = document["tables"]["procedures"]
    assert procedures["key"] == ["code_system", "code"]
    by_name = {c["name"]: c for c in procedures["columns"]}
    assert by_name["code_system"]["dtype"].startswith("Enum(")
    assert by_name["summary"] == by_name["summary"] | {"dtype": "String", "nullable": True}
    assert by_name["parsed_at"]["dtype"] == "Datetime(time_unit='us', time_zone='UTC')"
    assert by_name["venues"]["dtype"].startswith("List(Enum(")
    json.dumps(document)  # plain data


def test_write_contract_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "schemas" / "tables.json"
    T.write_contract(path)
    assert json.loads(path.read_text(encoding="utf-8")) == T.contract()
    first = path.read_bytes()
    T.write_contract(path)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["tables.json"]


# --- the CSV form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2 tablets", "'-2 tablets"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("'quoted", "''quoted"),
        ("Bleeding", "Bleeding"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralize(text: str, expected: str) -> None:
    frame = pl.DataFrame({"t": [text, None]})
    out = frame.select(T.neutralize(pl.col("t")).alias("t"))["t"].to_list()
    assert out == [expected, None]


@given(st.text())
def test_neutralize_is_reversible_and_safe(text: str) -> None:
    frame = pl.DataFrame({"t": [text]})
    safe = frame.select(T.neutralize(pl.col("t")).alias("t"))["t"][0]
    assert not safe or safe[0] not in T.FORMULA_TRIGGERS
    back = pl.DataFrame({"t": [safe]}).select(T.unneutralize(pl.col("t")).alias("t"))["t"][0]
    assert back == text


def tricky_procedures() -> pl.DataFrame:
    rows = rows_of(osteotomy())["procedures"]
    second = dict(rows[0])
    second.update(
        code="0042T",
        title='=cmd|"/C calc"!A0, with "quotes", commas\nand a newline',
        summary="-starts with minus\r\nand CRLF",
        purpose="'already quoted",
        venues=[],
        anesthesia=[],
        fetched_at=None,
        gone=True,
        gone_at=T0,
    )
    return pl.DataFrame([rows[0], second], schema=T.PROCEDURES.schema)


def test_csv_form_round_trips(tmp_path: Path) -> None:
    frame = tricky_procedures()
    path = tmp_path / "procedures.csv"
    T.csv_frame(frame.lazy(), T.PROCEDURES).sink_csv(path, quote_style="necessary")
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(T.PROCEDURES.names)
    assert "hospital" in text
    assert "2024-05-01T12:00:01.000000Z" in text
    assert "'=cmd" in text
    assert "'-starts with minus" in text
    assert_frame_equal(T.read_csv_table(path, T.PROCEDURES), frame)


def test_csv_flat_form_of_lists() -> None:
    frame = tricky_procedures().with_columns(
        pl.Series("venues", [["hospital", "home"], []], dtype=pl.List(T.VENUE))
    )
    flat = T.csv_frame(frame.lazy(), T.PROCEDURES).collect()
    assert flat["venues"].to_list() == ["hospital|home", ""]
    assert flat["anesthesia"].to_list() == ["general|regional", ""]
    assert flat["duration_min_minutes"].dtype == pl.Int32


# --- record_to_rows --------------------------------------------------------------------------


def test_record_to_rows_gives_every_table_of_the_page() -> None:
    rows = rows_of(osteotomy())
    assert set(rows) == {"procedures"} | {s.name for s in T.CHILD_TABLES}
    for name, table_rows in rows.items():
        frame = pl.DataFrame(table_rows, schema=T.table(name).schema)  # strict: no coercion
        assert frame.columns == T.table(name).names


def test_record_to_rows_procedure_row() -> None:
    (row,) = rows_of(osteotomy())["procedures"]
    assert row["code_system"] == "CPT"
    assert row["code"] == "22212"
    assert row["duration_min_minutes"] == 180
    assert row["duration_max_minutes"] == 360
    assert row["venues"] == ["hospital"]
    assert row["hospital_stay_min_days"] == 3
    assert row["anesthesia"] == ["general", "regional"]
    assert row["source_url"] == "https://www.example.org/code/cpt4/22212-osteotomy-of-spine"
    assert row["gone"] is False
    assert row["gone_at"] is None


def test_record_to_rows_children_keep_page_order() -> None:
    rows = rows_of(osteotomy())
    assert [(r["ordinal"], r["text"]) for r in rows["steps"]] == [
        (1, "The surgeon makes an incision."),
        (2, "A wedge of bone is removed."),
    ]
    assert rows["benefits"] == []
    assert [(r["ordinal"], r["role"]) for r in rows["personnel"]] == [
        (1, "surgeon"),
        (2, "anesthesia"),
    ]
    assert [(r["ordinal"], r["phase"]) for r in rows["patient_experience"]] == [
        (1, "during"),
        (2, "after"),
        (3, "after"),
        (4, "notes"),
    ]
    similar = rows["similar_codes"]
    assert similar[0]["similar_code"] == "22214"
    assert similar[0]["similar_code_system"] == "CPT"
    assert similar[1]["similar_title"] is None  # empty title becomes null


def test_record_to_rows_absent_sections() -> None:
    record = Procedure(
        source="https://example.org/code/hcpcs/G0105-colorectal-cancer-screening",
        code="G0105",
        code_system=CodeSystem.HCPCS,
        title="Colorectal cancer screening; colonoscopy on individual at high risk",
        summary="A colonoscopy for people at high risk of colorectal cancer.",
    )
    (row,) = rows_of(record, fetched_at=None)["procedures"]
    assert row["duration_text"] is None
    assert row["venues"] == []
    assert row["anesthesia"] == []
    assert row["hospital_stay_text"] is None
    assert row["fetched_at"] is None


def test_record_to_rows_converts_to_utc_and_refuses_naive_times() -> None:
    plus_two = timezone(timedelta(hours=2))
    (row,) = rows_of(osteotomy(), parsed_at=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))[
        "procedures"
    ]
    assert row["parsed_at"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert row["parsed_at"].tzinfo == UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        rows_of(osteotomy(), parsed_at=datetime(2024, 5, 1, 12, 0))


def test_record_to_rows_is_pure() -> None:
    record = osteotomy()
    before = record.model_dump()
    assert rows_of(record) == rows_of(record)
    assert record.model_dump() == before


@pytest.mark.parametrize("field", ["source_url", "content_hash", "parser_version"])
def test_record_to_rows_refuses_empty_required_text(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must not be empty"):
        rows_of(osteotomy(), **{field: ""})
