"""Smoke test of ``python -m benchmarks.bench``: it runs end to end on a tiny corpus.

Nothing here is timed: the figures of a 50-page run mean nothing, only that every part of the
benchmark (in process, whole process, ingest, crawl, overhead, stages, profile) still works and
the report is the Markdown the docs paste.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench
from tests.synth import generate_page


def test_bench_runs_end_to_end_on_50_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.md"
    argv = ["--sizes", "50", "--sample", "50", "--repeat", "1", "--parse-pages", "50"]
    argv += ["--crawl-pages", "50", "--crawl-repeat", "1", "--skip", "scrapy", "--profile"]
    argv += ["--workdir", str(tmp_path / "work"), "--markdown", str(report)]

    assert bench.main(argv) == 0

    out = capsys.readouterr().out
    assert out == report.read_text(encoding="utf-8")
    for heading in (
        "#### Headline (ratios)",
        "#### In process: parse + normalize + validate (50 pages",
        "#### Whole process over 50 page files",
        "#### Ingest into the tables",
        "#### Crawl of a loopback site",
        "#### Crawl overhead of the raw archive and the state database",
        "#### Where `parse_page` spends its time",
        "#### cProfile of `parse_page`",
    ):
        assert heading in out
    assert "| parse + normalize + validate, pages/s per core |" in out
    assert "| 50 | 50 |" in out  # ingest: 50 pages, 50 written
    assert "identical to `parse_page`'s in 100.0%" in out
    assert "| selectolax |" in out
    assert "| CPU |" in out


def test_bs4_yardstick_extracts_the_same_fields_as_the_parser() -> None:
    from pipeline.extract.page import parse_page

    for index in range(10):  # every markup style of the generator
        page = generate_page(index, seed=3)
        record = parse_page(page.html, page.url_path).model_dump()
        theirs = bench.bs4_extract(page.html, page.url_path)
        for key in bench.AGREEMENT_FIELDS:
            assert theirs[key] == record[key], (page.style, key)
        assert bench.floor_extract(page.html)


def test_sizes_option_is_validated() -> None:
    parser = bench.build_parser()
    assert parser.parse_args(["--sizes", "10000,1000,1_000"]).sizes == [1000, 10000]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "0"])
