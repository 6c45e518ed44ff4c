"""Crawl state: locking, schema versions, the claim/record lifecycle, resuming after a kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.acquire import state as state_module
from pipeline.acquire.state import DB_NAME, SCHEMA_VERSION, CrawlState, Discovered
from pipeline.errors import StateError, StateLocked, StateVersionError

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SITE = "https://www.example.org"


def _url(n: int) -> str:
    return f"{SITE}/code/cpt4/{22000 + n}-x"


def _add(state: CrawlState, *numbers: int, depth: int = 1) -> int:
    return state.add_discovered(
        (Discovered(_url(n), "procedure", depth, f"{SITE}/code/list/A") for n in numbers),
        now=T0,
    )


def _fetched(state: CrawlState, url: str, at: datetime = T0, digest: str = "a" * 64) -> None:
    state.record_fetched(
        url,
        status=200,
        etag='"v1"',
        last_modified="Wed, 01 May 2024 10:00:00 GMT",
        content_hash=digest,
        fetched_at=at,
        changed=True,
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CrawlState]:
    with CrawlState.open(tmp_path / "state") as opened:
        yield opened


def _child(script: str, state_dir: Path) -> subprocess.Popen[str]:
    """Run ``script`` in a fresh interpreter with ``state_dir`` bound; it prints 'ready'."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from datetime import UTC, datetime
        from pathlib import Path
        from pipeline.acquire.state import CrawlState, Discovered
        state_dir = Path({str(state_dir)!r})
    """) + textwrap.dedent(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


# --- opening, locking, versions --------------------------------------------------------------


def test_open_creates_a_versioned_database_and_a_lock(tmp_path: Path) -> None:
    state_dir = tmp_path / "deep" / "state"
    with CrawlState.open(state_dir) as state:
        assert (state_dir / "lock").read_text().strip() == str(os.getpid())
        assert state.counts() == dict.fromkeys(state_module.STATUSES, 0)
    conn = sqlite3.connect(state_dir / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_second_open_in_the_same_process_is_locked_out(tmp_path: Path) -> None:
    with CrawlState.open(tmp_path), pytest.raises(StateLocked, match=f"pid {os.getpid()}"):
        CrawlState.open(tmp_path)
    CrawlState.open(tmp_path).close()  # released on close


def test_lock_is_held_across_processes_and_dropped_when_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    holder = _child(
        """
        state = CrawlState.open(state_dir)
        print("ready", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    try:
        with pytest.raises(StateLocked, match=rf"lock on {tmp_path} \(pid {holder.pid}\)"):
            CrawlState.open(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with CrawlState.open(tmp_path) as state:  # no stale lock after SIGKILL
        assert state.counts()["pending"] == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    CrawlState.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        CrawlState.open(tmp_path)
    CrawlState.open(tmp_path / "other").close()  # the lock was released on the way out


def test_older_schema_is_migrated_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CrawlState.open(tmp_path) as state:
        _add(state, 1)
    step = ("ALTER TABLE pages ADD COLUMN note TEXT", "UPDATE pages SET note = 'migrated'")
    monkeypatch.setattr(state_module, "_MIGRATIONS", [*state_module._MIGRATIONS, step])
    monkeypatch.setattr(state_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with CrawlState.open(tmp_path) as state:
        assert state.get(_url(1)) is not None
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT note FROM pages").fetchall() == [("migrated",)]
    conn.close()


def test_foreign_or_corrupt_database_is_a_state_error(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / DB_NAME)
    conn.execute("PRAGMA application_id = 42")
    conn.close()
    with pytest.raises(StateError, match="not a pipeline state database"):
        CrawlState.open(foreign)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="unreadable"):
        CrawlState.open(corrupt)


def test_a_database_locked_by_another_program_is_said_locked_not_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sqlite3 shell left in a transaction: the state is locked, not "unreadable"."""
    CrawlState.open(tmp_path).close()
    monkeypatch.setattr(state_module, "BUSY_TIMEOUT_MS", 100)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("UPDATE runs SET exit_code = exit_code")
        with pytest.raises(StateLocked, match="locked by another program") as caught:
            CrawlState.open(tmp_path)
        assert "unreadable" not in str(caught.value)
    finally:
        other.close()
    CrawlState.open(tmp_path).close()  # usable again once the other program let go


def test_unusable_state_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        CrawlState.open(tmp_path / "file" / "state")


# --- discovery and claiming ------------------------------------------------------------------


def test_add_discovered_ignores_known_urls(state: CrawlState) -> None:
    assert _add(state, 1, 2, 3) == 3
    assert _add(state, 2, 3, 4) == 1
    row = state.get(_url(1))
    assert row is not None
    assert (row.status, row.depth, row.first_seen) == ("pending", 1, T0)
    assert row.discovered_from == f"{SITE}/code/list/A"
    assert state.get(f"{SITE}/unknown") is None
    assert state.add_discovered([(f"{SITE}/a", "other", 0, None, None)]) == 1  # plain tuples


def test_claim_due_orders_by_depth_then_url_and_claims_once_per_run(state: CrawlState) -> None:
    _add(state, 5, 3, depth=2)
    _add(state, 9, depth=1)
    first = state.claim_due(2, T0)
    assert [row.url for row in first] == [_url(9), _url(3)]
    assert [row.url for row in state.claim_due(10, T0)] == [_url(5)]
    assert state.claim_due(10, T0) == []
    state.begin_run()  # a new run starts from a clean slate
    assert [row.url for row in state.claim_due(10, T0)] == [_url(9), _url(3), _url(5)]


def test_lifecycle_of_outcomes(state: CrawlState) -> None:
    _add(state, 1, 2, 3, 4, 5, 6)
    assert len(state.claim_due(10, T0)) == 6
    _fetched(state, _url(1))
    state.record_unchanged(_url(2), T0)
    state.record_gone(_url(3), 410, T0)
    state.record_failed(
        _url(4), error_kind="http_status_error", reason="403", status=403, terminal=True, at=T0
    )
    state.record_failed(
        _url(5),
        error_kind="fetch_timeout",
        reason="read timeout",
        status=None,
        terminal=False,
        at=T0,
    )
    state.record_rejected(
        _url(6), "parse", "not_a_procedure_page", "no procedure content", T0, content_hash="b" * 64
    )
    assert state.counts() == {
        "pending": 1,
        "fetched": 1,
        "unchanged": 1,
        "gone": 1,
        "failed": 1,
        "rejected": 1,
    }
    fetched = state.get(_url(1))
    assert fetched is not None
    assert (fetched.etag, fetched.content_hash, fetched.last_changed) == ('"v1"', "a" * 64, T0)
    failed = state.get(_url(4))
    assert failed is not None
    # Typed: the stage and kind have columns of their own, the reason is only the reason.
    assert (failed.attempts, failed.last_status, failed.error_stage, failed.error_kind) == (
        1,
        403,
        "fetch",
        "http_status_error",
    )
    assert failed.last_error == "403"
    rejected = state.get(_url(6))
    assert rejected is not None
    assert (rejected.content_hash, rejected.error_stage, rejected.error_kind) == (
        "b" * 64,
        "parse",
        "not_a_procedure_page",
    )
    assert rejected.last_error == "no procedure content"

    # Next run: only the transient failure is due again; with a refresh period, everything is.
    state.begin_run()
    assert [row.url for row in state.claim_due(10, T0 + timedelta(hours=1))] == [_url(5)]
    state.begin_run()
    later = T0 + timedelta(days=2)
    assert len(state.claim_due(10, later, refresh_after=timedelta(days=1))) == 6


def test_transient_failure_keeps_stored_content_and_counts_attempts(state: CrawlState) -> None:
    _add(state, 1)
    state.claim_due(1, T0)
    _fetched(state, _url(1))
    for run in range(3):
        state.begin_run()
        assert state.claim_due(1, T0 + timedelta(days=run + 1), timedelta(hours=1))
        state.record_failed(
            _url(1),
            error_kind="retryable_status",
            reason="503",
            status=503,
            terminal=False,
            at=T0 + timedelta(days=run + 1),
        )
        assert state.claim_due(1, T0 + timedelta(days=run + 1)) == []  # not again this run
    row = state.get(_url(1))
    assert row is not None
    assert (row.status, row.attempts, row.content_hash) == ("fetched", 3, "a" * 64)
    _fetched(state, _url(1), at=T0 + timedelta(days=5))
    row = state.get(_url(1))
    assert row is not None
    assert (row.attempts, row.next_due, row.last_error) == (0, None, None)


def test_a_page_recorded_without_a_claim_is_not_handed_out_again_this_run(
    state: CrawlState,
) -> None:
    _add(state, 1, 2)
    state.record_failed(
        _url(1), error_kind="fetch_timeout", reason="t", status=None, terminal=False, at=T0
    )
    assert [row.url for row in state.claim_due(10, T0)] == [_url(2)]


def test_a_retry_after_due_time_holds_a_page_back_even_while_pending(
    state: CrawlState, tmp_path: Path
) -> None:
    """A transient failure with a due time (the server's Retry-After) is due at that time, not
    at the next run, whether the page was fetched before or is still pending."""
    _add(state, 1, 2)
    state.claim_due(2, T0)
    _fetched(state, _url(2))
    for n in (1, 2):
        state.record_failed(
            _url(n), error_kind="retryable_status", reason="429", status=429, terminal=False,
            at=T0, due=T0 + timedelta(minutes=30),
        )  # fmt: skip
    row = state.get(_url(1))
    assert row is not None
    assert (row.status, row.next_due) == ("pending", T0 + timedelta(minutes=30))
    status = state_module.read_status(tmp_path / "state", now=T0 + timedelta(minutes=10))
    assert status["due_now"] == 0
    assert status["next_due"] == (T0 + timedelta(minutes=30)).isoformat()
    state.begin_run()
    assert state.claim_due(10, T0 + timedelta(minutes=10), timedelta(days=7)) == []
    state.begin_run()
    due = state.claim_due(10, T0 + timedelta(minutes=30), timedelta(days=7))
    assert sorted(row.url for row in due) == [_url(1), _url(2)]


def test_unchanged_fetch_keeps_last_changed(state: CrawlState) -> None:
    _add(state, 1)
    _fetched(state, _url(1))
    state.record_unchanged(_url(1), T0 + timedelta(days=1))
    row = state.get(_url(1))
    assert row is not None
    assert (row.status, row.last_fetched, row.last_changed) == (
        "unchanged",
        T0 + timedelta(days=1),
        T0,
    )


def test_newer_sitemap_lastmod_makes_a_fetched_page_due(state: CrawlState) -> None:
    _add(state, 1)
    state.claim_due(1, T0)
    _fetched(state, _url(1), at=T0)
    older = Discovered(_url(1), "procedure", 1, None, T0 - timedelta(days=1))
    assert state.add_discovered([older], now=T0) == 0
    state.begin_run()
    assert state.claim_due(10, T0 + timedelta(hours=1)) == []
    newer = Discovered(_url(1), "procedure", 1, None, T0 + timedelta(hours=2))
    state.add_discovered([newer], now=T0 + timedelta(hours=3))
    state.begin_run()
    due = state.claim_due(10, T0 + timedelta(hours=3))
    assert [row.url for row in due] == [_url(1)]
    assert due[0].sitemap_lastmod == T0 + timedelta(hours=2)


def test_recording_an_unknown_page_is_an_error(state: CrawlState) -> None:
    with pytest.raises(StateError, match="unknown page"):
        state.record_unchanged(f"{SITE}/never-added", T0)


def test_naive_datetimes_are_refused(state: CrawlState) -> None:
    _add(state, 1)
    with pytest.raises(ValueError, match="naive"):
        state.record_unchanged(_url(1), datetime(2024, 5, 1))


# --- resuming --------------------------------------------------------------------------------


def test_claimed_but_unrecorded_pages_are_claimed_again_after_reopen(tmp_path: Path) -> None:
    with CrawlState.open(tmp_path) as state:
        _add(state, 1, 2, 3)
        claimed = state.claim_due(2, T0)
        _fetched(state, claimed[0].url)
    with CrawlState.open(tmp_path) as state:
        assert [row.url for row in state.claim_due(10, T0)] == [_url(2), _url(3)]


def test_sigkill_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    crawler = _child(
        """
        at = datetime(2024, 5, 1, tzinfo=UTC)
        state = CrawlState.open(state_dir)
        urls = [f"https://www.example.org/p/{n:02d}" for n in range(10)]
        state.add_discovered(Discovered(url, "procedure", 1) for url in urls)
        for row in state.claim_due(5, at)[:2]:
            state.record_fetched(row.url, status=200, etag=None, last_modified=None,
                                 content_hash="c" * 64, fetched_at=at, changed=True)
        print("ready", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    crawler.send_signal(signal.SIGKILL)
    crawler.wait()
    with CrawlState.open(tmp_path) as state:
        assert state.counts()["fetched"] == 2
        resumed = [row.url for row in state.claim_due(100, T0)]
        done = [url for url, _, _ in state.iter_archived()]
    every = [f"{SITE}/p/{n:02d}" for n in range(10)]
    assert done == every[:2]
    assert resumed == every[2:]  # the three in flight first, then the rest; nothing twice


# --- reading back ----------------------------------------------------------------------------


def test_iter_archived_pages_through_stored_bodies(
    state: CrawlState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "_PAGE_SIZE", 2)
    _add(state, *range(1, 8))
    for n in (1, 2, 3, 4, 5):
        _fetched(state, _url(n), digest=f"{n}" * 64)
    state.record_unchanged(_url(2), T0 + timedelta(days=1))
    state.record_gone(_url(3), 404, T0)
    state.record_rejected(_url(4), "validate", "record_invalid", "bad code", T0)
    state.record_rejected(_url(6), "parse", "empty_page", "empty page", T0)  # no body
    assert list(state.iter_archived()) == [
        (_url(1), "1" * 64, T0),
        (_url(2), "2" * 64, T0 + timedelta(days=1)),
        (_url(4), "4" * 64, T0),
        (_url(5), "5" * 64, T0),
    ]


def test_runs_are_recorded(state: CrawlState) -> None:
    assert state.last_run() is None
    first = state.begin_run(now=T0)
    state.finish_run(first, {"fetched": 3, "rejected": 1}, 1, now=T0 + timedelta(minutes=5))
    second = state.begin_run(now=T0 + timedelta(days=1))
    run = state.last_run()
    assert run is not None
    assert (run.id, run.finished_at, run.counts, run.exit_code) == (second, None, {}, None)
    state.finish_run(second, {"fetched": 0}, 0)
    run = state.last_run()
    assert run is not None
    assert (run.counts, run.exit_code) == ({"fetched": 0}, 0)
    assert first < second


def test_closed_state_refuses_writes(tmp_path: Path) -> None:
    state = CrawlState.open(tmp_path)
    state.close()
    state.close()  # idempotent
    with pytest.raises(StateError, match="closed"):
        _add(state, 1)


def test_times_before_the_year_1000_are_stored_in_a_form_they_are_read_back_from(
    state: CrawlState,
) -> None:
    ancient = datetime(999, 1, 1, tzinfo=UTC)  # strftime's %Y would write "999-01-01"
    state.add_discovered([Discovered(_url(1), "page", 0, None, ancient)], now=T0)
    row = state.get(_url(1))
    assert row is not None
    assert row.sitemap_lastmod == ancient
