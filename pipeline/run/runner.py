"""Inputs -> outcomes: the loop shared by ``pipeline parse`` and ``pipeline ingest``.

Files and directories are read from disk; URLs are fetched (no discovery) through the same
fetcher a crawl uses. Every page is extracted by the build engine (:mod:`pipeline.run.build`),
on every core when there are enough pages. Each input yields its outcome in input order;
nothing here prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.acquire.sources import check_inputs, expand_paths, is_url, source_of
from pipeline.errors import FetchError, PipelineError, UsageError
from pipeline.extract.page import Extraction
from pipeline.models import Procedure
from pipeline.run import loop
from pipeline.run.build import Job, build_all

Outcome = Procedure | PipelineError


@dataclass(frozen=True, slots=True)
class Parsed:
    """One input's outcome (its record and extraction report, or its error) with what the
    tables need to know about it: the content hash of its bytes and when it was fetched."""

    source: str
    outcome: Extraction | PipelineError
    digest: str | None = None
    fetched_at: datetime | None = None


@dataclass
class Reach:
    """Whether a run reached anything: inputs tried and inputs answered (a file read, any
    HTTP answer that is not a transient failure: a 404 or a redirect is an answer, a refused
    connection, a timeout or a 503 is not). A run over URLs none of which answered could not
    proceed (exit 3), whatever it rejected."""

    tried: int = 0
    answered: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: object) -> None:
        self.tried += 1
        if isinstance(outcome, FetchError) and outcome.transient:
            self.failures[outcome.kind] += 1
        else:
            self.answered += 1

    def nothing_reached(self) -> str | None:
        """Why the run reached nothing, or None if it reached something (or tried nothing)."""
        if not self.tried or self.answered:
            return None
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.failures.most_common())
        return f"nothing could be fetched: {self.tried} requests, no answer ({kinds})"


def iter_parsed(
    inputs: list[str],
    *,
    timeout: float | None = None,
    url: str | None = None,
    workers: int | None = None,
) -> Iterator[Parsed]:
    """Parse every input in order: files, directories (recursively), then URLs.

    ``url`` is where a single saved page came from (its source and a place for its code).
    ``workers`` processes extract the pages (default: every core; see build_all).
    """
    check_inputs(inputs)
    if url is not None and (len(inputs) != 1 or is_url(inputs[0]) or Path(inputs[0]).is_dir()):
        raise UsageError("--url names where one saved page came from: give exactly one file")
    urls = [item for item in inputs if is_url(item)]
    paths = [item for item in inputs if not is_url(item)]
    jobs = (Job(url or source_of(path), path=str(path), url=url) for path in expand_paths(paths))
    for job, result in build_all(jobs, workers=workers):
        yield Parsed(job.source, result.outcome, result.digest)
    if urls:
        yield from _fetch_and_parse(urls, timeout)


def parse_inputs(
    inputs: list[str],
    *,
    timeout: float | None = None,
    url: str | None = None,
    workers: int | None = None,
) -> Iterator[tuple[str, Outcome]]:
    """``(source, record or error)`` for every page of the inputs (see iter_parsed)."""
    for parsed in iter_parsed(inputs, timeout=timeout, url=url, workers=workers):
        got = parsed.outcome
        yield parsed.source, got.record if isinstance(got, Extraction) else got


def _fetch_and_parse(urls: list[str], timeout: float | None) -> Iterator[Parsed]:
    from pipeline.acquire.fetch import Fetcher, FetchLimits, RetryPolicy
    from pipeline.acquire.urls import Scope

    async def fetch_all() -> list[Parsed | Job]:
        limits = FetchLimits(read_timeout=timeout) if timeout else FetchLimits()
        # A redirect may not leave the hosts the user named (as in a crawl).
        scope = Scope.from_seeds(urls)
        # No queue to put a page back on here: a Retry-After up to the cap is waited out inline.
        policy = RetryPolicy(inline_wait_max=RetryPolicy().retry_after_cap)
        async with Fetcher(
            policy=policy,
            limits=limits,
            allowed_hosts=scope.allows,
            allowed_address=scope.allows_address,
        ) as fetcher:
            fetched: list[Parsed | Job] = []
            for url in urls:
                try:
                    got = await fetcher.fetch(url)
                except PipelineError as exc:
                    exc.source = url
                    fetched.append(Parsed(url, exc))
                    continue
                # The code is read from where redirects led, the source stays what was asked.
                fetched.append(Job(url, body=got.body, charset=got.charset, url=got.final_url))
                fetch_times[url] = got.fetched_at
            return fetched

    fetch_times: dict[str, datetime] = {}
    fetched = loop.run(fetch_all())
    built = build_all(item for item in fetched if isinstance(item, Job))
    for item in fetched:
        if isinstance(item, Parsed):
            yield item
            continue
        job, result = next(built)
        yield Parsed(job.source, result.outcome, result.digest, fetch_times.get(job.source))
