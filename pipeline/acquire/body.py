"""Bodies read within bounds: streamed decompression that stops at a size limit, so neither a
large body nor a gzip bomb is ever held past it."""

from __future__ import annotations

import re
import zlib

import httpx

from pipeline.errors import (
    BadContentEncoding,
    FetchTimeout,
    ResponseTooLarge,
    TerminalFetchError,
    TruncatedBody,
)

# --- bounded decompression -------------------------------------------------------------------


def lower_headers(headers: httpx.Headers) -> dict[str, str]:
    """Response headers as a plain dict with lower-case names (repeated fields joined)."""
    return {name.lower(): value for name, value in headers.items()}


def content_length(headers: dict[str, str]) -> int | None:
    """The announced Content-Length, or None when absent or malformed."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def _has_zlib_header(data: bytes) -> bool:
    """Whether a deflate body starts with a zlib header (RFC 1950) rather than raw deflate."""
    return len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _Inflater:
    """Decodes a Content-Encoding chunk by chunk, never producing more than it is asked for.

    ``httpx``'s own decoders inflate a whole network chunk at once (64 KiB of gzip can inflate
    to 64 MiB), so the fetcher reads raw bytes and decodes them here with ``max_length``.
    """

    def __init__(self, encoding: str, source: str) -> None:
        self._encoding = encoding
        self._source = source
        self._zlib: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._seen_input = False

    @classmethod
    def for_headers(cls, headers: dict[str, str], source: str) -> _Inflater:
        """The inflater for a response's Content-Encoding (identity when absent)."""
        codings = [
            c.strip().lower() for c in headers.get("content-encoding", "").split(",") if c.strip()
        ]
        codings = [c for c in codings if c != "identity"]
        if not codings:
            return cls("identity", source)
        if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
            raise TerminalFetchError(
                f"unsupported Content-Encoding {headers['content-encoding']!r}", source=source
            )
        return cls(codings[0], source)

    def feed(self, data: bytes, limit: int) -> bytes:
        """Decode ``data``, returning at most ``limit`` bytes (``limit`` reached means: too big)."""
        if not data:
            return b""
        self._seen_input = True
        if self._encoding == "identity":
            return data
        if self._zlib is None:  # deflate: zlib-wrapped per RFC, raw in the wild
            wbits = zlib.MAX_WBITS if _has_zlib_header(data) else -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(wbits)
        if self._zlib.eof:
            return b""  # trailing bytes after the end of the stream are ignored
        try:
            return self._zlib.decompress(data, limit)
        except zlib.error as exc:
            # Not a cut (that ends the stream early, see finish): the bytes are not in the
            # encoding the server labels them with, and will not be on the next try either.
            raise BadContentEncoding(
                f"the body is not valid {self._encoding} (Content-Encoding): {exc}",
                source=self._source,
            ) from exc

    def finish(self) -> None:
        """Check that a compressed stream was complete."""
        if self._zlib is not None and self._seen_input and not self._zlib.eof:
            raise TruncatedBody(f"{self._encoding} stream ended early", source=self._source)


def _check_size(body: bytes, *, max_bytes: int, truncate: bool, source: str) -> bytes:
    """Apply the size limit to a body that is already in memory."""
    if len(body) <= max_bytes:
        return body
    if truncate:
        return body[:max_bytes]
    raise ResponseTooLarge(f"body is over the limit of {max_bytes} bytes", source=source)


async def read_body(
    response: httpx.Response, *, max_bytes: int, truncate: bool, source: str
) -> bytes:
    """Stream, decode and size-check a body; ``truncate`` keeps the first ``max_bytes`` instead."""
    headers = lower_headers(response.headers)
    announced = content_length(headers)
    if announced is not None and announced > max_bytes and not truncate:
        raise ResponseTooLarge(
            f"Content-Length {announced} is over the limit of {max_bytes} bytes", source=source
        )
    if response.is_stream_consumed:  # built from bytes (e.g. httpx.MockTransport): already read
        return _check_size(response.content, max_bytes=max_bytes, truncate=truncate, source=source)
    inflater = _Inflater.for_headers(headers, source)
    body = bytearray()
    received = 0
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            body += inflater.feed(chunk, max_bytes - len(body) + 1)
            if len(body) > max_bytes:
                if truncate:
                    return bytes(body[:max_bytes])
                raise ResponseTooLarge(
                    f"body is over the limit of {max_bytes} bytes (after decoding)", source=source
                )
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"timed out reading the body: {exc!r}", source=source) from exc
    except httpx.TransportError as exc:
        raise TruncatedBody(f"body cut short: {exc!r}", source=source) from exc
    inflater.finish()
    if announced is not None and received < announced:
        raise TruncatedBody(f"got {received} of {announced} announced bytes", source=source)
    if _close_delimited(response, headers) and _cut_html(body, headers):
        raise TruncatedBody(
            "the connection closed before the end of the HTML document (no Content-Length or"
            " chunked framing to tell a cut from the end)",
            source=source,
        )
    return bytes(body)


# --- close-delimited bodies ------------------------------------------------------------------

_HTML_OPEN = re.compile(rb"<html[\s>]", re.IGNORECASE)
_HTML_CLOSE = re.compile(rb"</html\s*>", re.IGNORECASE)
#: How far into a body the opening <html> tag is looked for (doctype, comments, a BOM).
_HTML_OPEN_WINDOW = 64 * 1024


def _close_delimited(response: httpx.Response, headers: dict[str, str]) -> bool:
    """Whether the body's end is only the connection's end (HTTP/1.x, no Content-Length, not
    chunked): a connection closed early then looks like a complete body (RFC 9112 6.3, 8)."""
    if not response.http_version.startswith("HTTP/1"):
        return False
    if "content-length" in headers:
        return False
    return "chunked" not in headers.get("transfer-encoding", "").lower()


def _cut_html(body: bytes | bytearray, headers: dict[str, str]) -> bool:
    """Whether an HTML body opens its document but never closes it: the sign of a cut that
    nothing else shows. A body that never opens ``<html>`` cannot be judged and is taken."""
    content_type = headers.get("content-type", "text/html").lower()
    if "html" not in content_type:
        return False
    return bool(_HTML_OPEN.search(body, 0, _HTML_OPEN_WINDOW)) and not _HTML_CLOSE.search(body)
