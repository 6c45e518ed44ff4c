"""URL normalization and the crawl's scope (the hosts and addresses it may reach). No network.

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

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from string import ascii_letters, digits
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx

from pipeline.errors import UsageError

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
