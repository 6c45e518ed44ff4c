"""End-to-end crawls against real HTTP servers on 127.0.0.1.

The fixture site is served by :class:`pipeline.demo.server.SiteServer`; faults come from
:class:`tests.faultserver.FaultServer`. Sleeps between retries are made instant by injection;
everything else (sockets, HTTP, SQLite, Parquet) is real.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from pipeline.demo.server import SiteServer
from pipeline.run.crawl import CrawlOptions, crawl
from tests.conftest import GOLDEN_PAGES, SITE, crawl_options, instant
from tests.faultserver import (
    Drop,
    FaultServer,
    GzipBomb,
    Redirect,
    Reset,
    Route,
    Stall,
    Status,
    Truncate,
    robots,
)

FIXTURE_PAGES = GOLDEN_PAGES


def _options(root: Path, **overrides: object) -> CrawlOptions:
    return crawl_options(
        root, **{"concurrency": 8, "per_host_concurrency": 8, "max_retries": 3, **overrides}
    )


def _table(options: CrawlOptions, name: str) -> pl.DataFrame:
    return pl.read_parquet(options.out / "parquet" / f"{name}.parquet")


def _page(code: str) -> bytes:
    return next(p for p in FIXTURE_PAGES if p.name.startswith(code + "-")).read_bytes()


def test_crawl_fixture_site_end_to_end(tmp_path: Path) -> None:
    options = _options(tmp_path)
    with SiteServer(SITE) as server:
        result = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    procedures = _table(options, "procedures")
    codes = set(procedures["code"].to_list())
    expected = {p.name.split("-")[0].upper() for p in FIXTURE_PAGES}
    assert expected <= codes, expected - codes
    assert procedures.select(["code_system", "code"]).is_unique().all()
    assert result.summary["parsed"] == len(codes)
    steps = _table(options, "steps")
    assert steps.height > 0


def test_second_run_is_conditional_and_changes_nothing(tmp_path: Path) -> None:
    options = _options(tmp_path, refresh_after=timedelta(0))
    with SiteServer(SITE) as server:
        crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
        first = (options.out / "parquet" / "procedures.parquet").read_bytes()
        again = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    assert again.summary["unchanged"] >= len(FIXTURE_PAGES)
    assert again.summary["parsed"] == 0
    assert (options.out / "parquet" / "procedures.parquet").read_bytes() == first


def _fault_routes() -> dict[str, Route]:
    good = {
        "/code/cpt4/22212-osteotomy": Route(_page("22212"), faults=[Status(503), Status(503)]),
        "/code/cpt4/45378-colonoscopy": Route(_page("45378"), faults=[Status(429, retry_after=3)]),
        "/code/hcpcs/G0105-colorectal": Route(_page("G0105"), faults=[Reset(after=100)]),
        "/code/hcpcs/G0202-screening": Route(_page("G0202"), faults=[Truncate(missing=500)]),
        "/code/cpt4/0042T-cerebral": Route(_page("0042T"), faults=[Drop()]),
    }
    bad = {
        "/code/cpt4/66984-bomb": Route(_page("66984"), fault=GzipBomb(size=64 << 20)),
        "/code/cpt4/20610-stall": Route(_page("20610"), fault=Stall(30.0)),
        "/code/cpt4/31231-loop": Route("", fault=Redirect("/code/cpt4/31231-loop")),
        "/code/cpt4/1159F-away": Route("", fault=Redirect("http://example.invalid/x")),
        "/code/hcpcs/G0206-always503": Route(_page("G0206"), fault=Status(503)),
        "/code/icd10cm/Z51.11-private": Route(_page("Z51.11")),
    }
    links = "".join(f'<a href="{path}">{path}</a>' for path in [*good, *bad])
    listing = f"<html><body><h1>Codes</h1>{links}</body></html>"
    routes: dict[str, Route] = {
        "/": Route(listing),
        "/robots.txt": robots("User-agent: *\nDisallow: /code/icd10cm/Z51.11-private\n"),
        **good,
        **bad,
    }
    return routes


def test_crawl_survives_every_fault(tmp_path: Path) -> None:
    # Depth 1: the listing's links, not the pages' own similar codes (not served here: each
    # would be a page_gone reject).
    options = _options(tmp_path, timeout=0.5, max_retries=2, max_depth=1)
    with FaultServer(_fault_routes()) as server:
        # A sitemap entry of another shape (an old URL) that redirects to the page: fetched
        # because a sitemap lists it, whatever its shape, and kept under the URL listed.
        old = server.url("/old/knee-replacement.php")
        server.routes["/robots.txt"] = robots(
            "User-agent: *\nDisallow: /code/icd10cm/Z51.11-private\n"
            f"Sitemap: {server.url('/sitemap.xml')}\n"
        )
        server.routes["/sitemap.xml"] = Route(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{old}</loc></url></urlset>",
            content_type="application/xml",
        )
        server.routes["/old/knee-replacement.php"] = Route(
            "", fault=Redirect("/code/cpt4/27447-arthroplasty", status=301)
        )
        server.routes["/code/cpt4/27447-arthroplasty"] = Route(_page("27447"))
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    procedures = _table(options, "procedures")
    assert set(procedures["code"].to_list()) == {
        "22212", "45378", "G0105", "G0202", "0042T", "27447"
    }  # fmt: skip
    moved = procedures.filter(pl.col("code") == "27447")
    assert moved["source_url"].to_list() == [old]
    rejects = _table(options, "rejects")
    by_path = {
        source.rsplit("/", 1)[-1]: kind
        for source, kind in zip(rejects["source"], rejects["error_kind"], strict=True)
        if kind != "page_gone"
    }
    # The moved page's own similar codes (depth 1 from its sitemap entry) are not served: each
    # is a reject of its own, not a silent loss.
    assert rejects.filter(pl.col("error_kind") == "page_gone").height == 3
    assert by_path == {
        "66984-bomb": "response_too_large",
        "20610-stall": "fetch_timeout",
        "31231-loop": "redirect_error",
        "1159F-away": "redirect_error",
        "G0206-always503": "retryable_status",
        "Z51.11-private": "robots_disallowed",
    }
    assert result.exit_code == 1


def test_second_run_refuses_while_locked(tmp_path: Path) -> None:
    from pipeline.acquire.state import CrawlState
    from pipeline.errors import StateLocked

    options = _options(tmp_path)
    with CrawlState.open(options.state), pytest.raises(StateLocked):
        crawl(["http://127.0.0.1:9/"], options, sleep=instant, show_progress=False)
