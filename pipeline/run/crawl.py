"""Batch runs: ``crawl`` (discover, fetch, parse, write), ``ingest`` and ``reparse``.

The crawl is a loop over the state: claim the pages that are due, fetch them concurrently,
and record each outcome in the state the moment it is known (one committed transaction per
page). Procedure pages go to the raw archive (content-addressed), then the parser, then the
table writer. Sitemaps, listing pages and the pages' own links feed discovery.

Exactly once, after any kill: the tables are published atomically once, at the end. Every
outcome recorded in the state is flagged *unpublished* until that publication succeeded; a run
that starts after a killed one first replays those outcomes from the archive into its writer,
so nothing fetched before the kill is lost and nothing is written twice (the writer merges by
key).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from pipeline.acquire.archive import ArchiveError, RawArchive, content_hash
from pipeline.acquire.fetch import Fetcher, FetchLimits, FetchResult, RetryPolicy
from pipeline.acquire.links import extract_links
from pipeline.acquire.profile import classify
from pipeline.acquire.robots import origin_of
from pipeline.acquire.sitemaps import parse_sitemap
from pipeline.acquire.state import CrawlState, PageRow
from pipeline.acquire.urls import Scope, normalize_url
from pipeline.encoding import charset_from_content_type, decode_html
from pipeline.errors import FetchError, PageGone, ParseError, PipelineError, UsageError
from pipeline.extract.page import PARSER_VERSION, Extraction, extract
from pipeline.load.write import TableWriter
from pipeline.models import ExtractionReport, Procedure
from pipeline.run.progress import LOG, RunReport
from pipeline.run.runner import iter_parsed

Clock = Callable[[], datetime]

ARCHIVE_DIR = "archive"
#: Kinds of URL whose outcome is a row in the tables (the rest only feed discovery).
PAGE_KINDS = frozenset({"procedure"})


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CrawlOptions:
    """What a crawl may do; built from :class:`pipeline.config.Settings` by the CLI."""

    out: Path
    state: Path
    concurrency: int = 8
    per_host_concurrency: int = 2
    rate: float = 1.0
    timeout: float = 30.0
    max_retries: int = 4
    max_pages: int | None = None
    max_depth: int | None = None
    refresh_after: timedelta | None = timedelta(days=7)
    obey_robots: bool = True
    allowed_hosts: tuple[str, ...] = ()
    user_agent: str | None = None


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run: its summary and exit code (0 all good, 1 some rejected)."""

    run_id: str
    summary: dict[str, object]
    exit_code: int
    text: str


@dataclass
class _Sink:
    """Where outcomes go: the table writer, counted in the run report."""

    writer: TableWriter
    report: RunReport
    clock: Clock

    def write(
        self,
        record: Procedure,
        url: str,
        digest: str,
        fetched_at: datetime | None,
        report: ExtractionReport,
    ) -> None:
        self.report.add("parsed")
        self.writer.add(
            record,
            source_url=url,
            content_hash=digest,
            fetched_at=fetched_at,
            parsed_at=self.clock(),
            parser_version=PARSER_VERSION,
            report=report,
        )

    def reject(self, exc: PipelineError, url: str, status: int | None) -> None:
        self.report.reject(exc.kind)
        self.writer.reject(
            source=url,
            stage=exc.stage,
            error_kind=exc.kind,
            reason=exc.reason,
            http_status=status,
            at=self.clock(),
        )

    def outcome(
        self, outcome: Extraction | PipelineError, url: str, digest: str,
        fetched_at: datetime | None, status: int | None,
    ) -> None:  # fmt: skip
        if isinstance(outcome, Extraction):
            self.write(outcome.record, url, digest, fetched_at, outcome.report)
        else:
            self.reject(outcome, url, status)

    def publish(self) -> tuple[int, int]:
        """Publish the tables; returns (exit code, pages written: added, changed or returned)."""
        counts = self.report.counts
        exit_code = 1 if counts["rejected"] or counts["failed"] else 0
        published = self.writer.publish(dict(counts), exit_code)
        self.report.set_quality(published.quality, published.extraction)
        written = sum(published.changes.get(kind, 0) for kind in ("added", "changed", "returned"))
        self.report.add("written", written)
        return exit_code, written


class _Crawl:
    """One crawl run over an open state; see the module docstring."""

    def __init__(
        self,
        options: CrawlOptions,
        state: CrawlState,
        archive: RawArchive,
        sink: _Sink,
        scope: Scope,
    ) -> None:
        self.options = options
        self.state = state
        self.archive = archive
        self.sink = sink
        self.writer = sink.writer
        self.report = sink.report
        self.clock = sink.clock
        self.scope = scope

    # -- discovery ------------------------------------------------------------------------------

    def discover(
        self,
        urls: Iterable[tuple[str, datetime | None]],
        depth: int,
        parent: str | None,
        *,
        seeds: bool = False,
    ) -> None:
        """Add in-scope, normalized URLs of a kind worth fetching (any kind for seeds)."""
        if self.options.max_depth is not None and depth > self.options.max_depth:
            return
        entries = []
        for url, lastmod in urls:
            norm = normalize_url(url)
            if norm is None or not self.scope.allows(norm):
                continue
            kind = classify(norm)
            if seeds or kind in ("procedure", "listing", "sitemap"):
                entries.append((norm, kind, depth, parent, lastmod))
        if entries:
            added = self.state.add_discovered(entries, now=self.clock())
            self.report.add("discovered", added)

    # -- one page -------------------------------------------------------------------------------

    async def visit(self, fetcher: Fetcher, row: PageRow) -> None:
        try:
            result = await fetcher.fetch(row.url, etag=row.etag, last_modified=row.last_modified)
        except PageGone as exc:
            self.state.record_gone(row.url, exc.status or 404, self.clock())
            if row.kind in PAGE_KINDS:
                self.writer.mark_gone(row.url, at=self.clock())
                self.report.add("gone")
        except FetchError as exc:
            self._fetch_failed(row, exc)
        else:
            self._fetched(row, result)
        finally:
            self.report.advance()

    def _fetch_failed(self, row: PageRow, exc: FetchError) -> None:
        self.state.record_failed(
            row.url,
            error_kind=exc.kind,
            reason=exc.reason,
            status=exc.status,
            terminal=not exc.transient,
            at=self.clock(),
        )
        LOG.warning("fetch failed: %s: %s: %s", row.url, exc.kind, exc.reason)
        if row.kind in PAGE_KINDS:
            self.report.add("failed")
            self.sink.reject(exc, row.url, exc.status)

    def _fetched(self, row: PageRow, result: FetchResult) -> None:
        if result.not_modified:
            self.state.record_unchanged(row.url, result.fetched_at)
            self.report.add("unchanged")
            return
        self.report.add("fetched")
        if row.kind == "sitemap":
            self._sitemap(row, result)
            return
        links = extract_links(decode_html(result.body, result.charset), result.final_url)
        self.discover(((link, None) for link in links), row.depth + 1, row.url)
        if row.kind in PAGE_KINDS:
            self._page(row, result)
        else:
            # Listing and other pages only feed discovery: hashed, not archived.
            self._record_fetch(row, result, content_hash(result.body))

    def _record_fetch(self, row: PageRow, result: FetchResult, digest: str) -> None:
        self.state.record_fetched(
            row.url,
            status=result.status,
            etag=result.etag,
            last_modified=result.last_modified,
            content_hash=digest,
            fetched_at=result.fetched_at,
            changed=digest != row.content_hash,
        )

    def _sitemap(self, row: PageRow, result: FetchResult) -> None:
        try:
            sitemap = parse_sitemap(result.body)
        except ParseError as exc:
            self.state.record_rejected(row.url, "parse", exc.reason, self.clock())
            LOG.warning("sitemap refused: %s: %s", row.url, exc.reason)
            return
        self.discover(((u, None) for u in sitemap.sitemaps), row.depth, row.url)
        self.discover(((e.loc, e.lastmod) for e in sitemap.urls), row.depth, row.url)
        self._record_fetch(row, result, content_hash(result.body))

    def _page(self, row: PageRow, result: FetchResult) -> None:
        content_type = result.headers.get("content-type")
        digest = self.archive.put(result.body, content_type=content_type, url=row.url)
        if digest == row.content_hash and row.status in ("fetched", "unchanged"):
            # Same bytes as last time: nothing changes downstream.
            self.state.record_unchanged(row.url, result.fetched_at)
            self.report.add("unchanged")
            return
        outcome = _parse(result.body, row.url, result.charset)
        if isinstance(outcome, Extraction):
            self._record_fetch(row, result, digest)
            self.sink.write(outcome.record, row.url, digest, result.fetched_at, outcome.report)
        else:
            self.state.record_rejected(
                row.url,
                outcome.stage,
                f"{outcome.kind}: {outcome.reason}",
                self.clock(),
                content_hash=digest,
                etag=result.etag,
                last_modified=result.last_modified,
                http_status=result.status,
            )
            self.sink.reject(outcome, row.url, result.status)

    # -- replay after a kill ----------------------------------------------------------------------

    def replay_unpublished(self) -> int:
        """Feed the writer every outcome a killed run recorded but never published."""
        rows = [row for row in self.state.unpublished() if row.kind in PAGE_KINDS]
        for row in rows:
            if row.status == "gone":
                self.writer.mark_gone(row.url, at=row.last_attempt or self.clock())
            elif row.status == "failed" or (row.status != "rejected" and row.content_hash is None):
                kind, _, reason = (row.last_error or "fetch_error: failed").partition(": ")
                self.writer.reject(
                    source=row.url, stage="fetch", error_kind=kind, reason=reason,
                    http_status=row.last_status, at=row.last_attempt or self.clock(),
                )  # fmt: skip
            elif row.content_hash is not None:
                outcome = _reparse_stored(self.archive, row)
                self.sink.outcome(
                    outcome, row.url, row.content_hash, row.last_fetched, row.last_status
                )
        if rows:
            LOG.info("replayed %d outcomes of an interrupted run", len(rows))
        return len(rows)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, seeds: list[str], fetcher: Fetcher) -> None:
        self.discover(((s, None) for s in seeds), 0, None, seeds=True)
        for origin in sorted({origin_of(s) for s in seeds}):
            try:
                sitemaps = await fetcher.robots.sitemaps(origin)
            except PipelineError:
                sitemaps = []
            self.discover(((u, None) for u in sitemaps), 0, f"{origin}/robots.txt")
        await _WorkerPool(self, fetcher).run()


class _WorkerPool:
    """``concurrency`` workers that each take the next due page as soon as they are free.

    Pages are claimed from the state a few at a time, so a page stuck in backoff or a long
    Retry-After holds one worker, never the whole crawl. A worker that finds nothing due waits
    while other pages are in flight (they may discover more) and stops when none are.
    """

    def __init__(self, crawl: _Crawl, fetcher: Fetcher) -> None:
        self.crawl = crawl
        self.fetcher = fetcher
        self.size = crawl.options.concurrency
        self.queue: deque[PageRow] = deque()
        self.in_flight = 0
        self.claimed = 0
        self.changed = asyncio.Condition()

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.size)))

    async def _worker(self) -> None:
        while (row := await self._take()) is not None:
            try:
                await self.crawl.visit(self.fetcher, row)
            finally:
                async with self.changed:
                    self.in_flight -= 1
                    self.changed.notify_all()

    async def _take(self) -> PageRow | None:
        async with self.changed:
            while True:
                if not self.queue:
                    self._claim()
                if self.queue:
                    self.in_flight += 1
                    return self.queue.popleft()
                if self.in_flight == 0:
                    return None
                await self.changed.wait()

    def _claim(self) -> None:
        options = self.crawl.options
        limit = self.size * 2
        if options.max_pages is not None:
            limit = min(limit, options.max_pages - self.claimed)
            if limit <= 0:
                return
        rows = self.crawl.state.claim_due(limit, self.crawl.clock(), options.refresh_after)
        self.claimed += len(rows)
        self.queue.extend(rows)


def _reparse_stored(archive: RawArchive, row: PageRow) -> Extraction | PipelineError:
    """Parse the stored body of a page; a missing or corrupt object is a parse reject."""
    digest = row.content_hash or ""
    try:
        body = archive.get(digest)
    except ArchiveError as exc:
        return ParseError(f"raw page not in the archive ({exc}); crawl it again", source=row.url)
    meta = archive.meta(digest)
    return _parse(body, row.url, charset_from_content_type(meta.content_type if meta else None))


def _parse(body: bytes, url: str, charset: str | None) -> Extraction | PipelineError:
    try:
        return extract(body, url=url, http_charset=charset)
    except PipelineError as exc:
        exc.source = url
        return exc


def make_fetcher(
    options: CrawlOptions,
    scope: Scope,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> Fetcher:
    """The crawl's fetcher, configured from the options."""
    kwargs: dict[str, object] = {}
    if options.user_agent:
        kwargs["user_agent"] = options.user_agent
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Fetcher(
        transport=transport,
        policy=RetryPolicy(max_attempts=options.max_retries + 1),
        limits=FetchLimits(
            read_timeout=options.timeout, total_timeout=max(60.0, options.timeout * 2)
        ),
        concurrency=options.concurrency,
        per_host_concurrency=options.per_host_concurrency,
        rate=options.rate,
        allowed_hosts=scope.allows,
        allowed_address=scope.allows_address,
        obey_robots=options.obey_robots,
        **kwargs,  # type: ignore[arg-type]
    )


def _seeds(seeds: list[str]) -> list[str]:
    normalized = []
    for seed in seeds:
        norm = normalize_url(seed)
        if norm is None:
            raise UsageError(f"{seed}: not an http(s) URL; give the site's URL, e.g. https://host/")
        normalized.append(norm)
    return normalized


def crawl(
    seeds: list[str],
    options: CrawlOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Clock = utc_now,
    show_progress: bool | None = None,
) -> RunResult:
    """Run one crawl from ``seeds``; raises StateLocked if another run holds the state."""
    normalized = _seeds(seeds)
    scope = Scope.from_seeds(normalized, options.allowed_hosts)
    with CrawlState.open(options.state) as state, RunReport("crawl", show_progress) as report:
        archive = RawArchive(options.state / ARCHIVE_DIR)
        run_id = state.begin_run(clock())
        with TableWriter(options.out, run_id=f"{run_id:06d}", mode="crawl") as writer:
            sink = _Sink(writer, report, clock)
            job = _Crawl(options, state, archive, sink, scope)
            job.replay_unpublished()

            async def go() -> None:
                async with make_fetcher(options, scope, transport=transport, sleep=sleep) as f:
                    await job.run(normalized, f)

            asyncio.run(go())
            return _finish(state, sink, run_id)


def _finish(state: CrawlState, sink: _Sink, run_id: int) -> RunResult:
    """Publish, then tell the state that every recorded outcome is in the tables."""
    exit_code, _ = sink.publish()
    state.mark_published()
    summary = sink.report.summary()
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    state.finish_run(run_id, counts, exit_code)
    LOG.info("run %s finished: exit %d", run_id, exit_code)
    return RunResult(f"{run_id:06d}", summary, exit_code, sink.report.summary_text())


def reparse(
    options: CrawlOptions, *, clock: Clock = utc_now, show_progress: bool | None = None
) -> RunResult:
    """Rebuild every table from the raw archive with the current parser; no network."""
    with CrawlState.open(options.state) as state, RunReport("reparse", show_progress) as report:
        archive = RawArchive(options.state / ARCHIVE_DIR)
        run_id = state.begin_run(clock())
        with TableWriter(
            options.out, run_id=f"{run_id:06d}", mode="reparse", disposition="replace"
        ) as writer:
            sink = _Sink(writer, report, clock)
            for row in state.iter_stored():
                digest = row.content_hash or ""
                outcome = _reparse_stored(archive, row)
                sink.outcome(outcome, row.url, digest, row.last_fetched, row.last_status)
                if row.status == "gone":
                    writer.mark_gone(row.url, at=row.last_attempt or clock())
                report.advance()
            return _finish(state, sink, run_id)


def ingest(
    inputs: list[str],
    out: Path,
    *,
    timeout: float | None = None,
    clock: Clock = utc_now,
    show_progress: bool | None = None,
) -> RunResult:
    """Parse the given files, directories and URLs (no discovery) and merge them into ``out``."""
    run_id = "ingest-" + clock().strftime("%Y%m%dT%H%M%S%fZ")
    with (
        RunReport("ingest", show_progress) as report,
        TableWriter(out, run_id=run_id, mode="ingest") as writer,
    ):
        sink = _Sink(writer, report, clock)
        for parsed in iter_parsed(inputs, timeout=timeout):
            report.add("fetched")
            digest = content_hash(parsed.body or b"")
            sink.outcome(parsed.outcome, parsed.source, digest, parsed.fetched_at, None)
            report.advance()
        exit_code, _ = sink.publish()
        return RunResult(run_id, report.summary(), exit_code, report.summary_text())
