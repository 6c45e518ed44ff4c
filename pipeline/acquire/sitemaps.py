"""Sitemaps (XML, gzip, plain text) and the ``Sitemap:`` lines of robots.txt. Pure: no network."""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from pipeline.acquire.urls import normalize_url
from pipeline.errors import PageTooLarge, ParseError

#: A decompressed sitemap may not exceed this (the sitemaps protocol's own limit is 50 MB).
MAX_SITEMAP_BYTES = 50 * 1024 * 1024


# --- sitemaps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitemapEntry:
    """One ``<url>`` of a sitemap: its normalized location and its lastmod, if any."""

    loc: str
    lastmod: datetime | None = None


@dataclass
class Sitemap:
    """A parsed sitemap: page entries (``<urlset>``) and child sitemaps (``<sitemapindex>``)."""

    urls: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    #: ``<loc>`` values that were not usable http(s) URLs.
    skipped: int = 0


def parse_sitemap(body: bytes, *, max_bytes: int = MAX_SITEMAP_BYTES) -> Sitemap:
    """Parse an XML sitemap or sitemap index, gzip-compressed or not, or a plain-text sitemap.

    Raises :class:`~pipeline.errors.PageTooLarge` when the (decompressed) body is over
    ``max_bytes``, and :class:`~pipeline.errors.ParseError` for a corrupt gzip stream, XML that
    is not well formed or not a sitemap, and any DTD entity declaration (billion laughs, external
    entities), which defusedxml refuses before expanding anything.
    """
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, max_bytes)
    elif len(body) > max_bytes:
        raise PageTooLarge(f"sitemap is over {max_bytes} bytes")
    text_start = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text_start.startswith(b"<"):
        return _parse_text_sitemap(body)
    return _parse_xml_sitemap(body)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress every gzip member of ``body``, refusing to produce more than ``limit`` bytes."""
    out = bytearray()
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = _inflate_member(inflater, data, out, limit)
    except zlib.error as exc:
        raise ParseError(f"sitemap is not valid gzip: {exc}") from exc
    return bytes(out)


def _inflate_member(inflater: zlib._Decompress, data: bytes, out: bytearray, limit: int) -> bytes:
    """Inflate one gzip member into ``out``; return the bytes after it."""
    while True:
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise PageTooLarge(f"sitemap decompresses to more than {limit} bytes")
        if inflater.eof:
            return inflater.unused_data
        if not inflater.unconsumed_tail:
            raise ParseError("sitemap gzip stream is truncated")
        data = inflater.unconsumed_tail


def _parse_text_sitemap(body: bytes) -> Sitemap:
    """The protocol's plain-text form: one URL per line."""
    sitemap = Sitemap()
    for line in body.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            _add_url(sitemap, line, None)
    return sitemap


def _parse_xml_sitemap(body: bytes) -> Sitemap:
    sitemap = Sitemap()
    try:
        for element, namespace in _entries(body):
            _add_entry(sitemap, element, namespace)
            element.clear()
    except DefusedXmlException as exc:
        raise ParseError(f"sitemap refused: DTD entities are not allowed ({exc})") from exc
    except XmlParseError as exc:
        raise ParseError(f"sitemap is not well-formed XML: {exc}") from exc
    return sitemap


def _entries(body: bytes) -> Iterator[tuple[Element, str]]:
    """Yield each ``<url>``/``<sitemap>`` child of the root, with the root's namespace."""
    depth = 0
    root_ns = ""
    events = iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=False)
    for event, element in events:
        if event == "start":
            depth += 1
            if depth == 1:
                root_ns = _namespace(element.tag)
                if _local(element.tag) not in ("urlset", "sitemapindex"):
                    raise ParseError(f"not a sitemap: the root element is <{_local(element.tag)}>")
            continue
        depth -= 1
        if depth == 1 and _namespace(element.tag) == root_ns:
            yield element, root_ns


def _add_entry(sitemap: Sitemap, element: Element, ns: str) -> None:
    """Read ``<loc>`` and ``<lastmod>`` (direct children in the sitemap's own namespace)."""
    fields = {
        _local(child.tag): (child.text or "").strip()
        for child in element
        if _namespace(child.tag) == ns and _local(child.tag) in ("loc", "lastmod")
    }
    loc = fields.get("loc", "")
    if _local(element.tag) == "sitemap":
        normalized = normalize_url(loc)
        if normalized is None:
            sitemap.skipped += 1
        else:
            sitemap.sitemaps.append(normalized)
    elif _local(element.tag) == "url":
        _add_url(sitemap, loc, parse_w3c_datetime(fields.get("lastmod", "")))


def _add_url(sitemap: Sitemap, loc: str, lastmod: datetime | None) -> None:
    normalized = normalize_url(loc)
    if normalized is None:
        sitemap.skipped += 1
    else:
        sitemap.urls.append(SitemapEntry(normalized, lastmod))


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


_W3C_DATETIME = re.compile(
    r"(\d{4})(?:-(\d\d)(?:-(\d\d)"
    r"(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(Z|[+-]\d\d:?\d\d)?)?)?)?",
    re.IGNORECASE,
)


#: A lastmod outside these years is a placeholder (there were no sitemaps before 2005).
_EARLIEST_YEAR, _LATEST_YEAR = 1990, 9000


def parse_w3c_datetime(text: str) -> datetime | None:
    """Parse a W3C datetime (``2024``, ``2024-05``, ``2024-05-01``, ``2024-05-01T10:00:00+02:00``).

    The result is aware and in UTC; a value without a zone is taken as UTC. Junk gives None.
    """
    match = _W3C_DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if not _EARLIEST_YEAR <= int(year) <= _LATEST_YEAR:
        return None  # "0001-01-01" or "9999-12-31T23:59-14:00": a placeholder, not a date
    try:
        value = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_zone(zone),
        )
    except ValueError:
        return None
    return value.astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if text is None or text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits_only = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits_only[:2]), minutes=int(digits_only[2:]))
    return timezone(sign * offset)


_SITEMAP_LINE = re.compile(r"\s*sitemap\s*:\s*(\S+)", re.IGNORECASE)


def robots_sitemaps(robots_txt: str, base: str | None = None) -> list[str]:
    """The normalized ``Sitemap:`` URLs of a robots.txt, de-duplicated, in file order."""
    found: list[str] = []
    for line in robots_txt.splitlines():
        match = _SITEMAP_LINE.match(line)
        url = normalize_url(match.group(1), base) if match else None
        if url is not None and url not in found:
            found.append(url)
    return found
