"""The pipeline's exception tree.

Every failure the pipeline reports is a :class:`PipelineError`. The tree has one branch per
stage of the data's path, and every class says whether the failure is *transient* (worth a retry:
the same request may well succeed later) or *terminal* (reject the page with a reason)::

    PipelineError                      root; .transient, .stage, .reason
    ├── UsageError                     bad option, bad path, bad config value (exit code 2)
    │   └── VocabularyError            the extractor's vocabulary file is malformed
    ├── StateError                     state directory unusable (exit code 3)
    │   ├── StateLocked                another run holds the lock
    │   └── StateVersionError          state written by a newer version
    ├── FetchError                     stage "fetch"
    │   ├── TransientFetchError        transient = True (retried)
    │   │   ├── FetchTimeout
    │   │   ├── FetchConnectionError
    │   │   ├── TruncatedBody
    │   │   ├── RetryableStatus        408, 429, 500, 502, 503, 504 (carries Retry-After)
    │   │   ├── CrawlDelayTooLong      robots.txt's Crawl-delay is over what a run waits
    │   │   ├── HostBackingOff         the host is held by an earlier Retry-After: not sent
    │   │   └── RobotsUnreachable      robots.txt unreachable: disallowed for now, due next run
    │   └── TerminalFetchError         transient = False
    │       ├── HttpStatusError        any other non-2xx status
    │       │   └── PageGone           404, 410
    │       ├── ResponseTooLarge       body or decompressed body over the limit
    │       ├── BadContentEncoding     the body is not in its labelled Content-Encoding
    │       ├── RedirectError          loop, too many hops, or a hop that leaves the scope
    │       ├── OutOfScope             URL outside the allowed hosts or schemes
    │       └── RobotsDisallowed       robots.txt forbids the URL
    ├── ParseError                     stage "parse", always terminal
    │   ├── EmptyPage
    │   ├── BinaryContent
    │   ├── NotHtml
    │   ├── PageTooLarge
    │   ├── NotAProcedurePage          .kind: "not_found", "listing", "condition", "unknown"
    │   ├── MissingCode                no code / code system could be established
    │   └── RawPageLost                the archived bytes are missing or damaged (fetched again)
    ├── RecordInvalid                  stage "validate": the record broke the model's rules
    └── WriteError                     stage "write": the tables could not be written

A transient fetch error may carry ``retry_after``: the seconds after which the server said to
come back (a 429 or 503's ``Retry-After``, or what is left of the host's hold for
:class:`HostBackingOff`). The crawl re-queues such a page through that time instead of waiting
in a worker. ``attempts`` on a fetch error counts the requests the failed fetch sent.

Third-party exceptions are translated at the boundary that meets them and kept as the cause
(``raise FetchTimeout(...) from exc``), so callers only ever catch this tree.

:func:`exit_code_of` says which exit code a run that ends with an exception has (SPEC.md:
0 all good, 1 finished with rejects, 2 usage, 3 could not proceed, 4 unexpected; and as for
signals, 130 interrupted, 141 stdout's reader went away).
"""

from __future__ import annotations

import errno
import sqlite3
from typing import ClassVar, Literal

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_FAILED, EXIT_INTERNAL = 0, 1, 2, 3, 4
#: 128 + SIGINT, what a shell reports for a process ended by Ctrl-C (SIGTERM ends runs the same).
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: stdout's reader closed the pipe (``pipeline parse DIR | head``).
EXIT_BROKEN_PIPE = 141
#: Errors of the machine, not the pipeline: a full disk or quota, a read-only file system, a
#: file the user may not write. The run could not proceed (exit 3), with the file named.
CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

Stage = Literal["fetch", "parse", "validate", "write", "state", "usage"]
#: What a page that is not a procedure page is instead (:class:`NotAProcedurePage`).
PageKind = Literal["not_found", "listing", "condition", "unknown"]
PAGE_KINDS: tuple[PageKind, ...] = ("not_found", "listing", "condition", "unknown")


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    transient: ClassVar[bool] = False
    stage: ClassVar[Stage] = "usage"

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source

    @property
    def kind(self) -> str:
        """A short machine-readable name for the failure (the class name in snake case)."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")

    def __str__(self) -> str:
        return self.reason


# --- usage and state -------------------------------------------------------------------------


class UsageError(PipelineError):
    """The user asked for something that cannot work: a bad option, path or config value."""

    stage = "usage"


class VocabularyError(UsageError):
    """The extractor's vocabulary file is malformed: an unknown section key or slot, an empty
    list, a weight that is not positive, a pattern that does not compile."""


class StateError(PipelineError):
    """The state directory cannot be used (unreadable, corrupt, or of a newer version)."""

    stage = "state"


class StateLocked(StateError):
    """Another run holds the lock on the state directory, or another program a lock on its
    database."""


class StateVersionError(StateError):
    """The state was written by a newer version of the pipeline."""


# --- fetch -----------------------------------------------------------------------------------


class FetchError(PipelineError):
    """A page could not be fetched."""

    stage = "fetch"

    def __init__(
        self, reason: str, *, source: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason, source=source)
        self.status = status
        #: Requests the failed fetch sent (set by the fetcher; 0 when none was sent).
        self.attempts = 0


class TransientFetchError(FetchError):
    """A failure that may go away on its own: retry it with backoff.

    ``retry_after``: seconds after which the server said to come back, when it said so.
    """

    transient = True

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, source=source, status=status)
        self.retry_after = retry_after


class FetchTimeout(TransientFetchError):
    """Connect, read or overall timeout."""


class FetchConnectionError(TransientFetchError):
    """The connection failed or was reset."""


class TruncatedBody(TransientFetchError):
    """The body ended before its announced length, or its encoding was cut short."""


class RetryableStatus(TransientFetchError):
    """408, 429, 500, 502, 503 or 504; ``retry_after`` is the server's wish in seconds."""


class CrawlDelayTooLong(TransientFetchError):
    """robots.txt asks for more time between requests than a run waits (its Crawl-delay is
    ``retry_after``): the host's pages wait for a later run, as Nutch's max crawl delay does."""


class HostBackingOff(TransientFetchError):
    """Not sent: an earlier 429 or 503 with Retry-After holds the host for longer than a fetch
    waits inline. ``retry_after`` is what is left of the hold; the page is due after it."""


class TerminalFetchError(FetchError):
    """A failure that retrying will not fix: reject the URL with this reason."""


class HttpStatusError(TerminalFetchError):
    """The server answered with a status that is neither success nor retryable."""


class PageGone(HttpStatusError):
    """404 or 410: the page no longer exists (the state marks it gone)."""


class ResponseTooLarge(TerminalFetchError):
    """The body, or the body after decompression, exceeds the size limit."""


class RedirectError(TerminalFetchError):
    """A redirect loop, too many redirects, or a redirect that leaves the crawl's scope."""


class OutOfScope(TerminalFetchError):
    """The URL is outside the allowed hosts or schemes."""


class BadContentEncoding(TerminalFetchError):
    """The body is not in the Content-Encoding its headers name (a "gzip" label on plain
    bytes): the same answer every time, so not retried."""


class RobotsDisallowed(TerminalFetchError):
    """robots.txt forbids fetching the URL."""


class RobotsUnreachable(TransientFetchError):
    """robots.txt could not be fetched (429, 5xx, network failure): RFC 9309 says to disallow
    everything *for now*. The page is due again on the next run, never pushed out for days; it
    is not retried inside one fetch, since the host's answer is cached for minutes."""


# --- parse -----------------------------------------------------------------------------------


class ParseError(PipelineError):
    """The page could not be turned into a record. Always terminal: the same bytes fail again."""

    stage = "parse"


class EmptyPage(ParseError):
    """The page has no bytes, or no visible text."""


class BinaryContent(ParseError):
    """The bytes are not text (an image, an archive, a PDF...)."""


class NotHtml(ParseError):
    """The bytes are text but not an HTML document."""


class PageTooLarge(ParseError):
    """The page is over the parser's size limit."""


class NotAProcedurePage(ParseError):
    """An HTML page, but not a procedure page; ``page_kind`` says what it is instead."""

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        page_kind: PageKind = "unknown",
    ) -> None:
        super().__init__(reason, source=source)
        self.page_kind = page_kind


class RawPageLost(ParseError):
    """The archived raw page is missing or damaged: the build cannot read it. The state forgets
    the page's bytes, so the next crawl fetches it again in full and archives it anew."""


class MissingCode(ParseError):
    """Neither the page nor its URL gives a code that fits a known code system."""


# --- validate and write ----------------------------------------------------------------------


class RecordInvalid(PipelineError):
    """The parsed record broke a rule of the model (code format, ranges, required fields)."""

    stage = "validate"


class WriteError(PipelineError):
    """The output tables could not be written or published."""

    stage = "write"


def exit_code_of(exc: BaseException) -> int:
    """The exit code of a run that ends with ``exc`` (the command line's mapping)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, PipelineError | sqlite3.DatabaseError):
        return EXIT_FAILED
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    if isinstance(exc, OSError) and exc.errno in CANNOT_WRITE:
        return EXIT_FAILED
    return EXIT_INTERNAL
