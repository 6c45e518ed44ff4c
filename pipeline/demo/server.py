"""A small static site on loopback, serving the bundled demo site laid out like the reference site.

``/code/<system>/<CODE>-<slug>`` serves ``code/<system>/<CODE>-<slug>.html``; ``sitemap*.xml``,
``*.xml.gz`` and ``robots.txt`` are served with the placeholder origin
``http://127.0.0.1:8765`` rewritten to the server's real one. Responses carry an ETag and
answer conditional requests with 304, like a well-behaved site. Used by ``pipeline demo`` and
by the end-to-end tests; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlsplit

PLACEHOLDER_ORIGIN = "http://127.0.0.1:8765"

_TYPES = {
    ".html": "text/html",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
}


def bundled_site() -> Path:
    """The demo site shipped inside the package (``pipeline/demo/site``, package data): the
    golden pages, their listing pages, sitemaps and robots.txt."""
    return Path(__file__).resolve().parent / "site"


class _Handler(BaseHTTPRequestHandler):
    server: _SiteHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY a keep-alive client waits for
    # the delayed ACK (~40 ms) on every response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        site: SiteServer = self.server.site
        found = site.resolve(urlsplit(self.path).path)
        if found is None:
            self._send(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")
            return
        body, content_type = found
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self._send(304, b"", None, etag)
            return
        self._send(200, body, content_type, etag)

    def _send(self, status: int, body: bytes, content_type: str | None, etag: str = "") -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)


class _SiteHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    site: SiteServer


class SiteServer:
    """Serve a fixture site on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, root: Path | None = None, port: int = 0) -> None:
        self.root = (root or bundled_site()).resolve()
        self._server = _SiteHTTPServer(("127.0.0.1", port), _Handler)
        self._server.site = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def resolve(self, url_path: str) -> tuple[bytes, str] | None:
        """The body and content type served at ``url_path``, or None (404)."""
        relative = unquote(url_path).lstrip("/") or "index.html"
        candidates = [relative, relative + ".html"]
        for candidate in candidates:
            path = (self.root / candidate).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                continue
            body = path.read_bytes()
            if path.suffix in (".xml", ".txt"):
                body = body.replace(PLACEHOLDER_ORIGIN.encode(), self.origin.encode())
            elif path.name.endswith(".xml.gz"):
                raw = gzip.decompress(body)
                body = gzip.compress(
                    raw.replace(PLACEHOLDER_ORIGIN.encode(), self.origin.encode()), mtime=0
                )
            return body, _TYPES.get(path.suffix, "application/octet-stream")
        return None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
