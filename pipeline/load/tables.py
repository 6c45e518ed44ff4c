"""The table contract: every output table, its explicit Polars schema, key, nullability and docs.

This module is the single source of truth for the shape of the output. Each table is one
declarative :class:`TableSpec`; the writer (:mod:`pipeline.load.write`) builds every frame from
``spec.schema`` (never from inferred dtypes) and, before it publishes, checks that no key repeats
and that no non-nullable column holds a null. :func:`contract` renders all of it as plain
JSON-able data for ``schemas/tables.json`` (see :func:`write_contract`).

Tables (``DIR/parquet/<table>.parquet`` and ``DIR/csv/<table>.csv``):

=====================  ==============================  =========================================
table                  key                             written
=====================  ==============================  =========================================
procedures             code_system, code               merged (upsert by key), sorted by key
indications ...        code_system, code, ordinal      merged per page (child rows replaced
similar_codes                                          wholesale when the page is re-parsed)
rejects                source                          the current reject per source
runs                   run_id                          appended, one row per published run
changes                run_id, code_system, code       appended, what each run changed
=====================  ==============================  =========================================

CSV form (the same rows as the Parquet file; :func:`csv_frame` makes it, :func:`read_csv_table`
undoes it):

* UTF-8 without BOM, a header row, ``,`` separator, ``\\n`` line ends, RFC 4180 quoting: a field
  holding ``,``, ``"`` or a line break is quoted and inner quotes are doubled, so embedded newlines
  are safe.
* Null is an empty cell. The tables hold no empty strings (the writer turns empty optional text
  into null and refuses empty required text), so an empty cell is never ambiguous.
* List columns (``venues``, ``anesthesia``) are the items joined by ``|`` in list order; an empty
  list is an empty cell. Their items are enum values, which never contain ``|``.
* Datetimes are ISO 8601 in UTC with microseconds and a ``Z``: ``2024-05-01T12:30:00.000000Z``.
* Booleans are ``true`` / ``false``; enums are their value text.
* Spreadsheet safety (OWASP "CSV injection"): a text cell that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return would be run as a formula by a spreadsheet, so the CSV cell
  gets one ``'`` in front. A text cell that already starts with ``'`` gets one too, which keeps the
  rule reversible: to recover the original, drop one leading ``'`` from every text cell that
  starts with ``'``. Spreadsheets hide that leading ``'``. Only text columns are touched (numbers,
  negative ones included, are numeric columns); the Parquet files keep the original text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from polars.datatypes import DataTypeClass

from pipeline.errors import PAGE_KINDS
from pipeline.models import LIST_SECTIONS, AnesthesiaKind, CodeSystem, Role, Venue

CONTRACT_VERSION = 1
"""Bumped when a table, column, dtype, key or the CSV form changes incompatibly."""

# --- enums -----------------------------------------------------------------------------------

CODE_SYSTEM = pl.Enum(CodeSystem)
VENUE = pl.Enum(Venue)
ROLE = pl.Enum(Role)
ANESTHESIA_KIND = pl.Enum(AnesthesiaKind)
PHASES: tuple[str, ...] = ("during", "after", "notes")
PHASE = pl.Enum(PHASES)
STAGES: tuple[str, ...] = ("fetch", "parse", "validate")
STAGE = pl.Enum(STAGES)
PAGE_KIND = pl.Enum(PAGE_KINDS)
CHANGE_KINDS: tuple[str, ...] = ("added", "changed", "gone", "returned")
CHANGE = pl.Enum(CHANGE_KINDS)
DISPOSITIONS: tuple[str, ...] = ("merge", "replace")
DISPOSITION = pl.Enum(DISPOSITIONS)
UTC_TIME = pl.Datetime("us", "UTC")

LIST_SEPARATOR = "|"
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
FORMULA_TRIGGERS = "=+-@\t\r"
"""First characters that make a spreadsheet evaluate a cell (OWASP CSV injection)."""
_NEUTRALIZE_PATTERN = r"^[=+\-@\t\r']"

TableKind = Literal["entity", "child", "current", "log"]


@dataclass(frozen=True)
class Column:
    """One column: its name, Polars dtype, whether it may be null, and what it means."""

    name: str
    dtype: pl.DataType
    nullable: bool
    description: str


@dataclass(frozen=True)
class TableSpec:
    """One output table: name, columns in order, key, how it is written, and what it holds.

    ``kind`` says how a run writes it: ``entity`` (merged by key), ``child`` (rows of an entity,
    replaced with it), ``current`` (the latest row per key) or ``log`` (appended).
    """

    name: str
    description: str
    kind: TableKind
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: column names repeat")
        for k in self.key:
            column = self.column(k)
            if column.nullable:
                raise ValueError(f"table {self.name}: key column {k} must not be nullable")

    @property
    def schema(self) -> pl.Schema:
        """The explicit Polars schema, in column order."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name}")

    def empty(self) -> pl.DataFrame:
        """A frame with no rows and exactly this schema."""
        return pl.DataFrame(schema=self.schema)


# --- column helpers --------------------------------------------------------------------------


def _col(name: str, dtype: pl.DataType, description: str, *, nullable: bool = False) -> Column:
    return Column(name, dtype, nullable, description)


def _page_key() -> tuple[Column, ...]:
    return (
        _col(
            "code_system",
            CODE_SYSTEM,
            "Code system of the page: CPT, HCPCS, ICD-10-PCS, ICD-10-CM.",
        ),
        _col("code", pl.String(), "The code as published, upper case (22212, G0105, J06.9)."),
    )


def _child_key() -> tuple[Column, ...]:
    return (
        *_page_key(),
        _col("ordinal", pl.Int32(), "Position of the item in its section, in page order, from 1."),
    )


def _text_child(name: str, what: str) -> TableSpec:
    return TableSpec(
        name=name,
        description=f"One row per item of the page's {what} section, in page order.",
        kind="child",
        key=("code_system", "code", "ordinal"),
        columns=(*_child_key(), _col("text", pl.String(), f"One {what} item, bullet removed.")),
    )


# --- the tables ------------------------------------------------------------------------------

PROCEDURES = TableSpec(
    name="procedures",
    description="One row per (code_system, code): the page's scalar fields and provenance.",
    kind="entity",
    key=("code_system", "code"),
    columns=(
        *_page_key(),
        _col("title", pl.String(), "The official descriptor, whitespace collapsed."),
        _col("summary", pl.String(), "Summary paragraphs joined by a blank line.", nullable=True),
        _col("purpose", pl.String(), "Purpose paragraphs joined by a blank line.", nullable=True),
        _col("duration_text", pl.String(), "The Duration text as written.", nullable=True),
        _col(
            "duration_min_minutes",
            pl.Int32(),
            "Lower bound of the duration in minutes; null when open or vague.",
            nullable=True,
        ),
        _col(
            "duration_max_minutes",
            pl.Int32(),
            "Upper bound of the duration in minutes; null when open or vague.",
            nullable=True,
        ),
        _col("setting_text", pl.String(), "The Setting text as written.", nullable=True),
        _col(
            "venues",
            pl.List(VENUE),
            "Venues named by the Setting, in page order; empty when none. CSV: joined by '|'.",
        ),
        _col(
            "hospital_stay_text",
            pl.String(),
            "The sentence the hospital stay was read from.",
            nullable=True,
        ),
        _col(
            "hospital_stay_min_days",
            pl.Int32(),
            "Lower bound of the hospital stay in days (0 = home the same day).",
            nullable=True,
        ),
        _col(
            "hospital_stay_max_days",
            pl.Int32(),
            "Upper bound of the hospital stay in days.",
            nullable=True,
        ),
        _col(
            "anesthesia",
            pl.List(ANESTHESIA_KIND),
            "Anesthesia kinds the page says are used; empty when none. CSV: joined by '|'.",
        ),
        _col("source_url", pl.String(), "URL (or path) the page was fetched from."),
        _col("content_hash", pl.String(), "Hash of the page content this row was parsed from."),
        _col(
            "fetched_at",
            UTC_TIME,
            "When the content was fetched (UTC); null for local files. Kept while the content "
            "hash is unchanged.",
            nullable=True,
        ),
        _col(
            "parsed_at",
            UTC_TIME,
            "When this row was parsed (UTC). Kept while the content hash and parser are unchanged.",
        ),
        _col("parser_version", pl.String(), "Version of the parser that produced the row."),
        _col("gone", pl.Boolean(), "True when the page has disappeared from the site (404/410)."),
        _col(
            "gone_at",
            UTC_TIME,
            "When the page was first seen gone (UTC); null while it is live.",
            nullable=True,
        ),
    ),
)

PERSONNEL = TableSpec(
    name="personnel",
    description="One row per member of the care team the page names, in page order.",
    kind="child",
    key=("code_system", "code", "ordinal"),
    columns=(
        *_child_key(),
        _col("text", pl.String(), "The person as the page names them."),
        _col("role", ROLE, "Role from the vocabulary (first matching rule wins)."),
    ),
)

PATIENT_EXPERIENCE = TableSpec(
    name="patient_experience",
    description=(
        "One row per patient-experience item; ordinal runs across the phases in the order "
        "during, after, notes."
    ),
    kind="child",
    key=("code_system", "code", "ordinal"),
    columns=(
        *_child_key(),
        _col("phase", PHASE, "during, after or notes."),
        _col("text", pl.String(), "One item of that phase."),
    ),
)

SIMILAR_CODES = TableSpec(
    name="similar_codes",
    description="One row per code the page's own similar/related section lists, in page order.",
    kind="child",
    key=("code_system", "code", "ordinal"),
    columns=(
        *_child_key(),
        _col("similar_code", pl.String(), "The related code."),
        _col("similar_code_system", CODE_SYSTEM, "Code system of the related code."),
        _col("similar_title", pl.String(), "Title the page gives it, if any.", nullable=True),
    ),
)

OTHER_SECTIONS = TableSpec(
    name="other_sections",
    description=(
        "One row per section of the page whose heading names no field of the record, in page "
        "order: nothing the parser could not classify is dropped."
    ),
    kind="child",
    key=("code_system", "code", "ordinal"),
    columns=(
        *_child_key(),
        _col("heading", pl.String(), "The section's heading as the page shows it."),
        _col(
            "text",
            pl.String(),
            "The section's lines (paragraphs, items, sub-headings), bullets removed, joined by "
            "a line break; null when the heading has no text under it.",
            nullable=True,
        ),
    ),
)

REJECTS = TableSpec(
    name="rejects",
    description=(
        "The current reject per source: a page that did not become a record. The row goes away "
        "when the source later becomes a record."
    ),
    kind="current",
    key=("source",),
    columns=(
        _col("source", pl.String(), "URL or path that was rejected."),
        _col("stage", STAGE, "Stage that rejected it: fetch, parse or validate."),
        _col(
            "error_kind",
            pl.String(),
            "Machine-readable kind of failure (e.g. not_a_procedure_page).",
        ),
        _col("reason", pl.String(), "Human-readable reason."),
        _col(
            "page_kind",
            PAGE_KIND,
            "What a page that is not a procedure page is instead: not_found, listing, "
            "condition (an ICD-10-CM condition page) or unknown; null for other rejects.",
            nullable=True,
        ),
        _col("http_status", pl.Int32(), "HTTP status, when the fetch got one.", nullable=True),
        _col("rejected_at", UTC_TIME, "When it was rejected (UTC)."),
        _col("run_id", pl.String(), "The run that rejected it."),
    ),
)


def _count(name: str, what: str) -> Column:
    return _col(name, pl.Int64(), what)


RUNS = TableSpec(
    name="runs",
    description="One row per published run, appended in publication order.",
    kind="log",
    key=("run_id",),
    columns=(
        _col("run_id", pl.String(), "Unique id of the run."),
        _col("started_at", UTC_TIME, "When the writer was opened (UTC)."),
        _col("finished_at", UTC_TIME, "When the run published its tables (UTC)."),
        _col("mode", pl.String(), "What ran: crawl, ingest, reparse, demo, ..."),
        _col("disposition", DISPOSITION, "merge (upsert this run's pages) or replace (rebuild)."),
        _count("discovered", "URLs discovered."),
        _count("fetched", "Pages fetched."),
        _count("unchanged", "Pages whose content was unchanged since the last fetch."),
        _count("parsed", "Pages parsed into records."),
        _count("rejected", "Pages rejected."),
        _count("written", "Procedure rows this run added, changed or brought back."),
        _count("gone", "Pages this run marked gone."),
        _count("headings", "Section headings on the pages this run parsed (chrome excluded)."),
        _count(
            "unclassified_headings",
            "Of those, headings that named no field (their sections went to other_sections).",
        ),
        _count(
            "chrome_blocks",
            "Containers and lines dropped as chrome (menus, sidebars, ads, link boxes, "
            "disclaimers, calls to action).",
        ),
        _col("exit_code", pl.Int32(), "Exit code of the run (0 ok, 1 some pages rejected, ...)."),
    ),
)

CHANGES = TableSpec(
    name="changes",
    description=(
        "What each run did to procedures, appended per run (each run's rows sorted by key): "
        "added (new key), changed (content hash differs), gone (marked gone), returned (was gone, "
        "is back). A run with replace disposition records no row for the keys it drops."
    ),
    kind="log",
    key=("run_id", "code_system", "code"),
    columns=(
        _col("run_id", pl.String(), "The run that made the change."),
        *_page_key(),
        _col("change", CHANGE, "added, changed, gone or returned."),
        _col("at", UTC_TIME, "When: parse time of the record, or gone_at for gone (UTC)."),
    ),
)

QUALITY = TableSpec(
    name="quality",
    description=(
        "One row per (run, field): how many of the records a run parsed filled the field, "
        "against the previous run that measured it; a fall of more than 20 points is flagged."
    ),
    kind="log",
    key=("run_id", "field"),
    columns=(
        _col("run_id", pl.String(), "The run that parsed the records."),
        _col("field", pl.String(), "Record field (summary, steps, personnel, other_sections...)."),
        _count("records", "Records the run parsed."),
        _count("filled", "Of those, records in which the field is not empty."),
        _col("fill_rate", pl.Float64(), "filled / records (0 when the run parsed no record)."),
        _col(
            "previous_fill_rate",
            pl.Float64(),
            "fill_rate of the last earlier run that parsed records; null for the first.",
            nullable=True,
        ),
        _col(
            "dropped",
            pl.Boolean(),
            "True when fill_rate fell by more than 20 points against previous_fill_rate (runs "
            "of at least 10 records): the site may have changed its layout.",
        ),
    ),
)

TEXT_CHILDREN: tuple[TableSpec, ...] = tuple(
    _text_child(name, name.replace("_", " ")) for name in LIST_SECTIONS
)
CHILD_TABLES: tuple[TableSpec, ...] = (
    *TEXT_CHILDREN,
    PERSONNEL,
    PATIENT_EXPERIENCE,
    SIMILAR_CODES,
    OTHER_SECTIONS,
)
TABLES: tuple[TableSpec, ...] = (PROCEDURES, *CHILD_TABLES, REJECTS, RUNS, CHANGES, QUALITY)
BY_NAME: Mapping[str, TableSpec] = {t.name: t for t in TABLES}
"""Every table by name, in publication order."""


def table(name: str) -> TableSpec:
    """The spec of the table called ``name``."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no table called {name!r}; tables: {', '.join(BY_NAME)}") from None


# --- the contract as data --------------------------------------------------------------------


def _csv_form(column: Column) -> str:
    dtype = column.dtype
    if isinstance(dtype, pl.List):
        return f"items joined by '{LIST_SEPARATOR}'; empty list = empty cell"
    if isinstance(dtype, pl.Datetime):
        return "ISO 8601 UTC, e.g. 2024-05-01T12:30:00.000000Z"
    if dtype == pl.String():
        return "text; formula-neutralized (leading ' added, see csv.formula_neutralization)"
    if dtype == pl.Boolean():
        return "true / false"
    return "as is"


def _table_contract(spec: TableSpec) -> dict[str, Any]:
    return {
        "description": spec.description,
        "kind": spec.kind,
        "key": list(spec.key),
        "sort": list(spec.key) if spec.kind != "log" else "append order",
        "columns": [
            {
                "name": c.name,
                "dtype": str(c.dtype),
                "nullable": c.nullable,
                "description": c.description,
                "csv": _csv_form(c),
            }
            for c in spec.columns
        ],
    }


def contract() -> dict[str, Any]:
    """Every table's columns, dtypes (as strings), nullability, keys and docs, as plain data."""
    return {
        "contract_version": CONTRACT_VERSION,
        "layout": {
            "parquet": "DIR/parquet/<table>.parquet (zstd, column statistics)",
            "csv": "DIR/csv/<table>.csv",
            "consistent_snapshot": (
                "DIR/current points at the version directory of the last published run; resolve "
                "it once to read several tables of the same run"
            ),
        },
        "csv": {
            "encoding": "utf-8 (no BOM)",
            "header": True,
            "separator": ",",
            "line_terminator": "\\n",
            "quoting": 'RFC 4180: fields with , " or line breaks are quoted, quotes doubled',
            "null": "empty cell (the tables hold no empty strings)",
            "list_separator": LIST_SEPARATOR,
            "datetime": "ISO 8601 UTC, microseconds, Z suffix",
            "formula_neutralization": (
                "a text cell starting with = + - @ TAB CR or ' gets one leading ' (CSV only); "
                "drop one leading ' from a text cell to recover the original"
            ),
        },
        "tables": {spec.name: _table_contract(spec) for spec in TABLES},
    }


def write_contract(path: Path) -> None:
    """Write :func:`contract` to ``path`` as stable JSON (sorted keys, indent 2), atomically."""
    text = json.dumps(contract(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- the CSV form ----------------------------------------------------------------------------


def neutralize(expr: pl.Expr) -> pl.Expr:
    """Prefix ``'`` to text a spreadsheet would run as a formula (or that starts with ``'``)."""
    return pl.when(expr.str.contains(_NEUTRALIZE_PATTERN)).then(pl.lit("'") + expr).otherwise(expr)


def unneutralize(expr: pl.Expr) -> pl.Expr:
    """Undo :func:`neutralize`: drop one leading ``'``."""
    return expr.str.strip_prefix("'")


def _to_csv_expr(column: Column) -> pl.Expr:
    expr = pl.col(column.name)
    dtype = column.dtype
    if isinstance(dtype, pl.List):
        joined = expr.cast(pl.List(pl.String())).list.join(LIST_SEPARATOR)
        return neutralize(joined).alias(column.name)
    if isinstance(dtype, pl.Datetime):
        return expr.dt.strftime(CSV_DATETIME_FORMAT).alias(column.name)
    if isinstance(dtype, pl.Enum):
        return expr.cast(pl.String()).alias(column.name)
    if dtype == pl.String():
        return neutralize(expr).alias(column.name)
    return expr


def csv_frame(frame: pl.LazyFrame, spec: TableSpec) -> pl.LazyFrame:
    """The CSV form of a table frame: lists flattened, datetimes as text, text neutralized."""
    return frame.select([_to_csv_expr(c) for c in spec.columns])


def _csv_read_dtype(column: Column) -> pl.DataType:
    dtype = column.dtype
    if isinstance(dtype, pl.List | pl.Datetime | pl.Enum) or dtype == pl.String():
        return pl.String()
    return dtype


def _from_csv_expr(column: Column) -> pl.Expr:
    expr = pl.col(column.name)
    dtype = column.dtype
    if isinstance(dtype, pl.List):
        items = (
            pl.when(expr.is_null() | (expr == ""))
            .then(pl.lit([], pl.List(pl.String())))
            .otherwise(unneutralize(expr).str.split(LIST_SEPARATOR))
        )
        return items.cast(dtype).alias(column.name)
    if isinstance(dtype, pl.Datetime):
        return expr.str.to_datetime(CSV_DATETIME_FORMAT, time_unit="us", time_zone="UTC").alias(
            column.name
        )
    if dtype == pl.String():
        return unneutralize(expr).alias(column.name)
    return expr.cast(dtype)


def read_csv_table(path: Path, spec: TableSpec) -> pl.DataFrame:
    """Read a table's CSV back into the contract schema, undoing flattening and neutralization."""
    raw = pl.read_csv(
        path,
        schema={c.name: _csv_read_dtype(c) for c in spec.columns},
        empty_string_is_null=True,
    )
    return raw.select([_from_csv_expr(c) for c in spec.columns])


def _dtype_text(dtype: pl.DataType | DataTypeClass) -> str:
    if isinstance(dtype, pl.Enum):
        return "text, one of: " + ", ".join(dtype.categories.to_list())
    if isinstance(dtype, pl.List):
        return f"list of {_dtype_text(dtype.inner)}"
    if isinstance(dtype, pl.Datetime):
        return "UTC timestamp"
    return str(dtype)


def dictionary_markdown() -> str:
    """The README of an output directory: every table, its key and columns, and how to read the
    files with other tools (the published version carries it as ``README.md``)."""
    lines = [
        "# Procedure tables",
        "",
        "Written by procedure-pages-pipeline. `parquet/<table>.parquet` (zstd) and "
        "`csv/<table>.csv` hold the same rows; `current` points at the latest complete version.",
        "",
        "Reading the files:",
        "",
        "- Parquet keeps every type. Columns listed as *one of* are Polars enums; DuckDB and "
        "pyarrow read them as text (Polars metadata they do not use).",
        "- CSV: UTF-8, a header row, an empty cell for null, timestamps as ISO 8601 UTC text "
        f"(`{CSV_DATETIME_FORMAT}`), list items joined by `{LIST_SEPARATOR}`.",
        "- Read codes and `run_id` as text (`dtype={'code': str}` in pandas, "
        "`schema_overrides={'code': pl.String}` in Polars): codes such as `0042T` and ids "
        "such as `crawl-20261204T195400123456Z-000001` are not numbers.",
        "- Text that would start with `=`, `+`, `-`, `@` (or `'`) gets a leading `'` in CSV only "
        "(so that a spreadsheet does not run it); Parquet keeps the text.",
        "",
    ]
    for spec in TABLES:
        lines += [f"## `{spec.name}` (key: {', '.join(spec.key) or 'none'})", "", spec.description]
        lines += ["", "| column | type | null | meaning |", "|---|---|---|---|"]
        lines += [
            f"| `{c.name}` | {_dtype_text(c.dtype)} | {'yes' if c.nullable else 'no'} | "
            f"{c.description} |"
            for c in spec.columns
        ]
        lines.append("")
    return "\n".join(lines)
