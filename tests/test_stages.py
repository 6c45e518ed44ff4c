"""The two stages: acquire (fetch, archive, state) and build (extract on every core, load, publish).

What is checked here: the build engine gives the same outcomes in a pool as in process, in
order; a crawl of a site whose URLs look nothing like the reference site's follows the rules its
config sets; a new parser version rebuilds from the archive without fetching; a run killed
between the stages loses nothing; a listing page found by its content is navigation, not a
reject; ``pipeline status`` counts rejects by the same reasons as the run summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from pipeline.acquire.archive import RawArchive
from pipeline.acquire.profile import SiteProfile
from pipeline.acquire.state import read_status
from pipeline.cli import cli
from pipeline.demo.server import SiteServer
from pipeline.errors import NotAProcedurePage, ParseError, PipelineError
from pipeline.extract.page import Extraction
from pipeline.run import crawl as crawl_module
from pipeline.run.build import Job, build_all, build_one
from pipeline.run.crawl import CrawlOptions, crawl
from pipeline.run.runner import iter_parsed
from tests.conftest import GOLDEN_PAGES, REJECTS, SITE, crawl_options, instant
from tests.faultserver import FaultServer, Route, robots
from tests.synth import generate_page


def _procedures(options: CrawlOptions) -> pl.DataFrame:
    return pl.read_parquet(options.out / "parquet" / "procedures.parquet")


def _signature(outcome: Extraction | PipelineError) -> object:
    if isinstance(outcome, Extraction):
        return outcome.record.model_dump(mode="json"), outcome.report
    return type(outcome).__name__, outcome.reason, outcome.source, getattr(outcome, "page_kind", 0)


# --- the build engine --------------------------------------------------------------------------


def test_a_pool_gives_the_outcomes_of_one_process_in_order() -> None:
    rejects = [p for p in REJECTS.iterdir() if p.suffix in (".html", ".htm", ".txt", ".bin")]
    jobs = [Job("/" + p.relative_to(SITE).with_suffix("").as_posix(), path=str(p))
            for p in GOLDEN_PAGES]  # fmt: skip
    jobs += [Job(str(p), path=str(p)) for p in rejects]
    jobs.append(Job("missing.html", path="/nonexistent/missing.html"))
    inline = list(build_all(jobs, workers=1))
    pooled = list(build_all(jobs, workers=2, pool_min=1))
    assert [job for job, _ in pooled] == jobs
    assert [_signature(r.outcome) for _, r in pooled] == [_signature(r.outcome) for _, r in inline]
    assert [r.digest for _, r in pooled] == [r.digest for _, r in inline]
    kinds = {type(r.outcome) for _, r in pooled}
    assert Extraction in kinds
    assert any(issubclass(kind, PipelineError) for kind in kinds)


def test_a_missing_archive_object_is_a_typed_reject(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    result = build_one(Job("https://h/p", digest="0" * 64, archive=str(archive.root)))
    assert isinstance(result.outcome, ParseError)
    assert "fetched again" in result.outcome.reason
    assert result.outcome.source == "https://h/p"


@pytest.mark.slow
def test_pipeline_parse_on_every_core_equals_one_core(tmp_path: Path) -> None:
    for index in range(300):
        page = generate_page(index, 7)
        (tmp_path / f"{index:04d}.html").write_bytes(page.html)
    inputs = [str(tmp_path)]
    one = [(p.source, _signature(p.outcome)) for p in iter_parsed(inputs, workers=1)]
    every = [(p.source, _signature(p.outcome)) for p in iter_parsed(inputs, workers=2)]
    assert every == one
    assert len(one) == 300


# --- a site of another layout -------------------------------------------------------------------


def _other_page(title: str, code: str) -> str:
    return f"""<html><head><title>{title} | Lakeside Health</title></head><body>
<nav><a href="/health/a-z/">A-Z</a> <a href="/about">About us</a></nav>
<main><h1>{title}</h1><p class="code">CPT code: {code}</p>
<h2>What is it?</h2><p>A plain-language description of the {title.lower()}.</p>
<h2>How long does it take?</h2><p>About 45 minutes.</p>
<h2>Possible risks</h2><ul><li>Infection</li><li>Bleeding</li></ul>
<p><a href="/health/procedures/print/{code}">Print this page</a></p>
</main></body></html>"""


OTHER_PAGES = {
    "/health/procedures/knee-arthroscopy": ("Knee arthroscopy", "29881"),
    "/health/procedures/colonoscopy": ("Colonoscopy", "45378"),
    "/health/procedures/cataract-surgery": ("Cataract surgery", "66984"),
}


def _other_site() -> dict[str, Route]:
    links = "".join(f'<li><a href="{path}">{t}</a></li>' for path, (t, _) in OTHER_PAGES.items())
    routes = {
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/health/a-z": Route(f"<html><body><h1>A-Z</h1><ul>{links}</ul></body></html>"),
        "/about": Route("<html><body><h1>About us</h1><p>We are a hospital.</p></body></html>"),
    }
    for path, (title, code) in OTHER_PAGES.items():
        routes[path] = Route(_other_page(title, code))
        routes[f"/health/procedures/print/{code}"] = Route(_other_page(title, code))
    return routes


def test_a_site_of_another_layout_is_crawled_by_the_rules_of_its_config(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(
        'follow = ["/health/procedures/", "/health/a-z/"]\n'
        'deny = ["/print/"]\n'
        'listing = ["/health/a-z/"]\n'
    )
    out, state = tmp_path / "out", tmp_path / "state"
    with FaultServer(_other_site()) as server:
        result = CliRunner().invoke(
            cli,
            ["crawl", server.url("/health/a-z/"), "--config", str(config), "--out", str(out),
             "--state", str(state), "--rate", "0", "--no-progress"],
            catch_exceptions=False,
        )  # fmt: skip
        requested = {request.path for request in server.requests}
    assert result.exit_code == 0, result.stderr
    table = pl.read_parquet(out / "parquet" / "procedures.parquet")
    assert sorted(table["code"].to_list()) == ["29881", "45378", "66984"]
    assert set(table["source_url"].to_list()) == {server.url(p) for p in OTHER_PAGES}
    # Links outside the rules are never requested: the denied print views, the about page.
    assert not any("/print/" in path for path in requested)
    assert "/about" not in requested


def test_the_default_rules_do_not_follow_another_sites_links(tmp_path: Path) -> None:
    options = crawl_options(tmp_path)
    with FaultServer(_other_site()) as server:
        result = crawl([server.url("/health/a-z/")], options, sleep=instant, show_progress=False)
    # Nothing matched the reference layout: the seed was fetched as navigation, nothing else.
    assert result.summary["parsed"] == 0
    assert result.summary["fetched"] == 1


# --- stages over time ---------------------------------------------------------------------------


def test_a_new_parser_version_rebuilds_from_the_archive_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = crawl_options(tmp_path)
    with SiteServer(SITE) as server:
        first = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
        assert first.summary["parsed"] == 24
        same = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
        assert (same.summary["fetched"], same.summary["parsed"]) == (0, 0)
        monkeypatch.setattr(crawl_module, "PARSER_VERSION", "next")
        newer = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    assert (newer.summary["fetched"], newer.summary["parsed"]) == (0, 24)
    assert set(_procedures(options)["parser_version"].to_list()) == {"next"}


def test_a_run_killed_between_the_stages_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = crawl_options(tmp_path)
    real_build = crawl_module._build

    def killed(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt  # stands for a SIGKILL after the last fetch, before the build

    with SiteServer(SITE) as server:
        monkeypatch.setattr(crawl_module, "_build", killed)
        with pytest.raises(KeyboardInterrupt):
            crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
        assert not (options.out / "parquet" / "procedures.parquet").exists()
        monkeypatch.setattr(crawl_module, "_build", real_build)
        again = crawl([server.origin + "/"], options, sleep=instant, show_progress=False)
    # Everything was fetched before the kill and is not due again: the build alone publishes it.
    assert (again.summary["fetched"], again.summary["parsed"]) == (0, 24)
    assert _procedures(options).height == 24
    assert again.exit_code == 0


def test_a_listing_found_by_its_content_is_navigation_not_a_reject(tmp_path: Path) -> None:
    items = "".join(
        f'<li><a href="/code/cpt4/{29870 + i}-knee">Knee procedure {i}</a></li>' for i in range(12)
    )
    listing = f"<html><body><h1>Codes starting with K</h1><ul>{items}</ul></body></html>"
    page = next(p for p in GOLDEN_PAGES if p.name.startswith("45378-")).read_bytes()
    with FaultServer() as server:
        server.routes.update(
            {
                "/robots.txt": robots(f"User-agent: *\nSitemap: {server.url('/sitemap.txt')}\n"),
                # A text sitemap listing a listing page and a page at URLs of no known shape.
                "/sitemap.txt": Route(
                    f"{server.url('/browse?letter=C')}\n{server.url('/p/45378')}\n",
                    content_type="text/plain",
                ),
                "/browse": Route(listing),
                "/p/45378": Route(page),
            }
        )
        # The listing's own links are not followed here: only the sitemap's URLs are fetched.
        options = crawl_options(tmp_path, profile=SiteProfile(deny=("/code/",)))
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    assert result.summary["listings"] == 1
    assert result.summary["rejected"] == 0
    assert result.exit_code == 0
    assert _procedures(options)["code"].to_list() == ["45378"]


def test_status_counts_rejects_by_the_reasons_of_the_run_summary(tmp_path: Path) -> None:
    options = crawl_options(tmp_path)
    condition = NotAProcedurePage("x", page_kind="condition")
    assert condition.kind == "not_a_procedure_page"
    routes = {
        "/": Route('<html><body><a href="/code/cpt4/1-a">a</a><a href="/code/cpt4/2-b">b</a>'
                   '<a href="/code/cpt4/3-c">c</a></body></html>'),
        "/code/cpt4/1-a": Route("", status=403),
        "/code/cpt4/2-b": Route("<html><body><p>Nothing here.</p></body></html>"),
        "/code/cpt4/3-c": Route(b"", status=200),
    }  # fmt: skip
    with FaultServer(routes) as server:
        result = crawl([server.url("/")], options, sleep=instant, show_progress=False)
    status = read_status(options.state)
    assert status["rejects_by_reason"] == result.summary["rejected_by_reason"]
    assert sum(result.summary["rejected_by_reason"].values()) == 3  # type: ignore[attr-defined]
    rejects = pl.read_parquet(options.out / "parquet" / "rejects.parquet")
    assert rejects.height == 3
    assert rejects["stage"].dtype == pl.Enum(["fetch", "parse", "validate"])


def _tagged(tag: str) -> set[int]:
    """Processes whose environment carries ``tag`` (a run and every process it started)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_workers_do_not_outlive_a_killed_run(tmp_path: Path) -> None:
    for index in range(1500):
        (tmp_path / f"{index:04d}.html").write_bytes(generate_page(index, 3).html)
    tag = f"PIPELINE_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, tag.split("=", maxsplit=1)[0]: tag.split("=")[1]}
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "parse", "--workers", "2", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(_tagged(tag)) < 3 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the run, its fork server and a worker
        assert run.poll() is None, "the run ended before it could be killed"
        run.kill()
        run.wait()
        deadline = time.monotonic() + 10
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _tagged(tag), "workers outlived the killed run"
    finally:
        run.kill()
        for pid in _tagged(tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
