"""Every command through the CLI runner: happy paths, exit codes, error lines, config file."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from pipeline.acquire.state import CrawlState
from pipeline.cli import cli
from pipeline.demo.server import SiteServer
from tests.conftest import REJECTS, ROOT, SITE

SEED_PAGE = next(SITE.glob("code/cpt4/22212-*.html"))


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert "Traceback" not in (result.stderr or "")


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["parse", "ingest", "crawl", "reparse", "status", "demo", "schema"]
)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


# --- parse ------------------------------------------------------------------------------------


def test_parse_file_prints_one_json_record() -> None:
    result = run("parse", str(SEED_PAGE))
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["code"] == "22212"
    assert record["code_system"] == "CPT"


def test_parse_directory_reports_rejects_and_exits_1() -> None:
    result = run("parse", str(SEED_PAGE), str(REJECTS))
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 1
    errors = result.stderr.strip().splitlines()
    assert any("empty.html" in line and "empty_page" in line for line in errors)
    assert any("list-A.html" in line and "listing" in line for line in errors)
    no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["parse", "does/not/exist.html"], "no such file"),
        (["parse", "ftp://example.org/x"], "scheme is not supported"),
    ],
)
def test_parse_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result)


@pytest.mark.parametrize("command", ["parse", "ingest"])
def test_a_directory_without_pages_is_a_usage_error_not_an_empty_success(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "notes.txt").write_text("no pages here", encoding="utf-8")
    args = [command, str(tmp_path)] + (
        ["--out", str(tmp_path / "out")] if command == "ingest" else []
    )
    result = run(*args)
    assert result.exit_code == 2
    assert "no page files" in result.stderr
    assert not (tmp_path / "out").exists()


def test_parse_saved_page_with_its_url(tmp_path: Path) -> None:
    """A clinic page that names its code only in its address: ``--url`` supplies it."""
    page = tmp_path / "saved.html"
    page.write_text(
        "<html><body><h1>Knee arthroscopy</h1><h2>What is it?</h2><p>A camera looks inside "
        "the knee.</p><h2>Risks</h2><ul><li>Infection</li></ul></body></html>",
        "utf-8",
    )
    without = run("parse", str(page))
    assert without.exit_code == 1
    assert "missing_code" in without.stderr or "not_a_procedure" in without.stderr
    url = "https://clinic.example/procedures/cpt-29881-knee-arthroscopy"
    result = run("parse", "--url", url, str(page))
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["code"], record["code_system"], record["source"]) == ("29881", "CPT", url)
    assert record["risks"] == ["Infection"]


@pytest.mark.parametrize("extra", [["second"], ["dir"], []])
def test_parse_url_takes_exactly_one_file(tmp_path: Path, extra: list[str]) -> None:
    page = tmp_path / "saved.html"
    page.write_text("<h1>x</h1>", "utf-8")
    args = {"second": [str(page), str(page)], "dir": [str(tmp_path)], "": []}
    inputs = args[extra[0]] if extra else ["https://example.org/a"]
    result = run("parse", "--url", "https://example.org/cpt-29881", *inputs)
    assert result.exit_code == 2
    assert "--url" in result.stderr
    no_traceback(result)


def test_parse_url_from_loopback_server() -> None:
    with SiteServer(SITE) as server:
        url = server.origin + "/code/cpt4/" + SEED_PAGE.stem
        result = run("parse", url)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == url


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_merges_into_tables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("ingest", str(SEED_PAGE), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.stderr
    procedures = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert procedures["code"].to_list() == ["22212"]
    other = next(SITE.glob("code/hcpcs/G0105-*.html"))
    result = run("ingest", str(other), str(REJECTS / "empty.html"), "--out", str(out))
    assert result.exit_code == 1
    procedures = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert sorted(procedures["code"].to_list()) == ["22212", "G0105"]
    rejects = pl.read_parquet(out / "parquet" / "rejects.parquet")
    assert rejects.height == 1
    assert (out / "csv" / "procedures.csv").exists()


def _page(code: str, risks: bool) -> str:
    risk = "<h2>Possible complications</h2><ul><li>Bleeding</li><li>Infection</li></ul>"
    return (
        f"<html><head><title>Knee arthroscopy</title></head><body><main>"
        f"<h1>Knee arthroscopy</h1><p>CPT code: {code}</p>"
        "<h2>Overview</h2><p>A camera is put into the knee through small cuts.</p>"
        "<h2>How it is done</h2><ol><li>You lie on your back.</li><li>The knee is numbed."
        f"</li></ol>{risk if risks else ''}<h2>Our awards</h2><p>Best clinic 2024.</p>"
        "</main></body></html>"
    )


def test_a_field_that_stops_filling_is_flagged(tmp_path: Path) -> None:
    """A site that changes its layout: the next run warns, the quality table flags it."""
    out = tmp_path / "out"
    for run_no, risks in ((1, True), (2, False)):
        pages = tmp_path / f"run{run_no}"
        pages.mkdir()
        for i in range(12):
            (pages / f"p{i}.html").write_text(_page(f"{29870 + i}", risks), "utf-8")
        result = run("ingest", str(pages), "--out", str(out), "--no-progress")
        assert result.exit_code == 0, result.stderr
    assert "WARNING fill rate fell more than 20 points: risks filled in 0% of 12 records" in (
        result.stderr
    )
    assert "headings left unclassified (kept in other_sections): 12 of 36" in result.stderr
    quality = pl.read_parquet(out / "parquet" / "quality.parquet")
    last = quality.filter(pl.col("run_id") == quality["run_id"][-1])
    assert last.filter(pl.col("dropped"))["field"].to_list() == ["risks"]
    risks = last.filter(pl.col("field") == "risks").row(0, named=True)
    assert (risks["fill_rate"], risks["previous_fill_rate"]) == (0.0, 1.0)
    others = pl.read_parquet(out / "parquet" / "other_sections.parquet")
    assert set(others["heading"]) == {"Our awards"}
    runs = pl.read_parquet(out / "parquet" / "runs.parquet")
    assert runs["unclassified_headings"].to_list() == [12, 12]


def test_output_directory_not_writable_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        out = blocker / "out"
    else:  # pragma: no cover - CI runs as root here
        out = tmp_path / "ro"
        out.mkdir(mode=0o500)
    result = run("ingest", str(SEED_PAGE), "--out", str(out))
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(out) in result.stderr or str(out.parent) in result.stderr
    no_traceback(result)


# --- crawl, status, reparse -----------------------------------------------------------------


def test_crawl_status_reparse(tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    with SiteServer(SITE) as server:
        result = run(
            "crawl", server.origin + "/", "--out", str(out), "--state", str(state),
            "--rate", "0", "--log-format", "json",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["parsed"] > 20
    first = pl.read_parquet(out / "parquet" / "procedures.parquet")

    assert summary["extraction"]["headings"] > summary["parsed"]
    assert summary["fill_rates"]["steps"] == 1.0
    assert summary["flagged_fields"] == []

    status = run("status", "--state", str(state), "--out", str(out), "--json")
    assert status.exit_code == 0
    info = json.loads(status.stdout)
    assert info["pages"]["fetched"] >= summary["parsed"]
    assert info["last_run"]["exit_code"] == 0
    quality = info["extraction_quality"]
    assert quality["records"] == summary["parsed"]
    assert quality["fill_rates"]["steps"] == 1.0
    assert quality["unclassified_headings"] == summary["extraction"]["unclassified_headings"]
    text = run("status", "--state", str(state), "--out", str(out))
    assert "extraction_quality:" in text.stdout
    assert "flagged_fields: -" in text.stdout

    # The server is gone: reparse works from the archive alone.
    again = run("reparse", "--out", str(out), "--state", str(state))
    assert again.exit_code == 0, again.stderr
    second = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert sorted(second["code"].to_list()) == sorted(first["code"].to_list())

    # A damaged quality table costs its own block of the status, not the whole status.
    quality_file = (out / "parquet" / "quality.parquet").resolve()
    quality_file.write_bytes(b"not parquet")
    damaged = run("status", "--state", str(state), "--out", str(out), "--json")
    assert damaged.exit_code == 0, damaged.stderr
    info = json.loads(damaged.stdout)
    assert "quality.parquet" in info["extraction_quality"]["error"]
    assert info["last_run"]["exit_code"] == 0


def test_crawl_refuses_when_state_is_locked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with CrawlState.open(state):
        result = run("crawl", "http://127.0.0.1:9/", "--state", str(state))
    assert result.exit_code == 3
    assert "another run holds the lock" in result.stderr
    no_traceback(result)


def test_state_from_a_newer_version_exits_3(tmp_path: Path) -> None:
    state = tmp_path / "state"
    CrawlState.open(state).close()
    with sqlite3.connect(state / "state.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 999")
    result = run("crawl", "http://127.0.0.1:9/", "--state", str(state))
    assert result.exit_code == 3
    assert "upgrade the pipeline" in result.stderr
    status = run("status", "--state", str(state))
    assert status.exit_code == 3


def test_status_and_reparse_without_state_exit_2(tmp_path: Path) -> None:
    for command in ("status", "reparse"):
        result = run(command, "--state", str(tmp_path / "none"))
        assert result.exit_code == 2
        assert "pipeline crawl" in result.stderr


def test_crawl_bad_seed_exits_2(tmp_path: Path) -> None:
    result = run("crawl", "file:///etc/passwd", "--state", str(tmp_path / "s"))
    assert result.exit_code == 2
    assert "not an http(s) URL" in result.stderr


# --- config -----------------------------------------------------------------------------------


def test_config_file_sets_options(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    out = tmp_path / "from-config"
    config.write_text(f'out = "{out}"\n', encoding="utf-8")
    result = run("ingest", str(SEED_PAGE), "--config", str(config))
    assert result.exit_code == 0, result.stderr
    assert (out / "parquet" / "procedures.parquet").exists()


def test_option_beats_environment_beats_config(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(f'out = "{tmp_path / "config"}"\n', encoding="utf-8")
    env = {"PIPELINE_OUT": str(tmp_path / "env")}
    run("ingest", str(SEED_PAGE), "--config", str(config), env=env)
    assert (tmp_path / "env" / "parquet").exists()
    assert not (tmp_path / "config").exists()
    run("ingest", str(SEED_PAGE), "--config", str(config), "--out", str(tmp_path / "opt"), env=env)
    assert (tmp_path / "opt" / "parquet").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rate = -1\n", "bad value for rate"),
        ("concurrency = 'many'\n", "bad value for concurrency"),
        ("nonsense = 1\n", "bad value for nonsense"),
        ("rate = [\n", "cannot read config file"),
        ('follow = ["(unclosed"]\n', "bad value for follow"),
        ("workers = 0\n", "bad value for workers"),
        ("refresh_after = '-1d'\n", "bad value for refresh_after"),
    ],
)
def test_bad_config_exits_2(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(content, encoding="utf-8")
    result = run("ingest", str(SEED_PAGE), "--config", str(config), "--out", str(tmp_path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run("ingest", str(SEED_PAGE), "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# --- demo and schema --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _state_urls(state: Path) -> int:
    with sqlite3.connect(state / "state.sqlite3") as db:
        count: int = db.execute("SELECT count(*) FROM pages").fetchone()[0]
        return count


def test_demo_writes_parquet_and_csv_and_runs_again_incrementally(tmp_path: Path) -> None:
    out = tmp_path / "output"
    port = str(_free_port())
    result = run("demo", "--out", str(out), "--port", port)
    assert result.exit_code == 0, result.stderr
    assert "parsed 24" in result.stderr
    for table in ("procedures", "steps", "similar_codes", "rejects", "runs"):
        assert (out / "parquet" / f"{table}.parquet").exists()
        assert (out / "csv" / f"{table}.csv").exists()
    known = _state_urls(out / ".state")
    again = run("demo", "--out", str(out), "--port", port)
    assert again.exit_code == 0, again.stderr
    # Same URLs (same port): nothing is due again within the refresh interval, and the state
    # does not pile up the URLs of an earlier origin.
    assert "parsed 0," in again.stderr, again.stderr
    assert "fetched" not in again.stderr
    assert _state_urls(out / ".state") == known
    assert pl.read_parquet(out / "parquet" / "procedures.parquet").height == 24


def test_demo_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = run("demo", "--out", str(tmp_path / "o"), "--port", port)
    assert result.exit_code == 3
    assert "--port" in result.stderr
    no_traceback(result)


def test_schema_command_writes_the_published_contract(tmp_path: Path) -> None:
    result = run("schema", "--dir", str(tmp_path))
    assert result.exit_code == 0
    for name in ("procedure.schema.json", "tables.json"):
        assert (tmp_path / name).read_text() == (ROOT / "schemas" / name).read_text()


def test_status_works_while_a_run_holds_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with CrawlState.open(state) as held:
        held.add_discovered([("http://127.0.0.1:9/code/cpt4/22212-x", "procedure", 0, None, None)])
        result = run("status", "--state", str(state), "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["pages"]["pending"] == 1
    assert info["due_now"] == 1
