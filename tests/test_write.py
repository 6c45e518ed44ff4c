"""The table writer: tables, CSV form, merge semantics, atomic publication, errors, memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from pipeline.errors import WriteError
from pipeline.load import merge as M
from pipeline.load import tables as T
from pipeline.load import write as W
from pipeline.load.write import PublishResult, TableWriter
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

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAGE_TABLES = ("procedures", *(s.name for s in T.CHILD_TABLES))

# --- a small factory of realistic records ----------------------------------------------------

SYSTEM_PATHS = {
    CodeSystem.CPT: "cpt4",
    CodeSystem.HCPCS: "hcpcs",
    CodeSystem.ICD10CM: "icd10cm",
    CodeSystem.ICD10PCS: "icd10pcs",
}


def make_record(
    code: str = "22212", system: CodeSystem = CodeSystem.CPT, **overrides: object
) -> Procedure:
    """A record much like CPT 22212's page; ``overrides`` replace fields."""
    data: dict[str, object] = {
        "source": f"https://www.example.org/code/{SYSTEM_PATHS[system]}/{code}-osteotomy",
        "code": code,
        "code_system": system,
        "title": "Osteotomy of spine, posterior or posterolateral approach, 1 vertebral "
        "segment; thoracic",
        "summary": "A spinal osteotomy removes a wedge of bone to correct the curve of the "
        "spine.\n\nIt is done in a hospital under general anesthesia.",
        "purpose": "To correct a fixed deformity of the thoracic spine.",
        "indications": ["Kyphosis that does not respond to bracing", "Deformity after fracture"],
        "preparation": [
            "Stop blood thinners as your surgeon tells you",
            "Nothing to eat after midnight",
        ],
        "steps": [
            "The surgeon makes an incision along the middle of the back.",
            "A wedge of bone is removed from the vertebra.",
            "Rods and screws hold the spine in its new position.",
        ],
        "risks": ["Bleeding", "Infection", "Nerve damage"],
        "benefits": ["Better posture and balance"],
        "recovery": ["A hospital stay of 3 to 7 days", "Physical therapy for several weeks"],
        "alternatives": ["Bracing", "Physical therapy"],
        "duration": Duration(text="3 to 6 hours", min_minutes=180, max_minutes=360),
        "setting": Setting(text="Hospital operating room", venues=[Venue.HOSPITAL]),
        "personnel": [
            Person(text="Spine surgeon (orthopedic or neurosurgeon)", role=Role.SURGEON),
            Person(text="Anesthesiologist", role=Role.ANESTHESIA),
            Person(text="Operating room nurse", role=Role.NURSE),
        ],
        "hospital_stay": HospitalStay(
            text="a hospital stay of 3 to 7 days", min_days=3, max_days=7
        ),
        "patient_experience": PatientExperience(
            during=["You will be asleep."],
            after=["Pain and stiffness at the incision."],
            notes=["Full recovery can take months."],
        ),
        "similar_codes": [
            SimilarCode(
                code="22214", code_system=CodeSystem.CPT, title="Osteotomy of spine; lumbar"
            )
        ],
        "anesthesia": [AnesthesiaKind.GENERAL],
    }
    data.update(overrides)
    return Procedure.model_validate(data)


@dataclass
class Page:
    """One add: a record with its provenance."""

    record: Procedure
    content_hash: str = "sha256:1"
    parser_version: str = "1.0.0"
    url: str | None = None

    @property
    def source_url(self) -> str:
        return self.url or self.record.source


@dataclass
class Run:
    """Everything one run feeds the writer, in call order."""

    pages: list[Page] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    gone: list[str] = field(default_factory=list)


def publish(
    out: Path,
    run: Run,
    run_id: str,
    *,
    disposition: W.Disposition = "merge",
    at: datetime = T0,
    batch_size: int = 2000,
    exit_code: int = 0,
    replaces: list[str] | None = None,
) -> PublishResult:
    """Feed one run to a writer and publish it."""
    with TableWriter(
        out,
        run_id=run_id,
        mode="crawl",
        disposition=disposition,
        batch_size=batch_size,
        clock=lambda: at,
        replaces=replaces,
    ) as writer:
        for page in run.pages:
            writer.add(
                page.record,
                source_url=page.source_url,
                content_hash=page.content_hash,
                fetched_at=at - timedelta(seconds=5),
                parsed_at=at,
                parser_version=page.parser_version,
            )
        for source, reason in run.rejects:
            writer.reject(
                source=source,
                stage="parse",
                error_kind="not_a_procedure_page",
                reason=reason,
                http_status=200,
                at=at,
            )
        for url in run.gone:
            writer.mark_gone(url, at)
        return writer.publish({"discovered": 10, "fetched": len(run.pages)}, exit_code)


def add(writer: TableWriter, record: Procedure, content_hash: str = "sha256:1") -> None:
    """Add one record with its own source as URL."""
    writer.add(
        record,
        source_url=record.source,
        content_hash=content_hash,
        fetched_at=None,
        parsed_at=T0,
        parser_version="1.0.0",
    )


def mixed_pages() -> list[Page]:
    """Pages of every code system, one with text a spreadsheet would run."""
    return [
        Page(make_record("22212")),
        Page(make_record("0042T", title="Cerebral perfusion analysis")),
        Page(
            make_record(
                "G0105",
                CodeSystem.HCPCS,
                title="Colorectal cancer screening; colonoscopy on individual at high risk",
                summary='=HYPERLINK("http://evil.example","click")',
                steps=["-2 tablets the night before", "@SUM(A1)", 'Say "hello",\nthen go'],
                setting=Setting(
                    text="Endoscopy unit or surgery center",
                    venues=[Venue.HOSPITAL, Venue.AMBULATORY_SURGICAL_CENTER],
                ),
                anesthesia=[AnesthesiaKind.SEDATION, AnesthesiaKind.LOCAL],
            )
        ),
        Page(make_record("J06.9", CodeSystem.ICD10CM, title="Acute upper respiratory infection")),
        Page(make_record("0SRC0J9", CodeSystem.ICD10PCS, title="Replacement of right knee joint")),
    ]


def many_pages(n: int, start: int = 0) -> Iterator[Page]:
    """``n`` distinct CPT pages."""
    for i in range(start, start + n):
        code = f"{10000 + i:05d}"
        yield Page(make_record(code, title=f"Procedure {code}"), content_hash=f"sha256:{i}")


def read(out: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(out / "parquet" / f"{table}.parquet")


def files(out: Path, tables: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the Parquet and CSV files of ``tables``."""
    found = {}
    for name in tables:
        for kind, ext in (("parquet", "parquet"), ("csv", "csv")):
            path = out / kind / f"{name}.{ext}"
            found[f"{kind}/{name}"] = path.read_bytes()
    return found


def keys_repeat(out: Path, spec: T.TableSpec) -> int:
    key = ", ".join(spec.key)
    path = out / "parquet" / f"{spec.name}.parquet"
    query = f"select count(*) from (select {key} from read_parquet('{path}') group by {key} having count(*) > 1)"  # noqa: E501
    ((count,),) = duckdb.sql(query).fetchall()
    return int(count)


# --- the tables as readers see them ----------------------------------------------------------

DUCKDB_TYPES = {
    pl.String: "VARCHAR",
    pl.Enum: "VARCHAR",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.Boolean: "BOOLEAN",
    pl.Float64: "DOUBLE",
    pl.Datetime: "TIMESTAMP WITH TIME ZONE",
}


def duckdb_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return duckdb_type(dtype.inner) + "[]"
    return DUCKDB_TYPES[dtype.base_type()]


def arrow_matches(arrow: pa.DataType, dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.List):
        return pa.types.is_large_list(arrow) and arrow_matches(arrow.value_type, dtype.inner)
    if isinstance(dtype, pl.Enum):
        return pa.types.is_dictionary(arrow) and pa.types.is_string(arrow.value_type)
    if isinstance(dtype, pl.Datetime):
        return pa.types.is_timestamp(arrow) and arrow.tz == "UTC" and arrow.unit == "us"
    expected = {
        pl.String: pa.large_string(),
        pl.Int32: pa.int32(),
        pl.Int64: pa.int64(),
        pl.Boolean: pa.bool_(),
        pl.Float64: pa.float64(),
    }
    return bool(arrow == expected[dtype.base_type()])


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One published run of mixed pages (read only: tests must not write to it)."""
    out = tmp_path_factory.mktemp("published") / "out"
    run = Run(mixed_pages(), rejects=[("https://www.example.org/code/list/A", "a listing page")])
    publish(out, run, "run-1", exit_code=-9)
    return out


@pytest.mark.parametrize("spec", T.TABLES, ids=lambda s: s.name)
def test_every_table_reads_back_with_duckdb(published: Path, spec: T.TableSpec) -> None:
    path = published / "parquet" / f"{spec.name}.parquet"
    relation = duckdb.sql(f"select * from read_parquet('{path}')")
    assert relation.columns == spec.names
    assert [str(t) for t in relation.types] == [duckdb_type(c.dtype) for c in spec.columns]
    rows = relation.to_arrow_table()  # fetchall() would need pytz for the UTC timestamps
    assert rows.num_rows == pl.read_parquet(path).height
    assert (
        pl.from_arrow(rows).select(spec.key).rows()
        == read(published, spec.name).select(spec.key).rows()
    )


@pytest.mark.parametrize("spec", T.TABLES, ids=lambda s: s.name)
def test_every_table_reads_back_with_pyarrow_and_polars(published: Path, spec: T.TableSpec) -> None:
    path = published / "parquet" / f"{spec.name}.parquet"
    table = pq.read_table(path)
    assert table.column_names == spec.names
    for column in spec.columns:
        arrow = table.schema.field(column.name).type
        assert arrow_matches(arrow, column.dtype), (column.name, arrow)
        if not column.nullable:
            assert table.column(column.name).null_count == 0, column.name
    assert pl.read_parquet(path).schema == spec.schema
    metadata = pq.ParquetFile(path).metadata
    if metadata.num_row_groups:
        chunk = metadata.row_group(0).column(0)
        assert chunk.compression == "ZSTD"
        assert chunk.statistics is not None
        assert chunk.statistics.has_min_max


@pytest.mark.parametrize("spec", T.TABLES, ids=lambda s: s.name)
def test_csv_holds_the_same_rows_as_parquet(published: Path, spec: T.TableSpec) -> None:
    parquet = read(published, spec.name)
    csv = T.read_csv_table(published / "csv" / f"{spec.name}.csv", spec)
    assert_frame_equal(csv, parquet)


def test_tables_hold_the_records(published: Path) -> None:
    procedures = read(published, "procedures")
    assert procedures.select("code_system", "code").rows() == [
        ("CPT", "0042T"),
        ("CPT", "22212"),
        ("HCPCS", "G0105"),
        ("ICD-10-PCS", "0SRC0J9"),
        ("ICD-10-CM", "J06.9"),
    ]  # sorted by key, code systems in enum order
    g0105 = procedures.filter(pl.col("code") == "G0105").row(0, named=True)
    assert g0105["venues"] == ["hospital", "ambulatory_surgical_center"]
    assert g0105["anesthesia"] == ["sedation", "local"]
    assert g0105["parsed_at"] == T0
    assert g0105["fetched_at"] == T0 - timedelta(seconds=5)
    assert g0105["gone"] is False
    steps = read(published, "steps").filter(pl.col("code") == "G0105")
    assert steps["ordinal"].to_list() == [1, 2, 3]
    assert steps["text"][0] == "-2 tablets the night before"
    assert read(published, "personnel").height == 15
    assert read(published, "rejects")["source"].to_list() == ["https://www.example.org/code/list/A"]
    runs = read(published, "runs").row(0, named=True)
    assert runs["discovered"] == 10
    assert runs["parsed"] == 5
    assert runs["rejected"] == 1
    assert runs["written"] == 5
    assert runs["exit_code"] == -9


def test_layout_keeps_the_spec_paths(published: Path) -> None:
    assert (published / "parquet").is_symlink()
    assert os.readlink(published / "parquet") == "current/parquet"
    assert os.readlink(published / "csv") == "current/csv"
    assert os.readlink(published / "current").startswith(".versions/run-1-")
    for spec in T.TABLES:
        assert (published / "parquet" / f"{spec.name}.parquet").is_file()
        assert (published / "csv" / f"{spec.name}.csv").is_file()
    assert list((published / ".staging").iterdir()) == []


def test_publish_result(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = publish(out, Run(mixed_pages()), "run-1")
    assert result.run_id == "run-1"
    assert result.written["procedures"] == 5
    assert result.written["steps"] == 15
    assert result.written["runs"] == 1
    assert result.changes == {"added": 5, "changed": 0, "gone": 0, "returned": 0}
    assert result.parquet["steps"] == out / "parquet" / "steps.parquet"
    assert result.csv["steps"].read_text(encoding="utf-8").startswith("code_system,code,ordinal")
    assert result.version_dir.resolve() == (out / "current").resolve()


# --- spreadsheet safety ----------------------------------------------------------------------


def test_formulas_are_neutralized_in_csv_only(published: Path) -> None:
    csv = (published / "csv" / "procedures.csv").read_text(encoding="utf-8")
    assert """'=HYPERLINK(""http://evil.example"",""click"")""" in csv
    steps_csv = (published / "csv" / "steps.csv").read_text(encoding="utf-8")
    assert ",'-2 tablets the night before" in steps_csv
    assert ",'@SUM(A1)" in steps_csv
    assert '"Say ""hello"",\nthen go"' in steps_csv  # RFC 4180 quoting, newline kept
    parquet = read(published, "procedures").filter(pl.col("code") == "G0105")
    assert parquet["summary"][0] == '=HYPERLINK("http://evil.example","click")'
    runs_csv = (published / "csv" / "runs.csv").read_text(encoding="utf-8")
    assert runs_csv.splitlines()[1].endswith(",-9")  # numbers are numbers, not text


# --- re-runs and determinism -----------------------------------------------------------------


def test_rerun_on_unchanged_input_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = Run(mixed_pages(), rejects=[("https://www.example.org/code/list/A", "listing")])
    publish(out, run, "run-1")
    before = files(out, PAGE_TABLES)
    result = publish(out, run, "run-2", at=T0 + timedelta(days=1))
    assert files(out, PAGE_TABLES) == before
    assert result.changes == dict.fromkeys(T.CHANGE_KINDS, 0)
    assert read(out, "procedures")["parsed_at"].to_list() == [T0] * 5  # not bumped
    assert read(out, "runs")["run_id"].to_list() == ["run-1", "run-2"]
    assert read(out, "changes")["run_id"].unique().to_list() == ["run-1"]
    for spec in T.TABLES:
        assert keys_repeat(out, spec) == 0, spec.name


def test_output_does_not_depend_on_batch_size(tmp_path: Path) -> None:
    pages = [*mixed_pages(), *many_pages(23)]
    publish(tmp_path / "a", Run(pages), "run-1")
    publish(tmp_path / "b", Run(pages), "run-1", batch_size=3)  # many parts and key ranges
    tables = [*PAGE_TABLES, "changes"]
    assert files(tmp_path / "a", tables) == files(tmp_path / "b", tables)
    assert read(tmp_path / "b", "procedures").height == 28


def test_merge_over_many_ranges_matches_one_range(tmp_path: Path) -> None:
    first, second = list(many_pages(30)), list(many_pages(12, start=20))
    second = [
        Page(p.record.model_copy(update={"steps": ["Only step"]}), "sha256:new") for p in second
    ]
    for name, batch in (("a", 2000), ("b", 4)):
        publish(tmp_path / name, Run(first), "run-1", batch_size=batch)
        publish(tmp_path / name, Run(second), "run-2", batch_size=batch)
    assert files(tmp_path / "a", PAGE_TABLES) == files(tmp_path / "b", PAGE_TABLES)
    steps = read(tmp_path / "b", "steps")
    assert steps.height == 20 * 3 + 12
    assert keys_repeat(tmp_path / "b", T.table("steps")) == 0


# --- merge semantics -------------------------------------------------------------------------


def test_merge_upserts_and_replaces_child_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b = make_record("22212"), make_record("22214", title="Osteotomy of spine; lumbar")
    publish(out, Run([Page(a), Page(b)]), "run-1")
    changed = a.model_copy(update={"steps": ["One single step."], "summary": "New summary."})
    result = publish(out, Run([Page(changed, "sha256:2")]), "run-2", at=T0 + timedelta(days=1))
    procedures = read(out, "procedures")
    assert procedures["code"].to_list() == ["22212", "22214"]
    row = procedures.row(0, named=True)
    assert row["summary"] == "New summary."
    assert row["content_hash"] == "sha256:2"
    assert row["parsed_at"] == T0 + timedelta(days=1)
    steps = read(out, "steps")
    assert steps.filter(pl.col("code") == "22212")["text"].to_list() == ["One single step."]
    assert steps.filter(pl.col("code") == "22214").height == 3  # untouched page kept
    assert result.changes == {"added": 0, "changed": 1, "gone": 0, "returned": 0}
    changes = read(out, "changes").filter(pl.col("run_id") == "run-2")
    assert changes.select("code", "change", "at").rows() == [
        ("22212", "changed", T0 + timedelta(days=1))
    ]


def test_same_hash_keeps_published_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    publish(out, Run([Page(make_record())]), "run-2", at=T0 + timedelta(1))
    row = read(out, "procedures").row(0, named=True)
    assert row["parsed_at"] == T0
    assert row["source_url"] == make_record().source


def test_same_hash_under_another_url_moves_the_row(tmp_path: Path) -> None:
    """The same bytes under another URL (the page moved, or won a duplicate code): the row's
    source follows, or the page kept would be in no table; no content change is recorded."""
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    result = publish(
        out,
        Run([Page(make_record(), url="https://mirror.example/x")]),
        "run-2",
        at=T0 + timedelta(1),
    )
    row = read(out, "procedures").row(0, named=True)
    assert row["source_url"] == "https://mirror.example/x"
    assert result.changes.get("changed", 0) == 0


def test_new_parser_version_rewrites_rows_without_a_change(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    better = make_record(risks=["Bleeding"])
    result = publish(
        out, Run([Page(better, parser_version="1.1.0")]), "run-2", at=T0 + timedelta(1)
    )
    assert read(out, "procedures")["parser_version"].to_list() == ["1.1.0"]
    assert read(out, "risks")["text"].to_list() == ["Bleeding"]
    assert result.changes["changed"] == 0


def test_last_add_of_a_key_in_a_run_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = Page(make_record(steps=["Old step one.", "Old step two."]), "sha256:1")
    last = Page(make_record(steps=["New step."]), "sha256:2")
    publish(out, Run([first, last]), "run-1", batch_size=1)  # the two adds in different parts
    assert read(out, "procedures")["content_hash"].to_list() == ["sha256:2"]
    assert read(out, "steps")["text"].to_list() == ["New step."]


def test_gone_keeps_rows_and_returned_clears_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b = make_record("22212"), make_record("22214")
    publish(out, Run([Page(a), Page(b)]), "run-1")
    day = timedelta(days=1)

    r2 = publish(out, Run(gone=[b.source]), "run-2", at=T0 + day)
    procedures = read(out, "procedures")
    assert procedures.select("code", "gone", "gone_at").rows() == [
        ("22212", False, None),
        ("22214", True, T0 + day),
    ]
    assert read(out, "steps").filter(pl.col("code") == "22214").height == 3
    assert r2.changes["gone"] == 1

    r3 = publish(out, Run(gone=[b.source]), "run-3", at=T0 + 2 * day)
    assert read(out, "procedures")["gone_at"][1] == T0 + day  # first seen gone, kept
    assert r3.changes["gone"] == 0

    r4 = publish(out, Run([Page(b)]), "run-4", at=T0 + 3 * day)
    row = read(out, "procedures").row(1, named=True)
    assert (row["gone"], row["gone_at"], row["parsed_at"]) == (False, None, T0)
    assert r4.changes == {"added": 0, "changed": 0, "gone": 0, "returned": 1}
    changes = read(out, "changes")
    assert changes.select("run_id", "code", "change").rows() == [
        ("run-1", "22212", "added"),
        ("run-1", "22214", "added"),
        ("run-2", "22214", "gone"),
        ("run-4", "22214", "returned"),
    ]
    assert read(out, "runs")["gone"].to_list() == [0, 1, 0, 0]


def test_gone_and_add_in_one_run_follow_call_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = make_record()
    with TableWriter(out, run_id="r1", mode="reparse", clock=lambda: T0) as writer:
        add(writer, record, content_hash="h")
        writer.mark_gone(record.source, T0)
        writer.publish({}, 0)
    assert read(out, "procedures")["gone"].to_list() == [True]
    with TableWriter(out, run_id="r2", mode="crawl", clock=lambda: T0) as writer:
        writer.mark_gone(record.source, T0)
        add(writer, record, content_hash="h2")
        writer.publish({}, 0)
    assert read(out, "procedures")["gone"].to_list() == [False]


def test_rejects_hold_the_current_reject_per_source(tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = "https://www.example.org/code/cpt4/99999-broken"
    publish(out, Run(rejects=[(url, "no content"), ("https://x.example/a", "listing")]), "run-1")
    publish(out, Run(rejects=[(url, "still broken")]), "run-2", at=T0 + timedelta(1))
    rejects = read(out, "rejects")
    assert rejects.select("source", "reason", "run_id").rows() == [
        ("https://www.example.org/code/cpt4/99999-broken", "still broken", "run-2"),
        ("https://x.example/a", "listing", "run-1"),
    ]
    publish(out, Run([Page(make_record("99999"), url=url)]), "run-3", at=T0 + timedelta(2))
    assert read(out, "rejects")["source"].to_list() == ["https://x.example/a"]


def test_reject_after_add_in_the_same_run_stays(tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = make_record()
    run = Run([Page(record)], rejects=[(record.source, "a later fetch failed")])
    publish(out, run, "run-1")
    assert read(out, "rejects").height == 1
    assert read(out, "procedures").height == 1


def test_replace_rebuilds_from_this_run_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b, c = make_record("22212"), make_record("22214"), make_record("22216")
    publish(
        out, Run([Page(a), Page(b), Page(c)], rejects=[("https://x.example/bad", "x")]), "run-1"
    )
    day = T0 + timedelta(1)
    changed_b = Page(b.model_copy(update={"risks": ["Bleeding"]}), "sha256:2")
    result = publish(out, Run([Page(a), changed_b]), "run-2", disposition="replace", at=day)
    procedures = read(out, "procedures")
    assert procedures.select("code", "parsed_at").rows() == [("22212", T0), ("22214", day)]
    for name in PAGE_TABLES:
        assert "22216" not in read(out, name)["code"].to_list(), name
    assert read(out, "risks").filter(pl.col("code") == "22214")["text"].to_list() == ["Bleeding"]
    assert read(out, "rejects").height == 0
    assert result.changes == {"added": 0, "changed": 1, "gone": 0, "returned": 0}
    assert read(out, "runs")["disposition"].to_list() == ["merge", "replace"]


def test_replace_on_unchanged_input_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = Run(mixed_pages())
    publish(out, run, "run-1")
    before = files(out, PAGE_TABLES)
    publish(out, run, "run-2", disposition="replace", at=T0 + timedelta(1))
    assert files(out, PAGE_TABLES) == before


# --- atomicity and the writer's life cycle ---------------------------------------------------


def test_exception_in_the_block_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run(mixed_pages()), "run-1")
    before = files(out, T.BY_NAME)

    def fail_mid_run() -> None:
        with TableWriter(out, run_id="run-2", mode="crawl") as writer:
            add(writer, make_record("22999"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_mid_run()
    assert files(out, T.BY_NAME) == before
    assert list((out / ".staging").iterdir()) == []


def test_leaving_without_publish_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with TableWriter(out, run_id="run-1", mode="crawl") as writer:
        add(writer, make_record())
    assert not (out / "current").exists()
    with pytest.raises(RuntimeError, match="not open"):
        add(writer, make_record())


def test_versions_are_collected_keeping_two(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for i in range(4):
        publish(out, Run([Page(make_record(), f"sha256:{i}")]), f"run-{i}")
    versions = sorted(p.name for p in (out / ".versions").iterdir())
    assert len(versions) == 2
    assert os.readlink(out / "current").removeprefix(".versions/") in versions


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    leftover = out / ".staging" / "run-x-deadbeef" / "version" / "parquet"
    leftover.mkdir(parents=True)
    (leftover / "procedures.parquet").write_bytes(b"PAR1 truncated")
    os.symlink(".versions/nothing", out / ".current.tmp-123")
    publish(out, Run([Page(make_record("22214"))]), "run-2")
    assert list((out / ".staging").iterdir()) == []
    assert not (out / ".current.tmp-123").is_symlink()
    assert read(out, "procedures").height == 2


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (
        TableWriter(out, run_id="run-1", mode="crawl"),
        pytest.raises(WriteError, match="another writer"),
    ):
        TableWriter(out, run_id="run-2", mode="crawl").__enter__()
    with TableWriter(out, run_id="run-2", mode="crawl"):
        pass  # the lock was released


def test_a_published_run_id_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    with pytest.raises(WriteError, match="already published"):
        publish(out, Run([Page(make_record())]), "run-1")


def test_output_dir_that_cannot_be_created_is_a_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    out = blocker / "out"
    with pytest.raises(WriteError, match=str(out)) as info:
        TableWriter(out, run_id="run-1", mode="crawl").__enter__()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.stage == "write"


def test_output_dir_that_is_a_dangling_link_names_its_target(tmp_path: Path) -> None:
    """A dangling --out link said only "File exists"; it now names where the link points."""
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "unmounted" / "disk")
    with pytest.raises(WriteError, match=r"symbolic link to .*unmounted/disk, which does not"):
        TableWriter(out, run_id="run-1", mode="crawl").__enter__()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_dir_is_a_write_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(WriteError, match=str(out)):
            TableWriter(out, run_id="run-1", mode="crawl").__enter__()
    finally:
        out.chmod(0o700)


def test_a_real_directory_in_the_way_is_a_write_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "parquet").mkdir(parents=True)
    (out / "parquet" / "old.parquet").write_bytes(b"x")
    with pytest.raises(WriteError, match="move it away"):
        publish(out, Run([Page(make_record())]), "run-1")
    (out / "parquet" / "old.parquet").unlink()  # an empty directory is replaced by the link
    publish(out, Run([Page(make_record())]), "run-1")
    assert (out / "parquet").is_symlink()


def test_polars_failures_become_write_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    publish(out, Run([Page(make_record())]), "run-1")
    before = files(out, T.BY_NAME)

    def broken(*args: object, **kwargs: object) -> None:
        raise pl.exceptions.ComputeError("disk said no")

    monkeypatch.setattr(W, "write_csv", broken)
    with pytest.raises(WriteError, match="disk said no") as info:
        publish(out, Run([Page(make_record("22214"))]), "run-2")
    assert isinstance(info.value.__cause__, pl.exceptions.ComputeError)
    assert files(out, T.BY_NAME) == before


def test_contract_checks_refuse_bad_tables(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame(
        {"source": ["a", "a"], "stage": ["fetch", "parse"]},
        schema={"source": pl.String(), "stage": T.STAGE},
    ).write_parquet(path)
    with pytest.raises(WriteError, match="repeat the key"):
        M.check_keys(path, T.REJECTS)
    T.RUNS.empty().write_parquet(path)
    M.check_nulls(path, T.RUNS)  # empty is fine
    pl.DataFrame([dict.fromkeys(T.RUNS.names)], schema=T.RUNS.schema).write_parquet(path)
    with pytest.raises(WriteError, match="nulls in run_id"):
        M.check_nulls(path, T.RUNS)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="disposition"):
        TableWriter(tmp_path, run_id="r", mode="crawl", disposition="upsert")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        TableWriter(tmp_path, run_id="r", mode="crawl", batch_size=0)
    with (
        TableWriter(tmp_path / "out", run_id="r", mode="crawl") as writer,
        pytest.raises(ValueError, match="stage"),
    ):
        writer.reject(
            source="s", stage="write", error_kind="k", reason="r", http_status=None, at=T0
        )


# --- killed mid-publication ------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_write import Run, many_pages, publish
    publish(Path({out!r}), Run(list(many_pages({n}, start={start}))), {run_id!r}, batch_size=250)
    """
)


def spawn_writer(out: Path, run_id: str, n: int, start: int) -> subprocess.Popen[bytes]:
    script = KILL_SCRIPT.format(
        tests=str(REPO / "tests"), out=str(out), n=n, start=start, run_id=run_id
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)


def kill_when(
    proc: subprocess.Popen[bytes], ready: Path, pattern: str, timeout: float = 60
) -> None:
    """SIGKILL ``proc`` as soon as a path matching ``pattern`` appears under ``ready``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.is_dir() and any(ready.glob(pattern)):
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return
        if proc.poll() is not None:
            pytest.fail(f"the writer finished (exit {proc.returncode}) before it could be killed")
        time.sleep(0.002)
    proc.kill()
    pytest.fail("the writer never got there")


@pytest.mark.slow
def test_killed_writer_leaves_the_previous_tables_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(out, Run(list(many_pages(50))), "run-1")
    before = files(out, T.BY_NAME)
    current = os.readlink(out / "current")

    for moment, pattern in (("staging", "*"), ("publication", "*/version/parquet/*")):
        proc = spawn_writer(out, f"run-killed-{moment}", n=3000, start=40)
        kill_when(proc, out / ".staging", pattern)
        assert proc.returncode == -signal.SIGKILL
        assert os.readlink(out / "current") == current, moment
        assert files(out, T.BY_NAME) == before, moment
        for spec in T.TABLES:
            path = out / "parquet" / f"{spec.name}.parquet"
            duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()

    result = publish(out, Run(list(many_pages(5, start=100))), "run-2")
    assert result.written["procedures"] == 55
    assert list((out / ".staging").iterdir()) == []
    assert len(list((out / ".versions").iterdir())) == 2


# --- memory ----------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_write import Run, many_pages, publish
    from pipeline.load.write import TableWriter
    publish(Path({out!r}), Run(list(many_pages(10))), "seed")
    with TableWriter(Path({out!r}), run_id="big", mode="crawl") as writer:
        for page in many_pages({n}, start=5):
            writer.add(page.record, source_url=page.source_url, content_hash=page.content_hash,
                       fetched_at=None, parsed_at=__import__("test_write").T0,
                       parser_version="1")
        writer.publish({{}}, 0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def peak_rss_mb(out: Path, n: int) -> float:
    """Peak RSS (MB) of a fresh process that merges ``n`` pages into a published table."""
    script = MEMORY_SCRIPT.format(tests=str(REPO / "tests"), out=str(out), n=n)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    )
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_memory_stays_flat(tmp_path: Path) -> None:
    small = peak_rss_mb(tmp_path / "small", 1_000)
    large = peak_rss_mb(tmp_path / "large", 20_000)
    print(f"peak RSS: 1k pages {small:.0f} MB, 20k pages {large:.0f} MB")
    # 20x the pages; the batch buffer and Polars' bounded sink buffers are the difference
    assert large < small * 2, (small, large)


def test_the_output_directory_explains_itself(tmp_path: Path) -> None:
    """OUT/README.md describes every table and how to read the CSV with other tools."""
    out = tmp_path / "out"
    with TableWriter(out, run_id="crawl-20261204T000000000000Z-000001", mode="crawl") as writer:
        writer.publish({}, 0)
    readme = (out / "README.md").read_text("utf-8")
    for spec in T.TABLES:
        assert f"## `{spec.name}`" in readme
        for column in spec.columns:
            assert f"| `{column.name}` |" in readme
    assert "as text" in readme
    runs = pl.read_csv(out / "csv" / "runs.csv")
    assert runs["run_id"].dtype == pl.String  # a CSV reader keeps it text unaided


def test_replace_of_some_sources_keeps_the_pages_of_others(tmp_path: Path) -> None:
    """A rebuild (reparse) replaces the pages of the sources it covers: a covered page it did
    not rebuild goes, a page from elsewhere (ingested) stays with its child rows."""
    out = tmp_path / "out"
    crawled, stale, ingested = make_record("22212"), make_record("22214"), make_record("22216")
    publish(out, Run(pages=[Page(crawled), Page(stale), Page(ingested)]), "run-1")
    covered = [crawled.source, stale.source]
    publish(out, Run(pages=[Page(crawled)]), "run-2", disposition="replace", replaces=covered)
    assert sorted(read(out, "procedures")["code"].to_list()) == ["22212", "22216"]
    assert "22216" in read(out, "steps")["code"].to_list()
    assert "22214" not in read(out, "steps")["code"].to_list()
