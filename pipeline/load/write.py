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

import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import polars as pl

from pipeline.errors import WriteError
from pipeline.fsutil import fsync_dir
from pipeline.load import tables as T
from pipeline.load.layout import (
    COUNT_NAMES,
    CURRENT_NAME,
    GONE_STAGE,
    LOCK_NAME,
    RECORD_SOURCE,
    STAGING_NAME,
    VERSIONS_NAME,
    Disposition,
    Row,
)
from pipeline.load.merge import (
    MergePlan,
    append_quality,
    append_run,
    check_nulls,
    merge_changes,
    merge_pages,
    merge_rejects,
    previous_rates,
    row_count,
    write_csv,
)
from pipeline.load.quality import FieldQuality, QualityTally
from pipeline.load.rows import record_to_rows, required, utc
from pipeline.load.versions import (
    Stager,
    check_stable_links,
    clean_leftovers,
    collect_garbage,
    current_version,
    describe,
    ensure_stable_links,
    safe_name,
    swap_symlink,
    translate,
)
from pipeline.models import ExtractionReport, Procedure


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        replaces: Iterable[str] | None = None,
    ) -> None:
        """``replaces``, with disposition ``replace``: the source URLs this run rebuilds. Only
        published pages from those sources are replaced; pages from elsewhere (added by
        ``ingest``) are kept. None: every published page is replaced."""
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
        self.replaces = None if replaces is None else frozenset(replaces)
        self.batch_size = batch_size
        self._clock = clock
        self._lock_fd: int | None = None
        self._staging: Path | None = None
        self._stager: Stager | None = None
        self._started_at: datetime | None = None
        self._published = False
        self._adds = 0
        self._rejects = 0
        #: (code system, code) -> source URL of the live published rows, read on first use.
        self._live_sources: dict[tuple[str, str], str] | None = None
        self._tally = QualityTally()
        self._quality: list[FieldQuality] = []

    # -- context --

    def __enter__(self) -> Self:
        with translate(f"cannot open the output directory {self.out_dir}"):
            if self.out_dir.is_symlink() and not self.out_dir.exists():
                raise WriteError(
                    f"cannot open the output directory {self.out_dir}: it is a symbolic link "
                    f"to {os.readlink(self.out_dir)}, which does not exist; create that "
                    "directory or point --out elsewhere"
                )
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
        clean_leftovers(self.out_dir)
        check_stable_links(self.out_dir)
        self._check_run_id_unused()
        name = f"{safe_name(self.run_id)}-{uuid.uuid4().hex[:8]}"
        self._staging = self.out_dir / STAGING_NAME / name
        self._staging.mkdir(parents=True)
        self._stager = Stager(self._staging / "parts", self.batch_size)
        self._started_at = utc(self._clock(), "clock()")

    def _check_run_id_unused(self) -> None:
        current = current_version(self.out_dir)
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

    def _open_stager(self) -> Stager:
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
        # The page's rows under another code (the page now shows a different one) are gone: a
        # mark sequenced just before this record's rows hits them, and not this record.
        moved = {"source_url": required(source_url, "source_url"), "gone_at": utc(parsed_at, "at")}
        with translate(f"cannot stage records under {self.out_dir}"):
            stager.stage({GONE_STAGE: [moved]})
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
            "source": required(source, "source"),
            "stage": stage,
            "error_kind": required(error_kind, "error_kind"),
            "reason": reason or error_kind,
            "page_kind": page_kind,
            "http_status": http_status,
            "rejected_at": utc(at, "at"),
            "run_id": self.run_id,
        }
        with translate(f"cannot stage rejects under {self.out_dir}"):
            stager.stage({T.REJECTS.name: [row]})
        self._rejects += 1

    def published_source(self, code_system: str, code: str) -> str | None:
        """The source URL of the live published row of a key (read once per run)."""
        if self._live_sources is None:
            current = current_version(self.out_dir)
            path = None if current is None else current / "parquet" / "procedures.parquet"
            self._live_sources = {}
            if path is not None and path.exists():
                with translate(f"cannot read the published table {path}"):
                    live = (
                        pl.scan_parquet(path)
                        .filter(~pl.col("gone"))
                        .select(pl.col("code_system").cast(pl.String), "code", "source_url")
                        .collect()
                    )
                self._live_sources = {(a, b): c for a, b, c in live.iter_rows()}
        return self._live_sources.get((code_system, code))

    def mark_gone(self, source_url: str, at: datetime) -> None:
        """Mark the page at ``source_url`` gone (its rows stay, with ``gone`` true)."""
        stager = self._open_stager()
        row = {"source_url": required(source_url, "source_url"), "gone_at": utc(at, "at")}
        with translate(f"cannot stage gone marks under {self.out_dir}"):
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
        with translate(f"cannot publish the tables to {self.out_dir}"):
            stager.flush()
            old_dir = current_version(self.out_dir)
            build = self._staging / "version"
            summary = self._build_version(stager, old_dir, build, counts, exit_code)
            name = self._staging.name
            self._install(build, name, old_dir)
        self._published = True
        self._discard_staging()
        return self._result(name, summary)

    def _build_version(
        self,
        stager: Stager,
        old_dir: Path | None,
        build: Path,
        counts: Mapping[str, int],
        exit_code: int,
    ) -> dict[str, int]:
        assert self._staging is not None
        parquet_dir, csv_dir, work_dir = build / "parquet", build / "csv", self._staging / "work"
        for folder in (parquet_dir, csv_dir, work_dir):
            folder.mkdir(parents=True)
        plan = MergePlan(
            stager, old_dir, self.disposition, parquet_dir, work_dir, self.run_id, self.batch_size,
            replaces=self.replaces,
        )  # fmt: skip
        merge_pages(plan)
        merge_rejects(plan)
        summary = merge_changes(plan)
        self._quality = self._tally.fields(previous_rates(plan))
        append_quality(plan, self._quality)
        append_run(plan, self._run_row(counts, exit_code, summary))
        for spec in T.TABLES:
            check_nulls(plan.out(spec), spec)
            write_csv(plan.out(spec), csv_dir / f"{spec.name}.csv", spec)
        (build / "README.md").write_text(T.dictionary_markdown(), encoding="utf-8")
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
            "finished_at": utc(self._clock(), "clock()"),
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
        swap_symlink(self.out_dir / CURRENT_NAME, f"{VERSIONS_NAME}/{name}")
        fsync_dir(self.out_dir)
        ensure_stable_links(self.out_dir)
        keep = {name} | ({old_dir.name} if old_dir is not None else set())
        collect_garbage(self.out_dir, keep)

    def _result(self, name: str, changes: dict[str, int]) -> PublishResult:
        version = self.out_dir / VERSIONS_NAME / name
        parquet = {s.name: self.out_dir / "parquet" / f"{s.name}.parquet" for s in T.TABLES}
        csv = {s.name: self.out_dir / "csv" / f"{s.name}.csv" for s in T.TABLES}
        with translate(f"cannot read back the tables in {version}"):
            written = {
                s.name: row_count(version / "parquet" / f"{s.name}.parquet") for s in T.TABLES
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
        version = current_version(Path(out_dir))
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
        return {"error": f"cannot read {reading}: {describe(exc)}"}
    return info
