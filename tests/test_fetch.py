"""Fetcher tests against the real loopback fault server, plus MockTransport for exact edge cases.

Sleeps are injected (:class:`FakeTime` records them and advances a fake monotonic clock), so
retries and pacing cost no wall time; only the timeout tests wait for real, with 0.2-0.3 s limits.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import random
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.acquire.fetch import Fetcher, FetchLimits, FetchResult, RetryPolicy, parse_retry_after
from pipeline.errors import (
    BadContentEncoding,
    FetchConnectionError,
    FetchError,
    FetchTimeout,
    HostBackingOff,
    HttpStatusError,
    OutOfScope,
    PageGone,
    RedirectError,
    ResponseTooLarge,
    RetryableStatus,
    TerminalFetchError,
    TruncatedBody,
    UsageError,
)
from tests.faultserver import (
    BrokenChunked,
    BrokenGzip,
    Chaos,
    CloseDelimited,
    Drop,
    FaultServer,
    GzipBomb,
    Redirect,
    Reset,
    Route,
    Stall,
    Status,
    Trickle,
    Truncate,
    gzip_bomb,
    http_date,
)

MiB = 1 << 20
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PAGE = "<html><body><h1>Osteotomy</h1></body></html>"


class FakeTime:
    """An injected monotonic clock and sleep: sleeping records the duration and advances time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make_fetcher(fake: FakeTime, **overrides: Any) -> Fetcher:
    """A fetcher on fake time: no pacing, no robots, scope = 127.0.0.1, unless overridden."""
    options: dict[str, Any] = {
        "rate": 0,
        "obey_robots": False,
        "sleep": fake.sleep,
        "monotonic": fake.monotonic,
        "clock": lambda: NOW,
        "rng": random.Random(0),
        "allowed_hosts": lambda url: httpx.URL(url).host == "127.0.0.1",
    }
    options.update(overrides)
    return Fetcher(**options)


def fetch(url: str, fake: FakeTime, *, etag: str | None = None, **overrides: Any) -> FetchResult:
    """Run one fetch to completion."""
    last_modified = overrides.pop("last_modified", None)

    async def go() -> FetchResult:
        async with make_fetcher(fake, **overrides) as fetcher:
            return await fetcher.fetch(url, etag=etag, last_modified=last_modified)

    return asyncio.run(go())


def fetch_error(url: str, fake: FakeTime, **overrides: Any) -> FetchError:
    """Run one fetch that must fail, and return the error."""
    with pytest.raises(FetchError) as info:
        fetch(url, fake, **overrides)
    return info.value


def fetch_all(urls: list[str], fake: FakeTime, **overrides: Any) -> list[FetchResult]:
    """Fetch concurrently with one fetcher."""

    async def go() -> list[FetchResult]:
        async with make_fetcher(fake, **overrides) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(u) for u in urls)))

    return asyncio.run(go())


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


class RawStream(httpx.AsyncByteStream):
    """A response body delivered as a network stream would be: not pre-read, not decoded."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def raw(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    """A MockTransport response whose body goes through the fetcher's own streaming path."""
    return httpx.Response(status, headers=headers, stream=RawStream(body))


# --- success ---------------------------------------------------------------------------------


def test_ok_result_carries_body_headers_validators_and_clock(fake: FakeTime) -> None:
    lm = "Tue, 30 Apr 2024 08:00:00 GMT"
    route = Route(PAGE, etag='"v1"', last_modified=lm, headers={"X-Thing": "yes"})
    with FaultServer({"/p": route}) as server:
        result = fetch(server.url("/p"), fake)
        sent = server.requests[0].headers
    assert result.status == 200
    assert not result.not_modified
    assert result.body == PAGE.encode()
    assert result.url == result.final_url == server.url("/p")
    assert result.charset == "utf-8"
    assert result.headers["x-thing"] == "yes"
    assert all(name == name.lower() for name in result.headers)
    assert (result.etag, result.last_modified) == ('"v1"', lm)
    assert result.fetched_at == NOW
    assert result.attempts == 1
    assert result.elapsed == 0.0  # fake monotonic, no sleeps
    assert sent["user-agent"].startswith("procedure-pages-pipeline/")
    assert sent["accept-encoding"] == "gzip, deflate"
    assert "if-none-match" not in sent


def test_gzip_body_is_decoded(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE * 50, compress=True)}) as server:
        result = fetch(server.url("/p"), fake)
    assert result.headers["content-encoding"] == "gzip"
    assert result.body == (PAGE * 50).encode()


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_body_is_decoded_in_both_flavours(fake: FakeTime, wbits: int) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    packed = packer.compress(PAGE.encode()) + packer.flush()

    def handler(request: httpx.Request) -> httpx.Response:
        return raw(200, packed, {"Content-Encoding": "deflate"})

    result = fetch("http://127.0.0.1/p", fake, transport=mock(handler))
    assert result.body == PAGE.encode()


def test_unsupported_content_encoding_is_terminal(fake: FakeTime) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return raw(200, b"??", {"Content-Encoding": "br"})

    error = fetch_error("http://127.0.0.1/p", fake, transport=mock(handler))
    assert type(error) is TerminalFetchError
    assert "br" in error.reason
    assert len(calls) == 1


def test_injected_client_is_used_and_left_open(fake: FakeTime) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"hi")

    async def go() -> tuple[FetchResult, bool]:
        client = httpx.AsyncClient(transport=mock(handler))
        async with make_fetcher(fake, client=client) as fetcher:
            result = await fetcher.fetch("http://127.0.0.1/p")
        closed = client.is_closed
        await client.aclose()
        return result, closed

    result, closed = asyncio.run(go())
    assert result.body == b"hi"
    assert not closed


# --- retries ---------------------------------------------------------------------------------


def test_503_burst_is_retried_then_succeeds(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, faults=[Status(503)] * 3)}) as server:
        result = fetch(server.url("/p"), fake)
        assert server.count("/p") == 4
    assert result.attempts == 4
    assert result.body == PAGE.encode()
    assert len(fake.sleeps) == 3
    for attempt, slept in enumerate(fake.sleeps, start=1):  # full jitter under 0.5 * 2^(n-1)
        assert 0.0 <= slept <= 0.5 * 2 ** (attempt - 1)
    assert result.elapsed == pytest.approx(sum(fake.sleeps))


def test_backoff_without_jitter_doubles_up_to_the_maximum(fake: FakeTime) -> None:
    policy = RetryPolicy(max_attempts=6, jitter="none", backoff_initial=0.5, backoff_max=3.0)
    with FaultServer({"/p": Route(PAGE, faults=[Status(502)] * 5)}) as server:
        fetch(server.url("/p"), fake, policy=policy)
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


#: A policy that waits out a Retry-After of up to a minute inside the fetch.
PATIENT = RetryPolicy(inline_wait_max=60.0)


def test_retry_after_seconds_is_honoured(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, faults=[Status(429, retry_after=7)])}) as server:
        result = fetch(server.url("/p"), fake, policy=PATIENT)
    assert fake.sleeps == [7.0]
    assert result.attempts == 2


def test_retry_after_http_date_is_honoured(fake: FakeTime) -> None:
    when = NOW + timedelta(seconds=30)
    with FaultServer({"/p": Route(PAGE, faults=[Status(429, retry_after=when)])}) as server:
        fetch(server.url("/p"), fake, policy=PATIENT)
        assert server.requests[0].fault == "Status(429)"
    assert fake.sleeps == [30.0]


@pytest.mark.parametrize(
    "retry_after", [3600, NOW + timedelta(hours=2)], ids=["seconds", "http-date"]
)
def test_a_retry_after_over_the_cap_is_raised_at_once(
    fake: FakeTime, retry_after: int | datetime
) -> None:
    """Waiting the cap and asking again would go against what the server said: the fetch
    gives up at once and says how long the server asked for (the crawl puts the page off)."""
    policy = RetryPolicy(retry_after_cap=90.0, inline_wait_max=600.0)
    with FaultServer({"/p": Route(PAGE, faults=[Status(503, retry_after=retry_after)])}) as s:
        error = fetch_error(s.url("/p"), fake, policy=policy)
        assert s.count("/p") == 1
    assert isinstance(error, RetryableStatus)
    assert error.retry_after is not None
    assert error.retry_after >= 3600
    assert error.attempts == 1
    assert fake.sleeps == []


def test_a_retry_after_over_the_inline_limit_is_raised_at_once(fake: FakeTime) -> None:
    """The default policy sleeps through a Retry-After of at most 5 s; a longer one is not
    slept on in the fetch (a crawl worker would be held that long)."""
    with FaultServer({"/p": Route(PAGE, faults=[Status(429, retry_after=7)])}) as server:
        error = fetch_error(server.url("/p"), fake)
        assert server.count("/p") == 1
    assert isinstance(error, RetryableStatus)
    assert error.retry_after == 7.0
    assert fake.sleeps == []


def test_retry_after_in_the_past_means_no_wait(fake: FakeTime) -> None:
    past = NOW - timedelta(minutes=5)
    with FaultServer({"/p": Route(PAGE, faults=[Status(503, retry_after=past)])}) as server:
        fetch(server.url("/p"), fake)
    assert fake.sleeps == [0.0]


def test_unparseable_retry_after_falls_back_to_backoff(fake: FakeTime) -> None:
    answers = iter([raw(503, headers={"Retry-After": "soon"}), raw(200)])
    policy = RetryPolicy(jitter="none")
    fetch("http://127.0.0.1/p", fake, transport=mock(lambda r: next(answers)), policy=policy)
    assert fake.sleeps == [0.5]


def test_max_attempts_respected_and_last_error_raised(fake: FakeTime) -> None:
    policy = RetryPolicy(max_attempts=3)
    with FaultServer({"/p": Route(PAGE, fault=Status(503))}) as server:
        error = fetch_error(server.url("/p"), fake, policy=policy)
        assert server.count("/p") == 3
    assert isinstance(error, RetryableStatus)
    assert error.status == 503
    assert "503" in error.reason
    assert error.source == server.url("/p")
    assert len(fake.sleeps) == 2


def test_the_last_transient_error_is_the_one_raised(fake: FakeTime) -> None:
    faults = [Status(503), Reset(after=5), Status(504), Truncate()]
    with FaultServer({"/p": Route(PAGE * 5, faults=faults)}) as server:
        error = fetch_error(server.url("/p"), fake, policy=RetryPolicy(max_attempts=4))
        assert server.count("/p") == 4
    assert isinstance(error, TruncatedBody)


def test_408_is_retried(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, faults=[Status(408)])}) as server:
        assert fetch(server.url("/p"), fake).attempts == 2


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, PageGone), (410, PageGone), (403, HttpStatusError), (501, HttpStatusError)],
)
def test_terminal_statuses_are_not_retried(fake: FakeTime, status: int, kind: type) -> None:
    with FaultServer({"/p": Route("no", status=status)}) as server:
        error = fetch_error(server.url("/p"), fake)
        assert server.count("/p") == 1
    assert type(error) is kind
    assert error.status == status
    assert not error.transient
    assert fake.sleeps == []


def test_retryable_statuses_come_from_the_policy(fake: FakeTime) -> None:
    policy = RetryPolicy(retry_statuses=frozenset({503}))
    with FaultServer({"/p": Route(PAGE, fault=Status(500))}) as server:
        error = fetch_error(server.url("/p"), fake, policy=policy)
        assert server.count("/p") == 1
    assert type(error) is HttpStatusError
    assert error.status == 500


def test_decorrelated_jitter_stays_in_bounds(fake: FakeTime) -> None:
    policy = RetryPolicy(max_attempts=6, jitter="decorrelated", backoff_max=4.0)
    with FaultServer({"/p": Route(PAGE, faults=[Status(503)] * 5)}) as server:
        fetch(server.url("/p"), fake, policy=policy)
    previous = policy.backoff_initial
    for slept in fake.sleeps:
        assert policy.backoff_initial <= slept <= min(4.0, 3 * previous)
        previous = slept


# --- connection faults -----------------------------------------------------------------------


def test_reset_mid_body_is_retried_then_succeeds(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE * 10, faults=[Reset(after=20)])}) as server:
        result = fetch(server.url("/p"), fake)
    assert result.attempts == 2
    assert result.body == (PAGE * 10).encode()


def test_reset_every_time_ends_in_truncated_body(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE * 10, fault=Reset(after=20))}) as server:
        error = fetch_error(server.url("/p"), fake, policy=RetryPolicy(max_attempts=2))
        assert server.count("/p") == 2
    assert isinstance(error, TruncatedBody)
    assert isinstance(error.__cause__, httpx.TransportError)


def test_dropped_connection_is_a_connection_error(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, fault=Drop())}) as server:
        error = fetch_error(server.url("/p"), fake, policy=RetryPolicy(max_attempts=2))
        assert server.count("/p") == 2
    assert isinstance(error, FetchConnectionError)


def test_refused_connection_is_a_connection_error(fake: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fetch_error(f"http://127.0.0.1:{port}/p", fake, policy=RetryPolicy(max_attempts=2))
    assert isinstance(error, FetchConnectionError)
    assert isinstance(error.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("fault", [Truncate(missing=50), BrokenChunked(), BrokenGzip()])
def test_cut_bodies_are_truncated_body(fake: FakeTime, fault: Truncate) -> None:
    with FaultServer({"/p": Route(PAGE * 20, fault=fault)}) as server:
        error = fetch_error(server.url("/p"), fake, policy=RetryPolicy(max_attempts=2))
        assert server.count("/p") == 2
    assert isinstance(error, TruncatedBody)
    assert error.transient


def test_a_cut_close_delimited_page_is_a_truncated_body(fake: FakeTime) -> None:
    # HTTP/1.0 with no Content-Length: the end of the body is the end of the connection, so a
    # graceful close mid-page looks complete to the transport; the unclosed document tells.
    with FaultServer({"/p": Route(PAGE, fault=CloseDelimited(keep=len(PAGE) - 9))}) as server:
        error = fetch_error(server.url("/p"), fake, policy=RetryPolicy(max_attempts=2))
        assert server.count("/p") == 2
    assert isinstance(error, TruncatedBody)
    assert error.transient


def test_a_whole_close_delimited_page_is_taken(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, fault=CloseDelimited())}) as server:
        result = fetch(server.url("/p"), fake)
    assert result.body == PAGE.encode()


def test_a_close_delimited_body_that_is_not_a_whole_document_is_taken(fake: FakeTime) -> None:
    # No <html> to close: nothing tells a cut from the end, and the page is not refused for it.
    fragment = "<h1>Osteotomy</h1><p>Summary</p>"
    with FaultServer({"/p": Route(fragment, fault=CloseDelimited())}) as server:
        assert fetch(server.url("/p"), fake).body == fragment.encode()


def test_a_cut_close_delimited_page_then_a_whole_one_succeeds(fake: FakeTime) -> None:
    route = Route(PAGE, faults=[CloseDelimited(keep=20)], fault=CloseDelimited())
    with FaultServer({"/p": route}) as server:
        result = fetch(server.url("/p"), fake)
    assert result.attempts == 2
    assert result.body == PAGE.encode()


def test_truncated_then_complete_succeeds(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, faults=[Truncate()])}) as server:
        assert fetch(server.url("/p"), fake).body == PAGE.encode()


FAST = FetchLimits(connect_timeout=1.0, read_timeout=0.2, total_timeout=2.0)


def test_stall_before_headers_times_out_and_is_retried(fake: FakeTime) -> None:
    started = time.monotonic()
    with FaultServer({"/p": Route(PAGE, fault=Stall(10))}) as server:
        error = fetch_error(server.url("/p"), fake, limits=FAST, policy=RetryPolicy(max_attempts=2))
        assert server.count("/p") == 2
    assert isinstance(error, FetchTimeout)
    assert isinstance(error.__cause__, httpx.ReadTimeout)
    assert time.monotonic() - started < 3.0


def test_stall_once_then_success(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, faults=[Stall(10)])}) as server:
        result = fetch(server.url("/p"), fake, limits=FAST)
    assert result.attempts == 2


def test_stall_mid_body_times_out(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE * 10, fault=Stall(10, after_headers=True))}) as server:
        error = fetch_error(server.url("/p"), fake, limits=FAST, policy=RetryPolicy(max_attempts=1))
    assert isinstance(error, FetchTimeout)


def test_slow_trickle_is_cut_by_the_total_timeout(fake: FakeTime) -> None:
    limits = FetchLimits(read_timeout=1.0, total_timeout=0.3)
    started = time.monotonic()
    with FaultServer({"/p": Route("x" * 400, fault=Trickle(chunk=1, interval=0.02))}) as server:
        error = fetch_error(server.url("/p"), fake, limits=limits, policy=RetryPolicy(1))
    assert isinstance(error, FetchTimeout)
    assert "0.3" in error.reason
    assert time.monotonic() - started < 1.5  # the trickle alone would take 8 s


# --- size limits -----------------------------------------------------------------------------


def test_gzip_bomb_is_refused_without_inflating(fake: FakeTime) -> None:
    bomb = gzip_bomb(50 * MiB)  # built before measuring
    assert len(bomb) < 100_000
    limits = FetchLimits(max_bytes=1 * MiB)
    with FaultServer({"/p": Route(fault=GzipBomb(50 * MiB))}) as server:
        tracemalloc.start()
        try:
            error = fetch_error(server.url("/p"), fake, limits=limits)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert server.count("/p") == 1  # terminal: not retried
    assert isinstance(error, ResponseTooLarge)
    assert "after decoding" in error.reason
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB: the bomb was inflated"


def test_content_length_over_the_limit_is_refused_up_front(fake: FakeTime) -> None:
    limits = FetchLimits(max_bytes=64 * 1024)
    with FaultServer({"/p": Route(b"x" * (256 * 1024))}) as server:
        error = fetch_error(server.url("/p"), fake, limits=limits)
    assert isinstance(error, ResponseTooLarge)
    assert "Content-Length" in error.reason


def test_oversized_chunked_body_is_refused_while_streaming(fake: FakeTime) -> None:
    limits = FetchLimits(max_bytes=256 * 1024)
    with FaultServer({"/p": Route(b"x" * (2 * MiB), chunked=True)}) as server:
        error = fetch_error(server.url("/p"), fake, limits=limits)
    assert isinstance(error, ResponseTooLarge)


class CountingStream(httpx.AsyncByteStream):
    """An endless-ish body that counts how many chunks were pulled from it."""

    def __init__(self, chunk: bytes, chunks: int) -> None:
        self.chunk, self.chunks, self.pulled = chunk, chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.chunk


def test_streaming_stops_at_the_limit(fake: FakeTime) -> None:
    stream = CountingStream(b"x" * 65536, chunks=1000)  # 64 MB if read to the end

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    limits = FetchLimits(max_bytes=1 * MiB)
    error = fetch_error("http://127.0.0.1/p", fake, transport=mock(handler), limits=limits)
    assert isinstance(error, ResponseTooLarge)
    assert stream.pulled == 17  # 16 chunks fill 1 MiB exactly; the 17th goes over


@pytest.mark.parametrize("compress", [False, True])
def test_body_of_exactly_the_limit_is_accepted(fake: FakeTime, compress: bool) -> None:
    body = b"a" * 4096
    content = gzip.compress(body) if compress else body
    headers = {"Content-Encoding": "gzip"} if compress else {}

    def handler(request: httpx.Request) -> httpx.Response:
        return raw(200, content, headers)

    limits = FetchLimits(max_bytes=4096)
    assert fetch("http://127.0.0.1/p", fake, transport=mock(handler), limits=limits).body == body
    over = FetchLimits(max_bytes=4095)
    error = fetch_error("http://127.0.0.1/p", fake, transport=mock(handler), limits=over)
    assert isinstance(error, ResponseTooLarge)


# --- redirects and scope ---------------------------------------------------------------------


def test_redirects_are_followed_by_hand(fake: FakeTime) -> None:
    routes = {
        "/old": Route(fault=Redirect("/middle", status=301)),
        "/middle": Route(fault=Redirect("http://127.0.0.1/unused", status=307)),
    }
    with FaultServer(routes) as server:
        server.routes["/middle"] = Route(fault=Redirect(server.url("/new"), status=308))
        server.routes["/new"] = Route(PAGE)
        result = fetch(server.url("/old"), fake)
        assert [r.path for r in server.requests] == ["/old", "/middle", "/new"]
    assert result.url == server.url("/old")
    assert result.final_url == server.url("/new")
    assert result.body == PAGE.encode()


def test_redirect_loop_is_refused(fake: FakeTime) -> None:
    routes = {"/a": Route(fault=Redirect("/b")), "/b": Route(fault=Redirect("/a"))}
    with FaultServer(routes) as server:
        error = fetch_error(server.url("/a"), fake)
        assert server.count() == 2  # a, b, and the hop back to a is never sent
    assert isinstance(error, RedirectError)
    assert "loop" in error.reason


def test_too_many_redirects_are_refused(fake: FakeTime) -> None:
    routes = {f"/r{i}": Route(fault=Redirect(f"/r{i + 1}")) for i in range(10)}
    limits = FetchLimits(max_redirects=3)
    with FaultServer(routes) as server:
        error = fetch_error(server.url("/r0"), fake, limits=limits)
        assert server.count() == 4
    assert isinstance(error, RedirectError)
    assert "more than 3" in error.reason


@pytest.mark.parametrize(
    "location",
    ["http://example.invalid/code/cpt4/1", "ftp://127.0.0.1/file", "javascript:alert(1)"],
)
def test_redirect_leaving_the_scope_is_refused(fake: FakeTime, location: str) -> None:
    with FaultServer({"/p": Route(fault=Redirect(location))}) as server:
        error = fetch_error(server.url("/p"), fake)
        assert server.count() == 1
    assert isinstance(error, RedirectError)
    assert not error.transient


def test_redirect_without_location_is_refused(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(status=302)}) as server:
        error = fetch_error(server.url("/p"), fake)
    assert isinstance(error, RedirectError)


@pytest.mark.parametrize(
    "url", ["http://example.invalid/p", "ftp://127.0.0.1/p", "file:///etc/passwd", "/relative"]
)
def test_urls_out_of_scope_are_refused_without_a_request(fake: FakeTime, url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    error = fetch_error(url, fake, transport=mock(handler))
    assert isinstance(error, OutOfScope)
    assert error.source == url


def test_the_scope_check_sees_every_hop_as_a_full_url(fake: FakeTime) -> None:
    seen: list[str] = []

    def in_scope(url: str) -> bool:
        seen.append(url)
        return "/blocked" not in url

    routes = {"/a": Route(fault=Redirect("/b#frag")), "/b": Route(fault=Redirect("/blocked"))}
    with FaultServer(routes) as server:
        error = fetch_error(server.url("/a"), fake, allowed_hosts=in_scope)
    assert isinstance(error, RedirectError)
    assert seen == [server.url("/a"), server.url("/b"), server.url("/blocked")]


def test_a_connection_to_an_address_out_of_scope_is_refused(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE)}) as server:
        error = fetch_error(server.url("/p"), fake, allowed_address=lambda ip: ip != "127.0.0.1")
        assert fetch(server.url("/p"), fake, allowed_address=lambda ip: True).body == PAGE.encode()
    assert isinstance(error, OutOfScope)
    assert "127.0.0.1" in error.reason


# --- conditional requests --------------------------------------------------------------------


def test_matching_etag_gives_not_modified(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, etag='"v1"')}) as server:
        result = fetch(server.url("/p"), fake, etag='"v1"')
        assert server.requests[0].headers["if-none-match"] == '"v1"'
    assert result.status == 304
    assert result.not_modified
    assert result.body == b""
    assert result.etag == '"v1"'


def test_last_modified_gives_not_modified(fake: FakeTime) -> None:
    stamp = datetime(2024, 4, 1, tzinfo=UTC)
    with FaultServer({"/p": Route(PAGE, last_modified=stamp)}) as server:
        result = fetch(server.url("/p"), fake, last_modified=http_date(stamp))
        assert server.requests[0].headers["if-modified-since"] == http_date(stamp)
    assert result.not_modified
    assert result.last_modified == http_date(stamp)


def test_changed_page_gives_a_full_answer(fake: FakeTime) -> None:
    with FaultServer({"/p": Route(PAGE, etag='"v2"')}) as server:
        result = fetch(server.url("/p"), fake, etag='"v1"')
    assert result.status == 200
    assert result.etag == '"v2"'
    assert result.body == PAGE.encode()


def test_304_keeps_the_sent_validators_when_the_server_omits_them(fake: FakeTime) -> None:
    result = fetch(
        "http://127.0.0.1/p", fake, etag='"v1"', transport=mock(lambda r: httpx.Response(304))
    )
    assert result.not_modified
    assert result.etag == '"v1"'


def test_unasked_304_is_an_error(fake: FakeTime) -> None:
    error = fetch_error("http://127.0.0.1/p", fake, transport=mock(lambda r: httpx.Response(304)))
    assert type(error) is HttpStatusError


# --- politeness ------------------------------------------------------------------------------


def recording_transport(fake: FakeTime, starts: list[tuple[str, float]]) -> httpx.MockTransport:
    """A transport answering 200 that records (host, fake time) for every request."""

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append((request.url.host, fake.now))
        return raw(200, b"ok")

    return mock(handler)


def test_rate_limit_spaces_sequential_requests(fake: FakeTime) -> None:
    starts: list[tuple[str, float]] = []

    async def go() -> None:
        async with make_fetcher(fake, rate=2.0, transport=recording_transport(fake, starts)) as f:
            for i in range(4):
                await f.fetch(f"http://127.0.0.1/p{i}")

    asyncio.run(go())
    assert fake.sleeps == [0.5, 0.5, 0.5]
    assert [t for _, t in starts] == [1000.0, 1000.5, 1001.0, 1001.5]


def test_rate_limit_spaces_concurrent_requests(fake: FakeTime) -> None:
    starts: list[tuple[str, float]] = []
    transport = recording_transport(fake, starts)
    urls = [f"http://127.0.0.1/p{i}" for i in range(6)]
    fetch_all(urls, fake, rate=1.0, per_host_concurrency=6, transport=transport)
    assert len(starts) == 6
    assert fake.sleeps == [1.0] * 5  # callers queue: each waits one interval after the last


def test_rate_limit_spaces_concurrent_requests_in_real_time() -> None:
    """The same on the real clock (20 req/s); loose bounds absorb event-loop jitter."""
    starts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append(time.monotonic())
        return raw(200, b"ok")

    async def go() -> None:
        async with Fetcher(
            transport=mock(handler), rate=20.0, per_host_concurrency=6, obey_robots=False
        ) as fetcher:
            await asyncio.gather(*(fetcher.fetch(f"http://127.0.0.1/p{i}") for i in range(6)))

    asyncio.run(go())
    starts.sort()
    assert len(starts) == 6
    assert starts[-1] - starts[0] >= 5 * 0.05 - 0.005
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(starts))


def test_rate_limit_is_per_host(fake: FakeTime) -> None:
    starts: list[tuple[str, float]] = []

    async def go() -> None:
        transport = recording_transport(fake, starts)
        async with make_fetcher(fake, rate=1.0, transport=transport, allowed_hosts=None) as f:
            for url in ["http://a.test/1", "http://b.test/1", "http://a.test/2", "http://b.test/2"]:
                await f.fetch(url)

    asyncio.run(go())
    assert fake.sleeps == [1.0]  # b.test/2 is already due when a.test/2 is done
    assert starts == [
        ("a.test", 1000.0),
        ("b.test", 1000.0),
        ("a.test", 1001.0),
        ("b.test", 1001.0),
    ]


def test_rate_zero_means_no_pacing(fake: FakeTime) -> None:
    starts: list[tuple[str, float]] = []
    urls = [f"http://127.0.0.1/p{i}" for i in range(5)]
    fetch_all(urls, fake, rate=0, transport=recording_transport(fake, starts))
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("concurrency", "per_host", "expected"), [(3, 10, 3), (8, 2, 2)], ids=["global", "per-host"]
)
def test_concurrency_bounds_are_obeyed(
    fake: FakeTime, concurrency: int, per_host: int, expected: int
) -> None:
    routes = {f"/p{i}": Route(PAGE, delay=0.1) for i in range(8)}
    with FaultServer(routes) as server:
        urls = [server.url(p) for p in routes]
        results = fetch_all(urls, fake, concurrency=concurrency, per_host_concurrency=per_host)
        assert server.max_in_flight == expected
    assert len(results) == 8


# --- seeded chaos ---------------------------------------------------------------------------


CHAOS = Chaos(seed=11, faults=[(Status(503), 0.3), (Reset(after=5), 0.15), (Truncate(), 0.1)])


def chaos_run(fake: FakeTime) -> tuple[list[FetchResult], list[tuple[str, int, str | None]]]:
    routes = {f"/p{i}": Route(PAGE * 3) for i in range(15)}
    with FaultServer(routes, chaos=CHAOS) as server:
        results = fetch_all([server.url(p) for p in routes], fake, policy=RetryPolicy(12))
        drawn = sorted((r.path, r.attempt, r.fault) for r in server.requests)
    return results, drawn


def test_seeded_chaos_is_survived_and_reproducible() -> None:
    results, drawn = chaos_run(FakeTime())
    again_results, again = chaos_run(FakeTime())
    assert all(r.body == (PAGE * 3).encode() for r in results + again_results)
    assert drawn == again  # same seed, same fault for each (path, attempt)
    faults = [fault for _, _, fault in drawn]
    assert None in faults
    assert len(set(faults) - {None}) >= 2  # the run really was faulty


def test_chaos_draws_follow_the_probabilities() -> None:
    draws = [CHAOS.draw(f"/p{i}", 1) for i in range(4000)]
    share = {
        name: sum(1 for d in draws if (d.name if d else None) == name) / 4000
        for name in ["Status(503)", "Reset", "Truncate", None]
    }
    assert share["Status(503)"] == pytest.approx(0.3, abs=0.03)
    assert share["Reset"] == pytest.approx(0.15, abs=0.03)
    assert share["Truncate"] == pytest.approx(0.1, abs=0.03)
    assert CHAOS.draw("/robots.txt", 1) is None  # exempt by default


# --- the policy itself -----------------------------------------------------------------------


@given(attempt=st.integers(1, 80), seed=st.integers(0, 2**32))
def test_full_jitter_stays_under_the_exponential_ceiling(attempt: int, seed: int) -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=60.0)
    delay = policy.backoff(attempt, rng=random.Random(seed))
    assert 0.0 <= delay <= min(60.0, 0.5 * 2 ** (attempt - 1))


@given(previous=st.floats(0.5, 1000.0), seed=st.integers(0, 2**32))
def test_decorrelated_jitter_bounds(previous: float, seed: int) -> None:
    policy = RetryPolicy(jitter="decorrelated", backoff_initial=0.5, backoff_max=60.0)
    delay = policy.backoff(3, previous=previous, rng=random.Random(seed))
    assert 0.5 <= delay <= min(60.0, 3 * previous)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff_initial": -1}, {"backoff_max": 0.1}, {"jitter": "wild"}],
)
def test_bad_policy_is_a_usage_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"concurrency": 0}, {"per_host_concurrency": 0}, {"rate": -1.0}]
)
def test_bad_fetcher_settings_are_usage_errors(fake: FakeTime, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        make_fetcher(fake, **kwargs)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 May 2024 12:01:00 GMT", 60.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
        ("Wednesday, 01-May-24 12:00:10 GMT", 10.0),
        ("soon", None),
        ("-5", None),
        ("\u00b2", None),  # a superscript two: str.isdigit() says yes, float() says no
        ("\u0663", None),  # an Arabic-Indic three
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_a_gzip_label_on_a_plain_body_is_terminal_not_retried(fake: FakeTime) -> None:
    route = Route(PAGE, headers={"Content-Encoding": "gzip"})
    with FaultServer({"/p": route}) as server:
        error = fetch_error(server.url("/p"), fake)
        assert server.count("/p") == 1  # the same bytes every time: no retry
    assert isinstance(error, BadContentEncoding)
    assert not error.transient


def test_a_location_with_an_impossible_port_is_a_redirect_error(fake: FakeTime) -> None:
    route = Route("", fault=Redirect("http://127.0.0.1:99999/x"))
    with FaultServer({"/p": route}) as server:
        error = fetch_error(server.url("/p"), fake)
    assert isinstance(error, RedirectError)
    assert "port" in error.reason


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1",  # h11 refuses the header: an unclosed IPv6 literal
        "http://256.1.1.1/",  # ... an IPv4 address that is none
        "\xff\x00",  # ... bytes that are no header value at all
        "http://exa mple.org/",  # httpx quotes the space into the host: DNS fails on every run
    ],
)
def test_a_malformed_location_is_terminal_not_retried_every_run(
    fake: FakeTime, location: str
) -> None:
    with FaultServer({"/p": Route("", fault=Redirect(location))}) as server:
        error = fetch_error(server.url("/p"), fake)
        assert server.count() == 1  # not retried
    assert isinstance(error, RedirectError), error
    assert not error.transient


def test_a_long_retry_after_with_no_retry_left_holds_the_host_without_sleeping(
    fake: FakeTime,
) -> None:
    """A 503 with Retry-After: 60 and no retry left (max_retries 0) is raised at once: nothing
    sleeps 60 s (or the 120 s cap). The host stays held: the next fetch for it raises
    HostBackingOff without sending a request, and once the hold is over it is sent."""
    policy = RetryPolicy(max_attempts=1)
    routes = {"/a": Route(PAGE, fault=Status(503, retry_after=60)), "/b": Route(PAGE)}

    async def go(server: FaultServer) -> tuple[FetchError, FetchError, FetchResult]:
        async with make_fetcher(fake, policy=policy) as fetcher:
            with pytest.raises(RetryableStatus) as first:
                await fetcher.fetch(server.url("/a"))
            with pytest.raises(HostBackingOff) as second:
                await fetcher.fetch(server.url("/b"))
            fake.now += 60.0  # the hold is over
            return first.value, second.value, await fetcher.fetch(server.url("/b"))

    with FaultServer(routes) as server:
        first, second, later = asyncio.run(go(server))
        assert server.count("/a") == 1
        assert [r.path for r in server.requests] == ["/a", "/b"]  # /b once, after the hold
    assert fake.sleeps == []
    assert first.retry_after == 60.0
    assert first.attempts == 1
    assert second.transient
    assert second.attempts == 0
    assert second.retry_after == pytest.approx(60.0)
    assert later.status == 200


def test_a_short_hold_is_waited_out_inline(fake: FakeTime) -> None:
    """A hold within the inline limit (5 s) is slept through by the next request, not raised."""
    routes = {"/a": Route(PAGE, faults=[Status(429, retry_after=3)]), "/b": Route(PAGE)}

    async def go(server: FaultServer) -> FetchResult:
        async with make_fetcher(fake, policy=RetryPolicy(max_attempts=1)) as fetcher:
            with pytest.raises(RetryableStatus):
                await fetcher.fetch(server.url("/a"))
            return await fetcher.fetch(server.url("/b"))

    with FaultServer(routes) as server:
        assert asyncio.run(go(server)).status == 200
    assert fake.sleeps == [3.0]


def test_a_503_with_retry_after_slows_the_whole_host() -> None:
    """Another request to the host waits out the Retry-After too (a host backoff), instead of
    hitting the host at the base rate while one worker sleeps."""
    routes = {"/a": Route(PAGE, faults=[Status(503, retry_after=1)]), "/b": Route(PAGE)}

    async def go(server: FaultServer) -> float:
        async with Fetcher(rate=0, obey_robots=False) as fetcher:
            first = asyncio.create_task(fetcher.fetch(server.url("/a")))
            while server.count("/a") == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the 503 has arrived
            started = time.monotonic()
            await fetcher.fetch(server.url("/b"))
            waited = time.monotonic() - started
            await first
            return waited

    with FaultServer(routes) as server:
        waited = asyncio.run(go(server))
    assert waited >= 0.6, waited
