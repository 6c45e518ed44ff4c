"""A 429 or 503 with Retry-After slows the whole host, and the crawl puts the page off instead of
sleeping in a worker (the issue: one worker slept up to 120 s holding a slot while the others
kept hitting the host; a Retry-After of a day held a run 120 s even with no retry left).

Real crawls against the loopback fault server. Time runs :data:`SPEED` times faster than the
wall clock for the fetcher and the crawl's worker pool (:class:`FastTime`), so a Retry-After of
20 s costs one real second and the order of the requests the server saw stays meaningful.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.acquire.state import CrawlState
from pipeline.run.crawl import CrawlOptions, RunResult, crawl
from pipeline.run.progress import RunReport
from tests.conftest import GOLDEN_PAGES, crawl_options, instant
from tests.faultserver import FaultServer, Route, Status

SPEED = 20.0
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

OSTEOTOMY = "/code/cpt4/22212-osteotomy"
COLONOSCOPY = "/code/cpt4/45378-colonoscopy"
CEREBRAL = "/code/cpt4/0042T-cerebral"
COLORECTAL = "/code/hcpcs/G0105-colorectal"
SCREENING = "/code/hcpcs/G0202-screening"


def _page(code: str) -> bytes:
    return next(p for p in GOLDEN_PAGES if p.name.startswith(code + "-")).read_bytes()


def _route(path: str, **kwargs: object) -> Route:
    code = path.rsplit("/", 1)[-1].split("-", 1)[0]
    return Route(_page(code), **kwargs)  # type: ignore[arg-type]


class FastTime:
    """A monotonic clock and a sleep that both run SPEED times faster than real time."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() * SPEED

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(max(0.0, seconds) / SPEED)


def _options(root: Path, **overrides: object) -> CrawlOptions:
    # One worker: a worker asleep on a Retry-After would stall everything behind it. Depth 0:
    # the seeds only (the golden pages link to similar codes this site does not serve).
    base: dict[str, object] = {
        "concurrency": 1, "per_host_concurrency": 1, "max_retries": 2, "max_depth": 0,
    }  # fmt: skip
    return crawl_options(root, **{**base, **overrides})


@pytest.fixture
def two_hosts() -> Iterator[tuple[FaultServer, FaultServer]]:
    """Two servers (two hosts: host:port), the first one's URLs sorting first (claimed first)."""
    with FaultServer() as one, FaultServer() as two:
        yield (one, two) if one.base_url < two.base_url else (two, one)


def _crawl(seeds: list[str], options: CrawlOptions, fast: FastTime, at: datetime = T0) -> RunResult:
    return crawl(
        seeds, options, sleep=fast.sleep, monotonic=fast.monotonic, clock=lambda: at,
        show_progress=False,
    )  # fmt: skip


def test_a_retry_after_puts_the_page_off_and_the_crawl_goes_on(
    tmp_path: Path, two_hosts: tuple[FaultServer, FaultServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 with Retry-After: 20 on one page of host A: the only worker does not sleep on it.
    Host B's pages are fetched meanwhile; host A gets nothing until the 20 s are over (its
    other page is put off too, unsent); then both pages of A are fetched, and the run ends with
    every page parsed, no failure, and each page counted once."""
    a, b = two_hosts
    a.routes.update(
        {OSTEOTOMY: _route(OSTEOTOMY, faults=[Status(429, retry_after=20)]),
         COLONOSCOPY: _route(COLONOSCOPY)}
    )  # fmt: skip
    b.routes.update({COLORECTAL: _route(COLORECTAL), SCREENING: _route(SCREENING)})
    advanced: list[int] = []
    monkeypatch.setattr(RunReport, "advance", lambda self, n=1: advanced.append(n))
    options = _options(tmp_path)
    fast = FastTime()
    seeds = [a.url(OSTEOTOMY), a.url(COLONOSCOPY), b.url(COLORECTAL), b.url(SCREENING)]

    result = _crawl(seeds, options, fast)

    assert result.exit_code == 0, result.text
    assert result.summary["failed"] == 0
    assert result.summary["rejected"] == 0
    assert result.summary["parsed"] == 4
    assert result.summary["fetched"] == 4  # the page put off is fetched once, not twice
    assert len(advanced) == 4 + 4  # acquire: one step a page (not two); build: one a page
    first, again = a.requests_for(OSTEOTOMY)
    assert first.fault == "Status(429)"
    assert again.fault is None
    # Host B was not stalled behind a sleeping worker: all of it came before A's retry.
    assert max(r.time for r in b.requests) < again.time
    # Host A was left alone for the Retry-After: nothing reached it before the 20 s were over.
    held = 20.0 / SPEED
    after = a.requests[a.requests.index(first) + 1 :]
    assert after
    assert all(r.time - first.time >= held * 0.9 for r in after), after
    assert a.count(COLONOSCOPY) == 1
    with CrawlState.open(options.state) as state:
        for url in seeds:
            row = state.get(url)
            assert row is not None
            assert row.status == "fetched", row
            assert row.error_kind is None
            assert row.next_due is None


def test_a_retry_after_over_the_cap_fails_the_host_for_now_without_waiting(
    tmp_path: Path, two_hosts: tuple[FaultServer, FaultServer]
) -> None:
    """Retry-After: 1000 (over the 120 s cap): the page fails at once, due when the server
    said; the host's other page is not sent and fails the same way. Nothing waits 120 s (the
    cap), each failure counts once, and the next run leaves both alone until they are due."""
    a, _ = two_hosts
    a.routes.update(
        {CEREBRAL: _route(CEREBRAL),
         OSTEOTOMY: _route(OSTEOTOMY, faults=[Status(429, retry_after=1000)]),
         COLONOSCOPY: _route(COLONOSCOPY)}
    )  # fmt: skip
    options = _options(tmp_path)
    fast = FastTime()
    seeds = [a.url(CEREBRAL), a.url(OSTEOTOMY), a.url(COLONOSCOPY)]

    started = time.monotonic()
    result = _crawl(seeds, options, fast)
    took = time.monotonic() - started

    assert result.exit_code == 1, result.text
    assert result.summary["failed"] == 2
    assert result.summary["parsed"] == 1
    assert result.summary["rejected_by_reason"] == {"host_backing_off": 1, "retryable_status": 1}
    assert [r.path for r in a.requests if r.path != "/robots.txt"] == [CEREBRAL, OSTEOTOMY]
    assert not any(s >= 5 for s in fast.sleeps), fast.sleeps
    assert took < 5.0  # 120 s of fast time would be 6 s
    with CrawlState.open(options.state) as state:
        refused, unsent = state.get(a.url(OSTEOTOMY)), state.get(a.url(COLONOSCOPY))
    assert refused is not None
    assert unsent is not None
    assert refused.error_kind == "retryable_status"
    assert refused.last_status == 429
    assert refused.next_due == T0 + timedelta(seconds=1000)
    assert unsent.error_kind == "host_backing_off"
    assert unsent.next_due is not None
    assert abs((unsent.next_due - (T0 + timedelta(seconds=1000))).total_seconds()) < 30

    # Ten minutes later neither page is due (pending pages too honour their due time)...
    _crawl(seeds, options, fast, at=T0 + timedelta(minutes=10))
    assert a.count(OSTEOTOMY) == 1
    assert a.count(COLONOSCOPY) == 0
    # ...and once the 1000 s are over both are fetched.
    later = _crawl(seeds, options, fast, at=T0 + timedelta(seconds=1001))
    assert later.exit_code == 0, later.text
    assert a.count(OSTEOTOMY) == 2
    assert a.count(COLONOSCOPY) == 1
    assert later.summary["parsed"] == 2


def test_pages_still_put_off_when_the_crawl_ends_count_as_failed(
    tmp_path: Path, two_hosts: tuple[FaultServer, FaultServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A crawl stopped (Ctrl-C) while its pages wait for a Retry-After: they are counted and
    logged as failed with their kind, and the state keeps them failed with their due time, so
    the next run reports them rather than losing them, and fetches them once they are due."""
    a, _ = two_hosts
    a.routes.update(
        {CEREBRAL: _route(CEREBRAL),
         OSTEOTOMY: _route(OSTEOTOMY, faults=[Status(429, retry_after=20)]),
         COLONOSCOPY: _route(COLONOSCOPY)}
    )  # fmt: skip
    options = _options(tmp_path)
    fast = FastTime()

    async def interrupted(seconds: float) -> None:
        if seconds >= 10:  # the pool waiting for the pages put off
            raise KeyboardInterrupt
        await fast.sleep(seconds)

    seeds = [a.url(CEREBRAL), a.url(OSTEOTOMY), a.url(COLONOSCOPY)]
    with caplog.at_level(logging.INFO, logger="pipeline"), pytest.raises(KeyboardInterrupt):
        crawl(
            seeds, options, sleep=interrupted, monotonic=fast.monotonic, clock=lambda: T0,
            show_progress=False,
        )  # fmt: skip
    ended = [r.getMessage() for r in caplog.records if "when the crawl ended" in r.getMessage()]
    assert len(ended) == 2, caplog.text
    assert any("retryable_status" in m for m in ended)
    assert any("host_backing_off" in m for m in ended)
    with CrawlState.open(options.state) as state:
        for path, kind in ((OSTEOTOMY, "retryable_status"), (COLONOSCOPY, "host_backing_off")):
            row = state.get(a.url(path))
            assert row is not None
            assert row.error_kind == kind, row
            assert row.next_due is not None
            assert row.next_due > T0

    # Run again at once: not due yet, but reported as failed fetches, not lost.
    again = _crawl(seeds, options, fast, at=T0 + timedelta(seconds=5))
    assert again.summary["rejected_by_reason"] == {"host_backing_off": 1, "retryable_status": 1}
    assert a.count(OSTEOTOMY) == 1
    assert a.count(COLONOSCOPY) == 0
    # Once due, both are fetched.
    done = _crawl(seeds, options, fast, at=T0 + timedelta(seconds=30))
    assert done.exit_code == 0, done.text
    assert done.summary["parsed"] == 2


def test_a_crawl_given_only_an_instant_sleep_does_not_spin_through_a_retry_after(
    tmp_path: Path, two_hosts: tuple[FaultServer, FaultServer]
) -> None:
    """Tests pass ``sleep=instant`` alone: time then moves with what was slept, so a page put
    off for 60 s is fetched again at once instead of after a minute of busy waiting."""
    a, _ = two_hosts
    a.routes.update(
        {OSTEOTOMY: _route(OSTEOTOMY, faults=[Status(503, retry_after=60)]),
         COLONOSCOPY: _route(COLONOSCOPY)}
    )  # fmt: skip
    options = _options(tmp_path)
    started = time.monotonic()
    result = crawl(
        [a.url(OSTEOTOMY), a.url(COLONOSCOPY)], options, sleep=instant, show_progress=False
    )
    assert time.monotonic() - started < 10.0
    assert result.exit_code == 0, result.text
    assert result.summary["parsed"] == 2
    assert a.count(OSTEOTOMY) == 2
    assert a.count(COLONOSCOPY) == 1
