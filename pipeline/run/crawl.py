"""Batch runs in two stages with the raw archive between them: ``crawl``, ``reparse``, ``ingest``.

As dlt keeps extract, normalize and load apart with durable packages between them:

- **acquire** discovers, fetches, archives and records each outcome in the state the moment it
  is known (one committed transaction per page). It never parses a record: a page's links come
  from one cheap pass, and what the site profile (:mod:`pipeline.acquire.profile`) calls a page
  goes to the content-addressed archive, whatever its URL looks like.
- **build** extracts every archived page whose (content hash, parser version) is not in the
  published tables yet, on every core (:mod:`pipeline.run.build`: bytes in, a record or a typed
  reject out), loads the records, the rejects and the pages that failed or went away since the
  last publication into the writer, and publishes the tables atomically. Only then does the
  state record what was built.

``crawl`` is acquire then build; ``reparse`` is build over everything archived; ``ingest`` is
build over the files and URLs given. Recovery after a kill needs no replay: whatever was
fetched but not published is simply not built yet, and the next run builds it (the writer
merges by key, so building a page twice writes it once).

Whether a page is a procedure page is its content's business: a page that turns out to be a
listing of codes counts as navigation (``listings`` in the summary), any other page that is
not a procedure page is a reject with its ``page_kind``.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import SimpleQueue

import httpx

from pipeline.acquire.archive import RawArchive, content_hash
from pipeline.acquire.fetch import Fetcher, FetchLimits, FetchResult, RetryPolicy
from pipeline.acquire.links import extract_links
from pipeline.acquire.profile import REFERENCE, SiteProfile, UrlKind
from pipeline.acquire.robots import origin_of
from pipeline.acquire.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from pipeline.acquire.sources import check_inputs, count_inputs
from pipeline.acquire.state import ARCHIVE_NAME, BuiltPage, CrawlState, PageRow
from pipeline.acquire.urls import Scope, normalize_url
from pipeline.encoding import decode_html
from pipeline.errors import (
    FetchError,
    HostBackingOff,
    NotAProcedurePage,
    PageGone,
    ParseError,
    PipelineError,
    RawPageLost,
    StateError,
    UsageError,
)
from pipeline.extract.page import PARSER_VERSION, Extraction
from pipeline.load.write import TableWriter
from pipeline.run import loop
from pipeline.run.build import Job, build_all
from pipeline.run.progress import LOG, RunReport
from pipeline.run.runner import Reach, iter_parsed

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
Monotonic = Callable[[], float]

#: Sitemaps and listings that failed named one by one in the summary; past that, one line.
_NAMED_LOSSES = 10
#: How far a Retry-After may put a page off when the run has no refresh interval.
MAX_PUT_OFF = timedelta(days=7)

#: SPEC's exit code of a run that could not proceed (here: nothing could be reached).
EXIT_COULD_NOT_PROCEED = 3


def _fields(event: str, **fields: object) -> dict[str, object]:
    """Structured fields of a log line (``--log-format json`` puts them in the object)."""
    return {"fields": {"event": event, **fields}}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CrawlOptions:
    """What a run may do; built from :class:`pipeline.config.Settings` by the CLI."""

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
    profile: SiteProfile = field(default=REFERENCE)
    #: Processes that extract pages in the build stage (None: every core).
    workers: int | None = None


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
    #: The source of each key written in this run: two pages with one code cannot both be a
    #: row, and the one replaced must not vanish without a trace.
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)
    #: The state's row of a URL, if there is a state: a new page with an earlier page's
    #: code is a duplicate only when that page is still live there; a URL the state does not
    #: know (a site that moved, files ingested from elsewhere) was replaced, not duplicated.
    known: Callable[[str], PageRow | None] = lambda url: None
    #: Pages rejected as duplicate_code in this run: one that becomes a record later in the
    #: run (a rebuild meets both pages in another order) is no reject after all.
    duplicates: set[str] = field(default_factory=set)

    def write(
        self, extraction: Extraction, url: str, digest: str, fetched_at: datetime | None
    ) -> None:
        record = extraction.record
        alias = self._page_behind(url, record.source)
        if alias is not None:
            self.report.add("aliases")  # one page under two URLs: one row, under its own URL
            url = alias
        key = (str(record.code_system), record.code)
        earlier = self.sources.get(key)
        if earlier is None:
            # Published by an earlier run from another page, which this run did not rebuild.
            published = self.writer.published_source(*key)
            if (
                published is not None
                and published != url
                and published not in self.written  # rebuilt in this run, under another code
                and self._live(published)
            ):
                if self._lands_on(published) == url:
                    # The published row came through a redirect to this page: one page.
                    self.report.add("aliases")
                else:
                    earlier = published
        elif earlier != url:
            self.report.add("parsed", -1)  # counted when it was written; now it is a reject
        if earlier is not None and earlier != url:
            self.reject_typed(
                earlier, "validate", "duplicate_code",
                f"{key[0]} {key[1]} is also the code of {url}, whose record is kept",
                None,
            )  # fmt: skip
        if url in self.duplicates:
            self.duplicates.discard(url)
            self.report.unreject("duplicate_code")  # its reject row is superseded by the record
        self.sources[key] = url
        self.written.add(url)
        self.report.add("parsed")
        self.writer.add(
            extraction.record,
            source_url=url,
            content_hash=digest,
            fetched_at=fetched_at,
            parsed_at=self.clock(),
            parser_version=PARSER_VERSION,
            report=extraction.report,
        )

    def _page_behind(self, url: str, landed: str) -> str | None:
        """The URL of the page ``url`` redirected to, when the crawl has that page under its
        own URL (so its row is that page's, not a duplicate of it); None otherwise."""
        if landed == url:
            return None
        target = normalize_url(landed)
        if target is None or target == url or not self._live(target):
            return None
        return target

    def _live(self, url: str) -> bool:
        row = self.known(url)
        return row is not None and row.status != "gone"

    def _lands_on(self, url: str) -> str | None:
        """Where the page at ``url`` last landed (its redirect's target), if the state knows."""
        row = self.known(url)
        return None if row is None or row.final_url is None else normalize_url(row.final_url)

    def reject(self, exc: PipelineError, url: str, status: int | None) -> None:
        self.reject_typed(
            url, exc.stage, exc.kind, exc.reason, status, getattr(exc, "page_kind", None)
        )

    def reject_typed(
        self,
        url: str,
        stage: str,
        kind: str,
        reason: str,
        status: int | None,
        page_kind: str | None = None,
        at: datetime | None = None,
    ) -> None:
        self.report.reject(kind)
        if kind == "duplicate_code":
            self.duplicates.add(url)
        self.writer.reject(
            source=url,
            stage=stage,
            error_kind=kind,
            reason=reason,
            http_status=status,
            at=at or self.clock(),
            page_kind=page_kind,
        )

    def outcome(
        self,
        outcome: Extraction | PipelineError,
        url: str,
        digest: str,
        fetched_at: datetime | None,
        status: int | None,
    ) -> None:
        if isinstance(outcome, Extraction):
            self.write(outcome, url, digest, fetched_at)
        else:
            self.reject(outcome, url, status)

    def publish(self, could_not_proceed: bool = False) -> int:
        """Publish the tables; returns the exit code (3 when the run could not proceed)."""
        counts = self.report.counts
        exit_code = 1 if counts["rejected"] or counts["failed"] else 0
        if could_not_proceed:
            exit_code = EXIT_COULD_NOT_PROCEED
        published = self.writer.publish(dict(counts), exit_code)
        self.report.set_quality(published.quality, published.extraction)
        written = sum(published.changes.get(kind, 0) for kind in ("added", "changed", "returned"))
        self.report.add("written", written)
        return exit_code


# --- acquire ---------------------------------------------------------------------------------


class _Acquire:
    """The acquire stage of one crawl over an open state; see the module docstring."""

    def __init__(
        self,
        options: CrawlOptions,
        state: CrawlState,
        archive: RawArchive,
        report: RunReport,
        clock: Clock,
        scope: Scope,
    ) -> None:
        self.options = options
        self.profile = options.profile
        self.state = state
        self.archive = archive
        self.report = report
        self.clock = clock
        self.scope = scope
        #: URLs already handed to the state in this run (a site links its pages from every
        #: page; the state ignores them again, but need not be asked).
        self.seen: set[str] = set()
        #: Requests made in this run, and those that got an answer (a body, a 304, a 404/410);
        #: failures by kind. A run that reached nothing must not look like one with nothing due.
        self.attempted = 0
        self.reached = 0
        self.failures: Counter[str] = Counter()
        #: Where a newly archived page goes to be built while the crawl goes on (None: it
        #: waits for the build stage).
        self.built: Callable[[PageRow], None] | None = None
        #: Requests sent per page in this run: a page visited again after a Retry-After gets
        #: what is left of the policy's attempts, never a fresh set.
        self.spent: Counter[str] = Counter()
        #: Sitemaps and listings that could not be fetched in this run.
        self.lost_navigation = 0

    def discover(
        self,
        urls: Iterable[tuple[str, datetime | None]],
        depth: int,
        parent: str | None,
        *,
        source: str,
        kind: UrlKind | None = None,
    ) -> None:
        """Add in-scope, normalized URLs: every sitemap entry and seed, the links the profile
        follows (``source`` is "seed", "sitemap" or "link"). ``kind`` is known for the URLs of
        sitemaps (robots.txt's ``Sitemap:`` lines, a sitemap index), whatever their shape."""
        if self.options.max_depth is not None and depth > self.options.max_depth:
            return
        entries = []
        for url, lastmod in urls:
            norm = normalize_url(url)
            if norm is None or (lastmod is None and norm in self.seen):
                continue
            if not self.scope.allows(norm):
                continue
            what = kind or self.profile.kind(norm, seed=source == "seed")
            if source == "link" and what != "sitemap" and not self.profile.follows(norm):
                continue
            self.seen.add(norm)
            entries.append((norm, what, depth, parent, lastmod))
        if entries:
            added = self.state.add_discovered(entries, now=self.clock())
            self.report.add("discovered", added)
            self.report.grow("fetch", added)

    async def visit(self, fetcher: Fetcher, row: PageRow) -> Deferral | None:
        """Fetch ``row`` and record the outcome in the state; returns a :class:`Deferral` when
        the host asked (Retry-After, at most the policy's cap) to be asked again later and the
        page has attempts left: it is then recorded as failed, due at that time, and the caller
        visits it again when it is due. Each page counts once in the report, with its final
        outcome."""
        policy = fetcher.policy
        deferral: Deferral | None = None
        try:
            result = await fetcher.fetch(
                row.url,
                etag=row.etag,
                last_modified=row.last_modified,
                # The sitemaps protocol allows 50 MB uncompressed; pages keep the page limit.
                max_bytes=MAX_SITEMAP_BYTES if row.kind == "sitemap" else None,
                max_attempts=max(1, policy.max_attempts - self.spent[row.url]),
            )
        except PageGone as exc:
            self.attempted += 1
            self.reached += 1
            self.state.record_gone(row.url, exc.status or 404, self.clock())
            if row.kind == "page":
                self.report.add("gone")
        except FetchError as exc:
            self.spent[row.url] += exc.attempts
            if not isinstance(exc, HostBackingOff):
                self.attempted += 1
            deferral = self._failed(row, exc, policy)
        else:
            self.attempted += 1
            self.reached += 1
            await self._fetched(row, result)
        finally:
            if deferral is None:
                self.report.advance("fetch")
        return deferral

    def _failed(self, row: PageRow, exc: FetchError, policy: RetryPolicy) -> Deferral | None:
        """Record a failed fetch: deferred to its Retry-After (returned) when it may still be
        tried in this run, else failed for this run (due when the server said, if it did)."""
        now = self.clock()
        retry_after = getattr(exc, "retry_after", None)
        due: datetime | None = None
        if retry_after is not None:
            limit = self.options.refresh_after or MAX_PUT_OFF
            # Clamped before it becomes a timedelta: "Retry-After: 1000000000000000" overflows.
            retry_after = min(max(0.0, retry_after), limit.total_seconds())
            due = now + timedelta(seconds=retry_after)
        defer = (
            retry_after is not None
            and retry_after <= policy.retry_after_cap
            and self.spent[row.url] < policy.max_attempts
        )
        self.state.record_failed(
            row.url,
            error_kind=exc.kind,
            reason=exc.reason,
            status=exc.status,
            terminal=not exc.transient,
            at=now,
            due=due,
        )
        if defer:
            assert retry_after is not None  # for mypy: defer implies it
            LOG.info(
                "fetch deferred: %s: %s: %s; again in %.1f s", row.url, exc.kind, exc.reason,
                retry_after,
                extra=_fields("fetch_deferred", url=row.url, kind=exc.kind, reason=exc.reason,
                              http_status=exc.status, retry_after=retry_after),
            )  # fmt: skip
            return Deferral(row, retry_after, exc.kind)
        LOG.warning(
            "fetch failed: %s: %s: %s", row.url, exc.kind, exc.reason,
            extra=_fields("fetch_failed", url=row.url, kind=exc.kind, reason=exc.reason,
                          http_status=exc.status, transient=exc.transient,
                          retry_after=retry_after),
        )  # fmt: skip
        self._count_failure(row, exc.kind)
        return None

    def _count_failure(self, row: PageRow, kind: str) -> None:
        self.failures[kind] += 1
        self.report.add("failed")  # the run exits 1, not "all good"
        if row.kind != "page":
            # Not a page, so not a reject row: the summary says what its loss means (the
            # first few by name, the log has every one).
            self.lost_navigation += 1
            if self.lost_navigation <= _NAMED_LOSSES:
                self.report.warn(
                    f"the {row.kind} {row.url} could not be fetched ({kind}): the pages it "
                    "lists were not discovered through it in this run"
                )
            elif self.lost_navigation == _NAMED_LOSSES + 1:
                self.report.warn("more sitemaps or listings could not be fetched: see the log")

    def abandon(self, deferral: Deferral) -> None:
        """A deferred page the run ends without visiting again: it counts as failed (the state
        already holds the failure and its due time, for the next run)."""
        row = deferral.row
        LOG.warning(
            "fetch failed: %s: %s: still waiting for its Retry-After when the crawl ended",
            row.url, deferral.kind,
            extra=_fields("fetch_failed", url=row.url, kind=deferral.kind,
                          reason="still deferred when the crawl ended", transient=True),
        )  # fmt: skip
        self._count_failure(row, deferral.kind)
        self.report.advance("fetch")

    def nothing_reached(self) -> str | None:
        """Why the run could not proceed, if it asked for pages and got no answer at all."""
        if not self.attempted or self.reached:
            return None
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.failures.most_common())
        return f"nothing could be fetched: {self.attempted} requests, not one page ({kinds})"

    async def _fetched(self, row: PageRow, result: FetchResult) -> None:
        if result.not_modified:
            self.state.record_unchanged(row.url, result.fetched_at)
            self.report.add("unchanged")
            return
        self.report.add("fetched")
        if row.kind == "sitemap":
            self._sitemap(row, result)
            return
        links = extract_links(decode_html(result.body, result.charset), result.final_url)
        self.discover(((link, None) for link in links), row.depth + 1, row.url, source="link")
        if row.kind != "page":
            # Listing pages only feed discovery: hashed, not archived.
            self._record_fetch(row, result, content_hash(result.body))
            return
        content_type = result.headers.get("content-type")
        # Compressing and writing the object happen off the event loop (zlib and file writes
        # release the GIL), while other pages are on the wire.
        digest = await asyncio.to_thread(
            self.archive.put, result.body, content_type=content_type, url=row.url
        )
        if digest == row.content_hash and row.status in ("fetched", "unchanged", "rejected"):
            self.state.record_unchanged(row.url, result.fetched_at)  # same bytes as last time
            self.report.add("unchanged")
            return
        self._record_fetch(row, result, digest)
        if self.built is not None:
            moved = result.final_url if result.final_url != row.url else None
            self.built(
                replace(
                    row, content_hash=digest, status="fetched", last_status=result.status,
                    last_fetched=result.fetched_at, final_url=moved,
                )
            )  # fmt: skip

    def _record_fetch(self, row: PageRow, result: FetchResult, digest: str) -> None:
        self.state.record_fetched(
            row.url,
            status=result.status,
            etag=result.etag,
            last_modified=result.last_modified,
            content_hash=digest,
            fetched_at=result.fetched_at,
            changed=digest != row.content_hash,
            final_url=result.final_url,
        )

    def _sitemap(self, row: PageRow, result: FetchResult) -> None:
        try:
            sitemap = parse_sitemap(result.body)
        except ParseError as exc:
            # Not a sitemap (an HTML maintenance page, a cut file): the pages it should list
            # are lost for this run, so it counts as failed, and it is due again next run.
            self.state.record_failed(
                row.url, error_kind=exc.kind, reason=exc.reason, status=result.status,
                terminal=False, at=self.clock(),
            )  # fmt: skip
            LOG.warning(
                "sitemap refused: %s: %s", row.url, exc.reason,
                extra=_fields("sitemap_refused", url=row.url, kind=exc.kind, reason=exc.reason),
            )  # fmt: skip
            self._count_failure(row, exc.kind)
            return
        self.discover(
            ((u, None) for u in sitemap.sitemaps), row.depth, row.url, source="sitemap",
            kind="sitemap",
        )  # fmt: skip
        self.discover(
            ((e.loc, e.lastmod) for e in sitemap.urls), row.depth, row.url, source="sitemap"
        )
        self._record_fetch(row, result, content_hash(result.body))

    async def run(
        self,
        seeds: list[str],
        fetcher: Fetcher,
        *,
        sleep: Sleep = asyncio.sleep,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.discover(((s, None) for s in seeds), 0, None, source="seed")
        for origin in sorted({origin_of(s) for s in seeds}):
            try:
                sitemaps = await fetcher.robots.sitemaps(origin)
            except PipelineError:
                sitemaps = []
            self.discover(
                ((u, None) for u in sitemaps), 0, f"{origin}/robots.txt", source="seed",
                kind="sitemap",
            )  # fmt: skip
        await _WorkerPool(self, fetcher, sleep, monotonic).run()


@dataclass(frozen=True)
class Deferral:
    """A page put aside until its host's Retry-After is over."""

    row: PageRow
    retry_after: float
    kind: str


class _WorkerPool:
    """``concurrency`` workers that each take the next due page as soon as they are free.

    Pages are claimed from the state a few at a time, so a page stuck in backoff holds one
    worker, never the whole crawl. A page whose host asked to be left alone for a while (a 429
    or 503 with Retry-After, or a host still held by one) is not slept on: it goes on a heap of
    deferred pages by due time, and the worker moves on. A free worker takes a claimed page
    first, then a deferred page that is due. One that finds neither waits while other pages are
    in flight (they may discover more, or be deferred); when none are, one worker sleeps until
    the earliest deferred page is due, and the workers stop when there is nothing left at all.
    """

    def __init__(
        self, acquire: _Acquire, fetcher: Fetcher, sleep: Sleep, monotonic: Monotonic
    ) -> None:
        self.acquire = acquire
        self.fetcher = fetcher
        self.sleep = sleep
        self.monotonic = monotonic
        self.size = acquire.options.concurrency
        self.queue: deque[PageRow] = deque()
        #: (due on the monotonic clock, sequence, deferral): the earliest due first.
        self.deferred: list[tuple[float, int, Deferral]] = []
        self.deferrals = 0
        self.in_flight = 0
        self.claimed = 0
        #: Whether a worker is sleeping until the earliest deferred page is due.
        self.waiting = False
        self.changed = asyncio.Condition()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.size)))
        finally:
            # Only an aborted crawl ends with pages still deferred: they count as failed.
            while self.deferred:
                self.acquire.abandon(heapq.heappop(self.deferred)[2])

    async def _worker(self) -> None:
        while (row := await self._take()) is not None:
            deferral: Deferral | None = None
            try:
                deferral = await self.acquire.visit(self.fetcher, row)
            finally:
                async with self.changed:
                    # On the heap before the visit is over: no idle worker may see nothing in
                    # flight and nothing deferred in between, and stop.
                    if deferral is not None:
                        due = self.monotonic() + deferral.retry_after
                        self.deferrals += 1
                        heapq.heappush(self.deferred, (due, self.deferrals, deferral))
                    self.in_flight -= 1
                    self.changed.notify_all()

    async def _take(self) -> PageRow | None:
        while True:
            async with self.changed:
                while True:
                    if not self.queue:
                        self._claim()
                    if self.queue:
                        self.in_flight += 1
                        return self.queue.popleft()
                    if self.deferred and self.deferred[0][0] <= self.monotonic():
                        self.in_flight += 1
                        return heapq.heappop(self.deferred)[2].row
                    if self.in_flight == 0 and not self.waiting:
                        if not self.deferred:
                            return None
                        # Nothing in flight can discover or defer more: wait for the earliest.
                        self.waiting = True
                        delay = self.deferred[0][0] - self.monotonic()
                        break
                    await self.changed.wait()
            try:
                await self.sleep(delay)
            finally:
                async with self.changed:
                    self.waiting = False
                    self.changed.notify_all()

    def _claim(self) -> None:
        options = self.acquire.options
        limit = self.size * 2
        if options.max_pages is not None:
            limit = min(limit, options.max_pages - self.claimed)
            if limit <= 0:
                return
        rows = self.acquire.state.claim_due(limit, self.acquire.clock(), options.refresh_after)
        self.claimed += len(rows)
        self.queue.extend(rows)


# --- build -------------------------------------------------------------------------------------


def _build(
    state: CrawlState,
    archive: RawArchive,
    sink: _Sink,
    *,
    everything: bool,
    workers: int | None,
    streamed: Iterable[PageRow] = (),
) -> list[BuiltPage]:
    """Load every unpublished outcome of the state into the sink; returns what was built.

    First the pages ``streamed`` to it (archived by the acquire stage while it runs), then
    every other archived page not yet built by this parser version (``everything``: all of
    them), then the pages that failed to fetch or went away since the last publication.
    """
    clock = sink.clock
    rows: deque[PageRow] = deque()
    root = str(archive.root)
    dispatched: set[tuple[str, str | None]] = set()

    sink.report.stage("build")

    def jobs() -> Iterator[Job]:
        for row in streamed:
            dispatched.add((row.url, row.content_hash))
            rows.append(row)
            sink.report.grow("build")
            yield Job(row.url, digest=row.content_hash, archive=root, url=row.final_url)
        for row in state.to_build(PARSER_VERSION, everything=everything):
            if (row.url, row.content_hash) not in dispatched:
                rows.append(row)
                sink.report.grow("build")
                yield Job(row.url, digest=row.content_hash, archive=root, url=row.final_url)

    built: list[BuiltPage] = []
    for job, result in build_all(jobs(), workers=workers):
        row = rows.popleft()
        digest = job.digest or ""
        outcome = result.outcome
        if isinstance(outcome, Extraction):
            sink.write(outcome, row.url, digest, row.last_fetched)
            built.append(BuiltPage(row.url, digest))
        elif isinstance(outcome, NotAProcedurePage) and outcome.page_kind == "listing":
            sink.report.add("listings")  # a page of links: navigation, not a loss
            built.append(BuiltPage(row.url, digest))
        else:
            sink.reject(outcome, row.url, row.last_status)
            built.append(BuiltPage(row.url, digest, outcome.stage, outcome.kind, outcome.reason))
            if isinstance(outcome, RawPageLost):
                archive.discard(digest)
                state.forget_body(row.url, clock(), outcome.reason)
        if row.status == "gone":
            sink.writer.mark_gone(row.url, at=row.last_attempt or clock())
        sink.report.advance("build")
    rebuilt = {page.url for page in built} if everything else set()
    for row in state.unpublished_losses(everything=everything):
        if row.url in rebuilt and row.status != "gone":
            continue  # a rebuild made a record (or a reject) of its archived bytes
        if row.status == "gone" and row.content_hash is None and row.last_fetched is None:
            # Gone before it was ever fetched (a sitemap or link to a dead page): no rows to
            # mark, so it is a reject, not nothing.
            sink.reject_typed(
                row.url, "fetch", "page_gone", f"HTTP {row.last_status or 404}: never fetched",
                row.last_status, at=row.last_attempt,
            )  # fmt: skip
        elif row.status == "gone":
            sink.writer.mark_gone(row.url, at=row.last_attempt or clock())
        else:
            sink.reject_typed(
                row.url, "fetch", row.error_kind or "fetch_error",
                row.last_error or "the fetch failed", row.last_status, at=row.last_attempt,
            )  # fmt: skip
    return built


class _Aborted(Exception):
    """The acquire stage failed: the build stops where it is (nothing is published)."""


class _Builder:
    """The build stage in a thread beside the acquire stage: pages are extracted (on the other
    cores) while the crawl fetches more, then whatever the state still holds unbuilt."""

    def __init__(
        self, state: CrawlState, archive: RawArchive, sink: _Sink, workers: int | None
    ) -> None:
        self.queue: SimpleQueue[PageRow | None] = SimpleQueue()
        self.stopping = threading.Event()
        self.built: list[BuiltPage] = []
        self.error: BaseException | None = None
        self._args = (state, archive, sink, workers)
        self._thread = threading.Thread(target=self._run, name="pipeline-build", daemon=True)

    def start(self) -> _Builder:
        self._thread.start()
        return self

    def _streamed(self) -> Iterator[PageRow]:
        while (row := self.queue.get()) is not None:
            if self.stopping.is_set():
                break
            yield row
        if self.stopping.is_set():
            raise _Aborted  # not the rest of the state either: the run is ending

    def _run(self) -> None:
        state, archive, sink, workers = self._args
        try:
            self.built = _build(
                state, archive, sink, everything=False, workers=workers, streamed=self._streamed()
            )
        except _Aborted:
            return
        except BaseException as exc:  # handed to the main thread by finish()
            self.error = exc

    def finish(self) -> list[BuiltPage]:
        """The acquire stage is over: build the rest, wait, and return what was built."""
        self.queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.built

    def abort(self) -> None:
        """The acquire stage failed: drop what is queued and wait for the thread to end."""
        self.stopping.set()
        self.queue.put(None)
        self._thread.join()


def run_name(kind: str, run_id: int, started: datetime) -> str:
    """The run's id in the tables: text that no CSV reader takes for a number, and unique even
    when the state (which numbers the runs) was deleted: ``crawl-20261204T195400123456Z-000001``."""
    return f"{kind}-{started.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{run_id:06d}"


def _publish(
    state: CrawlState,
    sink: _Sink,
    run_id: int,
    name: str,
    built: list[BuiltPage],
    could_not_proceed: str | None = None,
) -> RunResult:
    """Publish, then tell the state what the tables now hold. ``could_not_proceed`` says why
    the run reached nothing (it then exits 3, whatever else it did)."""
    if could_not_proceed:
        LOG.error(
            "run %s could not proceed: %s", name, could_not_proceed,
            extra=_fields("could_not_proceed", run_id=name, reason=could_not_proceed),
        )  # fmt: skip
    exit_code = sink.publish(could_not_proceed is not None)
    state.record_built(built, PARSER_VERSION)
    state.mark_published()
    summary = sink.report.summary()
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    state.finish_run(run_id, counts, exit_code)
    LOG.info(
        "run %s finished: exit %d", name, exit_code,
        extra=_fields("run_finished", run_id=name, exit_code=exit_code),
    )  # fmt: skip
    text = sink.report.summary_text()
    if could_not_proceed:
        summary["could_not_proceed"] = could_not_proceed
        text += f"\n  {could_not_proceed}"
    return RunResult(name, summary, exit_code, text)


class _SleepClock:
    """A monotonic clock that a given sleep moves forward by what it was asked to sleep, for a
    crawl given a sleep of its own (tests: one that returns at once) but no clock: a page put
    off for a Retry-After is then due when that sleep says, not after real seconds of spinning.
    Several sleeps at once may move it further than the real clock would; it never goes back."""

    def __init__(self, sleep: Sleep) -> None:
        self._sleep = sleep
        self._ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self._ahead

    async def sleep(self, seconds: float) -> None:
        started = time.monotonic()
        await self._sleep(seconds)
        self._ahead += max(0.0, seconds - (time.monotonic() - started))


def make_fetcher(
    options: CrawlOptions,
    scope: Scope,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
    monotonic: Monotonic | None = None,
) -> Fetcher:
    """The crawl's fetcher, configured from the options."""
    kwargs: dict[str, object] = {}
    if options.user_agent:
        kwargs["user_agent"] = options.user_agent
    if sleep is not None:
        kwargs["sleep"] = sleep
    if monotonic is not None:
        kwargs["monotonic"] = monotonic
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
    sleep: Sleep | None = None,
    monotonic: Monotonic | None = None,
    clock: Clock = utc_now,
    show_progress: bool | None = None,
) -> RunResult:
    """Run one crawl from ``seeds``: acquire, then build; raises StateLocked if another run
    holds the state. ``sleep`` and ``monotonic`` (injectable for tests) pace the fetcher and
    time the pages put off by a Retry-After; a ``sleep`` given alone moves the clock by what it
    was asked to sleep (:class:`_SleepClock`)."""
    if sleep is not None and monotonic is None:
        timer = _SleepClock(sleep)
        sleep, monotonic = timer.sleep, timer.monotonic
    normalized = _seeds(seeds)
    scope = Scope.from_seeds(normalized, options.allowed_hosts)
    with CrawlState.open(options.state) as state, RunReport("crawl", show_progress) as report:
        archive = RawArchive.open(options.state / ARCHIVE_NAME)
        started = clock()
        run_id = state.begin_run(started)
        name = run_name("crawl", run_id, started)
        ahead = state.from_the_future(started)
        if ahead:
            report.warn(
                f"{ahead} pages were last attempted in the future (the clock was ahead when they "
                "were written): their due dates are ignored and they are fetched now"
            )
        with TableWriter(options.out, run_id=name, mode="crawl") as writer:
            acquire = _Acquire(options, state, archive, report, clock, scope)
            report.stage("fetch", state.due_count(started, options.refresh_after))
            sink = _Sink(writer, report, clock, known=state.get)
            builder = _Builder(state, archive, sink, options.workers).start()
            acquire.built = builder.queue.put

            async def go() -> None:
                fetcher = make_fetcher(
                    options, scope, transport=transport, sleep=sleep, monotonic=monotonic
                )
                async with fetcher as f:
                    await acquire.run(
                        normalized, f, sleep=sleep or asyncio.sleep,
                        monotonic=monotonic or time.monotonic,
                    )  # fmt: skip

            try:
                loop.run(go())
            except BaseException:
                builder.abort()
                raise
            if options.max_pages is not None:
                left = state.due_count(clock(), options.refresh_after)
                if left:
                    report.warn(
                        f"stopped at --max-pages {options.max_pages}: {left} pages are still "
                        "due; the next run fetches them"
                    )
            built = builder.finish()
            return _publish(state, sink, run_id, name, built, acquire.nothing_reached())


def reparse(
    options: CrawlOptions, *, clock: Clock = utc_now, show_progress: bool | None = None
) -> RunResult:
    """Rebuild every table from the raw archive with the current parser; no network."""
    with CrawlState.open(options.state) as state, RunReport("reparse", show_progress) as report:
        archive = RawArchive.open(options.state / ARCHIVE_NAME)
        if next(state.to_build(PARSER_VERSION, everything=True), None) is None:
            # Rebuilding from nothing would publish empty tables over the current ones.
            raise StateError(
                f"the state in {options.state} holds no archived pages to rebuild from; "
                "run `pipeline crawl` first"
            )
        if not archive.objects.is_dir() or next(archive.objects.iterdir(), None) is None:
            # Every page would become a raw_page_lost reject over good published rows.
            raise StateError(
                f"the raw archive {archive.root} is missing or empty while the state lists "
                "archived pages: restore it from a backup (a crawl fetches the pages again)"
            )
        started = clock()
        run_id = state.begin_run(started)
        name = run_name("reparse", run_id, started)
        with TableWriter(
            options.out,
            run_id=name,
            mode="reparse",
            disposition="replace",
            replaces=state.urls(),  # pages and rejects ingested from elsewhere are kept
        ) as writer:
            sink = _Sink(writer, report, clock, known=state.get)
            built = _build(state, archive, sink, everything=True, workers=options.workers)
            return _publish(state, sink, run_id, name, built)


def ingest(
    inputs: list[str],
    out: Path,
    *,
    timeout: float | None = None,
    clock: Clock = utc_now,
    show_progress: bool | None = None,
    workers: int | None = None,
) -> RunResult:
    """Parse the given files, directories and URLs (no discovery) and merge them into ``out``."""
    check_inputs(inputs)  # before the output is touched
    run_id = "ingest-" + clock().strftime("%Y%m%dT%H%M%S%fZ")
    with (
        RunReport("ingest", show_progress) as report,
        TableWriter(out, run_id=run_id, mode="ingest") as writer,
    ):
        sink = _Sink(writer, report, clock)
        report.stage("parse", count_inputs(inputs) if report.showing else 0)
        reach = Reach()
        for parsed in iter_parsed(inputs, timeout=timeout, workers=workers):
            reach.count(parsed.outcome)
            if not isinstance(parsed.outcome, FetchError):
                report.add("fetched")
            sink.outcome(
                parsed.outcome, parsed.source, parsed.digest or "", parsed.fetched_at, None
            )
            report.advance("parse")
        could_not_proceed = reach.nothing_reached()
        if could_not_proceed:
            LOG.error(
                "run %s could not proceed: %s", run_id, could_not_proceed,
                extra=_fields("could_not_proceed", run_id=run_id, reason=could_not_proceed),
            )  # fmt: skip
        exit_code = sink.publish(could_not_proceed is not None)
        summary, text = report.summary(), report.summary_text()
        if could_not_proceed:
            summary["could_not_proceed"] = could_not_proceed
            text += f"\n  {could_not_proceed}"
        return RunResult(run_id, summary, exit_code, text)
