"""Polite, bounded, retrying HTTP fetching.

One :class:`Fetcher` per run owns the HTTP client and every politeness rule::

    async with Fetcher(rate=1.0) as fetcher:
        result = await fetcher.fetch(url, etag=old_etag, last_modified=old_last_modified)
        if result.not_modified:
            ...

What a fetch does, in order, for every hop of a redirect chain:

1. **scope**: only ``http``/``https`` URLs that ``allowed_hosts`` accepts (:class:`OutOfScope` for
   the requested URL, :class:`RedirectError` for a redirect hop); once connected, the peer's IP
   address must pass ``allowed_address`` (a guard against names resolving inside the network);
2. **robots.txt** (:class:`RobotsDisallowed`) (:class:`~pipeline.acquire.robots.RobotsCache`);
3. **slots**: one of ``per_host_concurrency`` slots for the host, then one of ``concurrency``;
4. **pace**: at least ``1 / rate`` seconds (or robots.txt's Crawl-delay, if larger) between the
   starts of two requests to the same host;
5. **exchange** under ``total_timeout``: the body is streamed and decompressed with a
   bounded inflater (:mod:`pipeline.acquire.body`), so no body or gzip bomb outgrows ``max_bytes``.

Failures are translated into :mod:`pipeline.errors` at this boundary. Transient ones (timeouts,
resets, truncated bodies, 408/429/5xx) are retried by tenacity as :class:`RetryPolicy` says,
honouring ``Retry-After``; after the last attempt the last error is raised. Terminal ones are
raised at once.

A 429 or 503 with ``Retry-After`` holds its whole host for that long (step 4 waits it out for
every request to the host). The fetch sleeps for it only when it is short (``policy.inline_limit``,
5 s) and an attempt is left; a longer one is raised at once (:class:`RetryableStatus` with its
``retry_after``), and while the hold lasts longer than that limit, a fetch for the host raises
:class:`HostBackingOff` without sending anything. No worker sleeps through a long Retry-After:
the caller (the crawl) puts the page aside until it is due.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from pipeline.acquire.body import lower_headers, read_body
from pipeline.acquire.pacing import HostPacer, RetryWait, log_retry
from pipeline.acquire.policy import FetchLimits, RetryPolicy
from pipeline.acquire.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsResponse
from pipeline.acquire.transport import make_transport
from pipeline.errors import (
    CrawlDelayTooLong,
    FetchConnectionError,
    FetchError,
    FetchTimeout,
    HostBackingOff,
    HttpStatusError,
    OutOfScope,
    PageGone,
    RedirectError,
    RetryableStatus,
    RobotsDisallowed,
    RobotsUnreachable,
    TransientFetchError,
    UsageError,
)
from pipeline.version import __version__

__all__ = [
    "DEFAULT_USER_AGENT",
    "FetchLimits",
    "FetchResult",
    "Fetcher",
    "RetryPolicy",
    "parse_retry_after",
]


DEFAULT_USER_AGENT = (
    f"procedure-pages-pipeline/{__version__} "
    "(+https://github.com/procedure-pages-pipeline/procedure-pages-pipeline; "
    "contact: see the project README)"
)
"""Identifies the crawler; robots.txt groups are matched on its product token."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SUCCESS_STATUSES = frozenset({200, 203})
GONE_STATUSES = frozenset({404, 410})
#: Answers by which a host asks to be sent less: every request to it waits (a host backoff).
HOST_BACKOFF_STATUSES = frozenset({429, 503})
ACCEPT_ENCODING = "gzip, deflate"  # only what the bounded inflater below can decode
#: A host as sent: a name in ASCII (IDNA-encoded), an IPv4 or an IPv6 address.
_HOST = re.compile(rb"[A-Za-z0-9_.:-]+")


# --- result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """One fetched page: a 200 with its (decompressed) body, or a 304 with an empty body."""

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    body: bytes
    charset: str | None
    etag: str | None
    last_modified: str | None
    fetched_at: datetime
    attempts: int
    elapsed: float

    @property
    def not_modified(self) -> bool:
        """True when the server answered 304 to a conditional request."""
        return self.status == 304


@dataclass(frozen=True)
class _Response:
    """What one hop brought back, before the status is judged."""

    url: httpx.URL
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""
    charset: str | None = None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or HTTP-date), or None if unusable.

    A date in the past gives 0; a naive date is taken as UTC.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() alone takes "²" for a digit
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


def _host_key(url: httpx.URL) -> str:
    """The key for per-host slots and pacing: host and explicit port."""
    return f"{url.host}:{url.port}" if url.port else url.host


# --- the fetcher -----------------------------------------------------------------------------


@dataclass
class _Hop:
    """Per-request settings for walking a redirect chain."""

    headers: dict[str, str]
    source: str
    max_bytes: int
    truncate: bool = False
    check_robots: bool = True
    seen: set[str] = field(default_factory=set)


class Fetcher:
    """Fetches pages politely: scoped, robots-aware, rate-limited, bounded and retried.

    Use it as an async context manager; a client it created itself is closed on exit, an
    injected ``client`` is left to its owner. ``rate`` is requests per second per host (0: no
    limit). ``sleep``, ``clock``, ``monotonic`` and ``rng`` are injectable so tests run instantly
    and deterministically.

    ``allowed_hosts`` is called with every absolute URL about to be requested (the page and each
    redirect hop, fragment removed) and says whether it is in scope; it takes the whole URL so a
    :meth:`pipeline.acquire.urls.Scope.allows` fits as is. ``allowed_address`` is called with the IP
    address actually connected to; a refusal raises :class:`OutOfScope` before the body is read
    (the request itself has then been sent: this catches, it does not prevent).
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        policy: RetryPolicy = RetryPolicy(),  # frozen: a shared default is safe
        limits: FetchLimits = FetchLimits(),
        concurrency: int = 8,
        per_host_concurrency: int = 2,
        rate: float = 1.0,
        allowed_hosts: Callable[[str], bool] | None = None,
        allowed_address: Callable[[str], bool] | None = None,
        obey_robots: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1 or per_host_concurrency < 1:
            raise UsageError("concurrency and per_host_concurrency must be at least 1")
        if rate < 0:
            raise UsageError(f"rate must not be negative, not {rate}")
        self.user_agent = user_agent
        self.policy = policy
        self.limits = limits
        self.rate = rate
        self.obey_robots = obey_robots
        self._allowed_hosts = allowed_hosts
        self._allowed_address = allowed_address
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._per_host_concurrency = per_host_concurrency
        self._global_slots = asyncio.Semaphore(concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._pacer = HostPacer(monotonic, sleep)
        self._owns_client = client is None
        self._client = client or self._make_client(transport, concurrency)
        self.robots = RobotsCache(
            self._fetch_robots_txt, user_agent=_product_token(user_agent), monotonic=monotonic
        )

    def _make_client(
        self, transport: httpx.AsyncBaseTransport | None, concurrency: int
    ) -> httpx.AsyncClient:
        """An HTTP/2-capable client with the timeouts and pool size of this fetcher."""
        lim = self.limits
        pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(
            http2=True,
            transport=transport or make_transport(pool),
            follow_redirects=False,
            timeout=httpx.Timeout(
                connect=lim.connect_timeout,
                read=lim.read_timeout,
                write=lim.read_timeout,
                pool=lim.total_timeout,
            ),
            limits=pool,
            headers={"User-Agent": self.user_agent},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this fetcher created it."""
        if self._owns_client:
            await self._client.aclose()

    # -- public -------------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        max_bytes: int | None = None,
        max_attempts: int | None = None,
    ) -> FetchResult:
        """Fetch ``url`` (conditionally when ``etag``/``last_modified`` are given).

        ``max_bytes`` overrides the limits' body size for this URL (a sitemap may be 50 MB);
        ``max_attempts`` the policy's attempts (what is left of a page's budget in a crawl).

        Returns a 200 result with the body or a 304 result (``not_modified``). Raises a
        :class:`~pipeline.errors.FetchError`: a terminal one at once, a transient one once
        the attempts have failed (the last attempt's error), or at once when waiting for the
        next attempt would mean sleeping through a Retry-After longer than the policy's inline
        limit; :class:`~pipeline.errors.HostBackingOff` without a request while the host is
        held that long. The error's ``attempts`` says how many requests were sent.
        """
        started = self._monotonic()
        target = self._check_scope(url, source=url, hop=False)
        self._check_hold(target, source=url)  # before robots.txt: nothing is asked of the host
        headers = self._request_headers(etag, last_modified)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max_attempts or self.policy.max_attempts),
            wait=RetryWait(self.policy, self._rng),
            retry=retry_if_exception(self._worth_retrying),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        response: _Response | None = None
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    hop = _Hop(
                        headers=headers, source=url, max_bytes=max_bytes or self.limits.max_bytes
                    )
                    response = await self._follow(target, hop)
                    self._judge(response, conditional=bool(etag or last_modified), source=url)
        except FetchError as exc:
            # The last attempt sent nothing when the host was found held.
            exc.attempts = attempts - 1 if isinstance(exc, HostBackingOff) else attempts
            raise
        assert response is not None  # the loop either set it or raised
        return self._result(
            url,
            response,
            attempts=attempts,
            started=started,
            etag=etag,
            last_modified=last_modified,
        )

    # -- steps --------------------------------------------------------------------------------

    def _request_headers(self, etag: str | None, last_modified: str | None) -> dict[str, str]:
        """User-Agent, Accept-Encoding and the conditional headers."""
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": ACCEPT_ENCODING}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return headers

    def _check_scope(self, url: str | httpx.URL, *, source: str, hop: bool) -> httpx.URL:
        """Parse ``url`` and refuse it unless http(s) and on an allowed host."""
        error = RedirectError if hop else OutOfScope
        what = "redirect to" if hop else "URL"
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise error(f"invalid {what} {url!s}: {exc}", source=source) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise error(f"{what} {url!s} is not an absolute http(s) URL", source=source)
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise error(f"{what} {url!s} has no valid port", source=source)
        if not _HOST.fullmatch(parsed.raw_host):  # "exa mple.org" fails DNS on every run
            raise error(f"{what} {url!s} has no valid host name", source=source)
        parsed = parsed.copy_with(fragment=None)
        if self._allowed_hosts is not None and not self._allowed_hosts(str(parsed)):
            raise error(f"{what} {url!s}: host {parsed.host} is out of scope", source=source)
        return parsed

    def _check_hold(self, url: httpx.URL, source: str) -> None:
        """Raise :class:`HostBackingOff` if the host is held for longer than a fetch waits."""
        held = self._pacer.held_for(_host_key(url))
        if held > self.policy.inline_limit:
            raise _backing_off(url, held, source)

    def _worth_retrying(self, exc: BaseException) -> bool:
        """tenacity ``retry``: transient failures are retried inside the fetch, except

        - an unreachable robots.txt (cached for minutes: asking again within one fetch would get
          the same answer);
        - a host found held (:class:`HostBackingOff`), and a Retry-After longer than the
          policy's inline limit: sleeping through it would hold a worker; the caller re-queues
          the page for when it is due instead.
        """
        if not isinstance(exc, TransientFetchError) or isinstance(
            exc, RobotsUnreachable | HostBackingOff
        ):
            return False
        return exc.retry_after is None or exc.retry_after <= self.policy.inline_limit

    async def _check_robots(self, url: httpx.URL, source: str) -> None:
        """Raise :class:`RobotsDisallowed` unless robots.txt lets this fetcher have ``url``."""
        if await self.robots.can_fetch(str(url)):
            return
        status = await self.robots.status(str(url))
        if status.state == "disallow_all":
            raise RobotsUnreachable(
                f"robots.txt {status.reason}; RFC 9309: disallowed for now",
                source=source,
            )
        raise RobotsDisallowed(
            f"robots.txt disallows {url.raw_path.decode('ascii')}", source=source
        )

    async def _interval(self, url: httpx.URL) -> float:
        """Minimum seconds between request starts to this host (rate or Crawl-delay)."""
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        if self.obey_robots:
            delay = await self.robots.crawl_delay(str(url))
            if delay is not None and delay > interval:
                if delay > self.policy.retry_after_cap:
                    # One request a day would hold the run (and its lock) for days, silently.
                    raise CrawlDelayTooLong(
                        f"robots.txt asks for {delay:g} s between requests, over the "
                        f"{self.policy.retry_after_cap:g} s a run waits: due again then",
                        source=str(url),
                        retry_after=delay,
                    )
                interval = delay
        return interval

    async def _follow(self, url: httpx.URL, hop: _Hop) -> _Response:
        """Walk the redirect chain from ``url`` by hand, checking each hop."""
        hop.seen = {str(url)}
        for _ in range(self.limits.max_redirects + 1):
            if hop.check_robots and self.obey_robots:
                await self._check_robots(url, hop.source)
            interval = await self._interval(url) if hop.check_robots else self._base_interval()
            response = await self._exchange(url, hop, interval)
            if response.status not in REDIRECT_STATUSES:
                return response
            url = self._redirect_target(response, hop)
        raise RedirectError(
            f"more than {self.limits.max_redirects} redirects, last to {url}", source=hop.source
        )

    def _base_interval(self) -> float:
        """The interval from ``rate`` alone."""
        return 1.0 / self.rate if self.rate > 0 else 0.0

    def _redirect_target(self, response: _Response, hop: _Hop) -> httpx.URL:
        """The next hop's URL, refusing a missing Location, a scope exit or a loop."""
        location = response.headers.get("location")
        if not location:
            raise RedirectError(f"{response.status} redirect without a Location", source=hop.source)
        try:
            joined = response.url.join(location)
        except httpx.InvalidURL as exc:
            raise RedirectError(f"bad Location {location!r}: {exc}", source=hop.source) from exc
        target = self._check_scope(joined, source=hop.source, hop=True)
        if str(target) in hop.seen:
            raise RedirectError(f"redirect loop back to {target}", source=hop.source)
        hop.seen.add(str(target))
        return target

    @asynccontextmanager
    async def _slots(self, host: str) -> AsyncIterator[None]:
        """Hold a per-host slot, then a global one."""
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._per_host_concurrency)
        async with slot, self._global_slots:
            yield

    async def _exchange(self, url: httpx.URL, hop: _Hop, interval: float) -> _Response:
        """One paced request under ``total_timeout``; the body is read only for a success."""
        host = _host_key(url)
        async with self._slots(host):
            held = await self._pacer.wait_turn(host, interval, max_hold=self.policy.inline_limit)
            if held:
                raise _backing_off(url, held, hop.source)
            try:
                async with asyncio.timeout(self.limits.total_timeout):
                    return await self._send(url, hop)
            except TimeoutError as exc:
                raise FetchTimeout(
                    f"no complete answer within {self.limits.total_timeout} s", source=hop.source
                ) from exc

    async def _send(self, url: httpx.URL, hop: _Hop) -> _Response:
        """Send the GET and stream the answer; transport errors become fetch errors."""
        try:
            async with self._client.stream(
                "GET", url, headers=hop.headers, follow_redirects=False
            ) as response:
                self._check_peer(response, url, hop.source)
                body = b""
                if response.status_code in SUCCESS_STATUSES:
                    body = await read_body(
                        response, max_bytes=hop.max_bytes, truncate=hop.truncate, source=hop.source
                    )
                return _Response(
                    url=url,
                    status=response.status_code,
                    reason=response.reason_phrase,
                    headers=lower_headers(response.headers),
                    body=body,
                    charset=response.charset_encoding,
                )
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"{type(exc).__name__} on {url}", source=hop.source) from exc
        except httpx.RemoteProtocolError as exc:
            if "location" in str(exc).lower():  # h11 refused the Location header itself
                raise RedirectError(
                    f"unusable redirect from {url}: {exc}", source=hop.source
                ) from exc
            raise FetchConnectionError(f"{exc!r} on {url}", source=hop.source) from exc
        except httpx.TransportError as exc:
            raise FetchConnectionError(f"{exc!r} on {url}", source=hop.source) from exc
        except (
            httpx.InvalidURL
        ) as exc:  # httpx parses a redirect's Location even when not following
            raise RedirectError(f"unusable redirect from {url}: {exc}", source=hop.source) from exc

    def _check_peer(self, response: httpx.Response, url: httpx.URL, source: str) -> None:
        """Refuse the answer if the connection went to an address out of scope."""
        if self._allowed_address is None:
            return
        peer = _peer_address(response)
        if peer is not None and not self._allowed_address(peer):
            raise OutOfScope(f"{url.host} is at {peer}, an address out of scope", source=source)

    def _judge(self, response: _Response, *, conditional: bool, source: str) -> None:
        """Raise the right error for a status that is not a success."""
        status = response.status
        if status in SUCCESS_STATUSES or (status == 304 and conditional):
            return
        reason = f"HTTP {status} {response.reason}".rstrip()
        if status in self.policy.retry_statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            if status in HOST_BACKOFF_STATUSES and retry_after is not None:
                # The host says when to come back: the whole host waits, not only this request,
                # and for as long as it asked (a crawl does not wait that long: it fails the
                # host's pages for a later run when the wait is over its cap).
                self._pacer.hold(_host_key(response.url), retry_after)
            raise RetryableStatus(reason, source=source, status=status, retry_after=retry_after)
        if status in GONE_STATUSES:
            raise PageGone(reason, source=source, status=status)
        raise HttpStatusError(reason, source=source, status=status)

    def _result(
        self,
        url: str,
        response: _Response,
        *,
        attempts: int,
        started: float,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult:
        """Build the :class:`FetchResult`; a 304 keeps the validators that were sent."""
        not_modified = response.status == 304
        return FetchResult(
            url=url,
            final_url=str(response.url),
            status=response.status,
            headers=response.headers,
            body=b"" if not_modified else response.body,
            charset=None if not_modified else response.charset,
            etag=response.headers.get("etag") or (etag if not_modified else None),
            last_modified=response.headers.get("last-modified")
            or (last_modified if not_modified else None),
            fetched_at=self._clock(),
            attempts=attempts,
            elapsed=self._monotonic() - started,
        )

    async def _fetch_robots_txt(self, robots_url: str) -> RobotsResponse:
        """The :class:`RobotsCache` fetch: one try, any status returned, body cut at 500 KiB.

        Redirects are followed (scope-checked); transport failures raise transient errors,
        redirect trouble a terminal one, as :class:`RobotsCache` expects.
        """
        target = self._check_scope(robots_url, source=robots_url, hop=False)
        hop = _Hop(
            headers=self._request_headers(None, None),
            source=robots_url,
            max_bytes=ROBOTS_MAX_BYTES,
            truncate=True,
            check_robots=False,
        )
        response = await self._follow(target, hop)
        return RobotsResponse(status=response.status, body=response.body)


def _backing_off(url: httpx.URL, held: float, source: str) -> HostBackingOff:
    """The error for a request not sent because its host is held ``held`` seconds more."""
    return HostBackingOff(
        f"{_host_key(url)} asked for a pause (Retry-After): {held:.0f} s left, not sent",
        source=source,
        retry_after=held,
    )


def _peer_address(response: httpx.Response) -> str | None:
    """The IP address the response came from, when the transport tells (not for mocks)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        address = stream.get_extra_info("server_addr")
    except Exception:  # a transport without the extra info
        return None
    return str(address[0]) if address else None


def _product_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched on ("name" of "name/1.0 (...)")."""
    token = user_agent.split("/", 1)[0].split(None, 1)
    return token[0] if token else user_agent
