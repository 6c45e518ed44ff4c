"""A real HTTP/1.1 server on 127.0.0.1 that misbehaves on request, for fetch, crawl and chaos tests.

It runs in a background thread on an ephemeral port, writes responses byte by byte on the raw
socket (so it can cut, stall, reset and lie about lengths), and records every request::

    from tests.faultserver import FaultServer, Reset, Route, Stall, Status, robots

    routes = {
        "/page": Route("<html>ok</html>", faults=[Status(503), Status(503)]),  # 2 x 503, then 200
        "/flaky": Route("<html>ok</html>", faults=[Reset(after=10)]),          # reset, then 200
        "/slow": Route("<html>ok</html>", fault=Stall(5.0)),                   # always stalls
        "/robots.txt": robots("User-agent: *\\nDisallow: /private\\n"),
    }
    with FaultServer(routes) as server:
        url = server.url("/page")
        ...
        assert server.count("/page") == 3

A :class:`Route` answers with its status, body and headers. Its ``faults`` list scripts the first
requests to it (``faults[0]`` for the first request, ``None`` in the list meaning "behave"); its
``fault`` applies to every later request. ``etag``/``last_modified`` make it answer 304 to
matching conditional requests. Unknown paths get 404.

Faults (all frozen dataclasses, usable in ``faults``, ``fault`` and :class:`Chaos`):

==================  ===========================================================================
:class:`Status`     an error status, optionally with Retry-After (seconds or a datetime)
:class:`Redirect`   a 3xx to a Location (relative, absolute, off-scope; chain them for loops)
:class:`Drop`       close the connection without answering
:class:`Reset`      send the head and ``after`` body bytes, then a TCP RST
:class:`Stall`      sleep ``seconds`` before answering (or after the head and half the body)
:class:`Truncate`   announce ``missing`` more bytes than are sent, then close
:class:`Trickle`    send the body ``chunk`` bytes every ``interval`` seconds
:class:`GzipBomb`   ``size`` bytes of zeros gzip-compressed (~1000:1), small Content-Length
:class:`BrokenGzip` a gzip body cut in half (the length header matches the cut body)
:class:`BrokenChunked` a chunked body with an invalid chunk size
==================  ===========================================================================

Seeded random faults: ``FaultServer(routes, chaos=Chaos(seed=7, faults=[(Status(503), 0.2),
(Reset(), 0.1)]))`` gives each request a fault with those probabilities. Each draw comes from
``random.Random(f"{seed}:{path}:{attempt}")``, so the n-th request for a path gets the same fault
whatever the interleaving of concurrent requests. Paths in ``Chaos.exempt`` (default
``/robots.txt``) and requests a route scripts explicitly are never drawn for.

Stalls and trickles wait on an event that :meth:`FaultServer.stop` sets, so stopping is quick.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import http
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = [
    "BrokenChunked",
    "BrokenGzip",
    "Chaos",
    "CloseDelimited",
    "Drop",
    "Exchange",
    "Fault",
    "FaultServer",
    "GzipBomb",
    "RecordedRequest",
    "Redirect",
    "Reset",
    "Route",
    "Stall",
    "Status",
    "Trickle",
    "Truncate",
    "gzip_bomb",
    "http_date",
    "robots",
]

MiB = 1 << 20


def http_date(when: datetime) -> str:
    """An HTTP-date (RFC 9110 IMF-fixdate) for ``when`` (naive means UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzip-compressed, built 1 MiB at a time (no big buffer in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    parts.append(compressor.compress(bytes(size % MiB)))
    parts.append(compressor.flush())
    return b"".join(parts)


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


# --- routes and requests -------------------------------------------------------------------


@dataclass
class Route:
    """What the server answers for one path.

    ``faults[i]`` scripts the (i+1)-th request to this path (``None``: answer normally);
    ``fault`` applies to every request after the script. ``delay`` is latency before answering.
    ``compress`` gzips the body when the client accepts gzip; ``chunked`` sends it chunked with
    no Content-Length.
    """

    body: bytes | str = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    faults: Sequence[Fault | None] = ()
    fault: Fault | None = None
    etag: str | None = None
    last_modified: datetime | str | None = None
    delay: float = 0.0
    compress: bool = False
    chunked: bool = False

    def scripted(self, attempt: int) -> tuple[bool, Fault | None]:
        """(whether the route decides this attempt, the fault it picks) for a 1-based attempt."""
        if attempt <= len(self.faults):
            return True, self.faults[attempt - 1]
        return self.fault is not None, self.fault

    @property
    def payload(self) -> bytes:
        """The body as bytes."""
        return _as_bytes(self.body)

    @property
    def last_modified_header(self) -> str | None:
        """Last-Modified as an HTTP-date string."""
        if isinstance(self.last_modified, datetime):
            return http_date(self.last_modified)
        return self.last_modified


def robots(text: str, **kwargs: Any) -> Route:
    """A ``/robots.txt`` route serving ``text`` as text/plain."""
    return Route(text, content_type="text/plain; charset=utf-8", **kwargs)


@dataclass
class RecordedRequest:
    """One request as the server saw it: ``attempt`` counts requests to the same path from 1."""

    method: str
    path: str
    headers: dict[str, str]
    time: float
    attempt: int
    fault: str | None


@dataclass(frozen=True)
class Chaos:
    """Seeded random faults: ``faults`` pairs a fault with its probability (sum at most 1)."""

    seed: int
    faults: Sequence[tuple[Fault, float]]
    exempt: frozenset[str] = frozenset({"/robots.txt"})

    def __post_init__(self) -> None:
        if sum(p for _, p in self.faults) > 1.0 + 1e-9:
            raise ValueError("chaos probabilities add up to more than 1")

    def draw(self, path: str, attempt: int) -> Fault | None:
        """The fault (or None) for the ``attempt``-th request to ``path``; deterministic."""
        if path.split("?", 1)[0] in self.exempt:
            return None
        roll = random.Random(f"{self.seed}:{path}:{attempt}").random()
        threshold = 0.0
        for fault, probability in self.faults:
            threshold += probability
            if roll < threshold:
                return fault
        return None


# --- the exchange: raw writing helpers -----------------------------------------------------


class Exchange:
    """One request being answered; faults use these helpers to write (or break) the response."""

    def __init__(self, handler: _Handler, server: FaultServer, route: Route | None) -> None:
        self.handler = handler
        self.server = server
        self.route = route
        self.method = handler.command
        self.headers = {k.lower(): v for k, v in handler.headers.items()}

    # -- primitives ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write raw bytes (HEAD requests get no body bytes: use :meth:`write_body`)."""
        self.handler.wfile.write(data)

    def write_body(self, data: bytes) -> None:
        """Write body bytes unless the request was HEAD."""
        if self.method != "HEAD":
            self.write(data)

    def send_head(
        self, status: int, headers: Sequence[tuple[str, str]] = (), *, version: str = "HTTP/1.1"
    ) -> None:
        """Write the status line and the headers (a Date header is added)."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"{version} {status} {phrase}", f"Date: {http_date(datetime.now(UTC))}"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> None:
        """A complete response with Content-Length."""
        self.send_head(status, [*headers, ("Content-Length", str(len(body)))])
        self.write_body(body)

    def wait(self, seconds: float) -> bool:
        """Sleep, but return False at once if the server is stopping."""
        return not self.server.stopping.wait(seconds)

    def close(self) -> None:
        """End the connection gracefully (FIN) after this response."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.handler.close_connection = True
        sock = self.handler.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    # -- the normal answer --------------------------------------------------------------------

    def body_and_headers(self) -> tuple[bytes, list[tuple[str, str]]]:
        """The route's body (gzipped if asked and accepted) and its entity headers."""
        route = self.route or Route()
        body = route.payload
        headers = [("Content-Type", route.content_type)]
        if route.compress and "gzip" in self.headers.get("accept-encoding", ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        if route.etag:
            headers.append(("ETag", route.etag))
        if route.last_modified_header:
            headers.append(("Last-Modified", route.last_modified_header))
        headers += list(route.headers.items())
        return body, headers

    def not_modified(self) -> bool:
        """Whether the request's validators match the route (RFC 9110 13.2.2 precedence)."""
        route = self.route
        if route is None:
            return False
        if "if-none-match" in self.headers:
            if not route.etag:
                return False
            tags = self.headers["if-none-match"].split(",")
            wanted = {tag.strip().removeprefix("W/") for tag in tags}
            return "*" in wanted or route.etag.removeprefix("W/") in wanted
        since, modified = self.headers.get("if-modified-since"), route.last_modified_header
        if not since or not modified:
            return False
        try:
            return email.utils.parsedate_to_datetime(modified) <= email.utils.parsedate_to_datetime(
                since
            )
        except (TypeError, ValueError):
            return False

    def serve_route(self) -> None:
        """Answer as the route says: 404 if none, 304 to a matching conditional, else the body."""
        if self.route is None:
            self.send(404, b"not found", [("Content-Type", "text/plain")])
            return
        body, headers = self.body_and_headers()
        if self.not_modified():
            self.send_head(304, [h for h in headers if h[0] in ("ETag", "Last-Modified")])
            return
        if self.route.chunked:
            self.send_head(self.route.status, [*headers, ("Transfer-Encoding", "chunked")])
            for start in range(0, len(body), 64 * 1024):
                chunk = body[start : start + 64 * 1024]
                self.write_body(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.write_body(b"0\r\n\r\n")
            return
        self.send(self.route.status, body, headers)


# --- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A way to answer one request badly. Subclasses implement :meth:`serve`."""

    def serve(self, ex: Exchange) -> None:
        """Answer (or fail to answer) the request."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """A short label for request records."""
        return type(self).__name__


@dataclass(frozen=True)
class Status(Fault):
    """An error status; ``retry_after`` seconds (int/float) or a datetime (sent as an HTTP-date)."""

    status: int = 503
    body: bytes = b"temporarily unavailable"
    retry_after: float | datetime | str | None = None

    def serve(self, ex: Exchange) -> None:
        headers = [("Content-Type", "text/plain")]
        if isinstance(self.retry_after, datetime):
            headers.append(("Retry-After", http_date(self.retry_after)))
        elif isinstance(self.retry_after, int | float):
            headers.append(("Retry-After", str(int(self.retry_after))))
        elif self.retry_after is not None:
            headers.append(("Retry-After", self.retry_after))
        ex.send(self.status, self.body, headers)

    @property
    def name(self) -> str:
        return f"Status({self.status})"


@dataclass(frozen=True)
class Redirect(Fault):
    """A redirect to ``location`` (relative or absolute)."""

    location: str
    status: int = 302

    def serve(self, ex: Exchange) -> None:
        ex.send(self.status, b"", [("Location", self.location)])


@dataclass(frozen=True)
class Drop(Fault):
    """Close the connection without sending a byte."""

    def serve(self, ex: Exchange) -> None:
        ex.close()


@dataclass(frozen=True)
class Reset(Fault):
    """Send the head and ``after`` body bytes, then reset the connection (RST)."""

    after: int = 64

    def serve(self, ex: Exchange) -> None:
        body, headers = ex.body_and_headers()
        if len(body) <= self.after:
            body += b" " * (2 * self.after + 1 - len(body))
        ex.send_head(200, [*headers, ("Content-Length", str(len(body)))])
        ex.write_body(body[: self.after])
        ex.reset()


@dataclass(frozen=True)
class Stall(Fault):
    """Sleep ``seconds`` before answering; ``after_headers``: after the head and half the body."""

    seconds: float = 5.0
    after_headers: bool = False

    def serve(self, ex: Exchange) -> None:
        if not self.after_headers:
            if ex.wait(self.seconds):
                ex.serve_route()
            else:
                ex.close()
            return
        body, headers = ex.body_and_headers()
        ex.send_head(200, [*headers, ("Content-Length", str(len(body)))])
        ex.write_body(body[: len(body) // 2])
        if ex.wait(self.seconds):
            ex.write_body(body[len(body) // 2 :])
        else:
            ex.close()


@dataclass(frozen=True)
class Truncate(Fault):
    """Announce ``missing`` more bytes than the body has, send the body, close."""

    missing: int = 100

    def serve(self, ex: Exchange) -> None:
        body, headers = ex.body_and_headers()
        ex.send_head(200, [*headers, ("Content-Length", str(len(body) + self.missing))])
        ex.write_body(body)
        ex.close()


@dataclass(frozen=True)
class CloseDelimited(Fault):
    """An HTTP/1.0 answer with no Content-Length (its end is the connection's end): the first
    ``keep`` bytes of the body (all of it when None), then a graceful close (FIN), so a cut
    looks like a normal end at the transport level."""

    keep: int | None = None

    def serve(self, ex: Exchange) -> None:
        body, headers = ex.body_and_headers()
        ex.send_head(200, headers, version="HTTP/1.0")
        ex.write_body(body if self.keep is None else body[: self.keep])
        ex.close()


@dataclass(frozen=True)
class Trickle(Fault):
    """Send the body ``chunk`` bytes at a time, ``interval`` seconds apart."""

    chunk: int = 1
    interval: float = 0.05

    def serve(self, ex: Exchange) -> None:
        body, headers = ex.body_and_headers()
        ex.send_head(200, [*headers, ("Content-Length", str(len(body)))])
        for start in range(0, len(body), self.chunk):
            ex.write_body(body[start : start + self.chunk])
            if not ex.wait(self.interval):
                ex.close()
                return


@dataclass(frozen=True)
class GzipBomb(Fault):
    """``size`` zeros, gzip-compressed, served as text/html with the small compressed length."""

    size: int = 50 * MiB

    def serve(self, ex: Exchange) -> None:
        bomb = gzip_bomb(self.size)
        headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]
        ex.send(200, bomb, headers)


@dataclass(frozen=True)
class BrokenGzip(Fault):
    """The gzip-compressed body cut in half, with a Content-Length matching the cut."""

    def serve(self, ex: Exchange) -> None:
        body, headers = ex.body_and_headers()
        packed = gzip.compress(body or b"x" * 1000)
        headers = [h for h in headers if h[0] != "Content-Encoding"]
        ex.send(200, packed[: len(packed) // 2], [*headers, ("Content-Encoding", "gzip")])


@dataclass(frozen=True)
class BrokenChunked(Fault):
    """A chunked body whose second chunk size is not hexadecimal."""

    def serve(self, ex: Exchange) -> None:
        _, headers = ex.body_and_headers()
        ex.send_head(200, [*headers, ("Transfer-Encoding", "chunked")])
        ex.write_body(b"5\r\nhello\r\nzz\r\nbroken\r\n0\r\n\r\n")
        ex.close()


# --- the server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections give up after this
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, owner: FaultServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Faults break connections on purpose; do not print tracebacks for that."""


class FaultServer:
    """The server: start with ``with FaultServer(routes) as server:``; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Route] | None = None,
        *,
        chaos: Chaos | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.chaos = chaos
        self.host = host
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._attempts: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral port and serve in a daemon thread."""
        self.stopping.clear()
        self._httpd = _HTTPServer(self, (self.host, 0))
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake stalled handlers, stop serving and close the socket."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (still known after :meth:`stop`, so URLs can be compared)."""
        if self._port is None:
            raise RuntimeError("the server was never started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    # -- records ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests for one path (query included)."""
        return [r for r in self.requests if r.path == path]

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (for ``path``, or in all)."""
        return len(self.requests if path is None else self.requests_for(path))

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at the same time."""
        return self._max_in_flight

    def reset_stats(self) -> None:
        """Forget recorded requests, attempt counters and the in-flight maximum."""
        with self._lock:
            self._requests.clear()
            self._attempts.clear()
            self._max_in_flight = self._in_flight

    # -- serving ------------------------------------------------------------------------------

    def _route(self, path: str) -> Route | None:
        return self.routes.get(path) or self.routes.get(path.split("?", 1)[0])

    def _choose(self, path: str, route: Route | None, attempt: int) -> Fault | None:
        decided, fault = route.scripted(attempt) if route else (False, None)
        if not decided and self.chaos is not None:
            fault = self.chaos.draw(path, attempt)
        return fault

    def _arrive(self, handler: _Handler) -> tuple[Route | None, Fault | None]:
        path = handler.path
        route = self._route(path)
        with self._lock:
            self._attempts[path] += 1
            attempt = self._attempts[path]
            fault = self._choose(path, route, attempt)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._requests.append(
                RecordedRequest(
                    method=handler.command,
                    path=path,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    time=time.monotonic(),
                    attempt=attempt,
                    fault=fault.name if fault else None,
                )
            )
        return route, fault

    def handle(self, handler: _Handler) -> None:
        """Answer one request: record it, wait the route's delay, then fault or serve."""
        route, fault = self._arrive(handler)
        try:
            ex = Exchange(handler, self, route)
            if route is not None and route.delay and not ex.wait(route.delay):
                ex.close()
            elif fault is not None:
                fault.serve(ex)
            else:
                ex.serve_route()
        except OSError:
            handler.close_connection = True  # the client went away
        finally:
            with self._lock:
                self._in_flight -= 1
