"""Chaos: random transient faults plus SIGKILLs at random moments, and still the exact tables.

A synthetic site of 500 pages is served by a FaultServer in seeded chaos mode: bursts of 503 on
some pages, 429 with a tiny Retry-After, resets in the middle of the body, bodies shorter than
their Content-Length, connections dropped without an answer and a few stalls longer than the
read timeout. Every fault is transient, and the seed is checked up front to never give a page
more consecutive faults than the crawler has attempts, so every page eventually succeeds.

The crawler runs as a subprocess and is killed with SIGKILL at seeded moments (three times after
a random share of the pages was requested, then once more a random instant after the run started
building its new table version, i.e. during publication), then started again, until a run
finishes. After every kill the published tables must be whole (the previous publication or
nothing; mid-run, exactly the previous one); at the end they must equal, row for row, those of a
clean crawl of the same site (one clean crawl per module, on the same server and port).

Time: the crawl loop claims pages in batches of ``4 x concurrency`` and waits for the whole batch,
so one page in backoff idles every connection; that, not CPU, is most of this file's run time
(about a minute on an idle 2-core machine). Hence the Retry-After values of 0 and 1 s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.faultserver import Chaos, Drop, Fault, FaultServer, Reset, Stall, Status, Truncate
from tests.test_resume import (
    Crawler,
    assert_readable,
    assert_same_tables,
    comparable_tables,
    crawl_args,
    crawlers,
    page_requests,
    run_to_end,
    serve_site,
    snapshot,
    wait_for,
)

__all__ = ["crawlers"]  # the fixture, imported for the tests of this module

PAGES = 500
SITE_SEED = 0
KILLS = 3
MAX_RETRIES = 8
#: Attempts of one page over all runs that the chaos check covers (runs x attempts, generous).
CHECKED_ATTEMPTS = (KILLS + 3) * (MAX_RETRIES + 1)
#: Read timeout of the crawler; stalls last longer, so each one is a timeout and a retry.
TIMEOUT = 1.0

#: Requests in flight; a batch of the crawl loop is four times this.
CONCURRENCY = 8

# 503 and 429 mostly carry a Retry-After of 0 or 1 s, which the crawler honours instead of its
# exponential backoff (0.5 s doubling, full jitter, not configurable from the command line);
# connection faults and the 503s without Retry-After go through that backoff.
FAULTS: list[tuple[Fault, float]] = [
    (Status(503, retry_after=0), 0.05),
    (Status(503), 0.005),
    (Status(429, retry_after=0), 0.03),
    (Status(429, retry_after=1), 0.004),
    (Reset(after=700), 0.015),
    (Truncate(missing=300), 0.015),
    (Drop(), 0.015),
    (Stall(seconds=2.5 * TIMEOUT), 0.003),
]


@dataclass(frozen=True)
class BurstyChaos(Chaos):
    """Chaos plus bursts: a share of the paths answer 503 to their first 2-4 requests."""

    burst_share: float = 0.05

    def burst(self, path: str) -> int:
        rng = random.Random(f"{self.seed}:{path}:burst")
        return rng.randint(2, 4) if rng.random() < self.burst_share else 0

    def draw(self, path: str, attempt: int) -> Fault | None:
        if path.split("?", 1)[0] not in self.exempt and attempt <= self.burst(path):
            return Status(503, body=b"burst", retry_after=0)
        return super().draw(path, attempt)


def publishing(out: Path) -> bool:
    """Whether a writer is building a new version (``OUT/.staging/<run>/version``)."""
    return any((out / ".staging").glob("*/version"))


def _longest_fault_run(chaos: Chaos, path: str, attempts: int) -> int:
    longest = current = 0
    for attempt in range(1, attempts + 1):
        current = current + 1 if chaos.draw(path, attempt) is not None else 0
        longest = max(longest, current)
    return longest


def _wait_until_requested(crawler: Crawler, server: FaultServer, share: float) -> None:
    wait_for(
        lambda: len(page_requests(server)) >= share * PAGES or not crawler.alive(),
        f"{share:.0%} of the pages to be requested",
        timeout=120,
    )


def _wait_until_publishing(crawler: Crawler, out: Path) -> None:
    wait_for(lambda: publishing(out) or not crawler.alive(), "the run to publish", timeout=120)


@dataclass
class _Site:
    server: FaultServer
    paths: list[str]
    want: dict[str, pl.DataFrame]


@pytest.fixture(scope="module")
def chaos_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    """One site and server for the module, and the tables of a clean crawl of it."""
    with FaultServer() as server:
        site = serve_site(server, PAGES, SITE_SEED)
        clean = tmp_path_factory.mktemp("clean")
        args = crawl_args(
            server.url("/"), clean, "--timeout", str(TIMEOUT), concurrency=CONCURRENCY
        )
        crawler = Crawler(args, clean, "clean")
        assert crawler.wait() == 0, crawler.output()
        want = comparable_tables(clean / "out")
        assert want["procedures"].height == PAGES
        yield _Site(server, sorted(site), want)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crawl_under_chaos_and_kills_equals_a_clean_crawl(
    tmp_path: Path,
    crawlers: Callable[[list[str], Path, str], Crawler],
    chaos_site: _Site,
    seed: int,
) -> None:
    rng = random.Random(seed)
    chaos = BurstyChaos(seed=seed, faults=FAULTS)
    # Every fault is transient: no page meets more faults in a row than a run's attempts.
    worst = max(_longest_fault_run(chaos, path, CHECKED_ATTEMPTS) for path in chaos_site.paths)
    assert worst < MAX_RETRIES + 1, f"seed {seed} would make a page fail for good"
    server = chaos_site.server
    seed_url = server.url("/")
    server.reset_stats()
    server.chaos = chaos
    try:
        root = tmp_path / "chaos"
        root.mkdir()
        args = crawl_args(
            seed_url,
            root,
            *("--timeout", str(TIMEOUT), "--max-retries", str(MAX_RETRIES)),
            concurrency=CONCURRENCY,
        )
        shares = sorted(rng.uniform(0.05, 0.9) for _ in range(KILLS))
        publish_kill_delay = rng.uniform(0.0, 0.3)
        for runs, share in enumerate([*shares, None], start=1):
            crawler = crawlers(args, root, f"run{runs}")
            if share is None:
                # The last kill lands in the publication: once the new version is being built.
                _wait_until_publishing(crawler, root / "out")
                time.sleep(publish_kill_delay)
            else:
                _wait_until_requested(crawler, server, share)
            published = snapshot(root / "out")
            was_alive = crawler.alive()
            crawler.kill()
            assert crawler.proc.returncode in (0, -9), crawler.output()
            # Whatever the moment, a reader finds whole tables: the last publication or none.
            assert_readable(root / "out")
            if share is not None:
                # Publication happens once, at the end of a run: mid-run, nothing changed.
                assert was_alive, f"run {runs} ended before {share:.0%}:\n{crawler.output()}"
                assert snapshot(root / "out") == published
        run_to_end(crawlers, args, root, "final")
        assert_readable(root / "out")
        faults = sum(1 for r in server.requests if r.fault)
    finally:
        server.chaos = None

    assert faults > 50, f"only {faults} faults were injected"
    assert_same_tables(comparable_tables(root / "out"), chaos_site.want)
