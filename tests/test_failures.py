"""Failures a scheduler can trust (issue 12): a run that reached nothing never exits 0, a
robots.txt outage postpones pages for minutes and not days, unexpected errors have their own
exit code with one line on stderr, and a full disk names the file.

Each test reproduces the failure as a user met it, through the command line where that is how
it was met.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.demo.server import SiteServer
from pipeline.errors import WriteError
from pipeline.run.crawl import crawl
from tests.conftest import GOLDEN_PAGES, SITE, crawl_options, instant
from tests.faultserver import CloseDelimited, FaultServer, Redirect, Route, Status, robots


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def _page(code: str) -> bytes:
    return next(p for p in GOLDEN_PAGES if p.name.startswith(code + "-")).read_bytes()


def test_a_crawl_of_a_site_that_is_down_exits_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    result = run(
        "crawl", url, "--out", str(tmp_path / "out"), "--state", str(tmp_path / "state"),
        "--rate", "0", "--max-retries", "0", "--timeout", "2", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert "nothing could be fetched" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_robots_outage_postpones_pages_for_minutes_not_days(tmp_path: Path) -> None:
    options = crawl_options(tmp_path, max_depth=1)
    links = '<a href="/code/cpt4/22212-osteotomy">a</a><a href="/code/cpt4/45378-colon">b</a>'
    routes = {
        "/": Route(f"<html><body>{links}</body></html>"),
        "/robots.txt": Route(fault=Status(503)),
        "/code/cpt4/22212-osteotomy": Route(_page("22212")),
        "/code/cpt4/45378-colon": Route(_page("45378")),
    }
    with FaultServer(routes) as server:
        down = crawl([server.url("/")], options, sleep=instant, show_progress=False)
        assert down.exit_code == 3
        assert "robots_unreachable" in down.text
        server.routes["/robots.txt"] = robots("User-agent: *\nAllow: /\n")
        healthy = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    # The seed failed for now, not for the refresh interval: the next run fetches everything.
    assert healthy.exit_code == 0, healthy.text
    table = pl.read_parquet(options.out / "parquet" / "procedures.parquet")
    assert sorted(table["code"].to_list()) == ["22212", "45378"]


def test_an_unexpected_error_exits_4_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in the pipeline")

    monkeypatch.setattr("pipeline.run.runner.parse_inputs", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    page = GOLDEN_PAGES[0]
    result = run("parse", str(page))
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "internal error" in lines[0]
    assert "a bug in the pipeline" in lines[0]
    assert "Traceback" not in result.stderr
    (report,) = tmp_path.glob("pipeline-crash-*.log")
    assert "Traceback" in report.read_text()
    assert str(report) in lines[0]


def test_a_full_disk_exits_3_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "state.sqlite3"))

    monkeypatch.setattr("pipeline.run.runner.parse_inputs", full)
    result = run("parse", str(GOLDEN_PAGES[0]))
    assert result.exit_code == 3
    assert "state.sqlite3" in result.stderr
    assert "No space left" in result.stderr
    assert "Traceback" not in result.stderr


# --- a damaged or emptied state ---------------------------------------------------------------


def _demo_crawl(tmp_path: Path) -> tuple[Path, Path]:
    out, state = tmp_path / "out", tmp_path / "state"
    with SiteServer(SITE) as server:
        result = run(
            "crawl", server.origin + "/", "--out", str(out), "--state", str(state),
            "--rate", "0", "--no-progress",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out, state


def test_pages_written_while_the_clock_was_ahead_are_due_and_said(tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    port = _closed_port()  # the same port twice: the same URLs

    def crawl_site() -> Result:
        with SiteServer(SITE, port=port) as server:
            return run(
                "crawl", server.origin + "/", "--out", str(out), "--state", str(state),
                "--rate", "0", "--no-progress",
            )  # fmt: skip

    assert crawl_site().exit_code == 0
    with sqlite3.connect(state / "state.sqlite3") as db:  # as if the clock had been in 2031
        pages = db.execute(
            "UPDATE pages SET last_attempt = '2031-06-01T00:00:00+00:00',"
            " last_fetched = '2031-06-01T00:00:00+00:00', next_due = '2031-06-08T00:00:00+00:00'"
        ).rowcount
    status = run("status", "--state", str(state), "--out", str(out), "--json")
    assert json.loads(status.stdout)["due_now"] == pages
    assert "in the future" in json.loads(status.stdout)["warning"]
    result = crawl_site()
    assert result.exit_code == 0, result.stderr
    assert f"warning: {pages} pages were last attempted in the future" in result.stderr
    with sqlite3.connect(state / "state.sqlite3") as db:
        (stale,) = db.execute("SELECT count(*) FROM pages WHERE last_attempt > '2030'").fetchone()
    assert stale == 0, "every page from the future was fetched again"
    status = run("status", "--state", str(state), "--out", str(out), "--json")
    assert "warning" not in json.loads(status.stdout)


def test_ingest_or_parse_of_urls_none_of_which_answer_could_not_proceed(tmp_path: Path) -> None:
    port = _closed_port()
    urls = [f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"]
    ingested = run("ingest", *urls, "--out", str(tmp_path / "out"), "--no-progress")
    assert ingested.exit_code == 3, ingested.stderr  # not 1, "finished with some rejects"
    assert "nothing could be fetched: 2 requests" in ingested.stderr
    assert "fetched" not in ingested.stderr.splitlines()[-3]  # the summary counts no fetch
    rejects = pl.read_parquet(tmp_path / "out" / "parquet" / "rejects.parquet")
    assert rejects.height == 2  # and both are in the rejects
    parsed = run("parse", *urls)
    assert parsed.exit_code == 3
    assert parsed.stderr.splitlines()[-1].startswith("error: nothing could be fetched")
    with FaultServer({"/gone": Route("", status=404)}) as server:  # an answer, if a 404
        answered = run("parse", server.url("/gone"), urls[0])
    assert answered.exit_code == 1


def test_a_published_table_file_that_went_missing_is_an_error_not_an_empty_table(
    tmp_path: Path,
) -> None:
    out, state = _demo_crawl(tmp_path)
    steps = out / "current" / "parquet" / "steps.parquet"
    steps.unlink()
    for args in (["reparse", "--state", str(state)], ["ingest", str(GOLDEN_PAGES[0])]):
        result = run(*args, "--out", str(out), "--no-progress")
        assert result.exit_code == 3, result.stderr
        assert "steps.parquet is missing" in result.stderr
    assert not steps.exists()  # nothing published over it
    assert pl.read_csv(out / "current" / "csv" / "steps.csv").height > 0


def test_an_emptied_state_is_an_error_not_a_new_state(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    before = pl.read_parquet(out / "parquet" / "procedures.parquet").height
    (state / "state.sqlite3").write_bytes(b"")
    for name in ("state.sqlite3-wal", "state.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    result = run("reparse", "--state", str(state), "--out", str(out), "--no-progress")
    assert result.exit_code == 3, result.stderr
    assert "empty (0 bytes)" in result.stderr
    assert pl.read_parquet(out / "parquet" / "procedures.parquet").height == before


def test_an_archive_without_its_state_is_an_error(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    with SiteServer(SITE) as server:
        result = run(
            "crawl", server.origin + "/", "--out", str(out), "--state", str(state),
            "--rate", "0", "--no-progress",
        )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert "no state database" in result.stderr


def test_reparse_of_a_state_with_nothing_archived_publishes_nothing(tmp_path: Path) -> None:
    out, _ = _demo_crawl(tmp_path)
    fresh = tmp_path / "fresh-state"
    url = f"http://127.0.0.1:{_closed_port()}/"
    run("crawl", url, "--state", str(fresh), "--out", str(tmp_path / "o2"), "--max-retries", "0",
        "--no-progress")  # fmt: skip
    before = pl.read_parquet(out / "parquet" / "procedures.parquet").height
    result = run("reparse", "--state", str(fresh), "--out", str(out), "--no-progress")
    assert result.exit_code == 3, result.stderr
    assert "no archived pages" in result.stderr
    assert pl.read_parquet(out / "parquet" / "procedures.parquet").height == before


def test_damaged_pages_of_the_state_database_exit_3(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    db = state / "state.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = 4096
    data[page * 2 : page * 2 + 512] = b"\xde\xad" * 256  # a b-tree page of the pages table
    db.write_bytes(bytes(data))
    result = run("reparse", "--state", str(state), "--out", str(out), "--no-progress")
    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "damaged" in result.stderr or "unreadable" in result.stderr


def test_a_crawl_after_the_state_was_deleted_publishes(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    shutil.rmtree(state)
    with SiteServer(SITE) as server:
        result = run(
            "crawl", server.origin + "/", "--out", str(out), "--state", str(state),
            "--rate", "0", "--no-progress",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    runs = pl.read_csv(out / "csv" / "runs.csv")
    # Run ids stay text for a CSV reader, and are unique although the state numbered both 1.
    assert runs["run_id"].dtype == pl.String
    assert runs["run_id"].n_unique() == 2


# --- inputs ---------------------------------------------------------------------------------


def test_file_names_that_are_not_utf8_or_hold_a_newline_are_ingested(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    seed = next(p for p in GOLDEN_PAGES if p.name.startswith("45378-")).read_bytes()
    odd = [os.fsdecode(b"latin-\xe9t\xe9.html"), "two\nlines.html"]
    for name in odd:
        (pages / name).write_bytes(seed)
    result = run("ingest", str(pages), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 1, result.stderr  # one code twice: the first is a reject
    assert "Traceback" not in result.stderr
    table = pl.read_parquet(tmp_path / "out" / "parquet" / "procedures.parquet")
    assert table.height == 1  # one code, the last added wins
    rejects = pl.read_parquet(tmp_path / "out" / "parquet" / "rejects.parquet")
    assert rejects["error_kind"].to_list() == ["duplicate_code"]
    parsed = run("parse", str(pages))
    sources = [json.loads(line)["source"] for line in parsed.stdout.splitlines()]
    assert sorted(Path(s).name for s in sources) == ["latin-\\xe9t\\xe9.html", "two\\nlines.html"]
    assert all("\n" not in s for s in sources)


def test_two_file_names_never_share_a_source(tmp_path: Path) -> None:
    """A newline and a literal backslash-n were both shown as "\\n": two rejects counted, one
    row in the table. A backslash of a name is now doubled, so each name has its own source."""
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "a\nb.html").write_bytes(b"")  # a newline in the name
    (pages / "a\\nb.html").write_bytes(b"\x00\x01binary")  # a backslash and an n
    result = run("ingest", str(pages), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 1, result.stderr
    rejects = pl.read_parquet(tmp_path / "out" / "parquet" / "rejects.parquet")
    assert rejects.height == 2, rejects
    assert sorted(Path(s).name for s in rejects["source"]) == ["a\\\\nb.html", "a\\nb.html"]


def test_a_damaged_archive_object_is_fetched_again_and_rewritten(tmp_path: Path) -> None:
    from pipeline.acquire.archive import RawArchive
    from pipeline.run.crawl import reparse

    options = crawl_options(tmp_path)
    archive = RawArchive(options.state / "archive")
    with SiteServer(SITE) as server:
        assert crawl([server.origin + "/"], options, show_progress=False).exit_code == 0
        victim = next(archive.objects.rglob("*.gz"))
        victim.write_bytes(b"not gzip at all")
        damaged = reparse(options, show_progress=False)
        assert damaged.summary["rejected_by_reason"] == {"raw_page_lost": 1}
        status = run("status", "--state", str(options.state), "--json")  # says the same
        assert json.loads(status.stdout)["rejects_by_reason"] == {"raw_page_lost": 1}
        # The next crawl fetches that page again in full (no 304 for lost bytes) and archives it.
        again = crawl([server.origin + "/"], options, show_progress=False)
        assert again.exit_code == 0, again.text
        assert again.summary["fetched"] == 1
    assert archive.get(victim.name.removesuffix(".gz"))  # whole again
    healed = reparse(options, show_progress=False)
    assert healed.exit_code == 0
    assert healed.summary["parsed"] == 24


def test_a_cut_http10_page_does_not_replace_the_good_row(tmp_path: Path) -> None:
    """HTTP/1.0, no Content-Length, the connection closed mid-page: a failed fetch (the row
    published before stays whole), not half a page taken for the page."""
    from datetime import timedelta

    options = crawl_options(tmp_path, refresh_after=timedelta(0), max_depth=0)
    url_path = "/code/cpt4/45378-colonoscopy"
    page = _page("45378")
    with FaultServer({"/robots.txt": robots("User-agent: *\n")}) as server:
        server.routes[url_path] = Route(page, fault=CloseDelimited())
        first = crawl([server.url(url_path)], options, sleep=instant, show_progress=False)
        assert first.exit_code == 0, first.text
        tables = {t: _table(options.out, t) for t in ("procedures", "steps", "recovery")}
        server.routes[url_path] = Route(page, fault=CloseDelimited(keep=len(page) // 2))
        second = crawl([server.url(url_path)], options, sleep=instant, show_progress=False)
    assert second.exit_code == 3, second.text  # its only page could not be fetched whole
    assert second.summary["failed"] == 1
    assert second.summary["rejected_by_reason"] == {"truncated_body": 1}
    for name, before in tables.items():
        assert _table(options.out, name).equals(before), name
    assert tables["steps"].height > 0


def test_a_gone_page_that_comes_back_as_304_is_returned(tmp_path: Path) -> None:
    """410, then the server answers the old ETag with 304: the page is back in the tables."""
    from datetime import timedelta

    options = crawl_options(tmp_path, refresh_after=timedelta(0), max_depth=0)
    url_path = "/code/cpt4/45378-colonoscopy"
    with FaultServer({"/robots.txt": robots("User-agent: *\n")}) as server:
        seed = [server.url(url_path)]
        server.routes[url_path] = Route(_page("45378"), etag='"v1"')
        assert crawl(seed, options, sleep=instant, show_progress=False).exit_code == 0
        server.routes[url_path] = Route("", status=410)
        crawl(seed, options, sleep=instant, show_progress=False)
        assert _table(options.out, "procedures")["gone"].to_list() == [True]
        server.routes[url_path] = Route(_page("45378"), etag='"v1"')  # 304 to If-None-Match
        back = crawl(seed, options, sleep=instant, show_progress=False)
    assert back.exit_code == 0, back.text
    assert _table(options.out, "procedures")["gone"].to_list() == [False]
    changes = _table(options.out, "changes")["change"].to_list()
    assert changes[-1] == "returned", changes


def test_a_page_that_redirects_takes_its_code_from_where_it_landed(tmp_path: Path) -> None:
    """/code/cpt4/22212-x redirects to 11042's page (which names its code only in its URL):
    the record is 11042's, not a row (CPT, 22212) holding 11042's content."""
    options = crawl_options(tmp_path, max_depth=0)
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/22212-x": Route("", fault=Redirect("/code/cpt4/11042-debridement")),
              "/code/cpt4/11042-debridement": Route(_page("11042"))}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/code/cpt4/22212-x")], options, sleep=instant,
                       show_progress=False)  # fmt: skip
    assert result.exit_code == 0, result.text
    assert _table(options.out, "procedures")["code"].to_list() == ["11042"]
    # reparse reads where it landed from the state
    assert run("reparse", "--state", str(options.state), "--out", str(options.out)).exit_code == 0
    assert _table(options.out, "procedures")["code"].to_list() == ["11042"]


def test_a_url_that_redirects_to_a_page_crawled_under_its_own_url_is_an_alias(
    tmp_path: Path,
) -> None:
    """/code/cpt4/22212-x redirects to 11042's page, which is also seeded: the two URLs are one
    page. One row, under the page's own URL; no duplicate_code reject (which the rejects table
    then lost while the summary counted it and the run exited 1); an alias in the summary."""
    options = crawl_options(tmp_path, max_depth=0)
    target = "/code/cpt4/11042-debridement"
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/22212-x": Route("", fault=Redirect(target)),
              target: Route(_page("11042"))}  # fmt: skip
    with FaultServer(routes) as server:
        seeds = [server.url("/code/cpt4/22212-x"), server.url(target)]
        result = crawl(seeds, options, sleep=instant, show_progress=False)
        page = server.url(target)
    assert result.exit_code == 0, result.text
    assert result.summary["aliases"] == 1, result.text
    assert result.summary["rejected"] == 0
    procedures = _table(options.out, "procedures")
    assert procedures.select("code", "source_url").rows() == [("11042", page)]
    assert _table(options.out, "rejects").height == 0
    rebuilt = run("reparse", "--state", str(options.state), "--out", str(options.out))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert _table(options.out, "procedures").select("code", "source_url").rows() == [
        ("11042", page)
    ]
    assert _table(options.out, "rejects").height == 0


def test_reparse_keeps_the_fetch_rejects_and_counts_duplicates_once(tmp_path: Path) -> None:
    """A rebuild replaces the rejects table: the pages that could not be fetched (a redirect
    loop, a 404) stay there, and a duplicate code met in the other order is one reject, as
    the table holds it (the summary said 2 against 1 row, and the fetch rejects vanished)."""
    options = crawl_options(tmp_path, max_depth=0, max_retries=0)
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/31231-loop": Route("", fault=Redirect("/code/cpt4/31231-loop")),
              "/code/cpt4/45379-dead": Route("", status=404),
              "/code/cpt4/45378-a": Route(_page("45378")),
              "/code/cpt4/45378-b": Route(_page("45378"))}  # fmt: skip
    with FaultServer(routes) as server:
        seeds = [server.url(path) for path in routes if path != "/robots.txt"]
        first = crawl(seeds, options, sleep=instant, show_progress=False)
    assert first.exit_code == 1, first.text
    before = _table(options.out, "rejects").select("source", "error_kind").sort("source")
    assert before.height == 3, before
    rebuilt = run("reparse", "--state", str(options.state), "--out", str(options.out))
    assert rebuilt.exit_code == 1, rebuilt.output
    after = _table(options.out, "rejects").select("source", "error_kind").sort("source")
    fetch = before.filter(pl.col("error_kind") != "duplicate_code")
    assert fetch.height == 2
    assert fetch.rows() == after.filter(pl.col("error_kind") != "duplicate_code").rows()
    assert after.filter(pl.col("error_kind") == "duplicate_code").height == 1
    summary = run("status", "--state", str(options.state), "--json")
    counts = json.loads(summary.stdout)["last_run"]
    assert counts["rejected"] == after.height, (counts, after)
    assert _table(options.out, "procedures").height == 1


def test_a_duplicate_with_the_same_bytes_in_a_later_run_moves_the_row(tmp_path: Path) -> None:
    """Run 1 has /45378-a; run 2 a byte-identical /45378-b. The reject said -a lost and -b was
    kept, but the row stayed under -a (same content hash: "unchanged") and -b was in neither
    table. The row now follows the page kept."""
    options = crawl_options(tmp_path, max_depth=0)
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/45378-a": Route(_page("45378")),
              "/code/cpt4/45378-b": Route(_page("45378"))}  # fmt: skip
    with FaultServer(routes) as server:
        a, b = server.url("/code/cpt4/45378-a"), server.url("/code/cpt4/45378-b")
        assert crawl([a], options, sleep=instant, show_progress=False).exit_code == 0
        second = crawl([b], options, sleep=instant, show_progress=False)
    assert second.exit_code == 1, second.text
    assert _table(options.out, "procedures").select("source_url", "gone").rows() == [(b, False)]
    rejects = _table(options.out, "rejects").select("source", "error_kind").rows()
    assert rejects == [(a, "duplicate_code")]


def test_a_redirect_crawled_first_then_its_target_is_one_page(tmp_path: Path) -> None:
    """Run 1 crawls /22212-wrong, which redirects to 43239's page; run 2 crawls that page under
    its own URL. One page: an alias, its row under its own URL, no duplicate reject."""
    options = crawl_options(tmp_path, max_depth=0)
    target = "/code/cpt4/43239-egd"
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/22212-wrong": Route("", fault=Redirect(target)),
              target: Route(_page("43239"))}  # fmt: skip
    with FaultServer(routes) as server:
        moved, page = server.url("/code/cpt4/22212-wrong"), server.url(target)
        assert crawl([moved], options, sleep=instant, show_progress=False).exit_code == 0
        second = crawl([page], options, sleep=instant, show_progress=False)
    assert second.exit_code == 0, second.text
    assert second.summary["aliases"] == 1
    assert _table(options.out, "procedures").select("source_url").rows() == [(page,)]
    assert _table(options.out, "rejects").height == 0


def test_a_sitemap_that_fails_is_not_an_all_good_run(tmp_path: Path) -> None:
    """The sitemap is the only way to the pages and answers 503: the home page was reached,
    so the run proceeded, but it lost what the sitemap lists; it says so and exits 1."""
    options = crawl_options(tmp_path, max_retries=0)
    routes = {"/robots.txt": robots("User-agent: *\nSitemap: /sitemap.xml\n"),
              "/": Route("<html><body><h1>Welcome</h1></body></html>"),
              "/sitemap.xml": Route("", status=503)}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    assert result.exit_code == 1, result.text
    assert result.summary["failed"] == 1
    assert "/sitemap.xml could not be fetched (retryable_status)" in result.text


def test_a_sitemap_that_is_an_html_page_is_a_failure_due_again_next_run(tmp_path: Path) -> None:
    options = crawl_options(tmp_path, max_retries=0)
    maintenance = "<html><body><h1>Down for maintenance</h1></body></html>"
    routes = {"/robots.txt": robots("User-agent: *\nSitemap: /sitemap.xml\n"),
              "/": Route("<html><body><h1>Welcome</h1></body></html>"),
              "/sitemap.xml": Route(maintenance)}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
        sitemap = server.url("/sitemap.xml")
    assert result.exit_code == 1, result.text
    assert result.summary["failed"] == 1
    assert f"{sitemap} could not be fetched" in result.text
    with sqlite3.connect(options.state / "state.sqlite3") as db:
        (kind, due, fetched) = db.execute(
            "SELECT error_kind, next_due, last_fetched FROM pages WHERE url = ?", (sitemap,)
        ).fetchone()
    assert kind is not None
    assert fetched is None  # not taken for a sitemap fetched: due again on the next run
    assert due is not None


def test_a_retry_after_past_any_calendar_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    options = crawl_options(tmp_path, max_depth=0, max_retries=0)
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/45378-x": Route("", fault=Status(503, retry_after=10**15))}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/code/cpt4/45378-x")], options, sleep=instant,
                       show_progress=False)  # fmt: skip
    assert result.exit_code == 3, result.text  # its only page: nothing could be fetched
    assert result.summary["rejected_by_reason"] == {"retryable_status": 1}


def test_a_page_whose_code_changes_leaves_no_stale_row(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    out = tmp_path / "out"
    original = _page("45378")
    page.write_bytes(original)
    assert run("ingest", str(page), "--out", str(out)).exit_code == 0
    page.write_bytes(original.replace(b"45378", b"45379"))  # the site renumbered it
    again = run("ingest", str(page), "--out", str(out))
    assert again.exit_code == 0, again.stderr
    rows = _table(out, "procedures").sort("code").select("code", "gone").rows()
    assert rows == [("45378", True), ("45379", False)]  # one page, one live row
    changes = _table(out, "changes").filter(
        pl.col("run_id") == _table(out, "changes")["run_id"].max()
    )
    assert sorted(changes.select("code", "change").rows()) == [
        ("45378", "gone"),
        ("45379", "added"),
    ]


def test_a_new_page_with_the_code_of_a_live_published_page_leaves_a_reject(
    tmp_path: Path,
) -> None:
    """Run 1 publishes page A; run 2 finds page B with A's code while A, still live, is not
    due: B's record replaces A's row, and A is a duplicate_code reject, not a silent loss."""
    options = crawl_options(tmp_path, max_depth=0)
    page = _page("45378")
    other = page.replace(b"</body>", b"<p>More.</p></body>")
    routes = {"/robots.txt": robots("User-agent: *\n"),
              "/code/cpt4/45378-a": Route(page),
              "/code/cpt4/45378-b": Route(other)}  # fmt: skip
    with FaultServer(routes) as server:
        a, b = server.url("/code/cpt4/45378-a"), server.url("/code/cpt4/45378-b")
        assert crawl([a], options, sleep=instant, show_progress=False).exit_code == 0
        second = crawl([a, b], options, sleep=instant, show_progress=False)
    assert second.exit_code == 1, second.text
    rejects = _table(options.out, "rejects")
    assert rejects.select("source", "error_kind").rows() == [(a, "duplicate_code")]
    assert b in rejects["reason"][0]
    assert _table(options.out, "procedures")["source_url"].to_list() == [b]


def test_a_crawl_stopped_by_max_pages_says_what_is_left(tmp_path: Path) -> None:
    options = crawl_options(tmp_path, max_pages=10)
    with SiteServer(SITE) as server:
        first = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
        assert first.summary["fetched"] == 10
        assert "stopped at --max-pages 10: " in first.text
        assert "pages are still due; the next run fetches them" in first.text
        options = crawl_options(tmp_path)
        rest = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    assert "max-pages" not in rest.text


def _table(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / "parquet" / f"{name}.parquet")


def test_a_sitemap_of_8_mib_is_read(tmp_path: Path) -> None:
    """Over the page limit (5 MiB) but within the protocol's 50 MB: the sitemap is read."""
    options = crawl_options(tmp_path, timeout=5.0)
    with FaultServer() as server:
        padding = "<!-- " + "x" * (8 << 20) + " -->"
        entry = f"<url><loc>{server.url('/code/cpt4/45378-colonoscopy')}</loc></url>"
        server.routes.update(
            {
                "/robots.txt": robots(f"User-agent: *\nSitemap: {server.url('/big.xml')}\n"),
                "/big.xml": Route(
                    '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                    f'sitemap/0.9">{padding}{entry}</urlset>',
                    content_type="application/xml",
                ),
                "/code/cpt4/45378-colonoscopy": Route(_page("45378")),
            }
        )
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    assert result.summary["parsed"] == 1, result.text


# --- status -----------------------------------------------------------------------------------


def test_status_tells_a_running_run_from_one_that_died(tmp_path: Path) -> None:
    from pipeline.acquire.state import CrawlState, read_status

    state_dir = tmp_path / "state"
    with CrawlState.open(state_dir) as state:
        state.begin_run()
        running = read_status(state_dir)["last_run"]
    died = read_status(state_dir)["last_run"]
    assert running["finished_at"] == "running"  # type: ignore[index]
    assert died["finished_at"].startswith("did not finish")  # type: ignore[index]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_status_reads_a_read_only_state(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    for name in ("state.sqlite3-wal", "state.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    state.chmod(0o555)
    try:
        result = run("status", "--state", str(state), "--out", str(out))
    finally:
        state.chmod(0o755)
    assert result.exit_code == 0, result.stderr
    assert "fetched" in result.stdout


def test_parse_reads_only_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    result = run("parse", "/dev/zero", str(fifo))  # neither hangs nor fills the memory
    assert result.exit_code == 1
    assert result.stderr.count("not a regular file") == 2


def test_a_directory_walk_skips_nothing_in_silence(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    elsewhere = tmp_path / "elsewhere"
    pages.mkdir()
    elsewhere.mkdir()
    first, second = GOLDEN_PAGES[:2]  # their code is in their file names
    shutil.copy(first, pages)
    shutil.copy(second, elsewhere)
    (pages / "linked").symlink_to(elsewhere)  # a symlinked subdirectory is walked
    (pages / "loop").symlink_to(pages)  # ... each real directory once
    (pages / "proc").symlink_to("/proc/self")  # ... never into a pseudo file system
    (pages / "upup").symlink_to("../..")  # ... nor above the directory given
    (pages / "dangling.html").symlink_to(tmp_path / "gone.html")
    os.mkfifo(pages / "pipe.html")
    (pages / "notes.txt").write_text("not a page", encoding="utf-8")  # not a page name: skipped
    result = run("parse", str(pages))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(r["source"]).name for r in records) == [first.name, second.name]
    assert result.exit_code == 1
    assert "dangling.html" in result.stderr
    assert "pipe.html" in result.stderr
    assert "proc: parse: parse_error: a directory not walked" in result.stderr
    assert "upup: parse: parse_error: a directory not walked" in result.stderr
    assert len(result.stderr.splitlines()) == 4


def test_a_run_that_cannot_publish_says_so_in_the_state(tmp_path: Path) -> None:
    options = crawl_options(tmp_path)
    options.out.write_text("a file where the output directory should be", encoding="utf-8")
    with SiteServer(SITE) as server, pytest.raises(WriteError):
        crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    status = run("status", "--state", str(options.state), "--json")
    last = json.loads(status.stdout)["last_run"]
    assert last["exit_code"] == 3  # not "did not finish (killed?)"
    assert last["finished_at"] != "did not finish (killed?)"


def test_progress_counts_each_page_once_against_a_known_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.run.crawl as crawl_module
    from pipeline.run.progress import RunReport

    reports: list[RunReport] = []

    class Recorded(RunReport):
        def __enter__(self) -> Recorded:
            reports.append(super().__enter__())
            return self

    monkeypatch.setattr(crawl_module, "RunReport", Recorded)
    options = crawl_options(tmp_path, max_depth=1, max_retries=0)
    links = "".join(f'<a href="/code/cpt4/{c}-x">{c}</a>' for c in ("45378", "11042", "99999"))
    routes = {"/": Route(f"<html><body>{links}</body></html>"),
              "/code/cpt4/45378-x": Route(_page("45378")),
              "/code/cpt4/11042-x": Route(_page("11042")),
              "/code/cpt4/99999-x": Route("", status=500)}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/")], options, sleep=instant, show_progress=True)
    (report,) = reports
    assert result.exit_code == 1  # the 500 is a failure, in the rejects
    # the seed and three pages fetched (the failing one counted once), two pages built
    assert (report.done("fetch"), report.done("build")) == (4, 2)
    progress = report._progress
    assert progress is not None
    totals = {t.description: (t.completed, t.total) for t in progress.tasks}
    assert totals == {"crawl fetch": (4, 4), "crawl build": (2, 2)}  # never "4/?"


def test_two_pages_with_one_code_leave_a_reject_not_a_silent_loss(tmp_path: Path) -> None:
    first = tmp_path / "a.html"
    second = tmp_path / "b.html"
    page = _page("45378")
    first.write_bytes(page)
    second.write_bytes(page.replace(b"</body>", b"<p>Another site's wording.</p></body>"))
    result = run("ingest", str(first), str(second), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.stderr  # not "all good"
    assert "parsed 1, rejected 1" in result.stderr
    rejects = pl.read_parquet(tmp_path / "out" / "parquet" / "rejects.parquet")
    assert rejects.select("source", "error_kind").rows() == [(str(first), "duplicate_code")]
    assert str(second) in rejects["reason"][0]
    records = pl.read_parquet(tmp_path / "out" / "parquet" / "procedures.parquet")
    assert records["source_url"].to_list() == [str(second)]


def test_a_page_first_seen_as_404_is_a_reject(tmp_path: Path) -> None:
    options = crawl_options(tmp_path, max_depth=1)  # not the pages' own similar codes
    links = '<a href="/code/cpt4/45378-colon">a</a><a href="/code/cpt4/99999-dead">b</a>'
    routes = {"/": Route(f"<html><body>{links}</body></html>"),
              "/code/cpt4/45378-colon": Route(_page("45378"))}  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    rejects = pl.read_parquet(options.out / "parquet" / "rejects.parquet")
    assert rejects.select("error_kind", "http_status").rows() == [("page_gone", 404)]
    assert result.exit_code == 1


def test_parse_of_a_url_does_not_follow_a_redirect_to_another_host() -> None:
    routes = {"/p": Route("", fault=Redirect("http://localhost:1/elsewhere"))}
    with FaultServer(routes) as server:
        result = run("parse", server.url("/p"))
    assert result.exit_code == 1
    assert "redirect_error" in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_a_crawl_as_ctrl_c_does(tmp_path: Path, stop: signal.Signals) -> None:
    links = "".join(f'<a href="/code/cpt4/4537{i}-x">{i}</a>' for i in range(8))
    routes = {"/": Route(f"<html><body>{links}</body></html>")}
    routes |= {f"/code/cpt4/4537{i}-x": Route(_page("45378"), delay=5.0) for i in range(8)}
    out, state = tmp_path / "out", tmp_path / "state"
    with FaultServer(routes) as server:
        crawler = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "crawl", server.url("/"), "--out", str(out),
             "--state", str(state), "--rate", "0", "--no-progress"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while server.count("/code/cpt4/45370-x") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        crawler.send_signal(stop)
        _, stderr = crawler.communicate(timeout=60)
    assert crawler.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert not any((out / ".staging").glob("*")), "the run left its staging behind"
    last = json.loads(run("status", "--state", str(state), "--json").stdout)["last_run"]
    assert last["exit_code"] == 130  # the state says how the run ended


_SIGTERM_DURING_A_STEP = """
import asyncio, os, signal, sys, time

from pipeline.launch import _terminate
from pipeline.run import loop

signal.signal(signal.SIGTERM, _terminate)  # what the command line installs
seen = []

async def main():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        start = time.monotonic()
        while time.monotonic() - start < 0.2:  # Python code inside a task's step
            pass
        seen.append("step finished")
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise

try:
    loop.run(main())
except KeyboardInterrupt:
    print(",".join(seen))
    sys.exit(130)
"""


def test_sigterm_during_a_task_step_cancels_the_task_at_its_next_await() -> None:
    """The handler that raises KeyboardInterrupt would raise it inside the step, leaving a
    task with an exception nobody retrieves (asyncio prints a traceback at exit); under
    loop.run the step finishes, the task is cancelled, then KeyboardInterrupt is raised."""
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_DURING_A_STEP],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert done.stdout.strip() == "step finished,cancelled"
    assert done.stderr == ""


def test_a_bad_environment_variable_is_blamed_on_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text("concurrency = 4\n", encoding="utf-8")
    monkeypatch.setenv("PIPELINE_RATE", "fast")
    result = run("ingest", str(GOLDEN_PAGES[0]), "--config", str(config), "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "$PIPELINE_RATE" in result.stderr
    assert str(config) not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIPELINE_REFRESH_AFTER", "900000d"),  # due dates past year 9999
        ("PIPELINE_REFRESH_AFTER", "99999999999d"),  # past timedelta's own range
        ("PIPELINE_USER_AGENT", "caf\u00e9-bot/1.0"),  # not encodable in a header
        ("PIPELINE_USER_AGENT", "bot/1.0\r\nX-Injected: 1"),  # would forge a header
        ("PIPELINE_RATE", "1e-300"),  # the pacer would sleep for ages
        ("PIPELINE_RATE", "inf"),
        ("PIPELINE_FOLLOW", "not json"),
    ],
)
def test_an_impossible_setting_is_a_usage_error_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    state = tmp_path / "state"
    result = run("crawl", "http://127.0.0.1:9/", "--state", str(state), "--out", str(tmp_path))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: bad value"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not state.exists(), "a bad setting must stop the run before it touches the state"


@pytest.mark.parametrize("variable", ["PIPELINE_OUT", "PIPELINE_STATE"])
def test_an_empty_directory_setting_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "")  # Path("") is "." : the current directory
    result = run("crawl", "http://127.0.0.1:9/")
    assert result.exit_code == 2, result.stderr
    assert "must name a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--out", "--state"])
def test_an_empty_directory_option_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("crawl", "http://127.0.0.1:9/", option, "")
    assert result.exit_code == 2, result.stderr
    assert "must name a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_archive_without_its_state_is_exit_3_for_every_command(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    for args in (["reparse", "--out", str(out)], ["status"]):
        result = run(*args, "--state", str(state))
        assert result.exit_code == 3, (args, result.stderr)
        assert "raw archive but no state database" in result.stderr


def test_a_deleted_archive_is_exit_3_before_reparse_publishes(tmp_path: Path) -> None:
    """`rm -rf STATE/archive`: a rebuild would turn every good row into a raw_page_lost
    reject and exit 1; it stops before publishing, exit 3, the tables as they were."""
    out, state = _demo_crawl(tmp_path)
    before = _table(out, "procedures")
    shutil.rmtree(state / "archive")
    result = run("reparse", "--out", str(out), "--state", str(state))
    assert result.exit_code == 3, result.stderr
    assert "raw archive" in result.stderr
    assert "missing or empty" in result.stderr
    assert _table(out, "procedures").equals(before)


def test_a_tilde_in_a_quoted_path_is_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run("ingest", str(GOLDEN_PAGES[0]), "--out", "~/tables")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "tables" / "parquet" / "procedures.parquet").exists()
    assert not Path("~").exists()


def test_a_config_that_is_not_a_regular_file_says_so() -> None:
    result = run("ingest", str(GOLDEN_PAGES[0]), "--config", "/dev/null")
    assert result.exit_code == 2
    assert "is not a regular file" in result.stderr


_INTERRUPT_THE_IMPORT = """
import sys

class Interrupt:  # a Ctrl-C that lands while the command line is still being imported
    def find_spec(self, name, path=None, target=None):
        if name == "pipeline.cli":
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
sys.argv = ["pipeline", "status"]
from pipeline.launch import main
main()
"""


def test_ctrl_c_during_start_up_is_one_line_and_130() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_THE_IMPORT],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 130
    assert done.stderr == "error: interrupted; nothing was written\n"


def test_ctrl_c_while_click_reads_the_options_is_130_not_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import run as run_cli

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("click.core.Command.parse_args", interrupted)
    with pytest.raises(SystemExit) as exited:
        run_cli(["status"])
    assert exited.value.code == 130  # click alone says "Aborted!" and exits 1
    # (click ends the terminal's "^C" line first)
    assert capsys.readouterr().err.strip() == "error: interrupted; nothing was written"


@pytest.mark.parametrize(
    "args",
    [
        ["crawl", "--bogus", "--log-format", "json"],
        ["crawl", "http://127.0.0.1:9/", "--rate", "abc", "--log-format=json"],
        ["parse", "--log-format", "json"],  # a missing argument
    ],
)
def test_click_usage_errors_are_json_when_json_is_asked_for(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import run as run_cli

    with pytest.raises(SystemExit) as exited:
        run_cli(args)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    error = json.loads(line)
    assert (error["event"], error["exit_code"]) == ("error", 2)


def test_a_reader_that_closes_the_pipe_is_not_an_internal_error() -> None:
    pages = str(SITE / "code" / "cpt4")
    reader = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "parse", pages, pages, pages],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.readline()  # `| head -1`
    reader.stdout.close()
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141  # as a process killed by SIGPIPE
    assert "internal error" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (OSError(errno.EROFS, "Read-only file system", "out/x"), 3),
        (OSError(errno.EACCES, "Permission denied", "out/x"), 3),
        (OSError(errno.ENOSPC, "No space left on device", "out/x"), 3),
        (OSError(errno.EBADF, "Bad file descriptor"), 4),
        (WriteError("cannot publish"), 3),
        (KeyboardInterrupt(), 130),
        (ValueError("a bug"), 4),
    ],
)
def test_exit_codes_of_the_errors_a_run_can_end_with(error: BaseException, code: int) -> None:
    from pipeline.errors import exit_code_of

    assert exit_code_of(error) == code


def test_a_full_stderr_does_not_change_the_exit_code(tmp_path: Path) -> None:
    """A log on a full disk (`2>>crawl.log`): the lines are lost, the run's code is not."""
    with SiteServer(SITE) as server, open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "crawl", server.origin + "/", "--rate", "0",
             "--out", str(tmp_path / "out"), "--state", str(tmp_path / "state")],
            check=False, stdout=subprocess.DEVNULL, stderr=full, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0
    assert pl.read_parquet(tmp_path / "out" / "parquet" / "procedures.parquet").height == 24


def test_parse_with_stdout_closed_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "parse", str(GOLDEN_PAGES[0])],
        check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "stdout is closed" in done.stderr


def test_parse_takes_its_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_WORKERS", "abc")
    result = run("parse", str(GOLDEN_PAGES[0]))
    assert result.exit_code == 2
    assert "$PIPELINE_WORKERS" in result.stderr


def test_the_entry_point_imports_neither_the_parser_nor_the_models() -> None:
    probe = "import sys, pipeline.launch; print(sorted(m for m in sys.modules if 'pipeline.' in m))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == ["pipeline.errors", "pipeline.launch",
                                                          "pipeline.version"]  # fmt: skip


def test_ctrl_c_in_parse_speaks_of_nothing_written(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.run.runner.parse_inputs", interrupted)
    result = run("parse", str(GOLDEN_PAGES[0]))
    assert result.exit_code == 130
    assert "nothing was written" in result.stderr
    assert "state" not in result.stderr


def test_json_logs_are_json_with_their_fields(tmp_path: Path) -> None:
    result = run("demo", "--out", str(tmp_path / "out"), "--port", "0", "--log-format", "json")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert {"serving", "run_finished", "summary"} <= {e.get("event") for e in events}
    url = f"http://127.0.0.1:{_closed_port()}/"
    down = run("crawl", url, "--state", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
               "--max-retries", "0", "--log-format", "json")  # fmt: skip
    failed = [json.loads(line) for line in down.stderr.splitlines()]
    fetch = next(e for e in failed if e.get("event") == "fetch_failed")
    assert (fetch["url"], fetch["kind"], fetch["transient"]) == (url, "robots_unreachable", True)
    # The one error line of a run that fails is JSON too, with its exit code.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "state.sqlite3").write_bytes(b"not a database " * 100)
    refused = run("crawl", url, "--state", str(damaged), "--out", str(tmp_path / "o"),
                  "--log-format", "json")  # fmt: skip
    assert refused.exit_code == 3
    (line,) = refused.stderr.splitlines()
    error = json.loads(line)
    assert (error["event"], error["exit_code"]) == ("error", 3)
    assert str(damaged) in error["message"]


def test_reparse_keeps_the_pages_ingest_added(tmp_path: Path) -> None:
    out, state = _demo_crawl(tmp_path)
    extra = tmp_path / "extra.html"
    extra.write_text(
        "<html><body><h1>Knee arthroscopy</h1><p>CPT code: 29870</p><h2>Overview</h2>"
        "<p>A look inside the knee.</p><h2>Risks</h2><ul><li>Infection</li></ul></body></html>",
        encoding="utf-8",
    )
    assert run("ingest", str(extra), "--out", str(out), "--no-progress").exit_code == 0
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    assert run("ingest", str(empty), "--out", str(out), "--no-progress").exit_code == 1
    rejected = pl.read_parquet(out / "parquet" / "rejects.parquet")
    assert rejected.filter(pl.col("source") == str(empty)).height == 1
    before = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert "29870" in before["code"].to_list()
    result = run("reparse", "--state", str(state), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.stderr
    after = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert sorted(after["code"].to_list()) == sorted(before["code"].to_list())
    risks = pl.read_parquet(out / "parquet" / "risks.parquet")
    assert "29870" in risks["code"].to_list()  # its child rows stay with it
    # ... and so does the reject of the file ingest refused: reparse only owns the state's pages
    rejects = pl.read_parquet(out / "parquet" / "rejects.parquet")
    assert rejects.filter(pl.col("source") == str(empty)).height == 1
