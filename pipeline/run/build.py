"""The build stage's engine: bytes in, a record or a typed reject out, on every core.

Extraction is a pure function of a page's bytes (and where it came from), so it runs in a pool of
worker processes. A :class:`Job` names the bytes (held in memory, a file, or an object of the raw
archive) rather than carrying them when it can, so a worker reads and decompresses its own input
and the parent only ships a few hundred bytes a page. Results come back in the order of the jobs.

Small batches are extracted in this process: starting workers costs more than it saves below
:data:`POOL_MIN_JOBS` pages. ``workers=1`` never starts a pool.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from pipeline.acquire.archive import ArchiveError, RawArchive, content_hash
from pipeline.acquire.sources import read_page
from pipeline.encoding import charset_from_content_type
from pipeline.errors import ParseError, PipelineError, RawPageLost
from pipeline.extract.page import Extraction, extract

#: Below this many pages a batch is extracted in process (a pool costs ~0.3 s to start).
POOL_MIN_JOBS = 256
#: Jobs handed to a worker at a time (amortizes the inter-process round trip).
CHUNK = 16
#: Jobs in flight at once per worker: bounds memory whatever the number of pages.
WINDOW_PER_WORKER = 4 * CHUNK

Built = Extraction | PipelineError


@dataclass(frozen=True, slots=True)
class Result:
    """A job's outcome, and the content hash of the bytes it read (None if none were read)."""

    outcome: Built
    digest: str | None


@dataclass(frozen=True, slots=True)
class Job:
    """One page to extract: where its bytes are, and where it came from.

    Exactly one of ``body``, ``path`` and ``digest`` (with ``archive``) gives the bytes.
    ``source`` is the record's source; ``url`` is a place the code may be read from (by default
    the source). ``charset`` is the HTTP charset, if the page was fetched.
    """

    source: str
    body: bytes | None = None
    path: str | None = None
    digest: str | None = None
    archive: str | None = None
    url: str | None = None
    charset: str | None = None


def build_one(job: Job) -> Result:
    """Extract one job; every pipeline error is returned, not raised."""
    digest = None
    try:
        body, charset = _bytes_of(job)
        digest = job.digest or content_hash(body)
        return Result(extract(body, url=job.url or job.source, http_charset=charset), digest)
    except PipelineError as exc:
        exc.source = exc.source or job.source
        return Result(exc, digest)


def _bytes_of(job: Job) -> tuple[bytes, str | None]:
    if job.body is not None:
        return job.body, job.charset
    if job.path is not None:
        raw = read_page(Path(job.path))
        return raw.body, job.charset or raw.http_charset
    if job.digest is not None and job.archive is not None:
        archive = RawArchive(Path(job.archive))
        try:
            body = archive.get(job.digest)
        except ArchiveError as exc:
            raise RawPageLost(
                f"raw page not in the archive ({exc}); it is fetched again on the next crawl",
                source=job.source,
            ) from exc
        meta = archive.meta(job.digest)
        charset = job.charset or charset_from_content_type(meta.content_type if meta else None)
        return body, charset
    raise ParseError("nothing to extract: the job names no bytes", source=job.source)


def default_workers() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_batch(jobs: list[Job]) -> list[Result]:
    """Extract a batch of jobs (one round trip to a worker)."""
    return [build_one(job) for job in jobs]


def build_all(
    jobs: Iterable[Job],
    *,
    workers: int | None = None,
    pool_min: int = POOL_MIN_JOBS,
    chunk: int = CHUNK,
) -> Iterator[tuple[Job, Result]]:
    """``(job, result)`` for every job, in order, on ``workers`` processes (default: all).

    A pool starts only when at least ``pool_min`` jobs are waiting. Jobs go to the workers in
    batches of ``chunk`` as they arrive, so ``jobs`` may be a stream that another thread feeds
    (the crawl builds pages while it fetches others); results come back as soon as the oldest
    batch is done. At most a window of batches is in flight: memory stays bounded however
    many jobs there are.
    """
    size = default_workers() if workers is None else max(1, workers)
    source = iter(jobs)
    head = list(islice(source, pool_min))
    if size == 1 or len(head) < pool_min:
        for job in chain(head, source):
            yield job, build_one(job)
        return
    # forkserver: workers never inherit the parent's threads (the event loop, a test server) or
    # its open state database; they import the extractor once, in the server.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pipeline.run.build"])
    window = max(2, size * WINDOW_PER_WORKER // max(1, chunk))
    in_flight: deque[tuple[list[Job], Future[list[Result]]]] = deque()
    with ProcessPoolExecutor(
        max_workers=size, mp_context=context, initializer=_watch, initargs=(os.getpid(),)
    ) as pool:
        for batch in _batches(chain(head, source), chunk):
            in_flight.append((batch, pool.submit(build_batch, batch)))
            while in_flight and (len(in_flight) >= window or in_flight[0][1].done()):
                done, future = in_flight.popleft()
                yield from zip(done, future.result(), strict=True)
        while in_flight:
            done, future = in_flight.popleft()
            yield from zip(done, future.result(), strict=True)


#: How often a worker checks that the process it works for is still alive, seconds.
WATCH_EVERY = 1.0


def _watch(parent: int) -> None:
    """In a worker: exit when ``parent`` is gone. A parent killed with SIGKILL never tells its
    workers, and they (and the fork server, which waits for them) would wait forever."""

    def watch() -> None:
        while True:
            time.sleep(WATCH_EVERY)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, under another user (pid reuse): keep watching
                continue

    threading.Thread(target=watch, name="pipeline-watch-parent", daemon=True).start()


def _batches(jobs: Iterator[Job], size: int) -> Iterator[list[Job]]:
    while batch := list(islice(jobs, size)):
        yield batch
