"""robots.txt, fetched once per origin and cached, with RFC 9309 failure handling.

:class:`RobotsCache` does no networking of its own: it is given a ``fetch`` callable (the
:class:`~pipeline.acquire.fetch.Fetcher` passes one that reuses its client, slots and pacing, with a
single try and no retries). What an answer means, per RFC 9309 section 2.3.1:

=================================  ==============================================================
answer for ``/robots.txt``         behaviour
=================================  ==============================================================
2xx                                parse the rules (first 500 KiB) with protego; cached ``ttl``
                                   (24 h, the RFC's ceiling)
4xx ("unavailable")                allow everything; cached ``ttl``
429, 5xx, network failure          "unreachable": disallow everything for ``unreachable_ttl``
("unreachable")                    (5 min), then ask again. If an earlier copy was parsed, keep
                                   using it instead (RFC 9309 2.4 allows a stale copy when the
                                   file is unreachable)
redirect trouble (loop, > 5 hops,  "unavailable": allow everything (RFC 9309 2.3.1.2)
off-scope hop)
=================================  ==============================================================

429 is not a 5xx, but it says "not now" rather than "no file", so it is treated as unreachable.
The ``fetch`` callable returns a :class:`RobotsResponse` for any HTTP answer, raises a
:class:`~pipeline.errors.TransientFetchError` when the server is unreachable and any other
:class:`~pipeline.errors.FetchError` when the redirect chain is unusable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

from protego import Protego

from pipeline.errors import FetchError, TransientFetchError

log = logging.getLogger(__name__)

__all__ = [
    "ROBOTS_MAX_BYTES",
    "RobotsCache",
    "RobotsFetch",
    "RobotsResponse",
    "RobotsState",
    "RobotsStatus",
]

ROBOTS_MAX_BYTES = 512 * 1024
"""robots.txt bytes that are parsed; RFC 9309 asks for at least 500 KiB."""

RobotsState = Literal["parsed", "allow_all", "disallow_all"]


@dataclass(frozen=True)
class RobotsResponse:
    """What the fetch callable got for ``/robots.txt``: the final status and (for 2xx) body."""

    status: int
    body: bytes = b""


RobotsFetch = Callable[[str], Awaitable[RobotsResponse]]


@dataclass(frozen=True)
class RobotsStatus:
    """How the cache currently judges one origin, and why."""

    origin: str
    state: RobotsState
    reason: str
    http_status: int | None
    expires: float


@dataclass(frozen=True)
class _Entry:
    status: RobotsStatus
    parser: Protego | None = None


def origin_of(url_or_host: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased; a bare host is taken as https."""
    if "://" not in url_or_host:
        url_or_host = "https://" + url_or_host
    parts = urlsplit(url_or_host)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RobotsCache:
    """Fetches, parses and caches robots.txt per origin (scheme, host and port).

    ``user_agent`` is the product token matched against ``User-agent`` groups; each query may
    pass another. All queries are async because the first one for an origin fetches its file;
    concurrent first queries share one fetch.
    """

    def __init__(
        self,
        fetch: RobotsFetch,
        *,
        user_agent: str = "*",
        ttl: float = 24 * 3600.0,
        unreachable_ttl: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.user_agent = user_agent
        self.ttl = ttl
        self.unreachable_ttl = unreachable_ttl
        self._monotonic = monotonic
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- queries ------------------------------------------------------------------------------

    async def can_fetch(self, url: str, user_agent: str | None = None) -> bool:
        """Whether robots.txt lets ``user_agent`` fetch ``url`` (robots.txt itself: always)."""
        if urlsplit(url).path == "/robots.txt":
            return True
        entry = await self._entry(origin_of(url))
        if entry.parser is None:
            return entry.status.state == "allow_all"
        return bool(entry.parser.can_fetch(url, user_agent or self.user_agent))

    async def crawl_delay(self, url_or_host: str, user_agent: str | None = None) -> float | None:
        """Seconds to leave between requests: Crawl-delay, or Request-rate turned into a delay."""
        entry = await self._entry(self._origin(url_or_host))
        if entry.parser is None:
            return None
        agent = user_agent or self.user_agent
        delays: list[float] = []
        delay = entry.parser.crawl_delay(agent)
        if delay is not None:
            delays.append(float(delay))
        rate = entry.parser.request_rate(agent)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None

    async def sitemaps(self, url_or_host: str) -> list[str]:
        """The ``Sitemap:`` URLs the origin's robots.txt lists, in file order, made absolute."""
        origin = self._origin(url_or_host)
        entry = await self._entry(origin)
        if entry.parser is None:
            return []
        found: list[str] = []
        for sitemap in entry.parser.sitemaps:
            try:
                url = urljoin(origin + "/", sitemap)
                scheme = urlsplit(url).scheme
            except ValueError:  # "http://[oops/..." is not a URL at all
                scheme = ""
            if scheme not in ("http", "https"):
                log.warning("robots.txt of %s: sitemap %r is not a URL", origin, sitemap)
                continue
            found.append(url)
        return found

    async def status(self, url_or_host: str) -> RobotsStatus:
        """How the origin is judged (parsed, allow all, disallow all) and why."""
        return (await self._entry(self._origin(url_or_host))).status

    def clear(self) -> None:
        """Forget every cached file."""
        self._entries.clear()

    # -- loading ------------------------------------------------------------------------------

    def _origin(self, url_or_host: str) -> str:
        """The origin for a URL, or for a bare host already cached under some scheme."""
        if "://" not in url_or_host:
            host = url_or_host.lower()
            for origin in self._entries:
                if origin.split("://", 1)[1] == host:
                    return origin
        return origin_of(url_or_host)

    async def _entry(self, origin: str) -> _Entry:
        """The fresh cache entry for ``origin``, fetching at most once at a time."""
        entry = self._entries.get(origin)
        if entry is not None and entry.status.expires > self._monotonic():
            return entry
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            entry = self._entries.get(origin)
            if entry is None or entry.status.expires <= self._monotonic():
                entry = await self._load(origin, previous=entry)
                self._entries[origin] = entry
            return entry

    async def _load(self, origin: str, previous: _Entry | None) -> _Entry:
        """Fetch ``origin``'s robots.txt and turn the outcome into an entry."""
        try:
            response = await self._fetch(origin + "/robots.txt")
        except TransientFetchError as exc:
            return self._unreachable(origin, f"{exc.kind}: {exc.reason}", None, previous)
        except FetchError as exc:
            return self._simple(origin, "allow_all", f"unavailable ({exc.reason})", None)
        status = response.status
        if 200 <= status < 300:
            return self._parsed(origin, response)
        if status == 429 or status >= 500:
            return self._unreachable(origin, f"HTTP {status}", status, previous)
        return self._simple(origin, "allow_all", f"unavailable (HTTP {status})", status)

    def _parsed(self, origin: str, response: RobotsResponse) -> _Entry:
        """An entry holding the parsed rules."""
        text = response.body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
        status = RobotsStatus(
            origin=origin,
            state="parsed",
            reason=f"HTTP {response.status}",
            http_status=response.status,
            expires=self._monotonic() + self.ttl,
        )
        return _Entry(status=status, parser=Protego.parse(text))

    def _simple(
        self, origin: str, state: RobotsState, reason: str, http_status: int | None
    ) -> _Entry:
        """An allow-all or disallow-all entry (disallow-all expires sooner)."""
        ttl = self.unreachable_ttl if state == "disallow_all" else self.ttl
        return _Entry(
            RobotsStatus(origin, state, reason, http_status, expires=self._monotonic() + ttl)
        )

    def _unreachable(
        self, origin: str, reason: str, http_status: int | None, previous: _Entry | None
    ) -> _Entry:
        """Disallow all for a while, or keep a previously parsed copy for that while."""
        if previous is not None and previous.parser is not None:
            status = RobotsStatus(
                origin=origin,
                state="parsed",
                reason=f"unreachable ({reason}); keeping the previous copy",
                http_status=http_status,
                expires=self._monotonic() + self.unreachable_ttl,
            )
            return _Entry(status=status, parser=previous.parser)
        return self._simple(origin, "disallow_all", f"unreachable ({reason})", http_status)
