"""RobotsCache on its own (a scripted fetch callable) and inside the Fetcher (the fault server)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest

from pipeline.acquire.fetch import Fetcher, FetchResult
from pipeline.acquire.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsResponse, origin_of
from pipeline.errors import (
    CrawlDelayTooLong,
    FetchConnectionError,
    FetchError,
    RedirectError,
    RobotsDisallowed,
    RobotsUnreachable,
)
from tests.faultserver import Drop, FaultServer, Redirect, Route, Status, robots

RULES = """\
User-agent: *
Disallow: /private
Allow: /private/open
Crawl-delay: 2
Sitemap: https://example.org/sitemap.xml
Sitemap: https://example.org/sitemap-2.xml

User-agent: procedure-pages-pipeline
Disallow: /no-pipeline
Request-rate: 1/5
"""

Answer = RobotsResponse | FetchError
T = TypeVar("T")


class ScriptedFetch:
    """A robots fetch callable that plays back answers and records the URLs asked for."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []

    async def __call__(self, url: str) -> RobotsResponse:
        self.urls.append(url)
        for _ in range(3):  # let concurrent callers pile up behind the lock
            await asyncio.sleep(0)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, FetchError):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ok(text: str) -> RobotsResponse:
    return RobotsResponse(200, text.encode())


def make_cache(fetch: ScriptedFetch, clock: Clock | None = None, **kwargs: Any) -> RobotsCache:
    return RobotsCache(fetch, monotonic=clock or Clock(), **kwargs)


def run(step: Callable[[], Awaitable[T]]) -> T:
    async def go() -> T:
        return await step()

    return asyncio.run(go())


# --- parsing and matching --------------------------------------------------------------------


def test_rules_are_parsed_and_matched() -> None:
    cache = make_cache(ScriptedFetch(ok(RULES)))

    async def go() -> list[bool]:
        return [
            await cache.can_fetch("https://example.org/code/cpt4/22212"),
            await cache.can_fetch("https://example.org/private/x"),
            await cache.can_fetch("https://example.org/private/open/x"),
            await cache.can_fetch("https://example.org/no-pipeline"),
            await cache.can_fetch("https://example.org/no-pipeline", "procedure-pages-pipeline"),
            await cache.can_fetch(
                "https://example.org/private/x", "procedure-pages-pipeline/0.1 (+https://x)"
            ),
        ]

    # the specific group replaces "*" entirely for our product token
    assert run(go) == [True, False, True, True, False, True]


def test_crawl_delay_request_rate_and_sitemaps() -> None:
    cache = make_cache(ScriptedFetch(ok(RULES)))

    async def go() -> tuple[Any, ...]:
        return (
            await cache.crawl_delay("https://example.org/a"),
            await cache.crawl_delay("example.org", "procedure-pages-pipeline"),
            await cache.sitemaps("https://example.org/"),
        )

    star_delay, our_delay, sitemaps = run(go)
    assert star_delay == 2.0
    assert our_delay == 5.0  # Request-rate 1/5 -> one request per 5 s
    assert sitemaps == ["https://example.org/sitemap.xml", "https://example.org/sitemap-2.xml"]


def test_a_sitemap_line_that_is_not_a_url_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = (
        "User-agent: *\nDisallow:\n"
        "Sitemap: http://[oops/sitemap.xml\n"  # urljoin raises ValueError on this
        "Sitemap: javascript:alert(1)\n"
        "Sitemap: /good.xml\n"
    )
    cache = make_cache(ScriptedFetch(ok(text)))
    with caplog.at_level("WARNING"):
        sitemaps = run(lambda: cache.sitemaps("https://example.org/"))
    assert sitemaps == ["https://example.org/good.xml"]
    assert sum("not a URL" in r.getMessage() for r in caplog.records) == 2


def test_no_crawl_delay_is_none() -> None:
    cache = make_cache(ScriptedFetch(ok("User-agent: *\nDisallow:\n")))
    assert run(lambda: cache.crawl_delay("https://example.org/")) is None
    assert run(lambda: cache.sitemaps("https://example.org/")) == []


def test_bom_and_junk_lines_are_tolerated() -> None:
    text = "\ufeffUser-agent: *\n<html>oops</html>\nDisallow: /x\n\x00\n"
    cache = make_cache(ScriptedFetch(ok(text)))
    assert run(lambda: cache.can_fetch("https://example.org/x/1")) is False
    assert run(lambda: cache.can_fetch("https://example.org/y")) is True


def test_only_the_first_500_kib_are_parsed() -> None:
    padding = "# " + "x" * 80 + "\n"
    text = "User-agent: *\n" + padding * (ROBOTS_MAX_BYTES // len(padding) + 10) + "Disallow: /\n"
    cache = make_cache(ScriptedFetch(ok(text)))
    assert run(lambda: cache.can_fetch("https://example.org/page")) is True


# --- RFC 9309 failure handling ---------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_4xx_means_allow_all(status: int) -> None:
    cache = make_cache(ScriptedFetch(RobotsResponse(status)))
    assert run(lambda: cache.can_fetch("https://example.org/anything")) is True
    state = run(lambda: cache.status("https://example.org"))
    assert (state.state, state.http_status) == ("allow_all", status)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_5xx_and_429_mean_disallow_all_for_a_while(status: int) -> None:
    clock = Clock()
    fetch = ScriptedFetch(RobotsResponse(status), ok("User-agent: *\nDisallow:\n"))
    cache = make_cache(fetch, clock, unreachable_ttl=300)
    assert run(lambda: cache.can_fetch("https://example.org/a")) is False
    assert run(lambda: cache.status("https://example.org")).state == "disallow_all"
    clock.now = 299
    assert run(lambda: cache.can_fetch("https://example.org/a")) is False
    assert len(fetch.urls) == 1  # no retry storm: the verdict is cached
    clock.now = 301
    assert run(lambda: cache.can_fetch("https://example.org/a")) is True
    assert len(fetch.urls) == 2


def test_network_failure_means_disallow_all() -> None:
    cache = make_cache(ScriptedFetch(FetchConnectionError("connection refused")))
    assert run(lambda: cache.can_fetch("https://example.org/a")) is False
    assert "connection refused" in run(lambda: cache.status("https://example.org")).reason


def test_redirect_trouble_means_allow_all() -> None:
    cache = make_cache(ScriptedFetch(RedirectError("redirect loop")))
    assert run(lambda: cache.can_fetch("https://example.org/a")) is True


def test_robots_txt_itself_is_always_allowed() -> None:
    fetch = ScriptedFetch(ok("User-agent: *\nDisallow: /\n"))
    cache = make_cache(fetch)
    assert run(lambda: cache.can_fetch("https://example.org/robots.txt")) is True
    assert fetch.urls == []


def test_cached_for_the_ttl_then_refetched() -> None:
    clock = Clock()
    fetch = ScriptedFetch(ok("User-agent: *\nDisallow: /a\n"), ok("User-agent: *\nDisallow: /b\n"))
    cache = make_cache(fetch, clock, ttl=3600)
    for _ in range(5):
        assert run(lambda: cache.can_fetch("https://example.org/a")) is False
    assert len(fetch.urls) == 1
    clock.now = 3601
    assert run(lambda: cache.can_fetch("https://example.org/a")) is True
    assert len(fetch.urls) == 2


def test_a_stale_copy_is_kept_while_the_file_is_unreachable() -> None:
    clock = Clock()
    fetch = ScriptedFetch(ok("User-agent: *\nDisallow: /a\n"), RobotsResponse(503))
    cache = make_cache(fetch, clock, ttl=3600, unreachable_ttl=60)
    assert run(lambda: cache.can_fetch("https://example.org/b")) is True
    clock.now = 4000
    assert run(lambda: cache.can_fetch("https://example.org/b")) is True  # not disallow-all
    assert run(lambda: cache.can_fetch("https://example.org/a")) is False
    assert "previous copy" in run(lambda: cache.status("https://example.org")).reason


def test_concurrent_first_queries_share_one_fetch() -> None:
    fetch = ScriptedFetch(ok(RULES))
    cache = make_cache(fetch)

    async def go() -> list[bool]:
        urls = [f"https://example.org/p{i}" for i in range(20)]
        return list(await asyncio.gather(*(cache.can_fetch(u) for u in urls)))

    assert all(run(go))
    assert fetch.urls == ["https://example.org/robots.txt"]


def test_entries_are_per_scheme_host_and_port() -> None:
    fetch = ScriptedFetch(ok(RULES))
    cache = make_cache(fetch)

    async def go() -> None:
        for url in [
            "https://example.org/a",
            "http://example.org/a",
            "https://example.org:8443/a",
            "https://EXAMPLE.org/b",
            "https://www.example.org/a",
        ]:
            await cache.can_fetch(url)

    run(go)
    assert fetch.urls == [
        "https://example.org/robots.txt",
        "http://example.org/robots.txt",
        "https://example.org:8443/robots.txt",
        "https://www.example.org/robots.txt",
    ]


def test_a_bare_host_finds_the_cached_origin() -> None:
    fetch = ScriptedFetch(ok(RULES))
    cache = make_cache(fetch)
    run(lambda: cache.can_fetch("http://127.0.0.1:8080/a"))
    assert run(lambda: cache.crawl_delay("127.0.0.1:8080")) == 2.0
    assert fetch.urls == ["http://127.0.0.1:8080/robots.txt"]
    assert origin_of("Example.ORG") == "https://example.org"


# --- inside the Fetcher ----------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fetch_paths(
    server: FaultServer, paths: list[str], fake: FakeTime | None = None, **kwargs: Any
) -> list[FetchResult | FetchError]:
    """Fetch paths one after the other with a robots-obeying fetcher; errors are returned."""
    fake = fake or FakeTime()

    async def go() -> list[FetchResult | FetchError]:
        options: dict[str, Any] = {
            "rate": 0,
            "sleep": fake.sleep,
            "monotonic": fake.monotonic,
            "clock": lambda: datetime(2024, 5, 1, tzinfo=UTC),
            "rng": random.Random(0),
            "allowed_hosts": lambda url: httpx.URL(url).host == "127.0.0.1",
        }
        options.update(kwargs)
        outcomes: list[FetchResult | FetchError] = []
        async with Fetcher(**options) as fetcher:
            for path in paths:
                try:
                    outcomes.append(await fetcher.fetch(server.url(path)))
                except FetchError as exc:
                    outcomes.append(exc)
        return outcomes

    return asyncio.run(go())


PAGES = {"/code/a": Route("a"), "/code/b": Route("b"), "/private/x": Route("secret")}


def test_fetcher_obeys_disallow_and_asks_for_robots_once() -> None:
    routes = {**PAGES, "/robots.txt": robots("User-agent: *\nDisallow: /private\n")}
    with FaultServer(routes) as server:
        outcomes = fetch_paths(server, ["/code/a", "/private/x", "/code/b"])
        assert server.count("/robots.txt") == 1
        assert server.count("/private/x") == 0
        agent = server.requests_for("/robots.txt")[0].headers["user-agent"]
    assert isinstance(outcomes[1], RobotsDisallowed)
    assert "/private/x" in outcomes[1].reason
    assert [type(o) for o in outcomes] == [FetchResult, RobotsDisallowed, FetchResult]
    assert agent.startswith("procedure-pages-pipeline/")


def test_fetcher_matches_its_own_group() -> None:
    text = "User-agent: *\nDisallow:\n\nUser-agent: procedure-pages-pipeline\nDisallow: /code/b\n"
    with FaultServer({**PAGES, "/robots.txt": robots(text)}) as server:
        outcomes = fetch_paths(server, ["/code/a", "/code/b"])
    assert isinstance(outcomes[0], FetchResult)
    assert isinstance(outcomes[1], RobotsDisallowed)


def test_a_redirect_into_a_disallowed_path_is_refused() -> None:
    routes = {
        **PAGES,
        "/go": Route(fault=Redirect("/private/x")),
        "/robots.txt": robots("User-agent: *\nDisallow: /private\n"),
    }
    with FaultServer(routes) as server:
        outcomes = fetch_paths(server, ["/go"])
        assert server.count("/private/x") == 0
    assert isinstance(outcomes[0], RobotsDisallowed)


def test_crawl_delay_replaces_a_shorter_interval() -> None:
    fake = FakeTime()
    routes = {**PAGES, "/robots.txt": robots("User-agent: *\nCrawl-delay: 3\n")}
    with FaultServer(routes) as server:
        fetch_paths(server, ["/code/a", "/code/b", "/code/a"], fake, rate=1.0)
    assert fake.sleeps == [3.0, 3.0, 3.0]  # robots.txt, then three pages 3 s apart


@pytest.mark.parametrize("delay", ["86400", "1e300"])
def test_a_crawl_delay_longer_than_a_run_waits_fails_the_page_at_once(delay: str) -> None:
    """One request a day would hold the run, and its lock, for days without a word."""
    fake = FakeTime()
    routes = {**PAGES, "/robots.txt": robots(f"User-agent: *\nCrawl-delay: {delay}\n")}
    with FaultServer(routes) as server:
        (outcome,) = fetch_paths(server, ["/code/a"], fake)
        assert [r.path for r in server.requests] == ["/robots.txt"]  # the page was not asked
    assert isinstance(outcome, CrawlDelayTooLong)
    assert outcome.transient
    assert outcome.retry_after == float(delay)
    assert fake.sleeps == []


def test_a_shorter_crawl_delay_does_not_speed_up_the_rate() -> None:
    fake = FakeTime()
    routes = {**PAGES, "/robots.txt": robots("User-agent: *\nCrawl-delay: 0.1\n")}
    with FaultServer(routes) as server:
        fetch_paths(server, ["/code/a", "/code/b"], fake, rate=0.5)
    assert fake.sleeps == [2.0, 2.0]


@pytest.mark.parametrize(
    ("robots_route", "allowed"),
    [
        (Route("gone", status=404), True),
        (Route("no", status=403), True),
        (Route(fault=Redirect("/robots.txt")), True),  # a loop: unavailable
        (Route(fault=Status(503)), False),
        (Route(fault=Drop()), False),
    ],
    ids=["404", "403", "redirect-loop", "503", "dropped"],
)
def test_fetcher_robots_failures_follow_rfc_9309(robots_route: Route, allowed: bool) -> None:
    with FaultServer({**PAGES, "/robots.txt": robots_route}) as server:
        outcomes = fetch_paths(server, ["/code/a", "/code/b"])
        assert server.count("/robots.txt") == 1  # one try, no retries, cached verdict
        assert server.count("/code/a") == (1 if allowed else 0)
    if allowed:
        assert all(isinstance(o, FetchResult) for o in outcomes)
    else:
        # Disallowed *for now*: a transient failure (due again next run), not a verdict.
        assert all(isinstance(o, RobotsUnreachable) for o in outcomes)
        assert isinstance(outcomes[0], RobotsUnreachable)
        assert outcomes[0].transient
        assert "unreachable" in outcomes[0].reason


def test_robots_can_be_ignored() -> None:
    routes = {**PAGES, "/robots.txt": robots("User-agent: *\nDisallow: /\n")}
    with FaultServer(routes) as server:
        outcomes = fetch_paths(server, ["/code/a"], obey_robots=False)
        assert server.count("/robots.txt") == 0
    assert isinstance(outcomes[0], FetchResult)


def test_sitemaps_through_the_fetcher() -> None:
    text = "User-agent: *\nSitemap: /sitemap.xml\nSitemap: https://example.org/s2.xml\n"
    with FaultServer({"/robots.txt": robots(text)}) as server:

        async def go() -> list[str]:
            async with Fetcher(rate=0) as fetcher:
                return await fetcher.robots.sitemaps(server.base_url)

        sitemaps = asyncio.run(go())
    assert sitemaps == [server.url("/sitemap.xml"), "https://example.org/s2.xml"]
