"""Write validated records into the output tables: staged batches, a lazy merge, atomic publication.

Usage (the crawler and the command line)::

    with TableWriter(out_dir, run_id=run_id, mode="crawl") as writer:
        writer.add(record, source_url=url, content_hash=h, fetched_at=t0, parsed_at=t1,
                   parser_version=PARSER_VERSION)
        writer.reject(source=url, stage="parse", error_kind="empty_page", reason="...",
                      http_status=200, at=t1)
        writer.mark_gone(url, at=t2)
        result = writer.publish(counts, exit_code)

Layout of ``OUT`` (the SPEC paths ``OUT/parquet/<table>.parquet`` and ``OUT/csv/<table>.csv``
stay valid through stable symlinks)::

    OUT/.lock                       flock held by the one writer at work
    OUT/.staging/<run>-<rand>/      this run's batches, scratch and the version being built
    OUT/.versions/<run>-<rand>/     complete published versions: parquet/ and csv/
    OUT/current -> .versions/<run>-<rand>   swapped atomically at publication
    OUT/parquet -> current/parquet  stable links created once
    OUT/csv     -> current/csv

Atomicity: ``publish`` writes every table of the new version under the staging directory, fsyncs
each file and directory, renames the finished version into ``.versions/`` and then switches
``current`` with one ``os.replace`` of a freshly made symlink, which is atomic on POSIX. Until that
rename a reader resolving ``OUT/parquet/...`` sees the previous version, complete; after it, the
new one, complete. A writer killed at any point leaves ``current`` on a complete version; its
leftovers (staging, an unreferenced version) are removed by the next writer. The two most recent
versions are kept, so a reader that wants several tables of one run resolves ``OUT/current`` once
(``os.path.realpath``) and reads from that directory.

Memory: ``add`` turns records into rows and stages them in bounded batches (every ``batch_size``
events one Parquet part file per table, sorted by key, with statistics). ``publish`` never holds a
whole table: it cuts the page keys (published and staged, keys only) into ranges of about
``batch_size`` pages and merges range by range with lazy scans whose key filters skip the row
groups of other ranges (group-by, semi/anti joins, an in-memory sort of one range), then joins the
range files in key order with a streaming ``sink_parquet`` and derives each CSV from the new Parquet
with a streaming ``sink_csv``. What grows with the number of pages is key-sized state only (the key
ranges, the per-run key sets of the joins); Polars' streaming sinks buffer a bounded amount.

Checks before publication: no key repeats (checked per key range, which never share a key), and
no column the contract marks non-nullable holds a null. Either failure is a WriteError and nothing
is published.

Merge rules (per key ``(code_system, code)``; within a run the last ``add`` of a key wins):

* a page whose content hash and parser version equal the published row's is *unchanged*: its
  published row and child rows are kept byte for byte (fetched_at/parsed_at are not bumped); only
  a ``gone`` flag is cleared;
* any other added page replaces its row and all its child rows;
* ``merge`` keeps every published page this run did not add; ``replace`` keeps only this run's;
* ``mark_gone`` sets ``gone``/``gone_at`` on the rows with that source URL (unless that page was
  added again later in the run); rows are never deleted for being gone;
* rejects hold the current reject per source; a source that becomes a record later in this run
  (or in a later run) loses its reject; ``replace`` keeps only this run's rejects;
* ``runs`` gets one row per publication, ``changes`` one row per key the run added, changed
  (content hash differs), marked gone or brought back.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import polars as pl

from pipeline.errors import WriteError
from pipeline.fsutil import fsync_dir
from pipeline.load import tables as T
from pipeline.load.quality import MIN_RECORDS, FieldQuality, QualityTally
from pipeline.models import LIST_SECTIONS, ExtractionReport, Procedure

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
STABLE_LINKS: tuple[str, ...] = ("parquet", "csv")
GONE_STAGE = "gone_marks"

_STAGE_SCHEMAS: dict[str, pl.Schema] = {
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
_STAGE_SORT: dict[str, tuple[str, ...]] = {
    **{spec.name: spec.key for spec in (T.PROCEDURES, *T.CHILD_TABLES)},
    T.REJECTS.name: ("source",),
    GONE_STAGE: ("source_url",),
}
_WINNERS_SCHEMA = pl.Schema({**_STAGE_SCHEMAS[T.PROCEDURES.name], "_unchanged": pl.Boolean()})


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- records to rows (pure) ------------------------------------------------------------------


def _utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused (their zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _opt_text(value: str | None) -> str | None:
    """Optional text with empty strings as null (CSV cannot tell the two apart)."""
    return value if value else None


def _required(value: str, what: str) -> str:
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
        "source_url": _required(source_url, "source_url"),
        "content_hash": _required(content_hash, "content_hash"),
        "fetched_at": _utc(fetched_at, "fetched_at") if fetched_at is not None else None,
        "parsed_at": _utc(parsed_at, "parsed_at"),
        "parser_version": _required(parser_version, "parser_version"),
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


# --- staging ---------------------------------------------------------------------------------


class _Stager:
    """Buffers rows and writes them as Parquet part files every ``batch_size`` events."""

    def __init__(self, root: Path, batch_size: int) -> None:
        self.root = root
        self.batch_size = batch_size
        self.seq = 0
        self._pending = 0
        self._buffers: dict[str, list[Row]] = defaultdict(list)
        self._parts: dict[str, list[Path]] = defaultdict(list)

    def stage(self, rows: Mapping[str, list[Row]]) -> None:
        """Stage the rows of one event (stamped with the next sequence number)."""
        self.seq += 1
        for name, table_rows in rows.items():
            self._buffers[name].extend({**row, SEQ: self.seq} for row in table_rows)
        self._pending += 1
        if self._pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write every non-empty buffer as a new part file."""
        for name, rows in self._buffers.items():
            if rows:
                self._write_part(name, rows)
                rows.clear()
        self._pending = 0

    def _write_part(self, name: str, rows: list[Row]) -> None:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{len(self._parts[name]):06d}.parquet"
        frame = pl.from_dicts(rows, schema=_STAGE_SCHEMAS[name]).sort(_STAGE_SORT[name])
        frame.write_parquet(
            path, compression="lz4", statistics=True, row_group_size=STAGE_ROW_GROUP_ROWS
        )
        self._parts[name].append(path)

    def scan(self, name: str) -> pl.LazyFrame:
        """Every staged row of ``name`` (flush first)."""
        schema = _STAGE_SCHEMAS[name]
        parts = self._parts.get(name)
        if not parts:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(parts, schema=schema)


# --- file-system helpers ---------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def _translate(action: str) -> Iterator[None]:
    """Turn OS and Polars failures into WriteError, keeping the cause."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise WriteError(f"{action}: {_describe(exc)}") from exc


def _swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:80] or "run"


def _current_version(out_dir: Path) -> Path | None:
    """The version directory ``OUT/current`` points at, or None before the first publication."""
    link = out_dir / CURRENT_NAME
    if not link.is_symlink():
        if link.exists():
            raise WriteError(f"{link} exists but is not a symlink made by the writer")
        return None
    target = out_dir / os.readlink(link)
    if not target.is_dir():
        raise WriteError(f"{link} points at {target}, which is missing; the output is damaged")
    return target


def _check_stable_links(out_dir: Path) -> None:
    """Fail early when ``OUT/parquet`` or ``OUT/csv`` is a real, non-empty directory or file."""
    for name in STABLE_LINKS:
        path = out_dir / name
        if path.is_symlink() or not path.exists():
            continue
        if path.is_dir() and not any(path.iterdir()):
            continue
        raise WriteError(
            f"{path} exists and is not the writer's symlink to {CURRENT_NAME}/{name}; "
            "move it away so the writer can publish there"
        )


def _ensure_stable_links(out_dir: Path) -> None:
    """Create ``OUT/parquet -> current/parquet`` and ``OUT/csv -> current/csv`` if missing."""
    for name in STABLE_LINKS:
        path = out_dir / name
        target = f"{CURRENT_NAME}/{name}"
        if path.is_symlink() and os.readlink(path) == target:
            continue
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # empty, checked when the writer opened
        _swap_symlink(path, target)
    fsync_dir(out_dir)


def _clean_leftovers(out_dir: Path) -> None:
    """Remove what a killed writer left behind (the caller holds the lock)."""
    staging = out_dir / STAGING_NAME
    if staging.is_dir():
        for entry in staging.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
    for entry in out_dir.glob(".*.tmp-*"):
        if entry.is_symlink() or entry.is_file():
            entry.unlink()


def _collect_garbage(out_dir: Path, keep: set[str]) -> None:
    """Delete published versions other than ``keep`` (the new and the previous one)."""
    versions = out_dir / VERSIONS_NAME
    for entry in versions.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


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
class _MergePlan:
    """Where the merge reads from and writes to, and how it combines old and new rows."""

    stager: _Stager
    old_dir: Path | None
    disposition: Disposition
    parquet_dir: Path
    work_dir: Path
    run_id: str
    range_pages: int

    def old(self, spec: T.TableSpec) -> pl.LazyFrame:
        """The published table of the previous version (empty before the first)."""
        path = None if self.old_dir is None else self.old_dir / "parquet" / f"{spec.name}.parquet"
        if path is None or not path.exists():
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
        return _scan_or_empty(self.parts("winners"), _WINNERS_SCHEMA)

    def kept_old(self, old: pl.LazyFrame, winners: pl.LazyFrame) -> pl.LazyFrame:
        """Published rows (of procedures or a child table) that survive this run."""
        if self.disposition == "merge":
            replaced = winners.filter(~pl.col("_unchanged")).select(KEY)
            return old.join(replaced, on=KEY, how="anti")
        unchanged = winners.filter(pl.col("_unchanged")).select(KEY)
        return old.join(unchanged, on=KEY, how="semi")


def _key_ranges(plan: _MergePlan) -> list[_KeyRange]:
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


def _stage_marks(plan: _MergePlan) -> pl.LazyFrame:
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


def _stage_winners(plan: _MergePlan, where: pl.Expr, path: Path) -> pl.LazyFrame:
    """Dedupe a key range of this run's pages and flag those unchanged against the published row."""
    old_state = (
        plan.old(T.PROCEDURES)
        .filter(where)
        .select(
            *KEY,
            pl.col("content_hash").alias("_old_hash"),
            pl.col("parser_version").alias("_old_parser"),
        )
    )
    same = (pl.col("content_hash") == pl.col("_old_hash")) & (
        pl.col("parser_version") == pl.col("_old_parser")
    )
    staged = plan.stager.scan(T.PROCEDURES.name).filter(where)
    winners = _latest(staged, KEY).join(old_state, on=KEY, how="left")
    _sink_part(
        winners.with_columns(same.fill_null(False).alias("_unchanged")).select(
            _WINNERS_SCHEMA.names()
        ),
        path,
    )
    return pl.scan_parquet(path)


def _merge_procedures(
    plan: _MergePlan, where: pl.Expr, winners: pl.LazyFrame, marks: pl.LazyFrame, path: Path
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
    plan: _MergePlan, spec: T.TableSpec, where: pl.Expr, winners: pl.LazyFrame, path: Path
) -> None:
    """Child rows of a key range: surviving published pages' rows plus replaced pages' new rows."""
    replaced = winners.filter(~pl.col("_unchanged")).select(*KEY, SEQ)
    fresh = plan.stager.scan(spec.name).filter(where).join(replaced, on=[*KEY, SEQ], how="semi")
    kept = plan.kept_old(plan.old(spec).filter(where), winners)
    rows = pl.concat([kept, _conform(fresh, spec)], how="vertical")
    _sink_part(rows.sort(spec.key), path)


def _merge_pages(plan: _MergePlan) -> None:
    """Merge procedures and every child table range by range, then join the ranges in order."""
    marks = _stage_marks(plan)
    for index, key_range in enumerate(_key_ranges(plan)):
        where = key_range.predicate()
        winners = _stage_winners(plan, where, plan.part("winners", index))
        _merge_procedures(plan, where, winners, marks, plan.part(T.PROCEDURES.name, index))
        for spec in T.CHILD_TABLES:
            _merge_child(plan, spec, where, winners, plan.part(spec.name, index))
        for spec in (T.PROCEDURES, *T.CHILD_TABLES):
            _check_keys(plan.part(spec.name, index), spec)  # ranges never share a key
    for spec in (T.PROCEDURES, *T.CHILD_TABLES):
        _sink(_scan_or_empty(plan.parts(spec.name), spec.schema), spec, plan.out(spec))


def _merge_rejects(plan: _MergePlan) -> None:
    """The current reject per source, minus sources that became records after their reject."""
    spec = T.REJECTS
    latest = _conform(_latest(plan.stager.scan(spec.name), ["source"]), spec, SEQ)
    candidates = latest
    if plan.disposition == "merge":
        old = plan.old(spec).join(latest.select("source"), on="source", how="anti")
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
    _check_keys(plan.out(spec), spec)


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


def _merge_changes(plan: _MergePlan) -> dict[str, int]:
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
    _check_keys(fresh_path, spec)  # earlier runs have other run ids
    fresh = pl.scan_parquet(fresh_path)
    _sink(pl.concat([plan.old(spec), _conform(fresh, spec)]), spec, plan.out(spec))
    counts = fresh.group_by("change").len().collect()
    summary = dict.fromkeys(T.CHANGE_KINDS, 0)
    summary.update({str(k): int(v) for k, v in counts.iter_rows()})
    return summary


def _append_run(plan: _MergePlan, run_row: Row) -> None:
    """Append this run's row to ``runs``."""
    spec = T.RUNS
    row = pl.DataFrame([run_row], schema=spec.schema).lazy()
    _sink(pl.concat([plan.old(spec), row]), spec, plan.out(spec))
    _check_keys(plan.out(spec), spec)


def _previous_rates(plan: _MergePlan) -> dict[str, float]:
    """Per field, the fill rate of the last published run that parsed enough records to
    compare with (a one-page ingest is never the baseline of the next crawl)."""
    old = plan.old(T.QUALITY).filter(pl.col("records") >= MIN_RECORDS).collect()
    rates: dict[str, float] = {}
    for name, rate in old.select("field", "fill_rate").iter_rows():
        rates[name] = rate  # rows are in append order: the last one wins
    return rates


def _append_quality(plan: _MergePlan, fields: list[FieldQuality]) -> None:
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
    _check_keys(plan.out(spec), spec)


def _check_nulls(path: Path, spec: T.TableSpec) -> None:
    """Refuse to publish a table with a null where the contract forbids one (streamed)."""
    required = [c.name for c in spec.columns if not c.nullable]
    counts = pl.scan_parquet(path).select(pl.col(required).null_count()).collect(engine="streaming")
    bad = [name for name, count in zip(required, counts.row(0), strict=True) if count]
    if bad:
        raise WriteError(
            f"table {spec.name} would hold nulls in {', '.join(bad)}; nothing was published"
        )


def _check_keys(path: Path, spec: T.TableSpec) -> None:
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


def _write_csv(parquet: Path, csv: Path, spec: T.TableSpec) -> None:
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


def _row_count(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


# --- the writer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    """What a publication produced.

    ``written`` is the number of rows of each table in the published version (every table is
    rewritten in full); ``changes`` counts this run's ``changes`` rows per kind.
    """

    run_id: str
    version_dir: Path
    parquet: dict[str, Path]
    csv: dict[str, Path]
    written: dict[str, int]
    changes: dict[str, int]
    quality: list[FieldQuality] = field(default_factory=list)
    #: Headings seen, left unclassified, chrome blocks dropped: summed over the run's pages.
    extraction: dict[str, int] = field(default_factory=dict)


class TableWriter:
    """Stages one run's records, rejects and gone marks, then publishes all tables atomically.

    Use it as a context manager. Leaving the block without :meth:`publish`, or with an
    exception, publishes nothing and removes the staging directory. One writer at a time per
    output directory (an flock on ``OUT/.lock``); a second one gets a WriteError.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        run_id: str,
        mode: str,
        disposition: Disposition = "merge",
        batch_size: int = 2000,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not run_id.strip() or not mode.strip():
            raise ValueError("run_id and mode must not be empty")
        if disposition not in T.DISPOSITIONS:
            raise ValueError(f"disposition must be merge or replace, not {disposition!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.mode = mode
        self.disposition: Disposition = disposition
        self.batch_size = batch_size
        self._clock = clock
        self._lock_fd: int | None = None
        self._staging: Path | None = None
        self._stager: _Stager | None = None
        self._started_at: datetime | None = None
        self._published = False
        self._adds = 0
        self._rejects = 0
        self._tally = QualityTally()
        self._quality: list[FieldQuality] = []

    # -- context --

    def __enter__(self) -> Self:
        with _translate(f"cannot open the output directory {self.out_dir}"):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = self._acquire_lock()
            try:
                self._prepare()
            except BaseException:
                self._release_lock()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._discard_staging()
        finally:
            self._release_lock()

    def _acquire_lock(self) -> int:
        fd = os.open(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WriteError(
                f"another writer is publishing to {self.out_dir} (it holds {LOCK_NAME})"
            ) from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _prepare(self) -> None:
        _clean_leftovers(self.out_dir)
        _check_stable_links(self.out_dir)
        self._check_run_id_unused()
        name = f"{_safe_name(self.run_id)}-{uuid.uuid4().hex[:8]}"
        self._staging = self.out_dir / STAGING_NAME / name
        self._staging.mkdir(parents=True)
        self._stager = _Stager(self._staging / "parts", self.batch_size)
        self._started_at = _utc(self._clock(), "clock()")

    def _check_run_id_unused(self) -> None:
        current = _current_version(self.out_dir)
        runs = None if current is None else current / "parquet" / f"{T.RUNS.name}.parquet"
        if runs is None or not runs.exists():
            return
        seen = pl.scan_parquet(runs).filter(pl.col("run_id") == self.run_id).select(pl.len())
        if seen.collect().item():
            raise WriteError(f"run id {self.run_id!r} was already published to {self.out_dir}")

    def _discard_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
            self._stager = None

    def _open_stager(self) -> _Stager:
        if self._stager is None:
            state = "published" if self._published else "not open"
            raise RuntimeError(f"TableWriter is {state}; use it inside a with block, once")
        return self._stager

    @property
    def staging_dir(self) -> Path | None:
        """This run's staging directory while the writer is open."""
        return self._staging

    # -- input --

    def add(
        self,
        record: Procedure,
        *,
        source_url: str,
        content_hash: str,
        fetched_at: datetime | None,
        parsed_at: datetime,
        parser_version: str,
        report: ExtractionReport | None = None,
    ) -> None:
        """Stage one validated record (the last add of a key in a run wins).

        ``report`` is what the extractor saw on the page; it feeds the run's quality counts.
        """
        stager = self._open_stager()
        rows = record_to_rows(
            record,
            source_url=source_url,
            content_hash=content_hash,
            fetched_at=fetched_at,
            parsed_at=parsed_at,
            parser_version=parser_version,
        )
        rows[T.PROCEDURES.name][0][RECORD_SOURCE] = record.source
        with _translate(f"cannot stage records under {self.out_dir}"):
            stager.stage(rows)
        self._adds += 1
        self._tally.add(record, report)

    def reject(
        self,
        *,
        source: str,
        stage: str,
        error_kind: str,
        reason: str,
        http_status: int | None,
        at: datetime,
        page_kind: str | None = None,
    ) -> None:
        """Stage a page that did not become a record (the latest reject per source wins).

        ``stage`` is fetch, parse or validate; an empty ``reason`` becomes ``error_kind``.
        ``page_kind`` says what a page that is not a procedure page is instead.
        """
        stager = self._open_stager()
        if stage not in T.STAGES:
            raise ValueError(f"stage must be one of {', '.join(T.STAGES)}, not {stage!r}")
        row = {
            "source": _required(source, "source"),
            "stage": stage,
            "error_kind": _required(error_kind, "error_kind"),
            "reason": reason or error_kind,
            "page_kind": page_kind,
            "http_status": http_status,
            "rejected_at": _utc(at, "at"),
            "run_id": self.run_id,
        }
        with _translate(f"cannot stage rejects under {self.out_dir}"):
            stager.stage({T.REJECTS.name: [row]})
        self._rejects += 1

    def mark_gone(self, source_url: str, at: datetime) -> None:
        """Mark the page at ``source_url`` gone (its rows stay, with ``gone`` true)."""
        stager = self._open_stager()
        row = {"source_url": _required(source_url, "source_url"), "gone_at": _utc(at, "at")}
        with _translate(f"cannot stage gone marks under {self.out_dir}"):
            stager.stage({GONE_STAGE: [row]})

    # -- publication --

    def publish(self, counts: Mapping[str, int], exit_code: int) -> PublishResult:
        """Merge, write every table, and make the new version visible in one atomic step.

        ``counts`` holds the run's counters; the keys of :data:`COUNT_NAMES` go to the ``runs``
        row, other keys are ignored. Missing ones default: ``parsed`` and ``rejected`` to the adds
        and rejects seen, ``written`` to the pages added, changed or returned, ``gone`` to the
        pages newly marked gone, the rest to 0.
        """
        stager = self._open_stager()
        assert self._staging is not None
        with _translate(f"cannot publish the tables to {self.out_dir}"):
            stager.flush()
            old_dir = _current_version(self.out_dir)
            build = self._staging / "version"
            summary = self._build_version(stager, old_dir, build, counts, exit_code)
            name = self._staging.name
            self._install(build, name, old_dir)
        self._published = True
        self._discard_staging()
        return self._result(name, summary)

    def _build_version(
        self,
        stager: _Stager,
        old_dir: Path | None,
        build: Path,
        counts: Mapping[str, int],
        exit_code: int,
    ) -> dict[str, int]:
        assert self._staging is not None
        parquet_dir, csv_dir, work_dir = build / "parquet", build / "csv", self._staging / "work"
        for folder in (parquet_dir, csv_dir, work_dir):
            folder.mkdir(parents=True)
        plan = _MergePlan(
            stager, old_dir, self.disposition, parquet_dir, work_dir, self.run_id, self.batch_size
        )
        _merge_pages(plan)
        _merge_rejects(plan)
        summary = _merge_changes(plan)
        self._quality = self._tally.fields(_previous_rates(plan))
        _append_quality(plan, self._quality)
        _append_run(plan, self._run_row(counts, exit_code, summary))
        for spec in T.TABLES:
            _check_nulls(plan.out(spec), spec)
            _write_csv(plan.out(spec), csv_dir / f"{spec.name}.csv", spec)
        for folder in (parquet_dir, csv_dir, build):
            fsync_dir(folder)
        return summary

    def _run_row(self, counts: Mapping[str, int], exit_code: int, changes: dict[str, int]) -> Row:
        defaults = {
            "parsed": self._adds,
            "rejected": self._rejects,
            "written": changes["added"] + changes["changed"] + changes["returned"],
            "gone": changes["gone"],
            **self._tally.counts(),
        }
        row: Row = {name: int(counts.get(name, defaults.get(name, 0))) for name in COUNT_NAMES}
        return {
            "run_id": self.run_id,
            "started_at": self._started_at,
            "finished_at": _utc(self._clock(), "clock()"),
            "mode": self.mode,
            "disposition": self.disposition,
            **row,
            "exit_code": exit_code,
        }

    def _install(self, build: Path, name: str, old_dir: Path | None) -> None:
        """Move the built version into place and switch ``current`` to it atomically."""
        versions = self.out_dir / VERSIONS_NAME
        versions.mkdir(exist_ok=True)
        os.rename(build, versions / name)
        fsync_dir(versions)
        _swap_symlink(self.out_dir / CURRENT_NAME, f"{VERSIONS_NAME}/{name}")
        fsync_dir(self.out_dir)
        _ensure_stable_links(self.out_dir)
        keep = {name} | ({old_dir.name} if old_dir is not None else set())
        _collect_garbage(self.out_dir, keep)

    def _result(self, name: str, changes: dict[str, int]) -> PublishResult:
        version = self.out_dir / VERSIONS_NAME / name
        parquet = {s.name: self.out_dir / "parquet" / f"{s.name}.parquet" for s in T.TABLES}
        csv = {s.name: self.out_dir / "csv" / f"{s.name}.csv" for s in T.TABLES}
        with _translate(f"cannot read back the tables in {version}"):
            written = {
                s.name: _row_count(version / "parquet" / f"{s.name}.parquet") for s in T.TABLES
            }
        return PublishResult(
            self.run_id, version, parquet, csv, written, changes, self._quality,
            self._tally.counts(),
        )  # fmt: skip


def read_quality(out_dir: Path) -> dict[str, object] | None:
    """The extraction quality of the last published run that parsed records, or None.

    Read from the published ``runs`` and ``quality`` tables of one version (``current`` is
    resolved once; no lock: publishing swaps whole versions): the run, its headings and
    unclassified headings, each field's fill rate and the fields flagged for a fall of more
    than 20 points. A table that cannot be read gives ``{"error": ...}`` naming it, so that
    ``pipeline status`` still reports the rest.
    """
    try:
        version = _current_version(Path(out_dir))
    except WriteError as exc:
        return {"error": str(exc)}
    if version is None:
        return None
    parquet = version / "parquet"
    quality_path, runs_path = parquet / "quality.parquet", parquet / "runs.parquet"
    if not quality_path.exists():
        return None
    reading = quality_path
    try:
        quality = pl.read_parquet(quality_path).filter(pl.col("records") > 0)
        if quality.is_empty():
            return None
        run_id = quality["run_id"][-1]
        rows = quality.filter(pl.col("run_id") == run_id)
        info: dict[str, object] = {"run_id": run_id, "records": int(rows["records"][0])}
        info["fill_rates"] = {
            name: round(rate, 4) for name, rate in rows.select("field", "fill_rate").iter_rows()
        }
        info["flagged_fields"] = rows.filter(pl.col("dropped"))["field"].to_list()
        if runs_path.exists():
            reading = runs_path
            run = pl.read_parquet(runs_path).filter(pl.col("run_id") == run_id)
            for name in ("headings", "unclassified_headings", "chrome_blocks"):
                if not run.is_empty() and name in run.columns:
                    info[name] = int(run[name][-1] or 0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        return {"error": f"cannot read {reading}: {_describe(exc)}"}
    return info
