"""Crawl state: every known URL, what happened to it, and every run, in one SQLite file.

Layout of a state directory::

    <state_dir>/lock            flock()ed by the run that owns the state; holds its pid
    <state_dir>/state.sqlite3   WAL mode, synchronous=NORMAL, schema version in PRAGMA user_version

Guarantees:

- One run at a time: :meth:`CrawlState.open` takes a non-blocking exclusive ``flock`` on the lock
  file and raises :class:`~pipeline.errors.StateLocked` if another process holds it. The kernel
  drops the lock when the holder exits, however it exits (SIGKILL included), so a dead run never
  leaves a stale lock behind. (``flock`` is not reliable on some network file systems.)
- Nothing is lost on SIGKILL: every ``record_*`` call is one committed transaction. In WAL mode
  with synchronous=NORMAL a commit survives the death of the process; only a power cut may roll
  back the last few commits, which the next run then simply does again.
- Each page is claimed at most once per run: :meth:`CrawlState.claim_due` marks what it hands out.
  The marks are cleared when the state is opened and when a run begins, so a page that was claimed
  but never recorded (the run died in flight) is claimed again by the next run.

Statuses: ``pending`` (never fetched successfully), ``fetched`` (stored, content changed or new),
``unchanged`` (304 or same hash), ``gone`` (404/410), ``failed`` (terminal fetch failure),
``rejected`` (fetched fine, refused by the parser or the validator). ``attempts`` counts failed
attempts since the last success. A transient failure keeps the status and makes the page due for
the next run, or from the time the server named (``Retry-After``), even while still pending; with
``refresh_after`` every page last attempted before ``now - refresh_after`` is due again, whatever
its status.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, Self, cast

from pipeline.errors import (
    PipelineError,
    StateError,
    StateLocked,
    StateVersionError,
    exit_code_of,
)

log = logging.getLogger(__name__)

PageStatus = Literal["pending", "fetched", "unchanged", "gone", "failed", "rejected"]
STATUSES: tuple[PageStatus, ...] = ("pending", "fetched", "unchanged", "gone", "failed", "rejected")

DB_NAME = "state.sqlite3"
#: The raw archive's directory inside the state directory.
ARCHIVE_NAME = "archive"
LOCK_NAME = "lock"
#: Marks the SQLite file as ours (PRAGMA application_id): "PPST".
APPLICATION_ID = 0x50505354
BUSY_TIMEOUT_MS = 10_000
_ARCHIVED_STATUSES = ("fetched", "unchanged", "rejected")
_PAGE_SIZE = 1000

#: _MIGRATIONS[n] takes a state from schema version n to n + 1. Append, never edit.
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        f"""CREATE TABLE pages (
            url TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            depth INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {STATUSES!r}),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_status INTEGER,
            last_error TEXT,
            etag TEXT,
            last_modified TEXT,
            content_hash TEXT,
            first_seen TEXT NOT NULL,
            last_attempt TEXT,
            last_fetched TEXT,
            last_changed TEXT,
            next_due TEXT,
            sitemap_lastmod TEXT,
            discovered_from TEXT,
            claimed INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        "CREATE INDEX pages_claimable ON pages (depth, url) WHERE claimed = 0",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            counts TEXT,
            exit_code INTEGER
        )""",
    ),
    (
        # 1 -> 2: outcomes not yet in published tables, replayed after a killed run.
        "ALTER TABLE pages ADD COLUMN unpublished INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX pages_unpublished ON pages (url) WHERE unpublished = 1",
    ),
    (
        # 2 -> 3: the build stage. A page's outcome is typed (stage and kind in columns of their
        # own, the reason alone in last_error); built_hash and built_version say which bytes
        # and which parser produced what the tables hold. URL kinds come from the site profile:
        # any page is built ("page"); navigation is "listing".
        "ALTER TABLE pages ADD COLUMN error_stage TEXT",
        "ALTER TABLE pages ADD COLUMN error_kind TEXT",
        "ALTER TABLE pages ADD COLUMN built_hash TEXT",
        "ALTER TABLE pages ADD COLUMN built_version TEXT",
        "UPDATE pages SET kind = 'page' WHERE kind = 'procedure'",
        "UPDATE pages SET kind = 'listing' WHERE kind = 'other'",
        "UPDATE pages SET error_stage = substr(last_error, 1, instr(last_error, ': ') - 1),"
        " last_error = substr(last_error, instr(last_error, ': ') + 2)"
        " WHERE status = 'rejected' AND instr(last_error, ': ') > 0",
        "UPDATE pages SET error_stage = coalesce(error_stage, 'fetch'),"
        " error_kind = substr(last_error, 1, instr(last_error, ': ') - 1),"
        " last_error = substr(last_error, instr(last_error, ': ') + 2)"
        " WHERE last_error IS NOT NULL AND instr(last_error, ': ') > 0",
        # Built by an unknown parser version: built again by the next run.
        "UPDATE pages SET built_hash = content_hash WHERE status IN ('fetched', 'unchanged')",
    ),
    (
        # 3 -> 4: where a page's last fetch ended after redirects (NULL: where it was asked
        # for). Its code is read from there, not from the URL that redirected.
        "ALTER TABLE pages ADD COLUMN final_url TEXT",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)
#: The schema version from which a page's error stage and kind have columns of their own.
_TYPED_ERRORS = 3


_PAGE_COLUMNS = (
    "url, kind, depth, status, attempts, last_status, last_error, etag, last_modified, "
    "content_hash, first_seen, last_attempt, last_fetched, last_changed, next_due, "
    "sitemap_lastmod, discovered_from, error_stage, error_kind, built_hash, built_version, "
    "final_url"
)


class BuiltPage(NamedTuple):
    """What the build made of a page's bytes: nothing to say (a record, or a listing page), or
    the typed reason it was rejected."""

    url: str
    content_hash: str
    error_stage: str | None = None
    error_kind: str | None = None
    reason: str | None = None


class Discovered(NamedTuple):
    """A URL found by discovery; any plain 5-tuple in this order works as well."""

    url: str
    kind: str
    depth: int
    parent: str | None = None
    lastmod: datetime | None = None


@dataclass(frozen=True)
class PageRow:
    """One row of the ``pages`` table."""

    url: str
    kind: str
    depth: int
    status: PageStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    first_seen: datetime
    last_attempt: datetime | None
    last_fetched: datetime | None
    last_changed: datetime | None
    next_due: datetime | None
    sitemap_lastmod: datetime | None
    discovered_from: str | None
    error_stage: str | None = None
    error_kind: str | None = None
    built_hash: str | None = None
    built_version: str | None = None
    final_url: str | None = None

    @classmethod
    def from_db(cls, row: sqlite3.Row) -> PageRow:
        """Build a row from a ``SELECT {_PAGE_COLUMNS}`` result."""
        values = dict(row)
        for name in ("last_attempt", "last_fetched", "last_changed", "next_due", "sitemap_lastmod"):
            values[name] = _from_db(values[name])
        values["first_seen"] = _parse_ts(values["first_seen"])
        return cls(**values)


@dataclass(frozen=True)
class RunRow:
    """One row of the ``runs`` table; ``finished_at`` is None for a run that did not finish."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    exit_code: int | None


# --- timestamps: aware datetimes stored as fixed-width UTC text, so text order is time order ---


def _to_db(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the state stores aware (UTC) times only")
    # isoformat pads the year to four digits (strftime's %Y does not on glibc: "1-01-01").
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _opt_to_db(value: datetime | None) -> str | None:
    return None if value is None else _to_db(value)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)  # the fixed-width form of _to_db, "Z" included


def _from_db(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return _parse_ts(text)
    except ValueError:  # written by an older version that did not pad the year ("1-01-01")
        return None


def _now() -> datetime:
    return datetime.now(UTC)


# --- the lock --------------------------------------------------------------------------------


def _acquire_lock(state_dir: Path) -> int:
    """Take the exclusive lock on ``state_dir``; return its file descriptor."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"cannot open the lock file {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateLocked(
            f"another run holds the lock on {state_dir} (pid {holder}); "
            "wait for it to finish, or stop that process"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _release_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# --- the state -------------------------------------------------------------------------------


class CrawlState:
    """The crawl state of one state directory. Open with :meth:`open`; use as a context manager.

    Methods are safe to call from several threads (one connection, serialized by a lock).
    """

    def __init__(self, state_dir: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.state_dir = state_dir
        self._conn = conn
        self._lock_fd: int | None = lock_fd
        self._mutex = threading.RLock()
        #: The run begun through this handle and not finished yet.
        self._open_run: int | None = None

    # --- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path | str) -> CrawlState:
        """Lock ``state_dir`` (created if missing), open its database, migrate an older schema.

        Raises StateLocked if another run holds the lock, StateVersionError if the state was
        written by a newer pipeline, and StateError if the directory or database is unusable.
        """
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {state_dir}: {exc}") from exc
        fd = _acquire_lock(state_dir)
        try:
            _check_not_emptied(state_dir)
            conn = _connect(state_dir / DB_NAME)
        except BaseException:
            _release_lock(fd)
            raise
        state = cls(state_dir, conn, fd)
        try:
            state._release_claims()
        except BaseException:
            state.close()
            raise
        return state

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        with self._mutex:
            if self._lock_fd is None:
                return
            try:
                with suppress(sqlite3.OperationalError):  # best effort: a lock is no failure
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
            finally:
                _release_lock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and self._open_run is not None:
                # The run ended with an error (output not writable, Ctrl-C, a bug): its row
                # says so, with the exit code, instead of "did not finish (killed?)".
                self.finish_run(self._open_run, {}, exit_code_of(exc))
        except (PipelineError, sqlite3.Error, OSError) as record_error:  # a full disk, say
            log.warning("could not record the end of run %s: %s", self._open_run, record_error)
        finally:
            self.close()

    # --- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) and committed or rolled back."""
        with self._mutex:
            if self._lock_fd is None:
                raise StateError(f"the state in {self.state_dir} is closed")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _unusable(self.state_dir / DB_NAME, exc) from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _update_page(self, url: str, assignments: str, params: Mapping[str, object]) -> None:
        """``UPDATE pages SET <assignments> WHERE url = :url`` as one transaction."""
        with self._transaction() as conn:
            cursor = conn.execute(
                f"UPDATE pages SET {assignments}, claimed = 1 WHERE url = :url",
                {**params, "url": url},
            )
            if cursor.rowcount == 0:
                raise StateError(f"unknown page {url!r}: add it with add_discovered first")

    def _release_claims(self) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE pages SET claimed = 0 WHERE claimed = 1")

    # --- discovery and claiming --------------------------------------------------------------

    def add_discovered(
        self,
        urls: Iterable[tuple[str, str, int, str | None, datetime | None]],
        *,
        now: datetime | None = None,
    ) -> int:
        """Add ``(url, kind, depth, parent, sitemap_lastmod)`` entries; return how many were new.

        Known URLs are left alone, except that a sitemap lastmod newer than the page's last fetch
        makes the page due again.
        """
        stamp = _to_db(now or _now())
        rows = [
            (url, kind, depth, stamp, _opt_to_db(lastmod), parent)
            for url, kind, depth, parent, lastmod in urls
        ]
        with self._transaction() as conn:
            before = conn.total_changes
            # One statement for all (a page's links are mostly known already: ignored in C).
            conn.executemany(
                "INSERT OR IGNORE INTO pages (url, kind, depth, first_seen, sitemap_lastmod,"
                " discovered_from) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
            for url, _, _, _, lastmod_db, _ in rows:
                if lastmod_db is not None:
                    # Known pages: a newer lastmod makes them due (a no-op for the new ones).
                    _note_lastmod(conn, url, lastmod_db, stamp)
        return added

    def claim_due(
        self, limit: int, now: datetime, refresh_after: timedelta | None = None
    ) -> list[PageRow]:
        """Hand out up to ``limit`` due pages not yet claimed in this run, by depth then URL.

        Due: pending pages not given a later time (a Retry-After), pages whose ``next_due`` has
        come, with ``refresh_after`` pages last attempted at or before ``now - refresh_after``,
        and pages "last attempted" in the future (see :meth:`from_the_future`).
        """
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_PAGE_COLUMNS} FROM pages WHERE claimed = 0 AND {_DUE}"
                " ORDER BY depth, url LIMIT :limit",
                {**_due_params(now, refresh_after), "limit": limit},
            ).fetchall()
            conn.executemany(
                "UPDATE pages SET claimed = 1 WHERE url = ?", [(row["url"],) for row in rows]
            )
        return [PageRow.from_db(row) for row in rows]

    def due_count(self, now: datetime, refresh_after: timedelta | None = None) -> int:
        """How many pages :meth:`claim_due` would hand out now (claimed or not)."""
        with self._mutex:
            row = self._conn.execute(
                f"SELECT count(*) FROM pages WHERE {_DUE}", _due_params(now, refresh_after)
            ).fetchone()
        return int(row[0])

    def from_the_future(self, now: datetime) -> int:
        """Pages last attempted after ``now`` (beyond a little clock skew): written while the
        clock was ahead. Their due dates cannot be trusted, so they are due at once; a run says
        how many it found, since nothing else would show it."""
        with self._mutex:
            row = self._conn.execute(
                "SELECT count(*) FROM pages WHERE last_attempt > ?", (_to_db(now + CLOCK_SKEW),)
            ).fetchone()
        return int(row[0])

    # --- outcomes: each one committed on its own ----------------------------------------------

    def record_fetched(
        self,
        url: str,
        *,
        status: int,
        etag: str | None,
        last_modified: str | None,
        content_hash: str,
        fetched_at: datetime,
        changed: bool,
        final_url: str | None = None,
    ) -> None:
        """A successful fetch whose body is in the archive under ``content_hash``;
        ``final_url`` is where redirects led, if anywhere else."""
        self._update_page(
            url,
            "status = 'fetched', unpublished = 1, attempts = 0, last_status = :status,"
            " final_url = :final_url,"
            " last_error = NULL, error_stage = NULL, error_kind = NULL,"
            " etag = :etag, last_modified = :last_modified, content_hash = :hash,"
            " last_attempt = :at, last_fetched = :at, next_due = NULL,"
            " built_hash = CASE WHEN status = 'gone' THEN NULL ELSE built_hash END,"
            " last_changed = CASE WHEN :changed THEN :at ELSE coalesce(last_changed, :at) END",
            {
                "status": status,
                "etag": etag,
                "last_modified": last_modified,
                "hash": content_hash,
                "at": _to_db(fetched_at),
                "changed": changed,
                "final_url": final_url if final_url != url else None,
            },
        )

    def record_unchanged(self, url: str, fetched_at: datetime) -> None:
        """A 304, or a 200 whose body has the hash already stored. A page that was gone is
        back: built again, so that the tables say it returned."""
        self._update_page(
            url,
            "built_hash = CASE WHEN status = 'gone' THEN NULL ELSE built_hash END,"
            " unpublished = CASE WHEN status = 'gone' THEN 1 ELSE unpublished END,"
            " status = CASE WHEN status = 'rejected' THEN status ELSE 'unchanged' END,"
            " attempts = 0,"
            " last_error = CASE WHEN status = 'rejected' THEN last_error END,"
            " error_stage = CASE WHEN status = 'rejected' THEN error_stage END,"
            " error_kind = CASE WHEN status = 'rejected' THEN error_kind END,"
            " last_attempt = :at, last_fetched = :at, next_due = NULL",
            {"at": _to_db(fetched_at)},
        )

    def forget_body(self, url: str, at: datetime, reason: str = "raw page lost") -> None:
        """The page's archived bytes are lost: fetch it again in full, now (no validators, so
        the server cannot answer 304 for bytes the archive no longer has). Until then it is a
        ``raw_page_lost`` reject, as the tables say."""
        self._update_page(
            url,
            "content_hash = NULL, built_hash = NULL, etag = NULL, last_modified = NULL,"
            " next_due = :at, status = 'rejected', error_stage = 'parse',"
            " error_kind = 'raw_page_lost', last_error = :reason",
            {"at": _to_db(at), "reason": reason},
        )

    def record_gone(self, url: str, status: int, at: datetime) -> None:
        """404 or 410: the page no longer exists. Its validators are dropped: if it comes
        back, it is fetched in full."""
        self._update_page(
            url,
            "status = 'gone', unpublished = 1, attempts = 0, last_status = :status,"
            " etag = NULL, last_modified = NULL,"
            " last_error = NULL, error_stage = NULL, error_kind = NULL,"
            " last_attempt = :at, next_due = NULL",
            {"status": status, "at": _to_db(at)},
        )

    def record_failed(
        self,
        url: str,
        *,
        error_kind: str,
        reason: str,
        status: int | None,
        terminal: bool,
        at: datetime,
        due: datetime | None = None,
    ) -> None:
        """A fetch failure. Terminal: the page is 'failed'. Transient: due again next run, or
        from ``due`` on when given (the server's Retry-After), pending or not."""
        self._update_page(
            url,
            "attempts = attempts + 1, last_status = :status, last_error = :error,"
            " last_attempt = :at,"
            " status = CASE WHEN :terminal THEN 'failed' ELSE status END, unpublished = 1,"
            " error_stage = 'fetch', error_kind = :kind,"
            " next_due = CASE WHEN :terminal THEN NULL ELSE :due END",
            {
                "status": status,
                "kind": error_kind,
                "error": reason,
                "terminal": terminal,
                "at": _to_db(at),
                "due": _to_db(due if due is not None and due > at else at),
            },
        )

    def record_rejected(
        self,
        url: str,
        stage: str,
        kind: str,
        reason: str,
        at: datetime,
        *,
        content_hash: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        http_status: int | None = None,
    ) -> None:
        """The fetch was fine but the parser or validator refused the page.

        Pass the fetch's ``content_hash`` (and validators) when the page was not recorded as
        fetched first, so that ``reparse`` can try the stored body again with a newer parser.
        """
        self._update_page(
            url,
            "status = 'rejected', unpublished = 1, attempts = 0, last_error = :error,"
            " error_stage = :stage, error_kind = :kind,"
            " last_attempt = :at,"
            " next_due = NULL,"
            " last_status = coalesce(:http_status, last_status),"
            " etag = CASE WHEN :hash IS NULL THEN etag ELSE :etag END,"
            " last_modified = CASE WHEN :hash IS NULL THEN last_modified ELSE :last_modified END,"
            " last_fetched = CASE WHEN :hash IS NULL THEN last_fetched ELSE :at END,"
            " last_changed = CASE WHEN :hash IS NULL OR :hash IS content_hash"
            " THEN last_changed ELSE :at END,"
            " content_hash = coalesce(:hash, content_hash)",
            {
                "error": reason,
                "stage": stage,
                "kind": kind,
                "at": _to_db(at),
                "hash": content_hash,
                "etag": etag,
                "last_modified": last_modified,
                "http_status": http_status,
            },
        )

    # --- reading -----------------------------------------------------------------------------

    def get(self, url: str) -> PageRow | None:
        """The row of ``url``, or None if the URL is unknown."""
        with self._mutex:
            row = self._conn.execute(
                f"SELECT {_PAGE_COLUMNS} FROM pages WHERE url = ?", (url,)
            ).fetchone()
        return None if row is None else PageRow.from_db(row)

    def counts(self) -> dict[str, int]:
        """Pages per status, every status present (zero when none)."""
        with self._mutex:
            rows = self._conn.execute("SELECT status, count(*) FROM pages GROUP BY status")
            found: dict[str, int] = dict(rows.fetchall())
        return {status: found.get(status, 0) for status in STATUSES}

    def iter_archived(self) -> Iterator[tuple[str, str, datetime]]:
        """``(url, content_hash, fetched_at)`` of every page with a stored body, by URL.

        Covers fetched, unchanged and rejected pages (a newer parser may accept the latter).
        Reads in pages of rows, so the state may be written to while this is consumed.
        """
        after = ""
        while True:
            with self._mutex:
                rows = self._conn.execute(
                    "SELECT url, content_hash, last_fetched FROM pages WHERE url > ?"
                    f" AND content_hash IS NOT NULL AND status IN {_ARCHIVED_STATUSES}"
                    " ORDER BY url LIMIT ?",
                    (after, _PAGE_SIZE),
                ).fetchall()
            for url, content_hash, fetched in rows:
                yield url, content_hash, _parse_ts(fetched)
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1][0]

    def unpublished(self) -> list[PageRow]:
        """Pages whose last outcome is not in the published tables yet (a run died first)."""
        with self._mutex:
            rows = self._conn.execute(
                f"SELECT {_PAGE_COLUMNS} FROM pages WHERE unpublished = 1 ORDER BY url"
            ).fetchall()
        return [PageRow.from_db(row) for row in rows]

    def urls(self) -> list[str]:
        """Every URL the state knows, pages, listings and sitemaps (the sources a rebuild
        covers: their published rows and rejects are the rebuild's to replace)."""
        with self._mutex:
            rows = self._conn.execute("SELECT url FROM pages").fetchall()
        return [row[0] for row in rows]

    def unpublished_losses(self, *, everything: bool = False) -> list[PageRow]:
        """Pages that failed to fetch (for good, or after their retries in a run) or went away
        since the tables were last published; ``everything``: whether published or not (a
        rebuild replaces the rejects table, so it must say them all again)."""
        with self._mutex:
            rows = self._conn.execute(
                f"SELECT {_PAGE_COLUMNS} FROM pages WHERE (:everything OR unpublished = 1)"
                " AND kind = 'page' AND (status = 'gone' OR error_stage = 'fetch') ORDER BY url",
                {"everything": everything},
            ).fetchall()
        return [PageRow.from_db(row) for row in rows]

    def to_build(self, parser_version: str, *, everything: bool = False) -> Iterator[PageRow]:
        """Archived pages whose (content hash, parser version) is not in the tables yet, by URL.

        ``everything``: every archived page (gone ones too), as ``reparse`` rebuilds them all.
        Read in pages of rows, so the state may be written to while this is consumed.
        """
        statuses = (*_ARCHIVED_STATUSES, "gone") if everything else _ARCHIVED_STATUSES
        after = ""
        while True:
            with self._mutex:
                rows = self._conn.execute(
                    f"SELECT {_PAGE_COLUMNS} FROM pages WHERE url > :after AND kind = 'page'"
                    f" AND content_hash IS NOT NULL AND status IN {statuses}"
                    " AND (:everything OR built_hash IS NOT content_hash"
                    " OR built_version IS NOT :version)"
                    " ORDER BY url LIMIT :limit",
                    {
                        "after": after,
                        "everything": everything,
                        "version": parser_version,
                        "limit": _PAGE_SIZE,
                    },
                ).fetchall()
            for row in rows:
                yield PageRow.from_db(row)
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1]["url"]

    def record_built(self, built: Iterable[BuiltPage], parser_version: str) -> int:
        """The tables now hold what ``parser_version`` made of these pages' bytes (one
        transaction): a reject makes the page 'rejected' with its typed reason; a page built
        after an earlier reject is 'fetched' again. Returns how many rows changed."""
        changed = 0
        with self._transaction() as conn:
            for page in built:
                changed += conn.execute(
                    "UPDATE pages SET built_hash = :hash, built_version = :version,"
                    " status = CASE WHEN :kind IS NOT NULL THEN 'rejected'"
                    " WHEN status = 'rejected' THEN 'fetched' ELSE status END,"
                    " error_stage = :stage, error_kind = :kind, last_error = :reason"
                    " WHERE url = :url AND content_hash IS :hash AND status != 'gone'",
                    {
                        "url": page.url,
                        "hash": page.content_hash,
                        "version": parser_version,
                        "stage": page.error_stage,
                        "kind": page.error_kind,
                        "reason": page.reason,
                    },
                ).rowcount
        return changed

    def mark_published(self) -> int:
        """Every outcome recorded so far is in the published tables; returns how many."""
        with self._transaction() as conn:
            return conn.execute("UPDATE pages SET unpublished = 0 WHERE unpublished = 1").rowcount

    def iter_stored(self) -> Iterator[PageRow]:
        """Every page with a stored body (gone ones too), by URL, read in pages of rows."""
        after = ""
        while True:
            with self._mutex:
                rows = self._conn.execute(
                    f"SELECT {_PAGE_COLUMNS} FROM pages WHERE url > ? AND content_hash IS NOT NULL"
                    " AND kind = 'page' ORDER BY url LIMIT ?",
                    (after, _PAGE_SIZE),
                ).fetchall()
            for row in rows:
                yield PageRow.from_db(row)
            if len(rows) < _PAGE_SIZE:
                return
            after = rows[-1]["url"]

    # --- runs --------------------------------------------------------------------------------

    def begin_run(self, now: datetime | None = None) -> int:
        """Start a run: clear the claims of earlier runs; return the new run's id."""
        self._release_claims()
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (started_at) VALUES (?)", (_to_db(now or _now()),)
            )
        self._open_run = cast(int, cursor.lastrowid)
        return self._open_run

    def finish_run(
        self, run_id: int, counts: Mapping[str, int], exit_code: int, now: datetime | None = None
    ) -> None:
        """Record the end of a run with its counts and exit code."""
        if run_id == self._open_run:
            self._open_run = None
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ?, counts = ?, exit_code = ? WHERE id = ?",
                (
                    _to_db(now or _now()),
                    json.dumps(dict(counts), sort_keys=True),
                    exit_code,
                    run_id,
                ),
            )

    def last_run(self) -> RunRow | None:
        """The most recent run, finished or not."""
        with self._mutex:
            row = self._conn.execute(
                "SELECT id, started_at, finished_at, counts, exit_code FROM runs"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return RunRow(
            id=row["id"],
            started_at=_parse_ts(row["started_at"]),
            finished_at=_from_db(row["finished_at"]),
            counts=json.loads(row["counts"]) if row["counts"] else {},
            exit_code=row["exit_code"],
        )


def _note_lastmod(conn: sqlite3.Connection, url: str, lastmod: str, now: str) -> None:
    """Store a known page's sitemap lastmod; if newer than its last fetch, make it due now."""
    conn.execute(
        "UPDATE pages SET sitemap_lastmod = :lastmod,"
        " next_due = CASE WHEN last_fetched IS NOT NULL AND :lastmod > last_fetched"
        " THEN min(coalesce(next_due, :now), :now) ELSE next_due END"
        " WHERE url = :url AND sitemap_lastmod IS NOT :lastmod",
        {"url": url, "lastmod": lastmod, "now": now},
    )


# --- opening the database --------------------------------------------------------------------


def _check_not_emptied(state_dir: Path) -> None:
    """A state that lost its database is an error, never a fresh start: a new empty state would
    let ``reparse`` publish empty tables and a crawl fetch everything again."""
    db = state_dir / DB_NAME
    if db.exists() and db.stat().st_size == 0:
        raise StateError(
            f"the state database {db} is empty (0 bytes): it was truncated or damaged; "
            "restore it from a backup, or start over with another --state"
        )
    objects = state_dir / ARCHIVE_NAME / "objects"
    if not db.exists() and objects.is_dir() and any(objects.iterdir()):
        raise StateError(
            f"{state_dir} holds an archive of raw pages but no state database ({DB_NAME}): "
            "restore the database, or move the archive away to start over"
        )


#: SQLite's "another connection holds a lock" (SQLITE_BUSY, SQLITE_LOCKED): not damage.
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> StateError:
    """The error for a database that cannot be read: locked by another program, or damaged."""
    if getattr(exc, "sqlite_errorcode", None) in _BUSY:
        return StateLocked(
            f"the state database {path} is locked by another program ({exc}; waited "
            f"{BUSY_TIMEOUT_MS / 1000:g} s): close that program (a sqlite3 shell, a backup "
            "tool) and run again"
        )
    return StateError(f"the state database {path} is unreadable: {exc}")


def _connect(path: Path) -> sqlite3.Connection:
    """Open, configure, check and migrate the state database."""
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        _configure(conn)
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return cast(int, conn.execute(f"PRAGMA {name}").fetchone()[0])


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, one committed step per version."""
    app_id = _pragma(conn, "application_id")
    if app_id not in (0, APPLICATION_ID):
        raise StateError(f"{path} is not a pipeline state database (application_id {app_id:#x})")
    version = _pragma(conn, "user_version")
    if version > SCHEMA_VERSION:
        raise StateVersionError(
            f"the state in {path.parent} has schema version {version}, but this pipeline only "
            f"knows versions up to {SCHEMA_VERSION}: upgrade the pipeline, or use another --state"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


#: Pages due in a run. A page "last attempted" beyond ``:ahead`` was written while the clock
#: was ahead: its next_due and last_attempt would keep it from ever being due, so it is due now.
_DUE = (
    "((status = 'pending' AND next_due IS NULL) OR next_due <= :now"
    " OR last_attempt <= :cutoff OR last_attempt > :ahead)"
)
#: Clock differences below this are not "the future" (an NTP step, two hosts sharing a state).
CLOCK_SKEW = timedelta(minutes=10)


def _due_params(now: datetime, refresh_after: timedelta | None) -> dict[str, str | None]:
    return {
        "now": _to_db(now),
        "cutoff": None if refresh_after is None else _to_db(now - refresh_after),
        "ahead": _to_db(now + CLOCK_SKEW),
    }


# --- read-only view (``pipeline status``) ----------------------------------------------------


def _next_due(
    upcoming: tuple[str | None, str | None], refresh_after: timedelta | None, now: datetime
) -> str | None:
    """When the next page becomes due: a retry time, or the oldest fetch plus refresh_after."""
    times = [_parse_ts(upcoming[0])] if upcoming[0] else []
    if upcoming[1] and refresh_after is not None:
        times.append(_parse_ts(upcoming[1]) + refresh_after)
    if not times:
        return None
    return max(min(times), now).isoformat()


def _open_read_only(path: Path) -> tuple[sqlite3.Connection, int]:
    """The database opened read-only, and its schema version.

    In WAL mode even a reader writes the ``-shm`` index; where the state directory is read-only
    (a mounted backup, another user's state), the file is opened as immutable instead: no run
    can be writing to it there.
    """
    last: sqlite3.Error | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            return conn, _pragma(conn, "user_version")
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unusable(path, exc) from exc
    if isinstance(last, sqlite3.DatabaseError) and last.sqlite_errorcode in _BUSY:
        raise _unusable(path, last)
    raise StateError(f"cannot open the state database {path}: {last}")


def _run_in_progress(state_dir: Path) -> bool:
    """Whether a run holds the state's lock now (without taking it)."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def read_status(
    state_dir: Path, *, now: datetime | None = None, refresh_after: timedelta | None = None
) -> dict[str, object]:
    """A summary of the state without taking the lock (a crawl may be running) or writing.

    Pages by status, pages due now, the last run, and rejects and failures by reason kind.
    """
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        raise StateError(f"no crawl state in {state_dir}; run `pipeline crawl` first")
    conn, version = _open_read_only(path)
    try:
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"the state in {state_dir} has schema version {version}, newer than this "
                f"pipeline's {SCHEMA_VERSION}: upgrade the pipeline"
            )
        stamp = now or _now()
        params = _due_params(stamp, refresh_after)
        by_status = dict(conn.execute("SELECT status, count(*) FROM pages GROUP BY status"))
        due = conn.execute(f"SELECT count(*) FROM pages WHERE {_DUE}", params).fetchone()[0]
        ahead = conn.execute(
            "SELECT count(*) FROM pages WHERE last_attempt > :ahead", params
        ).fetchone()[0]
        upcoming = conn.execute(
            "SELECT (SELECT min(next_due) FROM pages),"
            " (SELECT min(last_attempt) FROM pages WHERE status != 'pending')"
        ).fetchone()
        kind = (
            "error_kind"
            if version >= _TYPED_ERRORS
            else "substr(last_error, 1, instr(last_error || ':', ':') - 1)"  # not migrated yet
        )
        which = (
            "error_kind IS NOT NULL AND kind = 'page'"  # as the run summary counts them
            if version >= _TYPED_ERRORS
            else "status IN ('rejected', 'failed')"
        )
        reasons = conn.execute(
            f"SELECT {kind} AS error, count(*) FROM pages WHERE {which}"
            " GROUP BY error ORDER BY error"  # not "kind": that is a column of pages too
        ).fetchall()
        last = conn.execute(
            "SELECT id, started_at, finished_at, counts, exit_code FROM runs ORDER BY id DESC"
            " LIMIT 1"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    finally:
        conn.close()
    status: dict[str, object] = {
        "pages": {name: by_status.get(name, 0) for name in STATUSES},
        "due_now": due,
        "next_due": _next_due(upcoming, refresh_after, stamp) if not due else "now",
        "rejects_by_reason": {kind or "unknown": count for kind, count in reasons},
    }
    if ahead:
        status["warning"] = (
            f"{ahead} pages were last attempted in the future (the clock was ahead when they "
            "were written); the next crawl fetches them at once"
        )
    if last is not None:
        status["last_run"] = {
            "id": last[0],
            "started_at": last[1],
            "finished_at": last[2]
            or ("running" if _run_in_progress(Path(state_dir)) else "did not finish (killed?)"),
            "exit_code": last[4],
            **(json.loads(last[3]) if last[3] else {}),
        }
    return status
