"""URL normalization, scope, classification, sitemaps and link extraction."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.acquire.links import extract_links
from pipeline.acquire.profile import REFERENCE, SiteProfile
from pipeline.acquire.sitemaps import (
    SitemapEntry,
    parse_sitemap,
    parse_w3c_datetime,
    robots_sitemaps,
)
from pipeline.acquire.urls import Scope, normalize_url
from pipeline.errors import PageTooLarge, ParseError, UsageError

SITE = "https://www.example.org"
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"

# --- normalize_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://WWW.Example.ORG/code/cpt4/22212-x", "http://www.example.org/code/cpt4/22212-x"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("https://example.org:8443/a", "https://example.org:8443/a"),
        ("http://example.org", "http://example.org/"),
        ("http://example.org/a#section", "http://example.org/a"),
        ("http://example.org/a?", "http://example.org/a"),
        ("http://example.org/a/./b/../c", "http://example.org/a/c"),
        ("http://example.org/../../a", "http://example.org/a"),
        ("http://example.org/a/%2e%2E/b", "http://example.org/b"),
        ("http://example.org/code/list/A/", "http://example.org/code/list/A"),
        ("http://example.org/", "http://example.org/"),
        ("http://example.org/%7euser/%41", "http://example.org/~user/A"),
        ("http://example.org/a%2fb%c3%a9", "http://example.org/a%2Fb%C3%A9"),
        ("http://example.org/café here", "http://example.org/caf%C3%A9%20here"),
        ("http://example.org/a?q=x y&r=%3d", "http://example.org/a?q=x%20y&r=%3D"),
        ("http://example.org/a?b=2&a=1", "http://example.org/a?b=2&a=1"),
        ("https://Bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("http://example.org./a", "http://example.org/a"),
        ("  http://example.org/\ta\n  ", "http://example.org/a"),
        ("http://[::FFFF:127.0.0.1]:8080/", "http://[::ffff:7f00:1]:8080/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("mailto:someone@example.org", None),
        ("javascript:alert(1)", None),
        ("file:///etc/passwd", None),
        ("data:text/html,<b>x</b>", None),
        ("ftp://example.org/file", None),
        ("http://user:pw@example.org/", None),
        ("http://example.org:99999/", None),
        ("http://example.org:8o/", None),
        ("http://[::1/", None),
        ("http://exa mple.org/", None),
        ("http:///nohost", None),
        ("/relative/without/base", None),
        ("", None),
    ],
)
def test_normalize_url_table(url: str, expected: str | None) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("22212-x", "https://www.example.org/code/cpt4/22212-x"),
        ("../list/A", "https://www.example.org/code/list/A"),
        ("/code/hcpcs/G0202-y", "https://www.example.org/code/hcpcs/G0202-y"),
        ("//cdn.example.org/a.js", "https://cdn.example.org/a.js"),
        ("?page=2", "https://www.example.org/code/cpt4/index?page=2"),
        ("\\\\evil.example\\x", "https://evil.example/x"),
        ("#top", "https://www.example.org/code/cpt4/index"),
    ],
)
def test_normalize_url_resolves_against_base(href: str, expected: str) -> None:
    assert normalize_url(href, f"{SITE}/code/cpt4/index") == expected


_URL_TOKENS = [*"aZ09-._~:/?#[]@!$&'()*+,;=% \\\t\né€", "%2e", "%2F", "%c3%A9", "..", "./", "//"]
_URLISH = st.lists(st.sampled_from(_URL_TOKENS), max_size=20).map("".join)


@given(
    scheme=st.sampled_from(["http", "HTTPS", "ftp", "javascript", "", "file"]),
    host=st.sampled_from(["example.org", "EXAMPLE.org.", "127.0.0.1", "[::1]", "bücher.de", ""]),
    port=st.sampled_from(["", ":80", ":443", ":8080", ":0", ":x"]),
    rest=_URLISH,
    base=st.one_of(st.none(), st.just("http://base.example/dir/page")),
)
@example(scheme="http", host="example.org", port="", rest="/a/%2e%2e%2F..", base=None)
def test_normalize_is_idempotent_and_only_http(
    scheme: str, host: str, port: str, rest: str, base: str | None
) -> None:
    url = f"{scheme}://{host}{port}/{rest}" if scheme else rest
    once = normalize_url(url, base)
    if once is None:
        return
    assert urlsplit(once).scheme in ("http", "https")
    assert normalize_url(once) == once
    assert normalize_url(once, base) == once


@given(st.text(max_size=60))
def test_normalize_never_raises_and_is_idempotent_on_any_text(text: str) -> None:
    once = normalize_url(text, "https://example.org/a/b")
    if once is not None:
        assert once.startswith(("http://", "https://"))
        assert normalize_url(once) == once


# --- scope -----------------------------------------------------------------------------------


def test_scope_allows_only_seed_hosts_over_http() -> None:
    scope = Scope.from_seeds([f"{SITE}/code/list/A"])
    assert scope.allowed_hosts == frozenset({"www.example.org"})
    assert scope.allows(f"{SITE}/code/cpt4/22212-x")
    assert scope.allows("HTTP://WWW.EXAMPLE.ORG:80/x")
    assert not scope.allows("https://example.org/x")  # a different host, exactly
    assert not scope.allows("https://evil.example/x")
    assert not scope.allows("https://www.example.org.evil.example/x")
    assert not scope.allows("ftp://www.example.org/x")
    assert not scope.allows("javascript:alert(1)")
    assert not scope.allows("https://user@www.example.org/x")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1:8080/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "http://93.184.216.34/",
    ],
)
def test_public_scope_refuses_ip_literals_and_private_hosts(url: str) -> None:
    assert not Scope.from_seeds([SITE]).allows(url)


def test_explicitly_allowed_local_hosts() -> None:
    local = Scope.from_seeds(["http://127.0.0.1:8765/code/list/A"])
    assert local.allows("http://127.0.0.1:8765/code/cpt4/22212-x")
    assert local.allows("http://127.1:8765/x")  # the same address, spelled otherwise
    assert not local.allows("http://10.0.0.1/")
    extra = Scope.from_seeds([SITE], extra_hosts=["Example.ORG", "[::1]"])
    assert extra.allows("https://example.org/x")
    assert extra.allows("http://[::1]:8000/x")


def test_scope_addresses_after_resolution() -> None:
    public = Scope.from_seeds([SITE])
    assert public.allows_address("93.184.216.34")
    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:192.168.0.1"):
        assert not public.allows_address(address), address
    assert Scope.from_seeds(["http://127.0.0.1:8000/"]).allows_address("127.0.0.1")
    assert Scope.from_seeds(["http://localhost:8000/"]).allows_address("127.0.0.1")


@pytest.mark.parametrize("seed", ["mailto:x@example.org", "not a url", "/code/list/A"])
def test_bad_seed_is_a_usage_error(seed: str) -> None:
    with pytest.raises(UsageError, match="seed"):
        Scope.from_seeds([seed])


def test_bad_extra_host_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="host"):
        Scope.from_seeds([SITE], extra_hosts=["bad host"])


# --- classify --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "followed"),
    [
        ("/code/cpt4/22212-osteotomy-of-spine", "page", True),
        ("/code/cpt4/0042T-ct-perfusion", "page", True),
        ("/code/hcpcs/g0202-screening-mammography", "page", True),
        ("/code/icd10cm/J06.9-acute-upper-respiratory-infection", "page", True),
        ("/code/icd10pcs/0SRC0J9-replacement", "page", True),
        ("/code/cpt4/22212", "page", True),
        ("/code/list/A", "listing", True),
        ("/code/list/cpt4/2", "listing", True),
        ("/sitemap.xml", "sitemap", False),
        ("/sitemaps/codes-1.xml.gz", "sitemap", False),
        ("/robots.txt", "robots", False),
        ("/code/snomed/123-x", "page", False),
        ("/code/cpt4/about-us", "page", False),
        ("/about", "page", False),
        ("/", "listing", False),
    ],
)
def test_reference_profile(path: str, kind: str, followed: bool) -> None:
    assert REFERENCE.kind(SITE + path) == kind
    assert REFERENCE.follows(SITE + path) is followed


def test_a_seed_is_navigation_unless_it_is_shaped_like_a_page() -> None:
    assert REFERENCE.kind(SITE + "/start", seed=True) == "listing"
    assert REFERENCE.kind(SITE + "/code/cpt4/22212-x", seed=True) == "page"


def test_another_sites_layout() -> None:
    profile = SiteProfile(
        follow=(r"/health/procedures/",),
        deny=(r"/print/", r"\?share="),
        listing=(r"/a-z/",),
        pages=(),
    )
    assert profile.follows(SITE + "/health/procedures/knee-arthroscopy")
    assert not profile.follows(SITE + "/health/procedures/print/knee-arthroscopy")
    assert not profile.follows(SITE + "/health/procedures/knee?share=1")
    assert not profile.follows(SITE + "/code/cpt4/22212-x")  # the reference layout is not assumed
    assert profile.kind(SITE + "/health/procedures/knee-arthroscopy") == "page"
    assert profile.kind(SITE + "/health/a-z/k") == "listing"
    assert profile.kind(SITE + "/health/", seed=True) == "listing"


def test_a_bad_pattern_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="follow pattern"):
        SiteProfile(follow=("(unclosed",))


# --- sitemaps --------------------------------------------------------------------------------


def _urlset(*entries: str, prefix: str = "") -> bytes:
    colon = f"{prefix}:" if prefix else ""
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    body = "".join(entries)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{colon}urlset {xmlns}="{NS}" '
        f'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">{body}</{colon}urlset>'
    ).encode()


def test_sitemap_urlset_with_lastmod_and_whitespace() -> None:
    body = _urlset(
        f"<url>\n  <loc>\n   {SITE}/code/cpt4/22212-x  \n</loc>\n"
        "  <lastmod>2024-05-01</lastmod>\n"
        "  <image:image><image:loc>https://img.example/i.png</image:loc></image:image></url>",
        f"<url><loc>{SITE}/code/hcpcs/G0202-y</loc><lastmod>2024-05-01T10:30:00+02:00</lastmod>"
        "</url>",
        f"<url><loc>{SITE}/code/list/A/</loc><lastmod>garbage</lastmod></url>",
        "<url><loc>mailto:x@example.org</loc></url>",
    )
    sitemap = parse_sitemap(body)
    assert sitemap.urls == [
        SitemapEntry(f"{SITE}/code/cpt4/22212-x", datetime(2024, 5, 1, tzinfo=UTC)),
        SitemapEntry(f"{SITE}/code/hcpcs/G0202-y", datetime(2024, 5, 1, 8, 30, tzinfo=UTC)),
        SitemapEntry(f"{SITE}/code/list/A", None),
    ]
    assert sitemap.sitemaps == []
    assert sitemap.skipped == 1


def test_sitemap_with_prefixed_namespace_and_without_namespace() -> None:
    entry = f"<sm:url><sm:loc>{SITE}/a</sm:loc></sm:url>"
    assert [e.loc for e in parse_sitemap(_urlset(entry, prefix="sm")).urls] == [f"{SITE}/a"]
    bare = f"<urlset><url><loc>{SITE}/b</loc></url></urlset>".encode()
    assert [e.loc for e in parse_sitemap(bare).urls] == [f"{SITE}/b"]


def test_sitemap_index() -> None:
    body = (
        f'<sitemapindex xmlns="{NS}">'
        f"<sitemap><loc>{SITE}/sitemaps/cpt4.xml.gz</loc><lastmod>2024-01-01</lastmod></sitemap>"
        f"<sitemap><loc> {SITE}/sitemaps/hcpcs.xml </loc></sitemap>"
        "</sitemapindex>"
    ).encode()
    sitemap = parse_sitemap(body)
    assert sitemap.sitemaps == [f"{SITE}/sitemaps/cpt4.xml.gz", f"{SITE}/sitemaps/hcpcs.xml"]
    assert sitemap.urls == []


def test_gzip_sitemap_and_text_sitemap() -> None:
    body = _urlset(f"<url><loc>{SITE}/code/cpt4/22212-x</loc></url>")
    assert [e.loc for e in parse_sitemap(gzip.compress(body)).urls] == [f"{SITE}/code/cpt4/22212-x"]
    text = f"{SITE}/a\n\n{SITE}/b/\r\nnot a url\n".encode()
    sitemap = parse_sitemap(text)
    assert [e.loc for e in sitemap.urls] == [f"{SITE}/a", f"{SITE}/b"]
    assert sitemap.skipped == 1


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol9;</loc></url></urlset>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&xxe;</loc></url></urlset>
"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_entity_attacks_are_refused(body: bytes) -> None:
    with pytest.raises(ParseError, match="entities are not allowed"):
        parse_sitemap(body)
    with pytest.raises(ParseError, match="entities are not allowed"):
        parse_sitemap(gzip.compress(body))


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"<" + b" " * (5 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 10_000
    with pytest.raises(PageTooLarge, match="more than 1048576 bytes"):
        parse_sitemap(bomb, max_bytes=1024 * 1024)


def test_oversized_plain_sitemap_is_refused() -> None:
    with pytest.raises(PageTooLarge):
        parse_sitemap(b"<urlset>" + b" " * 2000 + b"</urlset>", max_bytes=1000)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x1f\x8bnot gzip at all", "not valid gzip"),
        (gzip.compress(b"<urlset></urlset>")[:-12], "truncated"),
        (b"<urlset><url><loc>x</url>", "not well-formed"),
        (b"<html><body>Not found</body></html>", "root element is <html>"),
    ],
)
def test_broken_sitemaps_are_parse_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_sitemap(body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T10:30Z", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        ("2024-05-01T10:30:15.25-05:00", datetime(2024, 5, 1, 15, 30, 15, 250000, tzinfo=UTC)),
        ("2024-05-01T10:30:15+0530", datetime(2024, 5, 1, 5, 0, 15, tzinfo=UTC)),
        ("2024-05-01 10:30:15", datetime(2024, 5, 1, 10, 30, 15, tzinfo=UTC)),
        ("2024-13-01", None),
        ("9999-12-31T23:59:59-14:00", None),  # past the calendar's end in UTC (OverflowError)
        ("0001-01-01T00:00:00Z", None),  # a placeholder, not a date
        ("0999-01-01", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_w3c_datetimes(text: str, expected: datetime | None) -> None:
    assert parse_w3c_datetime(text) == expected


def test_w3c_datetime_is_aware() -> None:
    value = parse_w3c_datetime("2024-05-01T00:00:00+01:00")
    assert value is not None
    assert value.utcoffset() == timedelta(0)
    assert value == datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=1)))


# --- links -----------------------------------------------------------------------------------


def test_extract_links_in_page_order_with_junk_dropped() -> None:
    html = """<html><body>
    <a href="/code/cpt4/22212-x">one</a>
    <a href="22213-y">relative</a>
    <a href="/code/cpt4/22212-x#steps">same page again</a>
    <a href="#top">fragment</a><a href="">empty</a><a>no href</a>
    <a href="javascript:void(0)">js</a><a href="mailto:a@b.c">mail</a>
    <a href="tel:+15551234">tel</a><a href="data:text/plain,x">data</a>
    <a href="http://[broken/">broken</a>
    <a href="  HTTPS://Other.Example:443/Path/ ">other host</a>
    <a rel="nofollow" href="/code/list/B">nofollow is followed</a>
    </body></html>"""
    assert extract_links(html, f"{SITE}/code/cpt4/index.html") == [
        f"{SITE}/code/cpt4/22212-x",
        f"{SITE}/code/cpt4/22213-y",
        "https://other.example/Path",
        f"{SITE}/code/list/B",
    ]


def test_extract_links_honours_base_href() -> None:
    html = b"""<html><head><base href="/code/hcpcs/"><base href="/ignored/"></head>
    <body><a href="G0202-y">a</a><a href="../list/H">b</a><a href="/abs">c</a></body></html>"""
    assert extract_links(html, f"{SITE}/somewhere/else") == [
        f"{SITE}/code/hcpcs/G0202-y",
        f"{SITE}/code/list/H",
        f"{SITE}/abs",
    ]


def test_extract_links_ignores_non_http_base() -> None:
    html = '<base href="javascript:x"><a href="a">a</a>'
    assert extract_links(html, f"{SITE}/dir/") == [f"{SITE}/dir/a"]


def test_robots_sitemaps() -> None:
    robots = (
        "User-agent: *\nDisallow: /search\n"
        f"Sitemap: {SITE}/sitemap.xml\n"
        f"sitemap:{SITE}/sitemaps/cpt4.xml.gz # the CPT codes\n"
        f"SITEMAP: {SITE}/sitemap.xml\n"
        "Sitemap: /relative.xml\n"
        "# Sitemap: https://commented.example/x.xml\n"
    )
    assert robots_sitemaps(robots) == [f"{SITE}/sitemap.xml", f"{SITE}/sitemaps/cpt4.xml.gz"]
    assert robots_sitemaps(robots, base=SITE)[-1] == f"{SITE}/relative.xml"
