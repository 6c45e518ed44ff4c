"""The merge of a run's staged rows into the published tables, key range by key range, with lazy
scans (see :mod:`pipeline.load.write` for the rules)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import polars as pl

from pipeline.errors import WriteError
from pipeline.load import tables as T
from pipeline.load.layout import (
    GONE_STAGE,
    KEY,
    RECORD_SOURCE,
    ROW_GROUP_ROWS,
    SEQ,
    WINNERS_SCHEMA,
    Disposition,
    Row,
)
from pipeline.load.quality import MIN_RECORDS, FieldQuality
from pipeline.load.versions import Stager

# --- the merge -------------------------------------------------------------------------------


def _conform(frame: pl.LazyFrame, spec: T.TableSpec, *extra: str) -> pl.LazyFrame:
    """``frame`` with exactly the spec's columns and dtypes (plus ``extra`` columns as they are)."""
    return frame.select([pl.col(c.name).cast(c.dtype) for c in spec.columns] + list(extra))


def _upgrade(frame: pl.LazyFrame, spec: T.TableSpec) -> pl.LazyFrame:
    """A table published by an earlier contract, with the columns added since then.

    New count columns of older rows are 0 (nothing was counted), other new columns null.
    """
    present = set(frame.collect_schema().names())
    missing = [c for c in spec.columns if c.name not in present]
    if not missing:
        return frame
    return frame.with_columns(
        pl.lit(0 if not c.nullable else None, c.dtype).alias(c.name) for c in missing
    )


def _latest(frame: pl.LazyFrame, key: Sequence[str]) -> pl.LazyFrame:
    """The row with the highest sequence number per key."""
    last = frame.group_by(key).agg(pl.col(SEQ).max())
    return frame.join(last, on=[*key, SEQ], how="semi")


def _scan_or_empty(paths: Sequence[Path], schema: pl.Schema) -> pl.LazyFrame:
    return pl.scan_parquet(list(paths)) if paths else pl.LazyFrame(schema=schema)


def _sink_part(frame: pl.LazyFrame, path: Path) -> None:
    """Write an intermediate file of the merge (fast compression, no fsync: it is scratch)."""
    frame.sink_parquet(path, compression="lz4", statistics=False, engine="streaming", mkdir=True)


def _sink(frame: pl.LazyFrame, spec: T.TableSpec, path: Path) -> None:
    """Write a published table: zstd Parquet with statistics, bounded row groups, fsynced."""
    frame.sink_parquet(
        path,
        compression="zstd",
        statistics=True,
        row_group_size=ROW_GROUP_ROWS,
        metadata={"table": spec.name, "key": ",".join(spec.key)},
        sync_on_close="all",
        engine="streaming",
    )


@dataclass(frozen=True)
class _KeyRange:
    """A slice of the page keys: one code system, codes in ``[lo, hi)`` (None = open end)."""

    code_system: str
    lo: str | None
    hi: str | None

    def predicate(self) -> pl.Expr:
        """True for rows whose (code_system, code) falls in the slice."""
        expr = pl.col("code_system") == self.code_system
        if self.lo is not None:
            expr = expr & (pl.col("code") >= self.lo)
        if self.hi is not None:
            expr = expr & (pl.col("code") < self.hi)
        return expr


@dataclass(frozen=True)
class MergePlan:
    """Where the merge reads from and writes to, and how it combines old and new rows."""

    stager: Stager
    old_dir: Path | None
    disposition: Disposition
    parquet_dir: Path
    work_dir: Path
    run_id: str
    range_pages: int
    #: With ``replace``: the sources the run rebuilds (None: all). Published pages of other
    #: sources are kept as they are.
    replaces: frozenset[str] | None = None

    def old(self, spec: T.TableSpec) -> pl.LazyFrame:
        """The published table of the previous version (empty before the first)."""
        path = None if self.old_dir is None else self.old_dir / "parquet" / f"{spec.name}.parquet"
        if path is None or not path.exists():
            if self.old_dir is not None and (
                (self.old_dir / "csv" / f"{spec.name}.csv").exists() or spec is T.PROCEDURES
            ):
                # Published with this table (its CSV twin is there), now without: a merge
                # would publish it empty, and the pages count as unchanged, for good.
                raise WriteError(
                    f"the published table {path} is missing: restore it, or run "
                    "`pipeline reparse` into an empty --out to rebuild every table"
                )
            return spec.empty().lazy()
        return _conform(_upgrade(pl.scan_parquet(path), spec), spec)

    def out(self, spec: T.TableSpec) -> Path:
        """The new version's Parquet path of a table."""
        return self.parquet_dir / f"{spec.name}.parquet"

    def part(self, name: str, index: int) -> Path:
        """The scratch file of one key range of a table."""
        return self.work_dir / name / f"range-{index:06d}.parquet"

    def parts(self, name: str) -> list[Path]:
        """A table's scratch files in key-range order."""
        folder = self.work_dir / name
        return sorted(folder.glob("range-*.parquet")) if folder.is_dir() else []

    def winners(self) -> pl.LazyFrame:
        """This run's last add per key, flagged ``_unchanged`` when hash and parser match."""
        return _scan_or_empty(self.parts("winners"), WINNERS_SCHEMA)

    def kept_old(self, old: pl.LazyFrame, winners: pl.LazyFrame) -> pl.LazyFrame:
        """Published rows (of procedures or a child table) that survive this run."""
        if self.disposition == "merge":
            replaced = winners.filter(~pl.col("_unchanged")).select(KEY)
            return old.join(replaced, on=KEY, how="anti")
        unchanged = winners.filter(pl.col("_unchanged")).select(KEY)
        kept = old.join(unchanged, on=KEY, how="semi")
        if self.replaces is None:
            return kept
        # Pages from sources this run does not rebuild (ingested files and URLs) stay, unless
        # the run wrote the same key.
        foreign = self.foreign_keys.lazy().join(winners.select(KEY), on=KEY, how="anti")
        return pl.concat([kept, old.join(foreign, on=KEY, how="semi")], how="vertical")

    @cached_property
    def foreign_keys(self) -> pl.DataFrame:
        """Keys of published pages whose source is not in ``replaces`` (computed once per
        publication, not once per key range and table)."""
        covered = pl.LazyFrame(
            {"source_url": sorted(self.replaces or ())}, schema={"source_url": pl.String()}
        )
        return (
            self.old(T.PROCEDURES)
            .join(covered, on="source_url", how="anti")
            .select(KEY)
            .collect(engine="streaming")
        )


def _key_ranges(plan: MergePlan) -> list[_KeyRange]:
    """Cut all page keys (published and staged) into slices of about ``range_pages`` pages."""
    keys = (
        pl.concat(
            [plan.old(T.PROCEDURES).select(KEY), plan.stager.scan(T.PROCEDURES.name).select(KEY)]
        )
        .unique()
        .sort(KEY)
        .collect(engine="streaming")
    )
    ranges: list[_KeyRange] = []
    for (system,), group in keys.partition_by("code_system", as_dict=True).items():
        codes = group["code"].sort()
        bounds = codes.gather_every(plan.range_pages, offset=plan.range_pages).to_list()
        edges: list[str | None] = [None, *bounds, None]
        ranges.extend(_KeyRange(str(system), lo, hi) for lo, hi in itertools.pairwise(edges))
    order = {value: i for i, value in enumerate(T.CODE_SYSTEM.categories)}
    return sorted(ranges, key=lambda r: order[r.code_system])


def _stage_marks(plan: MergePlan) -> pl.LazyFrame:
    """The last gone mark per source URL (with its sequence number)."""
    path = plan.work_dir / "marks.parquet"
    last = (
        plan.stager.scan(GONE_STAGE)
        .group_by("source_url")
        .agg(
            pl.col(SEQ).max().alias("_mark_seq"),
            pl.col("gone_at").sort_by(SEQ).last().alias("_mark_at"),
        )
    )
    _sink_part(last, path)
    return pl.scan_parquet(path)


def _stage_winners(plan: MergePlan, where: pl.Expr, path: Path) -> pl.LazyFrame:
    """Dedupe a key range of this run's pages and flag those unchanged against the published row."""
    old_state = (
        plan.old(T.PROCEDURES)
        .filter(where)
        .select(
            *KEY,
            pl.col("content_hash").alias("_old_hash"),
            pl.col("parser_version").alias("_old_parser"),
            pl.col("source_url").alias("_old_source"),
        )
    )
    # The same bytes under another URL (a page that moved, a duplicate that won) is a change:
    # the row's source must follow, or the page kept is in neither table.
    same = (
        (pl.col("content_hash") == pl.col("_old_hash"))
        & (pl.col("parser_version") == pl.col("_old_parser"))
        & (pl.col("source_url") == pl.col("_old_source"))
    )
    staged = plan.stager.scan(T.PROCEDURES.name).filter(where)
    winners = _latest(staged, KEY).join(old_state, on=KEY, how="left")
    _sink_part(
        winners.with_columns(same.fill_null(False).alias("_unchanged")).select(
            WINNERS_SCHEMA.names()
        ),
        path,
    )
    return pl.scan_parquet(path)


def _merge_procedures(
    plan: MergePlan, where: pl.Expr, winners: pl.LazyFrame, marks: pl.LazyFrame, path: Path
) -> None:
    """Upsert a key range of pages, keep unchanged rows as published, then apply gone marks."""
    spec = T.PROCEDURES
    revived = winners.filter(pl.col("_unchanged")).select(*KEY, SEQ)
    kept = (
        plan.kept_old(plan.old(spec).filter(where), winners)
        .join(revived, on=KEY, how="left")
        .with_columns(
            pl.when(pl.col(SEQ).is_not_null()).then(False).otherwise(pl.col("gone")).alias("gone"),
            pl.when(pl.col(SEQ).is_not_null())
            .then(None)
            .otherwise(pl.col("gone_at"))
            .alias("gone_at"),
            pl.col(SEQ).fill_null(-1),
        )
    )
    fresh = _conform(winners.filter(~pl.col("_unchanged")), spec, SEQ)
    rows = pl.concat([_conform(kept, spec, SEQ), fresh], how="vertical")
    hit = pl.col("_mark_seq").is_not_null() & (pl.col("_mark_seq") > pl.col(SEQ))
    marked = rows.join(marks, on="source_url", how="left").with_columns(
        pl.when(hit & ~pl.col("gone"))
        .then(pl.col("_mark_at"))
        .otherwise(pl.col("gone_at"))
        .alias("gone_at"),
        (pl.col("gone") | hit).alias("gone"),
    )
    _sink_part(_conform(marked, spec).sort(spec.key), path)


def _merge_child(
    plan: MergePlan, spec: T.TableSpec, where: pl.Expr, winners: pl.LazyFrame, path: Path
) -> None:
    """Child rows of a key range: surviving published pages' rows plus replaced pages' new rows."""
    replaced = winners.filter(~pl.col("_unchanged")).select(*KEY, SEQ)
    fresh = plan.stager.scan(spec.name).filter(where).join(replaced, on=[*KEY, SEQ], how="semi")
    kept = plan.kept_old(plan.old(spec).filter(where), winners)
    rows = pl.concat([kept, _conform(fresh, spec)], how="vertical")
    _sink_part(rows.sort(spec.key), path)


def merge_pages(plan: MergePlan) -> None:
    """Merge procedures and every child table range by range, then join the ranges in order."""
    marks = _stage_marks(plan)
    for index, key_range in enumerate(_key_ranges(plan)):
        where = key_range.predicate()
        winners = _stage_winners(plan, where, plan.part("winners", index))
        _merge_procedures(plan, where, winners, marks, plan.part(T.PROCEDURES.name, index))
        for spec in T.CHILD_TABLES:
            _merge_child(plan, spec, where, winners, plan.part(spec.name, index))
        for spec in (T.PROCEDURES, *T.CHILD_TABLES):
            check_keys(plan.part(spec.name, index), spec)  # ranges never share a key
    for spec in (T.PROCEDURES, *T.CHILD_TABLES):
        _sink(_scan_or_empty(plan.parts(spec.name), spec.schema), spec, plan.out(spec))


def merge_rejects(plan: MergePlan) -> None:
    """The current reject per source, minus sources that became records after their reject."""
    spec = T.REJECTS
    latest = _conform(_latest(plan.stager.scan(spec.name), ["source"]), spec, SEQ)
    candidates = latest
    old = plan.old(spec).join(latest.select("source"), on="source", how="anti")
    if plan.disposition == "replace" and plan.replaces is not None:
        # A rebuild replaces the rejects of its own sources only: an ingested file's reject
        # stays until that file is ingested again.
        covered = pl.LazyFrame({"source": sorted(plan.replaces)}, schema={"source": pl.String()})
        old = old.join(covered, on="source", how="anti")
    if plan.disposition == "merge" or plan.replaces is not None:
        candidates = pl.concat([old.with_columns(pl.lit(-1, pl.Int64()).alias(SEQ)), latest])
    added = plan.stager.scan(T.PROCEDURES.name)
    sources = (
        pl.concat(
            [
                added.select(pl.col("source_url").alias("source"), SEQ),
                added.select(pl.col(RECORD_SOURCE).alias("source"), SEQ),
            ]
        )
        .group_by("source")
        .agg(pl.col(SEQ).max().alias("_added_seq"))
    )
    current = candidates.join(sources, on="source", how="left").filter(
        pl.col("_added_seq").is_null() | (pl.col("_added_seq") < pl.col(SEQ))
    )
    _sink(_conform(current, spec).sort(spec.key), spec, plan.out(spec))
    check_keys(plan.out(spec), spec)


def _change_expr() -> pl.Expr:
    """added / gone / returned / changed from the published (_old_*) and new state of a key."""
    old_gone, gone = pl.col("_old_gone"), pl.col("gone")
    return (
        pl.when(old_gone.is_null())
        .then(pl.lit("added"))
        .when(~old_gone & gone)
        .then(pl.lit("gone"))
        .when(old_gone & ~gone)
        .then(pl.lit("returned"))
        .when(~gone & (pl.col("content_hash") != pl.col("_old_hash")))
        .then(pl.lit("changed"))
        .otherwise(None)
    )


def merge_changes(plan: MergePlan) -> dict[str, int]:
    """Append this run's changes (sorted by key) and return their counts per kind."""
    spec = T.CHANGES
    old_state = plan.old(T.PROCEDURES).select(
        *KEY, pl.col("content_hash").alias("_old_hash"), pl.col("gone").alias("_old_gone")
    )
    added_at = plan.winners().select(*KEY, pl.col("parsed_at").alias("_added_at"))
    new = pl.scan_parquet(plan.out(T.PROCEDURES)).select(*KEY, "content_hash", "gone", "gone_at")
    changes = (
        new.join(old_state, on=KEY, how="left")
        .join(added_at, on=KEY, how="left")
        .with_columns(_change_expr().alias("change"))
        .filter(pl.col("change").is_not_null())
        .with_columns(
            pl.lit(plan.run_id).alias("run_id"),
            pl.when(pl.col("change") == "gone")
            .then(pl.col("gone_at"))
            .otherwise(pl.col("_added_at"))
            .alias("at"),
        )
    )
    fresh_path = plan.work_dir / "changes.parquet"
    _sink_part(_conform(changes, spec).sort(KEY), fresh_path)
    check_keys(fresh_path, spec)  # earlier runs have other run ids
    fresh = pl.scan_parquet(fresh_path)
    _sink(pl.concat([plan.old(spec), _conform(fresh, spec)]), spec, plan.out(spec))
    counts = fresh.group_by("change").len().collect()
    summary = dict.fromkeys(T.CHANGE_KINDS, 0)
    summary.update({str(k): int(v) for k, v in counts.iter_rows()})
    return summary


def append_run(plan: MergePlan, run_row: Row) -> None:
    """Append this run's row to ``runs``."""
    spec = T.RUNS
    row = pl.DataFrame([run_row], schema=spec.schema).lazy()
    _sink(pl.concat([plan.old(spec), row]), spec, plan.out(spec))
    check_keys(plan.out(spec), spec)


def previous_rates(plan: MergePlan) -> dict[str, float]:
    """Per field, the fill rate of the last published run that parsed enough records to
    compare with (a one-page ingest is never the baseline of the next crawl)."""
    old = plan.old(T.QUALITY).filter(pl.col("records") >= MIN_RECORDS).collect()
    rates: dict[str, float] = {}
    for name, rate in old.select("field", "fill_rate").iter_rows():
        rates[name] = rate  # rows are in append order: the last one wins
    return rates


def append_quality(plan: MergePlan, fields: list[FieldQuality]) -> None:
    """Append this run's per-field fill rates to ``quality``."""
    spec = T.QUALITY
    rows = [
        {
            "run_id": plan.run_id,
            "field": f.field,
            "records": f.records,
            "filled": f.filled,
            "fill_rate": f.rate,
            "previous_fill_rate": f.previous_rate,
            "dropped": f.dropped,
        }
        for f in fields
    ]
    frame = pl.DataFrame(rows, schema=spec.schema).lazy()
    _sink(pl.concat([plan.old(spec), frame]), spec, plan.out(spec))
    check_keys(plan.out(spec), spec)


def check_nulls(path: Path, spec: T.TableSpec) -> None:
    """Refuse to publish a table with a null where the contract forbids one (streamed)."""
    required = [c.name for c in spec.columns if not c.nullable]
    counts = pl.scan_parquet(path).select(pl.col(required).null_count()).collect(engine="streaming")
    bad = [name for name, count in zip(required, counts.row(0), strict=True) if count]
    if bad:
        raise WriteError(
            f"table {spec.name} would hold nulls in {', '.join(bad)}; nothing was published"
        )


def check_keys(path: Path, spec: T.TableSpec) -> None:
    """Refuse to publish a table (or key range of one) in which a key repeats."""
    repeated = (
        pl.scan_parquet(path)
        .group_by(spec.key)
        .len()
        .filter(pl.col("len") > 1)
        .head(1)
        .collect(engine="streaming")
    )
    if repeated.height:
        key = ", ".join(f"{k}={repeated[k][0]}" for k in spec.key)
        raise WriteError(f"table {spec.name} would repeat the key ({key}); nothing was published")


def write_csv(parquet: Path, csv: Path, spec: T.TableSpec) -> None:
    """Derive a table's CSV form from its new Parquet file."""
    T.csv_frame(pl.scan_parquet(parquet), spec).sink_csv(
        csv,
        include_header=True,
        separator=",",
        line_terminator="\n",
        quote_style="necessary",
        sync_on_close="all",
        engine="streaming",
    )


def row_count(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())
