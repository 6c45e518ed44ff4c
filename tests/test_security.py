"""The crawl stays in scope and writes only where it is told to.

* Links, redirects, sitemap entries, sitemap-index entries and robots.txt ``Sitemap:`` lines that
  point to another host (in every spelling: other IP, ``localhost``, protocol-relative, numeric
  IPs, backslashes, user info, ``<base href>``) or use another scheme (``file:``,
  ``javascript:``, ``ftp:``, ``data:``...) are never requested: two more FaultServers stand for
  the "other hosts" and must receive zero requests, and no such URL even enters the crawl state.
* With a public seed host, private and loopback addresses in any spelling are out of scope
  (checked on :class:`~pipeline.acquire.urls.Scope` directly, since a public host cannot be served
  here), and a public name that resolves to a loopback address is refused after connecting.
* Whatever a page's URL, code or title holds (``..``, ``%2e%2e``, encoded slashes, NUL, very long
  paths, codes with ``/``), the crawl writes nothing outside its output and state directories.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import polars as pl
import pytest

from pipeline.acquire.profile import REFERENCE
from pipeline.acquire.urls import Scope, normalize_url
from pipeline.errors import OutOfScope
from pipeline.run.crawl import crawl, make_fetcher
from tests.conftest import crawl_options, instant
from tests.faultserver import FaultServer, Redirect, Route, robots
from tests.synth import content_type, generate_page
from tests.test_resume import crawl_args, serve_site

PAGES = 24


def _procedure_url(url: str) -> bool:
    """A link the reference profile follows to a page (not a listing)."""
    return REFERENCE.follows(url) and REFERENCE.kind(url) == "page"


def _state_urls(state: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{state / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        return [url for (url,) in conn.execute("SELECT url FROM pages")]
    finally:
        conn.close()


# --- other hosts and schemes ---------------------------------------------------------------------


def _away(main: FaultServer, other: FaultServer, local: FaultServer) -> list[str]:
    """URLs that leave the crawl's host (127.0.0.1) or its schemes, each to a unique path."""
    o, p, lp = other.base_url, other.port, local.port
    return [
        f"{o}/code/cpt4/11101-other-host",
        f"//127.0.0.2:{p}/code/cpt4/11102-protocol-relative",
        f"http://localhost:{lp}/code/cpt4/11103-localhost-name",
        f"http://0x7f000002:{p}/code/cpt4/11104-hex-ip",
        f"http://2130706434:{p}/code/cpt4/11105-decimal-ip",
        f"http://127.2:{p}/code/cpt4/11106-short-ip",
        f"http:\\\\127.0.0.2:{p}\\code\\cpt4\\11107-backslashes",
        f"HTTP://127.0.0.2:{p}/code/cpt4/11108-upper-case-scheme",
        f"http://127.0.0.1:{main.port}@127.0.0.2:{p}/code/cpt4/11109-user-info-trick",
        f"http://user:secret@127.0.0.1:{main.port}/code/cpt4/11110-credentials",
        f"http://[::ffff:127.0.0.2]:{p}/code/cpt4/11111-mapped-ipv6",
        f" \t{o}/code/cpt4/11112-leading-space",
        "file:///etc/passwd",
        "file:///code/cpt4/11113-file-scheme",
        f"javascript:location.href='{o}/code/cpt4/11114-javascript'",
        "JaVaScRiPt:alert(document.cookie)",
        f"ftp://127.0.0.1:{main.port}/code/cpt4/11115-ftp-same-host",
        f"ftp://127.0.0.2:{p}/code/cpt4/11116-ftp-other-host",
        f"data:text/html,<a href='{o}/code/cpt4/11117-data'>x</a>",
        "mailto:someone@example.org",
        f"ws://127.0.0.1:{main.port}/code/cpt4/11118-websocket",
        f"gopher://127.0.0.1:{main.port}/code/cpt4/11119-gopher",
        f"view-source:{o}/code/cpt4/11120-view-source",
    ]


def _hostile_page(body: bytes, away: list[str], redirects: list[str], other: FaultServer) -> bytes:
    """A real procedure page with off-scope links in every place a link can hide."""
    anchors = "".join(f'<a href="{href}">x</a>\n' for href in [*away, *redirects])
    head = (
        f'<link rel="canonical" href="{other.base_url}/code/cpt4/11121-canonical">'
        f'<meta http-equiv="refresh" content="30; url={other.base_url}/code/cpt4/11122-refresh">'
    )
    extra = (
        f'<p>{anchors}</p><iframe src="{other.base_url}/code/cpt4/11123-iframe"></iframe>'
        f'<img src="{other.base_url}/code/cpt4/11124-img">'
        f'<form action="{other.base_url}/code/cpt4/11125-form"><input name="q"></form>'
    )
    return body.replace(b"</head>", head.encode() + b"</head>", 1).replace(
        b"</body>", extra.encode() + b"</body>", 1
    )


def _base_page(body: bytes, other: FaultServer) -> bytes:
    """A page whose ``<base href>`` sends every relative link to the other host."""
    return body.replace(b"<head>", f'<head><base href="{other.base_url}/">'.encode(), 1)


def _sitemap(locs: list[str], index: bool = False) -> bytes:
    tag, item = ("sitemapindex", "sitemap") if index else ("urlset", "url")
    entries = "".join(
        f"<{item}><loc>{loc.replace('&', '&amp;').replace('<', '&lt;')}</loc></{item}>"
        for loc in locs
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<{tag} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{tag}>'
    ).encode()


def test_nothing_off_scope_is_ever_requested(tmp_path: Path) -> None:
    with (
        FaultServer() as main,
        FaultServer(host="127.0.0.2") as other,
        FaultServer() as local,  # reached as "localhost": another host name for the crawl
    ):
        site = serve_site(main, PAGES, seed=5)
        # The other hosts would serve the same site: if the crawler went there, it would work.
        for server in (other, local):
            server.routes.update(
                {p: Route(b, content_type=content_type(p)) for p, b in site.items()}
            )
        away = _away(main, other, local)
        o = other.base_url
        redirect_targets = {
            "/code/cpt4/22201-redirect-other-host": f"{o}/code/cpt4/33301-target",
            "/code/cpt4/22202-redirect-localhost": f"http://localhost:{local.port}/code/cpt4/1",
            "/code/cpt4/22203-redirect-protocol-relative": f"//127.0.0.2:{other.port}/code/x",
            "/code/cpt4/22204-redirect-file": "file:///etc/passwd",
            "/code/cpt4/22205-redirect-ftp": f"ftp://127.0.0.2:{other.port}/code/cpt4/2",
            "/code/cpt4/22206-redirect-javascript": "javascript:alert(1)",
            "/code/cpt4/22207-redirect-chain": "/code/cpt4/22208-redirect-hop",
            "/code/cpt4/22208-redirect-hop": f"{o}/code/cpt4/33302-end-of-chain",
            "/code/cpt4/22209-redirect-numeric": f"http://2130706434:{other.port}/code/cpt4/3",
            "/sitemap-moved.xml": f"{o}/sitemap-stolen.xml",
        }
        for path, target in redirect_targets.items():
            status = 308 if "numeric" in path else 302
            main.routes[path] = Route("", fault=Redirect(target, status=status))
        redirects = [p for p in redirect_targets if p.startswith("/code/")]

        # Off-scope links in a procedure page, a listing page and a <base href> page.
        victim = generate_page(PAGES - 1, 5)
        main.routes[victim.url_path] = Route(
            _hostile_page(victim.html, away, redirects, other), content_type="text/html"
        )
        based = generate_page(PAGES - 2, 5)
        main.routes[based.url_path] = Route(_base_page(based.html, other), content_type="text/html")
        listing = "".join(f'<li><a href="{href}">{i}</a></li>' for i, href in enumerate(away))
        main.routes["/code/list/Z"] = Route(f"<html><body><ul>{listing}</ul></body></html>")
        main.routes["/"] = Route(
            f'<html><body><a href="/code/list/Z">Z</a><a href="{victim.url_path}">v</a>'
            f'<a href="{based.url_path}">b</a></body></html>'
        )
        # Off-scope entries in sitemaps, a sitemap index and robots.txt.
        main.routes["/sitemap-hostile.xml"] = Route(
            _sitemap([a for a in away if not a.startswith((" ", "//"))] + [main.url("/")]),
            content_type="application/xml",
        )
        main.routes["/sitemap.xml"] = Route(
            _sitemap(
                [
                    main.url("/sitemap-hostile.xml"),
                    main.url("/sitemap-moved.xml"),
                    f"{o}/sitemap-other.xml",
                    "file:///etc/sitemap.xml",
                    f"ftp://127.0.0.2:{other.port}/sitemap.xml",
                ],
                index=True,
            ),
            content_type="application/xml",
        )
        main.routes["/robots.txt"] = robots(
            f"User-agent: *\nAllow: /\nSitemap: {main.url('/sitemap.xml')}\n"
            f"Sitemap: {o}/sitemap-robots.xml\nSitemap: file:///etc/robots-sitemap.xml\n"
            f"Sitemap: http://localhost:{local.port}/sitemap.xml\n"
        )

        options = crawl_options(tmp_path)
        crawl([main.url("/")], options, sleep=instant, show_progress=False)

        assert other.requests == [], [r.path for r in other.requests]
        assert local.requests == [], [r.path for r in local.requests]
        main_paths = {r.path for r in main.requests}

    # The crawl did its job on the host it was given...
    assert victim.url_path in main_paths
    assert "/sitemap-hostile.xml" in main_paths
    assert set(redirects) <= main_paths
    # ...and nothing that the off-scope URLs name reached the allowed host either.
    for path in main_paths:
        assert not any(tag in path for tag in ("/code/cpt4/111", "passwd", "alert", "/code/x")), (
            path
        )
    # No off-scope URL entered the state, whatever its spelling.
    origin = main.base_url + "/"
    strays = [url for url in _state_urls(options.state) if not url.startswith(origin)]
    assert strays == []
    # Redirects off the host are refused and recorded as such.
    rejects = pl.read_parquet(options.out / "parquet" / "rejects.parquet")
    kinds = dict(zip(rejects["source"], rejects["error_kind"], strict=True))
    assert {path: kinds.get(main.url(path)) for path in redirects} == dict.fromkeys(
        redirects, "redirect_error"
    )


def test_robots_txt_redirected_off_host_is_not_followed(tmp_path: Path) -> None:
    with FaultServer() as main, FaultServer(host="127.0.0.2") as other:
        serve_site(main, 6, seed=8)
        other.routes["/robots.txt"] = robots("User-agent: *\nDisallow:\n")
        main.routes["/robots.txt"] = Route("", fault=Redirect(other.url("/robots.txt")))
        crawl([main.url("/")], crawl_options(tmp_path), sleep=instant, show_progress=False)
        assert other.requests == []
        assert main.count("/robots.txt") >= 1


# --- public seeds: private and loopback addresses ------------------------------------------------

PUBLIC_SEEDS = ["https://www.example.org/", "http://codes.example.com/code/list/A"]

PRIVATE_URLS = [
    "http://127.0.0.1/code/cpt4/22212-x",
    "http://127.0.0.1:8080/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://www.example.org@127.0.0.1/",
    "http://127.0.0.1#@www.example.org/",
    "http://127.0.0.1\\@www.example.org/",
    "https://www.example.org.evil.test/",
    "https://evil.test/?https://www.example.org/",
    "https://wwwXexample.org/",
    "file:///etc/passwd",
    "ftp://www.example.org/",
    "javascript:fetch('https://www.example.org/')",
    "gopher://www.example.org/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_public_seed_scope_refuses_private_and_foreign_urls(url: str) -> None:
    scope = Scope.from_seeds(PUBLIC_SEEDS)
    assert scope.public
    assert not scope.allows(url), url
    normalized = normalize_url(url)
    assert normalized is None or not scope.allows(normalized)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.example.org/code/cpt4/22212-x",
        "http://WWW.EXAMPLE.ORG./code/list/B",
        "https://www.example.org:8443/x",  # ports are not restricted (see Scope)
        "http://codes.example.com/code/hcpcs/G0105",
    ],
)
def test_public_seed_scope_allows_its_own_hosts(url: str) -> None:
    assert Scope.from_seeds(PUBLIC_SEEDS).allows(url)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("127.5.6.7", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.31.255.1", False),
        ("192.168.0.10", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fd12:3456::1", False),
        ("0.0.0.0", False),
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
    ],
)
def test_public_seed_scope_judges_resolved_addresses(address: str, allowed: bool) -> None:
    assert Scope.from_seeds(PUBLIC_SEEDS).allows_address(address) is allowed


def test_loopback_seed_allows_loopback_addresses() -> None:
    scope = Scope.from_seeds(["http://127.0.0.1:8765/"])
    assert not scope.public
    assert scope.allows("http://127.0.0.1:9999/x")
    assert scope.allows_address("127.0.0.1")
    assert not scope.allows("http://localhost:8765/")
    assert not scope.allows("http://127.0.0.2:8765/")


class _ResolveTo(httpx.AsyncBaseTransport):
    """Every request goes to one address whatever its host: a DNS answer, simulated."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.host, port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_public_name_resolving_to_loopback_is_refused(tmp_path: Path) -> None:
    page = generate_page(0, 3)
    with FaultServer({page.url_path: Route(page.html, content_type="text/html")}) as inside:
        options = crawl_options(tmp_path, obey_robots=False)
        scope = Scope.from_seeds(["http://www.example.org/"])

        async def fetch() -> None:
            transport = _ResolveTo("127.0.0.1", inside.port)
            async with make_fetcher(options, scope, transport=transport) as fetcher:
                await fetcher.fetch("http://www.example.org" + page.url_path)

        with pytest.raises(OutOfScope, match="out of scope"):
            asyncio.run(fetch())

        crawl(
            ["http://www.example.org" + page.url_path],
            options,
            transport=_ResolveTo("127.0.0.1", inside.port),
            sleep=instant,
            show_progress=False,
        )
    procedures = pl.read_parquet(options.out / "parquet" / "procedures.parquet")
    assert procedures.height == 0
    rejects = pl.read_parquet(options.out / "parquet" / "rejects.parquet")
    assert rejects["error_kind"].to_list() == ["out_of_scope"]
    archived = [p for p in (options.state / "archive").rglob("*") if p.is_file()]
    assert archived == [], "a body from an address out of scope was stored"


# --- nothing written outside the output and state directories ------------------------------------

#: (path as linked, path the crawler requests), the latter normalized as the crawler does.
HOSTILE_PATHS = [
    "/code/cpt4/12345-..%2F..%2F..%2F..%2Fescape",
    "/code/cpt4/12346-%2e%2e%2f%2e%2e%2fescape",
    "/code/cpt4/12347-%00nul%0anewline%0d",
    "/code/cpt4/12348-%C3%BCn%C3%AFc%C3%B6d%C3%A9-and%20spaces",
    "/code/cpt4/12349-;rm%20-rf%20~;%60id%60",
    "/code/icd10cm/Z99.89-....%2F....%2F....%2Ftmp",
    "/code/hcpcs/A1234-" + "very-long-" * 400,
    "/code/cpt4/12350-%2Fetc%2Fpasswd",
    "/code/cpt4/12351-C:%5CWindows%5Csystem32",
    "/code/cpt4/12352-a/../../../../tmp/escape",
    "/code/cpt4/..%2F..%2F..%2Ftmp%2Fescape",
    "/code/cpt4/../../../../tmp/escape",
    "/code/cpt4/%2e%2e/%2e%2e/%2e%2e/tmp/escape",
    "/code/cpt4/12353%2F..%2F..%2Fx-slash-in-code",
]


def _hostile_body(index: int, path: str) -> bytes:
    """A valid page whose title, label and similar codes carry path tricks too."""
    body = generate_page(index, 6).html
    tricks = (
        "<h2>Similar Codes</h2><ul>"
        "<li>../../etc - Parent directory</li>"
        "<li>12345/../../x - Slash in a code</li>"
        "<li>/etc/passwd - Absolute path</li>"
        "<li>A12/34 - Slash in HCPCS</li>"
        "</ul>"
    )
    body = body.replace(b"<title>", b"<title>../../../../tmp/pwned ", 1)
    return body.replace(b"</body>", f"<p>{path}</p>{tricks}</body>".encode(), 1)


def test_nothing_is_written_outside_out_and_state(tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    scratch = tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    with FaultServer() as server:
        serve_site(server, 6, seed=6)
        links = []
        pages = set()
        for index, path in enumerate(HOSTILE_PATHS, start=6):
            normalized = normalize_url(server.url(path))
            assert normalized is not None
            served = urlsplit(normalized).path
            if _procedure_url(normalized):
                pages.add(served)
            route = Route(_hostile_body(index, path), content_type="text/html")
            server.routes[path] = server.routes[served] = route
            links.append(f'<a href="{path}">{index}</a>')
        server.routes["/"] = Route(f"<html><body>{''.join(links)}</body></html>")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(TMPDIR=str(scratch), TEMP=str(scratch), TMP=str(scratch))
        root = tmp_path / "run"
        result = subprocess.run(
            crawl_args(server.url("/"), root),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        requested = {r.path for r in server.requests}
    assert result.returncode in (0, 1), result.stderr
    # Every hostile URL the crawler takes for a procedure page was fetched (the others are
    # normalized to paths outside /code/, such as /tmp/escape, and left alone).
    assert len(pages) >= 8
    assert pages <= requested

    allowed = [root / "out", root / "state"]
    outside = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path in (root, work, scratch, *allowed):
                continue
            if not any(path.is_relative_to(a) for a in allowed):
                outside.append(path)
            elif path.is_symlink():
                target = Path(os.path.realpath(path))
                if not any(target.is_relative_to(a) for a in allowed):
                    outside.append(path)
    assert outside == [], outside
    assert not list(work.iterdir())
    assert not list(scratch.iterdir())
    for table in ("procedures", "rejects"):
        pl.read_parquet(root / "out" / "parquet" / f"{table}.parquet")
