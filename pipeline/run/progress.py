"""Run counters, progress bars and log lines.

A :class:`RunReport` counts what a run does (discovered, fetched, unchanged, parsed, rejected by
reason, written, gone) and shows it when stderr is a terminal: one rich progress bar per stage
(a crawl fetches and builds at once), each with its pages done of the pages known so far, rate,
errors and time left; nothing when stderr is not a terminal. Log lines go to stderr as text or, with
``--log-format json``, one JSON object per line for schedulers.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.load.quality import DROP_POINTS, FieldQuality, summary_lines

LOG = logging.getLogger("pipeline")

#: Counter names every summary shows, in this order.
COUNTERS: tuple[str, ...] = (
    "discovered", "fetched", "unchanged", "parsed", "aliases", "listings", "rejected", "written",
    "gone", "failed",
)  # fmt: skip


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send the pipeline's log lines to stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(level)
    LOG.propagate = False


@dataclass
class RunReport:
    """What a run did, and (optionally) a live progress bar of it."""

    title: str
    show_progress: bool | None = None
    counts: Counter[str] = field(default_factory=Counter)
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    quality: list[FieldQuality] = field(default_factory=list)
    extraction: dict[str, int] = field(default_factory=dict)
    #: Things the run noticed that a scheduler should see (logged, and in the summary).
    warnings: list[str] = field(default_factory=list)
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict, repr=False)
    _totals: dict[str, int] = field(default_factory=dict, repr=False)
    _done: Counter[str] = field(default_factory=Counter, repr=False)
    #: The crawl's acquire (event loop) and build (a thread) stages count at the same time.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> Self:
        show = self.show_progress if self.show_progress is not None else sys.stderr.isatty()
        if show:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.0f}/s  errors {task.fields[errors]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def set_quality(self, fields: list[FieldQuality], extraction: dict[str, int]) -> None:
        """What the published tables say of the run's extraction (see :mod:`pipeline.load.quality`).

        Every flagged field is also logged as a warning, for schedulers that read the log.
        """
        self.quality = fields
        self.extraction = dict(extraction)
        for flagged in (f for f in fields if f.dropped):
            LOG.warning("fill rate fell more than %.0f points: %s", DROP_POINTS, flagged.describe())

    def warn(self, message: str) -> None:
        """Log a warning and keep it for the summary."""
        LOG.warning("%s", message)
        with self._lock:
            self.warnings.append(message)

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` more of ``name``."""
        with self._lock:
            self.counts[name] += n

    def reject(self, kind: str) -> None:
        """Count one rejected page under its reason kind."""
        with self._lock:
            self.counts["rejected"] += 1
            self.rejects_by_reason[kind] += 1

    def unreject(self, kind: str) -> None:
        """Take back one reject counted under ``kind`` (the page became a record after all)."""
        with self._lock:
            if self.rejects_by_reason[kind] > 0:
                self.counts["rejected"] -= 1
                self.rejects_by_reason[kind] -= 1
            if not self.rejects_by_reason[kind]:
                del self.rejects_by_reason[kind]

    @property
    def showing(self) -> bool:
        """Whether bars are drawn (a total that costs work to count is only counted then)."""
        return self._progress is not None

    def stage(self, name: str, total: int = 0) -> None:
        """Show one more bar, for a stage of the run (``fetch``, ``build``, ``parse``) whose
        pages are counted in ``total``, known so far (see :meth:`grow`)."""
        with self._lock:
            self._totals[name] = total
            if self._progress is not None:
                self._tasks[name] = self._progress.add_task(
                    f"{self.title} {name}", total=total, rate=0.0, errors=0
                )

    def grow(self, name: str, n: int = 1) -> None:
        """``n`` more pages became known for stage ``name`` (found by discovery, queued)."""
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + n
            task = self._tasks.get(name)
            if self._progress is not None and task is not None:
                self._progress.update(task, total=self._totals[name])

    def advance(self, name: str, n: int = 1) -> None:
        """``n`` more pages of stage ``name`` done, whatever their outcome (each page once)."""
        with self._lock:
            self._done[name] += n
            task = self._tasks.get(name)
            if self._progress is None or task is None:
                return
            elapsed = max(time.monotonic() - self.started, 1e-9)
            # A total is never behind what is done (a page found and done in one step).
            total = max(self._totals.get(name, 0), self._done[name])
            self._progress.update(
                task,
                completed=self._done[name],
                total=total,
                rate=self._done[name] / elapsed,
                errors=self.counts["rejected"] + self.counts["failed"],
            )

    def done(self, name: str) -> int:
        """Pages of stage ``name`` done so far."""
        with self._lock:
            return self._done[name]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        """The counters, rejects by reason and time taken, as one plain dict."""
        out: dict[str, Any] = {name: self.counts.get(name, 0) for name in COUNTERS}
        out["rejected_by_reason"] = dict(sorted(self.rejects_by_reason.items()))
        out["seconds"] = round(self.elapsed, 3)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.quality:
            out["extraction"] = dict(self.extraction)
            out["fill_rates"] = {f.field: round(f.rate, 4) for f in self.quality}
            out["flagged_fields"] = [f.field for f in self.quality if f.dropped]
        return out

    def summary_text(self) -> str:
        """The summary as a few human lines."""
        data = self.summary()
        main = ", ".join(
            f"{name} {data[name]}"
            for name in COUNTERS
            if data[name] or name in ("parsed", "rejected", "written")
        )
        lines = [f"{self.title}: {main} in {data['seconds']:.1f}s"]
        for reason, count in data["rejected_by_reason"].items():
            lines.append(f"  rejected {reason}: {count}")
        lines.extend(f"  warning: {message}" for message in self.warnings)
        lines.extend(summary_lines(self.quality, self.extraction))
        return "\n".join(lines)
