"""Names and shapes shared by the loader's modules: staging columns, directory names, counters."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

from pipeline.load import tables as T

Disposition = Literal["merge", "replace"]
Row = dict[str, Any]

SEQ = "_seq"
"""Staging column: the order of add/reject/mark_gone calls in the run (last one wins)."""
RECORD_SOURCE = "_record_source"
KEY: list[str] = list(T.PROCEDURES.key)
COUNT_NAMES: tuple[str, ...] = (
    "discovered",
    "fetched",
    "unchanged",
    "parsed",
    "rejected",
    "written",
    "gone",
    "headings",
    "unclassified_headings",
    "chrome_blocks",
)

LOCK_NAME = ".lock"
STAGING_NAME = ".staging"
VERSIONS_NAME = ".versions"
CURRENT_NAME = "current"
STABLE_LINKS: tuple[str, ...] = ("parquet", "csv", "README.md")
GONE_STAGE = "gone_marks"

STAGE_SCHEMAS: dict[str, pl.Schema] = {
    **{spec.name: pl.Schema({**spec.schema, SEQ: pl.Int64()}) for spec in T.CHILD_TABLES},
    T.PROCEDURES.name: pl.Schema(
        {**T.PROCEDURES.schema, SEQ: pl.Int64(), RECORD_SOURCE: pl.String()}
    ),
    T.REJECTS.name: pl.Schema({**T.REJECTS.schema, SEQ: pl.Int64()}),
    GONE_STAGE: pl.Schema({"source_url": pl.String(), "gone_at": T.UTC_TIME, SEQ: pl.Int64()}),
}


ROW_GROUP_ROWS = 20_000
"""Rows per row group of the published Parquet files (bounds what one key range decodes)."""
STAGE_ROW_GROUP_ROWS = 2_048
"""Rows per row group of staged part files, sorted by key so range scans skip most groups."""
STAGE_SORT: dict[str, tuple[str, ...]] = {
    **{spec.name: spec.key for spec in (T.PROCEDURES, *T.CHILD_TABLES)},
    T.REJECTS.name: ("source",),
    GONE_STAGE: ("source_url",),
}
WINNERS_SCHEMA = pl.Schema({**STAGE_SCHEMAS[T.PROCEDURES.name], "_unchanged": pl.Boolean()})
