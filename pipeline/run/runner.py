"""Inputs -> outcomes: the loop shared by ``pipeline parse`` and ``pipeline ingest``.

Files and directories are read from disk; URLs are fetched (no discovery) through the same
fetcher a crawl uses. Each input yields ``(source, record or error)``; nothing here prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.acquire.sources import RawPage, check_inputs, expand_paths, is_url, read_page
from pipeline.errors import PipelineError, UsageError
from pipeline.extract.page import Extraction, extract
from pipeline.models import Procedure

Outcome = Procedure | PipelineError


@dataclass(frozen=True, slots=True)
class Parsed:
    """One input's outcome (its record and extraction report, or its error) with what the
    tables need to know about it."""

    source: str
    outcome: Extraction | PipelineError
    body: bytes | None = None
    fetched_at: datetime | None = None


def extract_raw(page: RawPage, url: str | None = None) -> Extraction | PipelineError:
    """Extract one raw page; every pipeline error is returned, not raised.

    ``url`` is where a saved page came from (``pipeline parse --url``): the record's source
    and the last place its code is looked for. By default, the page's own source.
    """
    try:
        return extract(page.body, url=url or page.source, http_charset=page.http_charset)
    except PipelineError as exc:
        exc.source = exc.source or url or page.source
        return exc


def iter_parsed(
    inputs: list[str], *, timeout: float | None = None, url: str | None = None
) -> Iterator[Parsed]:
    """Parse every input in order: files, directories (recursively), then URLs.

    ``url`` is where a single saved page came from (its source and a place for its code).
    """
    check_inputs(inputs)
    if url is not None and (len(inputs) != 1 or is_url(inputs[0]) or Path(inputs[0]).is_dir()):
        raise UsageError("--url names where one saved page came from: give exactly one file")
    urls = [item for item in inputs if is_url(item)]
    paths = [item for item in inputs if not is_url(item)]
    for path in expand_paths(paths):
        try:
            raw = read_page(path)
        except PipelineError as exc:
            yield Parsed(str(path), exc)
            continue
        yield Parsed(url or raw.source, extract_raw(raw, url), raw.body)
    if urls:
        yield from _fetch_and_parse(urls, timeout)


def parse_inputs(
    inputs: list[str], *, timeout: float | None = None, url: str | None = None
) -> Iterator[tuple[str, Outcome]]:
    """``(source, record or error)`` for every page of the inputs (``url``: see iter_parsed)."""
    for parsed in iter_parsed(inputs, timeout=timeout, url=url):
        got = parsed.outcome
        yield parsed.source, got.record if isinstance(got, Extraction) else got


def _fetch_and_parse(urls: list[str], timeout: float | None) -> Iterator[Parsed]:
    from pipeline.acquire.fetch import Fetcher, FetchLimits

    async def fetch_all() -> list[Parsed]:
        limits = FetchLimits(read_timeout=timeout) if timeout else FetchLimits()
        async with Fetcher(limits=limits) as fetcher:
            results: list[Parsed] = []
            for url in urls:
                try:
                    got = await fetcher.fetch(url)
                except PipelineError as exc:
                    exc.source = url
                    results.append(Parsed(url, exc))
                    continue
                raw = RawPage(url, got.body, got.charset)
                results.append(Parsed(url, extract_raw(raw), got.body, got.fetched_at))
            return results

    yield from asyncio.run(fetch_all())
