"""Discovery: URL normalization, crawl scope, URL classes, sitemaps and links. Pure: no network.

Every URL the crawler stores or compares goes through :func:`normalize_url` first, so one page has
one key in the state, whatever spelling a link or a sitemap used for it.

Decisions worth knowing:

- A trailing slash is collapsed (``/code/list/`` and ``/code/list`` are one page). That changes how
  *relative* links resolve, so :func:`extract_links` must be given the URL the response actually
  came from (``response.url``), never the normalized key.
- URLs with user information (``http://user@host/``) are refused: a crawler never sends credentials
  it found in a link, and ``http://good.example@evil.example/`` is a classic trick.
- Numeric host spellings (``2130706433``, ``0x7f.1``, ``127.1``) are read as IPv4, as browsers and
  the system resolver do, and written as the dotted quad, so they cannot slip past the scope.
- ``rel="nofollow"`` is *not* honoured: it is a ranking hint about endorsement, not a crawl
  restriction; what may be fetched is decided by the scope and robots.txt.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from string import ascii_letters, digits
from typing import Literal
from urllib.parse import quote, urljoin, urlsplit, urlunsplit
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from selectolax.lexbor import LexborHTMLParser

from pipeline.errors import PageTooLarge, ParseError, UsageError

UrlKind = Literal["procedure", "listing", "sitemap", "robots", "other"]

#: A decompressed sitemap may not exceed this (the sitemaps protocol's own limit is 50 MB).
MAX_SITEMAP_BYTES = 50 * 1024 * 1024

_SCHEMES = {"http": 80, "https": 443}
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_UNRESERVED = frozenset(ascii_letters + digits + "-._~")
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_PCT_OR_CHAR = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|\d+)")
_MAX_HOST = 253

_PROCEDURE_PATH = re.compile(
    r"/code/(cpt4|hcpcs|icd10cm|icd10pcs)/((?=[A-Za-z0-9.]*\d)[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?)"
    r"(?:-[^/]*)?",
    re.IGNORECASE,
)
_LISTING_PATH = re.compile(r"/code/list(?:/[^/]+)+", re.IGNORECASE)


# --- URL normalization -----------------------------------------------------------------------


@lru_cache(maxsize=65536)
def normalize_url(url: str, base: str | None = None) -> str | None:
    """Return the canonical form of an http(s) URL, or None if it is not a usable one.

    ``url`` is resolved against ``base`` when relative. The result has a lower-case scheme and
    host, an IDN host in punycode, no default port, no user information, no fragment, no empty
    query, no dot segments, no trailing slash (except the root ``/``), and percent-encoding in one
    form (upper-case hex, unreserved characters decoded, everything unsafe encoded as UTF-8).
    Non-http(s) schemes (``mailto:``, ``javascript:``, ``file:``, ``data:``, ``ftp:``...) and
    malformed URLs give None. The function is idempotent.
    """
    try:
        return _normalize(_clean(url), None if base is None else _clean(base))
    except (ValueError, UnicodeError):
        return None


def _clean(url: str) -> str:
    """Strip what browsers strip: outer C0/space, inner tabs and newlines; ``\\`` means ``/``."""
    url = _TAB_OR_NEWLINE.sub("", url.strip(_C0_AND_SPACE))
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    return url[:cut].replace("\\", "/") + url[cut:]


def _normalize(url: str, base: str | None) -> str | None:
    parts = urlsplit(url)
    if base is not None and not (parts.scheme and parts.netloc):
        # urljoin only for relative references: it drops an empty ";" parameter from a path.
        parts = urlsplit(urljoin(base, url))
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        return None
    netloc = _normalize_netloc(parts.netloc, default_port=_SCHEMES[scheme])
    if netloc is None:
        return None
    path = _collapse_path(_remove_dot_segments(_normalize_percent(parts.path, _PATH_SAFE)))
    query = _normalize_percent(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def _normalize_netloc(netloc: str, *, default_port: int) -> str | None:
    """``host[:port]`` in canonical form; None for user info, a bad host or a bad port."""
    if "@" in netloc:
        return None
    host, port = _split_host_port(netloc)
    canonical = normalize_host(host)
    if canonical is None or port is None:
        return None
    shown = f"[{canonical}]" if ":" in canonical else canonical
    return shown if port in (0, default_port) else f"{shown}:{port}"


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    """Split ``host:port``; the port is 0 when absent and None when malformed."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return netloc, None
        port_text = rest[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if not port_text:
        return host, 0
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return host, None
    return host, int(port_text)


def normalize_host(host: str) -> str | None:
    """Canonical host: lower case, punycode for IDN, IPs in standard form (IPv6 unbracketed).

    Returns None when the text cannot be a host name or an IP literal.
    """
    if host.startswith("[") and host.endswith("]"):
        return _normalize_ipv6(host[1:-1])
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]  # the fully qualified spelling "example.org." is the same host
    if not host.isascii():
        host = _idna(host)
    host = host.lower()
    if len(host) > _MAX_HOST or not _ASCII_HOST.fullmatch(host):
        return None
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return _normalize_ipv4(host)
    return host


def _idna(host: str) -> str:
    """Punycode for an internationalized host, through httpx's own IDNA 2008 encoder."""
    folded = unicodedata.normalize("NFKC", host).lower()
    if folded.isascii():
        return folded
    try:
        return httpx.URL(scheme="http", host=folded, path="/").raw_host.decode("ascii")
    except httpx.InvalidURL as exc:
        raise ValueError(str(exc)) from exc


def _normalize_ipv6(text: str) -> str | None:
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        return None


def _normalize_ipv4(text: str) -> str | None:
    """Read every IPv4 spelling the system resolver accepts (``127.1``, ``0x7f.0.0.1``...)."""
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        return None


def _normalize_percent(text: str, safe: frozenset[str]) -> str:
    """Upper-case escapes, decode unreserved characters, encode everything not in ``safe``."""
    if "%" not in text and all(c in safe for c in text):
        return text
    out: list[str] = []
    for match in _PCT_OR_CHAR.finditer(text):
        token = match.group()
        if len(token) == 3:
            char = chr(int(token[1:], 16))
            out.append(char if char in _UNRESERVED else token.upper())
        else:
            out.append(token if token in safe else quote(token, safe=""))
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path (``..`` never climbs above the root)."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments and segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _collapse_path(path: str) -> str:
    return path.rstrip("/") or "/"


def host_of(url: str) -> str | None:
    """The canonical host of an http(s) URL (IPv6 without brackets), or None."""
    normalized = normalize_url(url)
    if normalized is None:
        return None
    netloc = urlsplit(normalized).netloc
    host, _ = _split_host_port(netloc)
    return host.strip("[]")


# --- scope -----------------------------------------------------------------------------------

_LOCAL_NAMES = ("localhost",)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_private_address(host: str) -> bool:
    """True for loopback, private, link-local, unspecified, reserved and multicast IP literals.

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are judged by their IPv4 address.
    """
    ip = _ip(host)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
    )


def _is_public_name(host: str) -> bool:
    return _ip(host) is None and not any(
        host == name or host.endswith("." + name) for name in _LOCAL_NAMES
    )


@dataclass(frozen=True)
class Scope:
    """The hosts a crawl may fetch from: exact host names, http and https only.

    Membership is exact after normalization, so when the seeds are public names an IP literal,
    and in particular a private or loopback one in any spelling, is refused unless it was
    explicitly allowed (a seed on ``127.0.0.1`` allows ``127.0.0.1``). Ports are not restricted.
    For DNS answers, the fetcher asks :meth:`allows_address` about the address it connected to.
    """

    allowed_hosts: frozenset[str]
    public: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public", any(map(_is_public_name, self.allowed_hosts)))

    @classmethod
    def from_seeds(cls, seed_urls: Iterable[str], extra_hosts: Iterable[str] = ()) -> Scope:
        """The seeds' hosts plus ``extra_hosts``; a bad seed or host is a UsageError."""
        hosts: set[str] = set()
        for seed in seed_urls:
            host = host_of(seed)
            if host is None:
                raise UsageError(f"seed is not a valid http(s) URL: {seed!r}")
            hosts.add(host)
        for extra in extra_hosts:
            host = normalize_host(extra.strip())
            if host is None:
                raise UsageError(f"not a valid host name: {extra!r}")
            hosts.add(host)
        return cls(frozenset(hosts))

    def allows(self, url: str) -> bool:
        """True if ``url`` is http(s), well formed, and on one of the allowed hosts."""
        host = host_of(url)
        return host is not None and host in self.allowed_hosts

    def allows_address(self, address: str) -> bool:
        """True if the crawler may talk to this resolved IP (guards against DNS pointing inside).

        A crawl of public names refuses private, loopback and link-local addresses unless the
        address itself is an allowed host; a crawl of local hosts allows every address.
        """
        if not self.public or address in self.allowed_hosts:
            return True
        return not is_private_address(address)


# --- URL classes -----------------------------------------------------------------------------


def classify(url: str) -> UrlKind:
    """Say what a URL of the reference site's layout is, from its path alone."""
    path = urlsplit(url).path
    lower = path.lower()
    if lower == "/robots.txt":
        return "robots"
    if lower.endswith((".xml", ".xml.gz")):
        return "sitemap"
    if _PROCEDURE_PATH.fullmatch(path):
        return "procedure"
    if _LISTING_PATH.fullmatch(path):
        return "listing"
    return "other"


def procedure_key(url: str) -> tuple[str, str] | None:
    """``(system, CODE)`` of a procedure URL (``("cpt4", "22212")``), else None."""
    match = _PROCEDURE_PATH.fullmatch(urlsplit(url).path)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).upper()


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


def parse_w3c_datetime(text: str) -> datetime | None:
    """Parse a W3C datetime (``2024``, ``2024-05``, ``2024-05-01``, ``2024-05-01T10:00:00+02:00``).

    The result is aware and in UTC; a value without a zone is taken as UTC. Junk gives None.
    """
    match = _W3C_DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
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


# --- links -----------------------------------------------------------------------------------


def extract_links(html: str | bytes, base_url: str) -> list[str]:
    """Every ``<a href>`` of the page, normalized, de-duplicated, in page order.

    Relative links resolve against the document's first ``<base href>`` (itself resolved against
    ``base_url``) or ``base_url``, which must be the URL the response came from. Empty and
    fragment-only hrefs (the page itself) and non-http(s) links are dropped. Bytes are read as
    UTF-8; pass a legacy-encoded page as text decoded the way the parser decodes it.
    """
    tree = LexborHTMLParser(html)
    base = _document_base(tree, base_url)
    seen: set[str] = set()
    links: list[str] = []
    for node in tree.css("a[href]"):
        href = (node.attributes.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        url = normalize_url(href, base)
        if url is not None and url not in seen:
            seen.add(url)
            links.append(url)
    return links


def _document_base(tree: LexborHTMLParser, base_url: str) -> str:
    node = tree.css_first("base[href]")
    href = (node.attributes.get("href") or "").strip() if node is not None else ""
    if not href:
        return base_url
    try:
        resolved = urljoin(_clean(base_url), _clean(href))
    except ValueError:
        return base_url
    return resolved if urlsplit(resolved).scheme.lower() in _SCHEMES else base_url


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
