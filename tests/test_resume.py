"""A crawl killed with SIGKILL resumes to exactly the tables of an uninterrupted crawl.

The crawler runs as a real subprocess (``python -m pipeline crawl``) against a synthetic site
(:mod:`tests.synth`) served by :class:`tests.faultserver.FaultServer` on 127.0.0.1; routes
have a small delay so that a run lasts a few seconds and can be killed part way. The helpers
here are shared with ``tests/test_chaos.py``.

What is compared: every table except ``runs`` and ``changes`` (run metadata), row for row,
sorted by key, without the datetime columns and ``run_id``. Those legitimately differ between
two crawls made at different times; what they must hold in the resumed output is checked
separately: a page fetched before the kill keeps the fetch time the state recorded for it, so
the replay after the kill does not pretend it was fetched again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.load import tables as T
from tests.faultserver import FaultServer, Route
from tests.synth import content_type, generate_site

#: Tables compared between runs (``runs`` and ``changes`` describe the runs themselves).
COMPARED = (T.PROCEDURES, *T.CHILD_TABLES, T.REJECTS)
#: Seconds any one subprocess may take before the test gives up (never hang).
PROCESS_TIMEOUT = 90.0


# --- helpers shared with test_chaos ------------------------------------------------------------


def site_routes(site: Mapping[str, bytes], delay: float = 0.0) -> dict[str, Route]:
    """FaultServer routes serving a generated site, each answer after ``delay`` seconds."""
    return {
        path: Route(body, content_type=content_type(path), delay=delay)
        for path, body in site.items()
    }


def serve_site(server: FaultServer, n: int, seed: int, delay: float = 0.0) -> dict[str, bytes]:
    """Generate a site for ``server``'s origin and install it as its routes."""
    site = generate_site(n, seed, origin=server.base_url)
    server.routes.clear()
    server.routes.update(site_routes(site, delay))
    return site


def crawl_args(url: str, root: Path, *extra: str, concurrency: int = 4) -> list[str]:
    """The command line of a crawl of ``url`` into ``root/out`` with state ``root/state``."""
    return [
        sys.executable, "-m", "pipeline", "crawl", url,
        "--out", str(root / "out"), "--state", str(root / "state"), "--rate", "0",
        "--concurrency", str(concurrency), "--per-host-concurrency", str(concurrency),
        "--no-progress", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}


class Crawler:
    """A crawl subprocess with its output in files (no pipe can fill up and block it)."""

    def __init__(self, args: list[str], cwd: Path, name: str) -> None:
        self.args = args
        self.log = cwd / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                args, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float = PROCESS_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"crawl did not finish within {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL (no chance to clean up), then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def crawlers() -> Iterator[Callable[[list[str], Path, str], Crawler]]:
    """Start crawl subprocesses; any still running at the end of the test is killed."""
    started: list[Crawler] = []

    def start(args: list[str], cwd: Path, name: str) -> Crawler:
        crawler = Crawler(args, cwd, name)
        started.append(crawler)
        return crawler

    yield start
    for crawler in started:
        crawler.kill()


def run_to_end(start: Callable[[list[str], Path, str], Crawler], args: list[str], root: Path,
               name: str, expect: int = 0) -> Crawler:  # fmt: skip
    crawler = start(args, root, name)
    code = crawler.wait()
    assert code == expect, f"{name} exited {code}:\n{crawler.output()}"
    return crawler


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` every 5 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def page_requests(server: FaultServer) -> Counter[str]:
    """Requests per procedure page path."""
    return Counter(r.path for r in server.requests if r.path.startswith("/code/") and
                   not r.path.startswith("/code/list/"))  # fmt: skip


def published_dir(out: Path) -> Path | None:
    """The directory of the published version (``OUT/current`` resolved once), or None."""
    current = out / "current"
    if not current.exists():
        return None
    return Path(os.path.realpath(current))


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of the published version, by relative path (empty when nothing published)."""
    version = published_dir(out)
    if version is None:
        return {}
    return {
        str(p.relative_to(version)): p.read_bytes() for p in sorted(version.rglob("*"))
        if p.is_file()
    }  # fmt: skip


def assert_readable(out: Path) -> None:
    """Every output file a reader can reach is complete: all tables or none at all."""
    version = published_dir(out)
    links = [out / "parquet", out / "csv"]
    if version is None:
        for link in links:
            assert not link.exists() or not any(link.iterdir()), f"{link} without a version"
        return
    parquet = sorted((out / "parquet").glob("*.parquet"))
    csv = sorted((out / "csv").glob("*.csv"))
    assert parquet, "a published version without Parquet files"
    assert {p.stem for p in parquet} == {p.stem for p in csv}
    assert {p.stem for p in parquet} == {spec.name for spec in T.TABLES}
    for path in parquet:
        pl.read_parquet(path)  # raises on a torn file
    for path in csv:
        frame = pl.read_csv(path, infer_schema=False)
        assert frame.height == pl.read_parquet(path.parent.parent / "parquet" /
                                               f"{path.stem}.parquet").height  # fmt: skip


def comparable_tables(out: Path) -> dict[str, pl.DataFrame]:
    """The compared tables of the published version, sorted, without times and run ids."""
    version = published_dir(out)
    assert version is not None, f"nothing published in {out}"
    frames: dict[str, pl.DataFrame] = {}
    for spec in COMPARED:
        frame = pl.read_parquet(version / "parquet" / f"{spec.name}.parquet")
        keep = [
            name
            for name, dtype in frame.schema.items()
            if not isinstance(dtype, pl.Datetime) and name != "run_id"
        ]
        frames[spec.name] = frame.select(keep).sort(keep)
    return frames


def assert_same_tables(got: Mapping[str, pl.DataFrame], want: Mapping[str, pl.DataFrame]) -> None:
    """Equal row for row; on failure, show the keys of the rows that differ."""
    assert got.keys() == want.keys()
    for name in want:
        a, b = got[name], want[name]
        assert a.columns == b.columns, name
        if a.equals(b):
            continue
        key = [c for c in T.BY_NAME[name].key if c in a.columns]
        extra = a.join(b, on=a.columns, how="anti", nulls_equal=True).select(key)
        missing = b.join(a, on=a.columns, how="anti", nulls_equal=True).select(key)
        raise AssertionError(
            f"table {name}: {a.height} rows, expected {b.height}\n"
            f"rows not expected: {extra.rows()[:10]}\nrows missing: {missing.rows()[:10]}"
        )


def state_fetch_times(state: Path) -> dict[str, datetime]:
    """``last_fetched`` of every page the state holds as fetched (read-only)."""
    conn = sqlite3.connect(f"file:{state / 'state.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT url, last_fetched FROM pages WHERE kind = 'page'"
            " AND status = 'fetched' AND last_fetched IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {
        url: datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) for url, ts in rows
    }


def _set_delay(server: FaultServer, delay: float) -> None:
    for route in server.routes.values():
        route.delay = delay


# --- the test ------------------------------------------------------------------------------------

PAGES = 150
DELAY = 0.04


def test_killed_crawl_resumes_to_the_tables_of_an_uninterrupted_one(
    tmp_path: Path, crawlers: Callable[[list[str], Path, str], Crawler]
) -> None:
    with FaultServer() as server:
        serve_site(server, PAGES, seed=11, delay=DELAY)
        seed_url = server.url("/")

        # The yardstick: one uninterrupted crawl of the same site, same server, same port.
        clean = tmp_path / "clean"
        clean.mkdir()
        run_to_end(crawlers, crawl_args(seed_url, clean), clean, "clean")
        assert comparable_tables(clean / "out")["procedures"].height == PAGES
        server.reset_stats()

        root = tmp_path / "resumed"
        root.mkdir()
        args = crawl_args(seed_url, root)
        # 1. A short run publishes a first version, so a kill has something to preserve.
        run_to_end(crawlers, [*args, "--max-pages", "30"], root, "partial")
        before = snapshot(root / "out")
        assert before

        # 2. A run killed after ~40 % of the pages were requested.
        victim = crawlers(args, root, "killed")
        wait_for(lambda: len(page_requests(server)) >= 0.4 * PAGES or not victim.alive(),
                 "40 % of the pages to be requested")  # fmt: skip
        assert victim.alive(), f"the crawl ended before the kill:\n{victim.output()}"
        # Freeze the site (answers now take a minute) so the victim is surely still running,
        # with requests in flight, while the rival starts and when the kill comes.
        _set_delay(server, 60.0)

        # A second run on the same state while the first holds it: refused with exit code 3.
        rival = run_to_end(crawlers, args, root, "rival", expect=3)
        assert "another run holds the lock" in rival.output(), rival.output()
        assert victim.alive(), "the refused run disturbed the running one"

        victim.kill()
        killed_at = datetime.now(UTC)
        _set_delay(server, DELAY)
        assert_readable(root / "out")
        assert snapshot(root / "out") == before, "the kill changed the published version"
        fetched_before_kill = state_fetch_times(root / "state")
        assert len(fetched_before_kill) >= 0.3 * PAGES

        # 3. Start again: the run completes from where the killed one stopped.
        run_to_end(crawlers, args, root, "resumed")
        assert_readable(root / "out")

    assert_same_tables(comparable_tables(root / "out"), comparable_tables(clean / "out"))

    # Incremental: pages recorded before the kill were not fetched again; only the few in
    # flight at the moment of the kill (at most one per connection) were.
    again = {path: n for path, n in page_requests(server).items() if n > 1}
    assert len(again) <= 4, again

    # Replayed pages keep the fetch time of the run that fetched them.
    version = published_dir(root / "out")
    assert version is not None
    procedures = pl.read_parquet(version / "parquet" / "procedures.parquet")
    fetched_at = dict(zip(procedures["source_url"], procedures["fetched_at"], strict=True))
    for url, when in fetched_before_kill.items():
        assert fetched_at[url] == when, url
        assert when < killed_at


def _all_tables(out: Path) -> dict[str, pl.DataFrame]:
    version = published_dir(out)
    assert version is not None
    return {spec.name: pl.read_parquet(version / "parquet" / f"{spec.name}.parquet")
            for spec in T.TABLES}  # fmt: skip


def test_death_between_publication_and_its_record_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the tables were published but before the state knew: the replay that
    follows finds every outcome already published and changes no row, times included."""
    from pipeline.acquire.state import CrawlState
    from pipeline.run.crawl import CrawlOptions, crawl

    def killed(self: CrawlState) -> int:
        raise KeyboardInterrupt  # stands for a SIGKILL right after the publication

    options = CrawlOptions(
        out=tmp_path / "out", state=tmp_path / "state", rate=0.0, concurrency=4,
        per_host_concurrency=4, timeout=5.0,
    )  # fmt: skip
    with FaultServer() as server:
        serve_site(server, 40, seed=12)
        with monkeypatch.context() as patch:
            patch.setattr(CrawlState, "mark_published", killed)
            with pytest.raises(KeyboardInterrupt):
                crawl([server.url("/")], options, show_progress=False)
        first = _all_tables(options.out)
        assert first["procedures"].height == 40
        again = crawl([server.url("/")], options, show_progress=False)
        second = _all_tables(options.out)
    assert again.exit_code == 0
    for spec in COMPARED:
        assert second[spec.name].equals(first[spec.name]), spec.name
    assert second["runs"].height == first["runs"].height + 1
    assert second["changes"].height == first["changes"].height
