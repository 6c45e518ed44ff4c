"""Shared test helpers: paths to the fixture corpus and the project root."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pipeline.run.crawl import CrawlOptions

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
#: The demo site (package data): the golden pages, listings, sitemaps and robots.txt.
SITE = ROOT / "pipeline" / "demo" / "site"
#: The expected record of every golden page, at the page's path under SITE.
GOLDEN = FIXTURES / "golden"
REJECTS = FIXTURES / "rejects"


def expected_record(page: Path) -> Path:
    """Where the expected record of a golden page of the demo site is kept."""
    return GOLDEN / page.relative_to(SITE).with_suffix(".json")


#: The golden pages of the demo site (those with an expected record).
GOLDEN_PAGES = sorted(p for p in SITE.rglob("*.html") if expected_record(p).exists())


def crawl_options(root: Path, **overrides: object) -> CrawlOptions:
    """Options of a test crawl under ``root`` (out/, state/): no politeness delay, short
    timeouts; ``overrides`` change any of them."""
    from pipeline.run.crawl import CrawlOptions

    base: dict[str, object] = {
        "out": root / "out",
        "state": root / "state",
        "rate": 0.0,
        "concurrency": 4,
        "per_host_concurrency": 4,
        "timeout": 2.0,
        "max_retries": 1,
    }
    base.update(overrides)
    return CrawlOptions(**base)  # type: ignore[arg-type]


async def instant(_: float) -> None:
    """A sleep that does not wait (retries and pacing in tests)."""
    await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's pipeline.toml or PIPELINE_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)
