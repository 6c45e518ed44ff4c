"""The output directory's versions: staged batches of a run, the lock, the published versions
and the ``current`` symlink swapped atomically (see :mod:`pipeline.load.write`)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from pipeline.errors import WriteError
from pipeline.fsutil import fsync_dir
from pipeline.load.layout import (
    CURRENT_NAME,
    SEQ,
    STABLE_LINKS,
    STAGE_ROW_GROUP_ROWS,
    STAGE_SCHEMAS,
    STAGE_SORT,
    STAGING_NAME,
    VERSIONS_NAME,
    Row,
)

# --- staging ---------------------------------------------------------------------------------


class Stager:
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
        frame = pl.from_dicts(rows, schema=STAGE_SCHEMAS[name]).sort(STAGE_SORT[name])
        frame.write_parquet(
            path, compression="lz4", statistics=True, row_group_size=STAGE_ROW_GROUP_ROWS
        )
        self._parts[name].append(path)

    def scan(self, name: str) -> pl.LazyFrame:
        """Every staged row of ``name`` (flush first)."""
        schema = STAGE_SCHEMAS[name]
        parts = self._parts.get(name)
        if not parts:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(parts, schema=schema)


# --- file-system helpers ---------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn OS and Polars failures into WriteError, keeping the cause."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise WriteError(f"{action}: {describe(exc)}") from exc


def swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:80] or "run"


def current_version(out_dir: Path) -> Path | None:
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


def check_stable_links(out_dir: Path) -> None:
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


def ensure_stable_links(out_dir: Path) -> None:
    """Create ``OUT/parquet -> current/parquet`` and ``OUT/csv -> current/csv`` if missing."""
    for name in STABLE_LINKS:
        path = out_dir / name
        target = f"{CURRENT_NAME}/{name}"
        if path.is_symlink() and os.readlink(path) == target:
            continue
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # empty, checked when the writer opened
        swap_symlink(path, target)
    fsync_dir(out_dir)


def clean_leftovers(out_dir: Path) -> None:
    """Remove what a killed writer left behind (the caller holds the lock)."""
    staging = out_dir / STAGING_NAME
    if staging.is_dir():
        for entry in staging.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
    for entry in out_dir.glob(".*.tmp-*"):
        if entry.is_symlink() or entry.is_file():
            entry.unlink()


def collect_garbage(out_dir: Path, keep: set[str]) -> None:
    """Delete published versions other than ``keep`` (the new and the previous one)."""
    versions = out_dir / VERSIONS_NAME
    for entry in versions.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
