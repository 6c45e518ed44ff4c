"""Benchmarks: ``python -m benchmarks.bench [--sizes 1000,10000] [--profile] [--markdown FILE]``.

Generates its own corpus with :mod:`tests.synth` at a fixed seed and measures, in one run:

* **in-process throughput** of ``parse_page`` (parse + normalize + validate) against two
  yardsticks on the same pages: the *floor* (selectolax parses each page and extracts its text,
  nothing else) and *BS4* (BeautifulSoup + lxml: chrome removal, a walk into lines, the section
  split and the list items, into the same fields; no normalizers, no validation). Rates are pages
  per CPU second of this single-threaded process, i.e. per core; the median of ``--repeat`` passes;
* **``pipeline parse`` as a whole process** over a directory of written files, against the same
  two yardsticks run as whole processes (``python -m benchmarks.bench _yardstick bs4|floor DIR``);
* **``pipeline ingest``** of a directory into the tables at every size: pages per second and the
  peak RSS of the subprocess (``ru_maxrss`` of that one child, from ``os.wait4``, which is the
  ``getrusage(RUSAGE_CHILDREN)`` figure scoped to one child, so runs do not mask each other);
* **the crawl** of a loopback site (the demo `SiteServer` in its own process) at a
  fixed concurrency with politeness off (``--rate 0``): pages per second and CPU seconds per page
  of the ``pipeline crawl`` subprocess, against Scrapy at the same concurrency when Scrapy is
  installed; then the overhead of the raw archive and the state database, measured *in this
  process* twice: by wrapping ``RawArchive.put`` and the ``CrawlState`` methods with timers, and
  by crawls where ``RawArchive.put`` (then also the ``CrawlState.record_*`` calls) are stubbed by
  monkeypatching;
* a **stage breakdown** of ``parse_page`` (timers wrapped around the names it calls) and, with
  ``--profile``, the top of a cProfile of ``parse_page`` over the corpus.

Everything is printed as Markdown (headline ratios first, absolute figures after); ``--markdown
FILE`` writes the same text to a file. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import gzip
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_SIZES: tuple[int, ...] = (1_000, 10_000)
DEFAULT_SEED = 20240611
DEFAULT_SAMPLE = 1_000
DEFAULT_PARSE_PAGES = 10_000
DEFAULT_CRAWL_PAGES = 1_000
DEFAULT_CONCURRENCY = 8
#: The floor and the BS4 yardstick are wrapped in the same ``for`` loop as the pipeline.
YARDSTICKS = ("floor", "bs4")
LIBRARIES = ("selectolax", "pydantic", "polars", "httpx", "beautifulsoup4", "lxml", "scrapy")

# Aims stated by the issue.
AIM_PAGES_PER_CORE = 4_000.0
AIM_VS_BS4 = 8.0
AIM_VS_FLOOR = 6.0
#: Peak RSS may grow by at most this factor from the smallest to the largest size to count as
#: flat (the interpreter, Polars and the parser take ~140 MiB whatever the size).
AIM_FLAT_MEMORY = 1.2

Page = tuple[str, bytes]


# --- corpus ---------------------------------------------------------------------------------------


def corpus_sample(n: int, seed: int) -> list[Page]:
    """The first ``n`` pages of the corpus in memory, as ``(url path, html)``."""
    from tests.synth import generate_page

    out: list[Page] = []
    for index in range(n):
        page = generate_page(index, seed)
        out.append((page.url_path, page.html))
    return out


def _file_for(root: Path, url_path: str) -> Path:
    relative = url_path.lstrip("/")
    if not relative.endswith((".html", ".htm")):
        relative += ".html"
    return root / relative


def write_corpus(root: Path, n: int, seed: int, chunk: int) -> list[Path]:
    """Write pages ``0..n-1`` as files, ``chunk`` pages per directory; return the directories.

    The first ``k`` directories hold the first ``k * chunk`` pages, so every size is a prefix
    of the largest one and is written once.
    """
    from tests.synth import generate_page

    dirs: list[Path] = []
    for start in range(0, n, chunk):
        directory = root / f"part{start // chunk:05d}"
        dirs.append(directory)
        for index in range(start, min(n, start + chunk)):
            page = generate_page(index, seed)
            path = _file_for(directory, page.url_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(page.html)
    return dirs


def write_site(root: Path, n: int, seed: int) -> int:
    """Write the site of ``n`` pages (sitemaps, robots.txt) to ``root``; return its page count."""
    from pipeline.demo.server import PLACEHOLDER_ORIGIN
    from tests.synth import generate_site

    site = generate_site(n, seed, PLACEHOLDER_ORIGIN)
    for url_path, body in site.items():
        relative = url_path.lstrip("/") or "index.html"
        if url_path.startswith("/code/"):
            relative += ".html"  # SiteServer serves /code/x from code/x.html
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return len(site)


def iter_files(directories: Sequence[Path]) -> Iterator[Path]:
    """Page files under the directories in the order ``pipeline parse`` reads them."""
    for directory in directories:
        yield from sorted(p for p in directory.rglob("*.html") if p.is_file())


# --- yardsticks -----------------------------------------------------------------------------------


def floor_extract(html: bytes, url: str | None = None) -> str:
    """The floor: one lexbor parse of the page and its visible text, nothing else."""
    from selectolax.lexbor import LexborHTMLParser

    body = LexborHTMLParser(html).body
    return "" if body is None else str(body.text())


_BS4_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "iframe", "object", "embed", "canvas",
     "button", "select", "input", "textarea", "head", "title", "img", "video", "audio", "map"}
)  # fmt: skip
_BS4_CHROME_TAGS = ("nav", "aside", "footer", "dialog", "menu", "form")
_BS4_CHROME = re.compile(
    r"cookie|consent|gdpr|advert|(?:^|[\s_-])ads?(?:$|[\s_-])|sponsor|sidebar|breadcrumb|share|"
    r"social|newsletter|popular|faq|navbar|site-header|footer|copyright|modal|related-posts",
    re.IGNORECASE,
)
_BS4_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "div", "dl",
     "dt", "fieldset", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
     "li", "main", "ol", "p", "pre", "section", "table", "tbody", "td", "th", "thead", "tr",
     "ul"}
)  # fmt: skip
_BS4_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "dt"})
_BS4_MARKER = re.compile(r"^(?:[•●▪◦·*\-–—]+\s*|(?:step\s+)?\d{1,2}[.):]\s*)", re.IGNORECASE)
_BS4_MD = re.compile(r"^#{1,6}\s*")
_BS4_LABEL = re.compile(r"^([^:.!?]{2,60}?)\s*:\s+(\S.*)$")
_BS4_WS = re.compile(r"\s+")
_BS4_PROSE = frozenset({"summary", "purpose", "duration", "setting"})
_BS4_LISTS = (
    "indications", "preparation", "steps", "personnel", "risks", "benefits", "recovery",
    "alternatives", "patient_experience", "similar_codes",
)  # fmt: skip
_BS4_CODE = re.compile(r"/code/([a-z0-9-]+)/([A-Za-z0-9.]+)-", re.IGNORECASE)


@dataclass(slots=True)
class _BS4Line:
    text: str
    tag: str
    bold: bool
    in_list: bool


def _bs4_lines(body: Any) -> list[_BS4Line]:
    """The visible lines of ``body``: block elements and ``<br>`` end a line."""
    from bs4.element import NavigableString, Tag  # type: ignore[import-not-found,unused-ignore]

    lines: list[_BS4Line] = []
    parts: list[str] = []
    state = {"bold": True, "tag": "body", "list": False}

    def flush() -> None:
        if parts:
            text = _BS4_WS.sub(" ", "".join(parts)).strip()
            if text:
                lines.append(
                    _BS4Line(text, str(state["tag"]), bool(state["bold"]), bool(state["list"]))
                )
            parts.clear()
        state["bold"] = True

    def visit(node: Any, block: str, bold: bool, in_list: bool) -> None:
        for child in node.children:
            if isinstance(child, Tag):
                name = child.name
                if name in _BS4_SKIP:
                    continue
                if name == "br":
                    flush()
                elif name in _BS4_BLOCKS:
                    flush()
                    visit(child, name, bold, in_list or name == "li")
                    flush()
                else:
                    visit(child, block, bold or name in ("b", "strong"), in_list)
            elif type(child) is NavigableString:
                if not parts:
                    if child.isspace():
                        continue
                    state["tag"], state["list"] = block, in_list
                parts.append(str(child))
                if not bold and not child.isspace():
                    state["bold"] = False

    visit(body, "body", False, False)
    flush()
    return lines


def bs4_extract(html: bytes, url: str | None = None) -> dict[str, Any]:
    """The BS4 yardstick: what a careful BeautifulSoup + lxml extractor of these pages does.

    Parse with lxml (the meta charset is honoured), drop chrome (tags, and class/id patterns),
    walk the body into lines, recognize headings (heading tags, ``<dt>``, bold lines, markdown
    ``#``, short ``Label:`` lines) and map them to sections with the project's heading
    vocabulary, then make list items (markers stripped) and prose. No normalizers, no
    validation: a lighter job than ``parse_page``, so the ratio is conservative.
    """
    from bs4 import BeautifulSoup  # type: ignore[import-not-found,unused-ignore]

    from pipeline.extract.vocabulary import heading_key, load_vocabulary

    vocab = load_vocabulary()
    soup = BeautifulSoup(html, "lxml")
    body = soup.body or soup
    title_tag = soup.find("title")
    doc_title = title_tag.get_text(" ", strip=True) if title_tag is not None else None
    for tag in body.find_all(_BS4_CHROME_TAGS):
        tag.decompose()
    for tag in body.find_all(class_=_BS4_CHROME):
        tag.decompose()
    for tag in body.find_all(id=_BS4_CHROME):
        tag.decompose()
    lines = _bs4_lines(body)

    record: dict[str, Any] = {"source": url, "title": None, "code": None, "code_system": None}
    for key in _BS4_PROSE:
        record[key] = None
    for key in _BS4_LISTS:
        record[key] = []
    current: str | None = None
    skipping = False
    prose: dict[str, list[str]] = {key: [] for key in _BS4_PROSE}
    for line in lines:
        text = line.text
        if record["title"] is None and line.tag == "h1":
            record["title"] = text
            continue
        heading = (
            line.tag in _BS4_HEADINGS
            or text.startswith("#")
            or (line.bold and not line.in_list and len(text) <= 100)
            or (text.endswith(":") and len(text) <= 80 and not line.in_list)
        )
        inline = None if heading else _BS4_LABEL.match(text)
        if heading or inline:
            key = heading_key(inline.group(1) if inline else text)
            slot = vocab.sublabel_of(current, key) if current else None
            found = None if slot else vocab.section_of(key)
            if slot is not None and inline:
                if slot == "skip":
                    continue  # an inline "Anesthesia: ..." labels its own line only
            elif slot is not None:
                skipping = slot == "skip"
            elif found is not None or (heading and line.tag in ("h1", "h2")):
                current, skipping = found, False
            elif heading:
                continue  # an unknown sub-heading: stay in the section
            if heading or skipping:
                continue
            if slot is not None or found is not None:
                text = inline.group(2) if inline else text
        if skipping or current is None:
            continue
        if current in prose:
            prose[current].append(text)
        elif isinstance(record.get(current), list):
            item = _BS4_MD.sub("", _BS4_MARKER.sub("", text)).strip()
            if item:
                record[current].append(item)
    for key, paragraphs in prose.items():
        record[key] = "\n\n".join(paragraphs) or None
    if record["title"] is None:
        record["title"] = doc_title
    match = _BS4_CODE.search(url or "")
    if match:
        record["code_system"], record["code"] = match.group(1).lower(), match.group(2).upper()
    return record


def pipeline_extract(html: bytes, url: str | None = None) -> Any:
    from pipeline.extract.page import parse_page

    return parse_page(html, url)


EXTRACTORS: dict[str, Callable[[bytes, str | None], Any]] = {
    "pipeline": pipeline_extract,
    "bs4": bs4_extract,
    "floor": floor_extract,
}


def _yardstick_main(kind: str, directories: list[str]) -> int:
    """``python -m benchmarks.bench _yardstick bs4|floor DIR...``: a whole-process yardstick.

    Reads the page files in the order ``pipeline parse`` does; ``bs4`` prints one JSON line per
    page (as ``pipeline parse`` does), ``floor`` prints nothing.
    """
    extract = EXTRACTORS[kind]
    out = sys.stdout
    for path in iter_files([Path(d) for d in directories]):
        try:
            result = extract(path.read_bytes(), str(path))
        except Exception as exc:
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if kind == "bs4":
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    out.flush()
    return 0


# --- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """One timed pass over pages: wall and CPU seconds, pages accepted and rejected."""

    wall: float
    cpu: float
    pages: int
    rejected: int


def time_pass(extract: Callable[[bytes, str | None], Any], pages: Sequence[Page]) -> Pass:
    from pipeline.errors import PipelineError

    rejected = 0
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for url, html in pages:
        try:
            extract(html, url)
        except PipelineError:
            rejected += 1
    return Pass(time.perf_counter() - wall0, time.process_time() - cpu0, len(pages), rejected)


@dataclass(frozen=True)
class Child:
    """A finished subprocess: wall seconds, CPU seconds (user + system), peak RSS, exit code."""

    wall: float
    cpu: float
    maxrss_kb: int
    returncode: int
    stderr: str


def run_child(argv: Sequence[str], *, stdout: int | None = subprocess.DEVNULL) -> Child:
    """Run ``argv`` and collect its own rusage with ``os.wait4`` (not its siblings')."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Child(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode, stderr)


def _python() -> str:
    return sys.executable


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# --- results --------------------------------------------------------------------------------------


@dataclass
class Results:
    """Everything one run measured, for the report."""

    command: str
    seed: int
    sizes: list[int]
    sample: int = 0
    repeat: int = 1
    inprocess: dict[str, list[Pass]] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    process_pages: int = 0
    process: dict[str, list[Child]] = field(default_factory=dict)
    ingest: dict[int, Child] = field(default_factory=dict)
    ingest_written: dict[int, int] = field(default_factory=dict)
    crawl_pages: int = 0
    concurrency: int = DEFAULT_CONCURRENCY
    crawl_repeat: int = 1
    crawl_nodelay: bool = True
    crawl_server: str = "SiteServer"
    crawl: dict[str, Child] = field(default_factory=dict)
    crawl_fetched: dict[str, int] = field(default_factory=dict)
    #: Per crawler: records produced and the crawl's own elapsed seconds (no interpreter start).
    crawl_records: dict[str, int] = field(default_factory=dict)
    crawl_internal: dict[str, float] = field(default_factory=dict)
    crawl_note: str = ""
    overhead: dict[str, float] = field(default_factory=dict)
    stub_runs: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    profile: list[tuple[str, int, float, float]] = field(default_factory=list)
    profile_total: float = 0.0
    notes: list[str] = field(default_factory=list)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- in-process throughput ------------------------------------------------------------------------


def measure_inprocess(results: Results, pages: Sequence[Page], repeat: int) -> None:
    results.sample, results.repeat = len(pages), repeat
    for name in ("pipeline", *YARDSTICKS):
        extract = EXTRACTORS[name]
        url, html = pages[0]
        with contextlib.suppress(Exception):
            extract(html, url)  # warm-up: imports, vocabulary, caches
        runs = []
        for _ in range(repeat):
            runs.append(time_pass(extract, pages))
        results.inprocess[name] = runs
        rate = len(pages) / _median([r.cpu for r in runs])
        _log(f"in-process {name}: {rate:,.0f} pages/CPU-s")


#: Fields the BS4 yardstick and ``parse_page`` both produce as plain text, compared verbatim.
AGREEMENT_FIELDS = (
    "title", "summary", "purpose", "indications", "preparation", "steps", "risks", "benefits",
    "recovery", "alternatives",
)  # fmt: skip


def measure_agreement(results: Results, pages: Sequence[Page]) -> None:
    """How often the BS4 yardstick extracts exactly what ``parse_page`` does (same job check)."""
    from pipeline.errors import PipelineError
    from pipeline.extract.page import parse_page

    same = compared = accepted = 0
    for url, html in pages:
        try:
            record = parse_page(html, url).model_dump()
        except PipelineError:
            continue
        accepted += 1
        theirs = bs4_extract(html, url)
        for key in AGREEMENT_FIELDS:
            compared += 1
            same += record[key] == theirs[key]
    if compared:
        results.agreement = {"pages": float(accepted), "identical": same / compared}


# --- whole process --------------------------------------------------------------------------------


def measure_process(results: Results, dirs: Sequence[Path], pages: int, repeat: int) -> None:
    results.process_pages = pages
    inputs = [str(d) for d in dirs]
    commands = {
        "pipeline": [_python(), "-m", "pipeline", "parse", *inputs],
        "bs4": [_python(), "-m", "benchmarks.bench", "_yardstick", "bs4", *inputs],
        "floor": [_python(), "-m", "benchmarks.bench", "_yardstick", "floor", *inputs],
    }
    for _ in range(repeat):
        for name, argv in commands.items():
            child = run_child(argv)
            if name == "pipeline" and child.returncode not in (0, 1):
                raise RuntimeError(f"pipeline parse failed: {child.stderr[-2000:]}")
            results.process.setdefault(name, []).append(child)
            _log(f"process {name} over {pages:,} pages: {child.wall:.2f}s")


# --- ingest and memory ----------------------------------------------------------------------------


def measure_ingest(results: Results, dirs: Sequence[Path], size: int, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    argv = [_python(), "-m", "pipeline", "ingest", *map(str, dirs), "--out", str(out)]
    argv += ["--no-progress", "--log-format", "json"]
    child = run_child(argv)
    if child.returncode not in (0, 1):
        raise RuntimeError(f"pipeline ingest failed: {child.stderr[-2000:]}")
    results.ingest[size] = child
    results.ingest_written[size] = _summary_count(child.stderr, "written")
    _log(f"ingest {size:,}: {child.wall:.2f}s, peak RSS {child.maxrss_kb / 1024:.0f} MiB")
    shutil.rmtree(out, ignore_errors=True)


def _summary(stderr: str) -> dict[str, Any]:
    """The JSON summary line a run prints last on stderr (``--log-format json``)."""
    for line in reversed(stderr.splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and data.get("event") == "summary":
                return data
    return {}


def _summary_count(stderr: str, name: str) -> int:
    return int(_summary(stderr).get(name, 0))


# --- crawl ----------------------------------------------------------------------------------------


class _Server:
    """``python -m benchmarks.bench _serve DIR`` in a subprocess (its CPU is not the crawler's)."""

    def __init__(self, root: Path, *, nodelay: bool = True) -> None:
        argv = [_python(), "-m", "benchmarks.bench", "_serve", str(root)]
        self.proc = subprocess.Popen(
            argv if nodelay else [*argv, "--nagle"],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.origin = self.proc.stdout.readline().strip()
        if not self.origin.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError("the site server did not start")

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Nginx:
    """The site served by nginx (static files, keep-alive, sendfile) on a free loopback port.

    nginx cannot rewrite the sitemaps' placeholder origin inside gzip files, so the site is
    copied once with the real origin written in.
    """

    CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000;
    types {{ text/html html; application/xml xml; text/plain txt; application/gzip gz; }}
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ try_files $uri $uri.html $uri/index.html =404; }}
    }}
}}
"""

    def __init__(self, site: Path, work: Path) -> None:
        from pipeline.demo.server import PLACEHOLDER_ORIGIN

        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        self.work = work / "nginx"
        shutil.rmtree(self.work, ignore_errors=True)
        root = self.work / "site"
        shutil.copytree(site, root)
        for path in root.iterdir():
            if path.suffix in (".xml", ".txt"):
                path.write_bytes(
                    path.read_bytes().replace(PLACEHOLDER_ORIGIN.encode(), self.origin.encode())
                )
            elif path.name.endswith(".xml.gz"):
                raw = gzip.decompress(path.read_bytes())
                path.write_bytes(
                    gzip.compress(raw.replace(PLACEHOLDER_ORIGIN.encode(), self.origin.encode()))
                )
        (self.work / "tmp").mkdir()
        config = self.work / "nginx.conf"
        # Run as root, nginx hands its workers to "nobody", who cannot read a private temp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        config.write_text(self.CONFIG.format(user=user, work=self.work, port=port, root=root))
        self.proc = subprocess.Popen([nginx, "-c", str(config), "-p", str(self.work)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"nginx did not start; see {self.work / 'nginx-error.log'}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> _Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve_main(root: str, nodelay: bool = True) -> int:
    from pipeline.demo import server as demo

    if nodelay:
        # The handler writes the headers and the body in two sends; with Nagle's algorithm on,
        # the body waits for the client's delayed ACK (40 ms on Linux) on every keep-alive
        # request, which caps the server near concurrency / 40 ms whatever the crawler does.
        demo._Handler.disable_nagle_algorithm = True
    with demo.SiteServer(Path(root)) as server:
        print(server.origin, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    return 0


def measure_crawl(
    results: Results,
    site: Path,
    work: Path,
    concurrency: int,
    *,
    scrapy: bool,
    repeat: int,
    nodelay: bool = True,
    nginx: bool = False,
) -> None:
    """``pipeline crawl`` and Scrapy, interleaved ``repeat`` times; the median run of each."""
    results.concurrency = concurrency
    results.crawl_nodelay = nodelay
    results.crawl_server = "nginx" if nginx else "SiteServer"
    results.crawl_repeat = max(1, repeat)
    use_scrapy = scrapy and _has_scrapy()
    if scrapy and not use_scrapy:
        results.crawl_note = "Scrapy is not installed: no comparison (pip install scrapy)."
    runs: dict[str, list[tuple[Child, int, int, float]]] = {}
    server: _Server | _Nginx
    with _Nginx(site, work) if nginx else _Server(site, nodelay=nodelay) as server:
        for _ in range(results.crawl_repeat):
            runs.setdefault("pipeline", []).append(
                _crawl_pipeline(server.origin, work, concurrency)
            )
            if use_scrapy:
                got = _crawl_scrapy(server.origin, work, concurrency)
                if got is None:
                    results.crawl_note = "Scrapy failed; see the log above."
                    use_scrapy = False
                else:
                    runs.setdefault("scrapy", []).append(got)
        measure_crawl_overhead(results, server.origin, work, concurrency, results.crawl_repeat)
    for name, measured in runs.items():
        measured.sort(key=lambda run: run[0].wall)
        child, fetched, records, own = measured[len(measured) // 2]
        results.crawl[name] = child
        results.crawl_fetched[name] = fetched
        results.crawl_records[name] = records
        results.crawl_internal[name] = own


def _crawl_pipeline(origin: str, work: Path, concurrency: int) -> tuple[Child, int, int, float]:
    out, state = work / "crawl-out", work / "crawl-state"
    for path in (out, state):
        shutil.rmtree(path, ignore_errors=True)
    argv = [_python(), "-m", "pipeline", "crawl", origin + "/", "--out", str(out)]
    argv += ["--state", str(state), "--rate", "0", "--concurrency", str(concurrency)]
    argv += ["--per-host-concurrency", str(concurrency), "--no-progress", "--log-format", "json"]
    child = run_child(argv)
    if child.returncode not in (0, 1):
        raise RuntimeError(f"pipeline crawl failed: {child.stderr[-2000:]}")
    summary = _summary(child.stderr)
    fetched = int(summary.get("fetched", 0))
    _log(f"pipeline crawl: {fetched} fetched in {child.wall:.2f}s")
    return child, fetched, int(summary.get("parsed", 0)), float(summary.get("seconds", math.nan))


def _crawl_scrapy(
    origin: str, work: Path, concurrency: int
) -> tuple[Child, int, int, float] | None:
    feed = work / "scrapy-items.jsonl"
    feed.unlink(missing_ok=True)
    argv = [_python(), "-m", "benchmarks.bench", "_scrapy", origin, str(concurrency), str(feed)]
    child = run_child(argv)
    if child.returncode != 0:
        _log(f"Scrapy failed: {child.stderr.strip()[-2000:]}")
        return None
    stats = _scrapy_stats(child.stderr)
    fetched = int(stats.get("downloader/response_count", 0))
    _log(f"scrapy: {fetched} fetched in {child.wall:.2f}s")
    own = float(stats.get("elapsed_time_seconds", math.nan))
    return child, fetched, int(stats.get("item_scraped_count", 0)), own


def _has_scrapy() -> bool:
    try:
        metadata.version("scrapy")
    except metadata.PackageNotFoundError:
        return False
    return True


def _scrapy_stats(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith("SCRAPY_STATS "):
            stats = json.loads(line.removeprefix("SCRAPY_STATS "))
            return stats if isinstance(stats, dict) else {}
    return {}


def _scrapy_main(origin: str, concurrency: int, feed: str) -> int:
    """The Scrapy yardstick: a SitemapSpider from robots.txt, pages parsed by ``parse_page``."""
    # Optional: mypy must pass where Scrapy is not installed.
    from scrapy.crawler import CrawlerProcess  # type: ignore[import-not-found,unused-ignore]
    from scrapy.spiders import SitemapSpider  # type: ignore[import-not-found,unused-ignore]

    from pipeline.errors import PipelineError
    from pipeline.extract.page import parse_page

    class BenchSpider(SitemapSpider):  # type: ignore[misc,unused-ignore]
        name = "bench"
        sitemap_urls = [origin + "/robots.txt"]  # noqa: RUF012

        def parse(self, response: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            try:
                record = parse_page(response.body, response.url, http_charset=response.encoding)
            except PipelineError:
                return
            yield record.model_dump(mode="json")

    settings = {
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "FEEDS": {feed: {"format": "jsonlines"}},
    }
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(BenchSpider)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats else {}
    print("SCRAPY_STATS " + json.dumps(stats, default=str), file=sys.stderr)
    return 0


@contextlib.contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _timed(
    original: Callable[..., Any],
    bucket: dict[str, float],
    key: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            bucket[key] = bucket.get(key, 0.0) + clock() - started

    return wrapper


#: State methods a crawl calls, timed in the overhead run.
_STATE_METHODS = (
    "add_discovered", "claim_due", "record_fetched", "record_unchanged", "record_gone",
    "record_failed", "record_rejected",
)  # fmt: skip


def _crawl_in_process(origin: str, work: Path, concurrency: int) -> tuple[float, float, int]:
    """One crawl in this process: (wall seconds, CPU seconds, pages fetched)."""
    from pipeline.run.crawl import CrawlOptions, crawl

    out, state = work / "ip-out", work / "ip-state"
    for path in (out, state):
        shutil.rmtree(path, ignore_errors=True)
    options = CrawlOptions(
        out=out, state=state, concurrency=concurrency, per_host_concurrency=concurrency, rate=0
    )
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = crawl([origin + "/"], options, show_progress=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    fetched = int(str(result.summary.get("fetched", 0)))
    return wall, cpu, fetched


def measure_crawl_overhead(
    results: Results, origin: str, work: Path, concurrency: int, repeat: int
) -> None:
    """Archive and state cost, in this process: crawls with timers wrapped around the methods,
    interleaved with crawls where ``RawArchive.put`` (then also ``CrawlState.record_*``) is a stub.
    """
    from pipeline.acquire.archive import RawArchive, content_hash
    from pipeline.acquire.state import CrawlState

    def put_stub(self: Any, body: bytes, **_: Any) -> str:
        return content_hash(body)

    def record_stub(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    variants = {
        "full (methods timed)": (),
        "archive.put stubbed": ("put",),
        "archive.put + state.record_* stubbed": ("put", "record"),
    }
    measured: dict[str, list[tuple[float, float, int]]] = {label: [] for label in variants}
    buckets: list[dict[str, float]] = []
    for _ in range(max(1, repeat)):
        for label, stubs in variants.items():
            bucket: dict[str, float] = {}
            with contextlib.ExitStack() as stack:
                if "put" in stubs:
                    stack.enter_context(_patched(RawArchive, "put", put_stub))
                if "record" in stubs:
                    for name in _STATE_METHODS:
                        if name.startswith("record_"):
                            stack.enter_context(_patched(CrawlState, name, record_stub))
                if not stubs:
                    put = _timed(RawArchive.put, bucket, "archive.put")
                    stack.enter_context(_patched(RawArchive, "put", put))
                    for name in _STATE_METHODS:
                        timed = _timed(CrawlState.__dict__[name], bucket, f"state.{name}")
                        stack.enter_context(_patched(CrawlState, name, timed))
                run = _crawl_in_process(origin, work, concurrency)
            measured[label].append(run)
            if not stubs:
                buckets.append({**bucket, "wall": run[0], "cpu": run[1], "fetched": run[2]})
            _log(f"in-process crawl, {label}: {run[0]:.2f}s wall, {run[1]:.2f}s CPU")
    for label, runs in measured.items():
        results.stub_runs[label] = (
            _median([r[0] for r in runs]),
            _median([r[1] for r in runs]),
            runs[0][2],
        )
    buckets.sort(key=lambda b: b["wall"])
    results.overhead = buckets[len(buckets) // 2]


# --- stage breakdown and profile ------------------------------------------------------------------


#: Names ``parse_page`` calls, wrapped with timers for the stage breakdown.
_STAGES = (
    ("decode_page", "decode (input checks, charset)"),
    ("LexborHTMLParser", "lexbor parse"),
    ("_document_title", "document title (`_document_title`)"),
    ("_remove_chrome", "chrome removal (`_remove_chrome`)"),
    ("walk_counted", "DOM walk into lines (blocks.py)"),
    ("split_sections", "section split (sections.py)"),
    ("repair_lost_headings", "lost-heading repair"),
    ("_build", "record build: normalizers + validation"),
)


def measure_stages(results: Results, pages: Sequence[Page]) -> None:
    import pipeline.extract.page as page_module
    from pipeline.errors import PipelineError

    bucket: dict[str, float] = {}

    class _TimedModel:
        """Stands in for ``Procedure`` inside page.py: times ``model_validate``."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def model_validate(self, obj: Any) -> Any:
            return _timed(self.real.model_validate, bucket, "pydantic", time.process_time)(obj)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    with contextlib.ExitStack() as stack:
        for name, _ in _STAGES:
            if name in page_module.__dict__:
                original = page_module.__dict__[name]
                timed = _timed(original, bucket, name, time.process_time)
                stack.enter_context(_patched(page_module, name, timed))
        if "Procedure" in page_module.__dict__:
            real = page_module.__dict__["Procedure"]
            stack.enter_context(_patched(page_module, "Procedure", _TimedModel(real)))
        gc.collect()
        started = time.process_time()
        for url, html in pages:
            with contextlib.suppress(PipelineError):
                page_module.parse_page(html, url)
        total = time.process_time() - started
    stages: dict[str, float] = {}
    validate = bucket.get("pydantic", 0.0)
    for name, label in _STAGES:
        stages[label] = bucket.get(name, 0.0)
    stages["record build: normalizers"] = stages.pop(_STAGES[-1][1]) - validate
    stages["Pydantic validation"] = validate
    stages["other (parse_page itself, timers)"] = max(0.0, total - sum(stages.values()))
    results.stages = {k: v / len(pages) for k, v in stages.items()}
    results.stages["total"] = total / len(pages)


def measure_profile(results: Results, pages: Sequence[Page], top: int = 18) -> None:
    from pipeline.errors import PipelineError
    from pipeline.extract.page import parse_page

    profiler = cProfile.Profile()
    profiler.enable()
    for url, html in pages:
        with contextlib.suppress(PipelineError):
            parse_page(html, url)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    results.profile_total = float(stats.total_tt)  # type: ignore[attr-defined]
    rows = []
    root = str(Path(__file__).resolve().parent.parent)
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in raw.items():
        where = str(filename).replace(root + "/", "")
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        label = f"{func}" if where == "~" else f"{where}:{line}({func})"
        rows.append((label, int(ncalls), float(tottime), float(cumtime)))
    rows.sort(key=lambda r: r[2], reverse=True)
    results.profile = rows[:top]


# --- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    info = {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "load average at the end (1, 5, 15 min)": load,
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
    }
    for name in LIBRARIES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    return info


def _rate(pages: int, seconds: float) -> str:
    return f"{pages / seconds:,.0f}" if seconds > 0 else "n/a"


def _x(ratio: float) -> str:
    return f"{ratio:.1f}x" if math.isfinite(ratio) else "n/a"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render(results: Results) -> str:
    """The Markdown report of a run."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"### Run of {now}\n",
        f"Command: `{results.command}`  ",
        f"Corpus: `tests.synth`, seed {results.seed}; "
        f"sizes {', '.join(map(str, results.sizes))}.\n",
        "| machine | |\n|---|---|",
        *(f"| {key} | {value} |" for key, value in machine().items()),
        "",
    ]
    headline = _headline(results)
    if headline:
        out += ["#### Headline (ratios)\n", "| measure | result | aim | |\n|---|---|---|---|"]
        out += [*headline, ""]
    for section in (
        _render_inprocess,
        _render_process,
        _render_ingest,
        _render_crawl,
        _render_overhead,
        _render_stages,
        _render_profile,
    ):
        out += section(results)
    out += [f"- {note}" for note in results.notes]
    return "\n".join(out).rstrip() + "\n"


_INPROCESS_LABELS = {
    "pipeline": "`parse_page` (parse + normalize + validate)",
    "bs4": "BS4 + lxml yardstick (sections and items)",
    "floor": "floor: selectolax parse + `body.text()`",
}


def _render_inprocess(results: Results) -> list[str]:
    if not results.inprocess:
        return []
    n = results.sample
    out = [
        f"#### In process: parse + normalize + validate ({n:,} pages, "
        f"median of {results.repeat})\n",
        "| extractor | pages/s per core (CPU) | pages/s (wall) | ms/page | rejected | "
        "pipeline is |",
        "|---|---|---|---|---|---|",
    ]
    mine = _median([r.cpu for r in results.inprocess["pipeline"]])
    for name in ("pipeline", *YARDSTICKS):
        runs = results.inprocess[name]
        cpu, wall = _median([r.cpu for r in runs]), _median([r.wall for r in runs])
        rel = "" if name == "pipeline" else _relation(cpu / mine)
        out.append(
            f"| {_INPROCESS_LABELS[name]} | {_rate(n, cpu)} | {_rate(n, wall)} | "
            f"{1000 * cpu / n:.2f} | {runs[0].rejected} | {rel} |"
        )
    if results.agreement:
        a = results.agreement
        out.append(
            f"\nThe BS4 yardstick does the same extraction: on {a['pages']:.0f} pages its "
            f"{', '.join(AGREEMENT_FIELDS)} are identical to `parse_page`'s in "
            f"{a['identical']:.1%} of (page, field) pairs."
        )
    return [*out, ""]


_PROCESS_LABELS = {
    "pipeline": "`pipeline parse DIR...` (JSON Lines to /dev/null)",
    "bs4": "`python -m benchmarks.bench _yardstick bs4 DIR...` (JSON Lines)",
    "floor": "`python -m benchmarks.bench _yardstick floor DIR...`",
}


def _render_process(results: Results) -> list[str]:
    if not results.process:
        return []
    n = results.process_pages
    out = [
        f"#### Whole process over {n:,} page files "
        f"(median of {len(results.process['pipeline'])})\n",
        "| command | wall s | pages/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, children in results.process.items():
        wall = _median([c.wall for c in children])
        cpu = _median([c.cpu for c in children])
        rss = max(c.maxrss_kb for c in children) / 1024
        out.append(
            f"| {_PROCESS_LABELS[name]} | {wall:.2f} | {_rate(n, wall)} | {cpu:.2f} | {rss:.0f} |"
        )
    return [*out, ""]


def _render_ingest(results: Results) -> list[str]:
    if not results.ingest:
        return []
    out = [
        "#### Ingest into the tables (`pipeline ingest DIR... --out OUT`, one subprocess each)\n",
        "| pages | written | wall s | pages/s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for size, child in sorted(results.ingest.items()):
        written = results.ingest_written.get(size, 0)
        out.append(
            f"| {size:,} | {written:,} | {child.wall:.2f} | {_rate(size, child.wall)} | "
            f"{child.cpu:.2f} | {child.maxrss_kb / 1024:.0f} |"
        )
    return [*out, ""]


_CRAWL_LABELS = {
    "pipeline": "`pipeline crawl` (state, archive, tables)",
    "scrapy": "Scrapy SitemapSpider + `parse_page`, JSON Lines feed",
}


def _render_crawl(results: Results) -> list[str]:
    if not results.crawl:
        return []
    c = results.concurrency
    out = [
        f"#### Crawl of a loopback site of {results.crawl_pages:,} files "
        f"(concurrency {c}, per host {c}, rate 0)\n",
        (
            "The site is served by nginx (static files, one worker) in its own process"
            if results.crawl_server == "nginx"
            else "The site is served by `pipeline.demo.server.SiteServer` in its own process"
            + (
                " with TCP_NODELAY set on its sockets (as is, the server's two sends per "
                "response meet the client's delayed ACK and every request stalls ~40 ms)"
                if results.crawl_nodelay
                else " as is (Nagle on)"
            )
        )
        + "; the figures are the crawler's subprocess only. *Fetched* counts HTTP responses "
        "(robots.txt, sitemaps, "
        "listing and procedure pages); *own s* is the run's own elapsed time as the crawler "
        "reports it (without interpreter start-up and imports).\n",
        "| crawler | fetched | records | wall s | fetched/s | own s | fetched/s (own) | CPU s | "
        "CPU ms/fetch | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, child in results.crawl.items():
        fetched = results.crawl_fetched.get(name, 0)
        own = results.crawl_internal.get(name, math.nan)
        per = 1000 * child.cpu / fetched if fetched else math.nan
        out.append(
            f"| {_CRAWL_LABELS[name]} | {fetched:,} | {results.crawl_records.get(name, 0):,} | "
            f"{child.wall:.2f} | {_rate(fetched, child.wall)} | {own:.2f} | "
            f"{_rate(fetched, own)} | {child.cpu:.2f} | {per:.2f} | "
            f"{child.maxrss_kb / 1024:.0f} |"
        )
    if results.crawl_note:
        out.append(f"\n{results.crawl_note}")
    return [*out, ""]


def _render_overhead(results: Results) -> list[str]:
    if not results.overhead:
        return []
    o = results.overhead
    fetched = max(1, int(o["fetched"]))
    out = [
        "#### Crawl overhead of the raw archive and the state database "
        f"(in process, {fetched:,} fetches)\n",
        "Measured by wrapping the methods with timers (wall time inside them; the crawl runs on "
        "one event loop, so this is time the loop is blocked; the median timed crawl):\n",
        "| where | s | ms/fetch | share of crawl wall |",
        "|---|---|---|---|",
    ]
    for key, seconds in sorted(o.items(), key=lambda kv: -kv[1]):
        if key in ("wall", "cpu", "fetched"):
            continue
        share = seconds / o["wall"] if o["wall"] else math.nan
        out.append(f"| `{key}` | {seconds:.3f} | {1000 * seconds / fetched:.3f} | {share:.1%} |")
    out.append(f"| whole crawl | {o['wall']:.3f} | {1000 * o['wall'] / fetched:.3f} | 100% |")
    out += [
        "\nAnd by crawls with the methods stubbed by monkeypatching, interleaved with the timed "
        f"crawls (median of {results.crawl_repeat} each):\n",
        "| run | wall s | CPU s | fetched/s | speed vs full |",
        "|---|---|---|---|---|",
    ]
    base = results.stub_runs.get("full (methods timed)", (math.nan, math.nan, 0))[0]
    for label, (wall, cpu, n) in results.stub_runs.items():
        speed = base / wall if wall else math.nan
        out.append(f"| {label} | {wall:.2f} | {cpu:.2f} | {_rate(n, wall)} | {speed:.2f}x |")
    return [*out, ""]


def _render_stages(results: Results) -> list[str]:
    if not results.stages:
        return []
    total = results.stages["total"]
    out = [
        f"#### Where `parse_page` spends its time ({results.sample:,} pages; CPU-time timers "
        "around the names it calls)\n",
        "| stage | µs/page | share |",
        "|---|---|---|",
    ]
    for label, seconds in results.stages.items():
        if label != "total":
            out.append(f"| {label} | {1e6 * seconds:,.0f} | {seconds / total:.0%} |")
    out.append(f"| **total** | {1e6 * total:,.0f} | 100% |")
    return [*out, ""]


def _render_profile(results: Results) -> list[str]:
    if not results.profile:
        return []
    total = results.profile_total
    out = [
        f"#### cProfile of `parse_page` (top by own time; {total:.2f}s profiled)\n",
        "| function | calls | own s | cumulative s | own share |",
        "|---|---|---|---|---|",
    ]
    for label, calls, own, cum in results.profile:
        share = own / total if total else 0.0
        out.append(f"| `{label}` | {calls:,} | {own:.3f} | {cum:.3f} | {share:.1%} |")
    return [*out, ""]


def _relation(ratio: float) -> str:
    """``ratio`` = other's time / pipeline's time."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "n/a"
    if ratio >= 1:
        return f"{ratio:.1f}x faster"
    return f"{1 / ratio:.1f}x slower"


def _headline(results: Results) -> list[str]:
    rows: list[str] = []
    if results.inprocess:
        mine = results.sample / _median([r.cpu for r in results.inprocess["pipeline"]])
        rows.append(
            f"| parse + normalize + validate, pages/s per core | {mine:,.0f} | "
            f"> {AIM_PAGES_PER_CORE:,.0f} | {_met(mine > AIM_PAGES_PER_CORE)} |"
        )
        bs4 = _median([r.cpu for r in results.inprocess["bs4"]])
        floor = _median([r.cpu for r in results.inprocess["floor"]])
        cpu = _median([r.cpu for r in results.inprocess["pipeline"]])
        rows.append(f"| in process: `parse_page` vs BS4 yardstick | {_relation(bs4 / cpu)} | | |")
        rows.append(
            f"| in process: `parse_page` vs floor | {_x(cpu / floor)} the floor's time | | |"
        )
    if results.process:
        n = results.process_pages
        walls = {k: _median([r.wall for r in v]) for k, v in results.process.items()}
        cpus = {k: _median([r.cpu for r in v]) for k, v in results.process.items()}
        vs_bs4 = walls["bs4"] / walls["pipeline"]
        vs_floor = walls["pipeline"] / walls["floor"]
        rows.append(
            f"| `pipeline parse` of {n:,} pages vs BS4, wall (CPU) | {_relation(vs_bs4)} "
            f"({_relation(cpus['bs4'] / cpus['pipeline'])}) | "
            f">= {AIM_VS_BS4:.0f}x | {_met(vs_bs4 >= AIM_VS_BS4)} |"
        )
        rows.append(
            f"| `pipeline parse` of {n:,} pages vs floor, wall (CPU) | {_x(vs_floor)} "
            f"({_x(cpus['pipeline'] / cpus['floor'])}) the floor's time"
            f" | within {AIM_VS_FLOOR:.0f}x | {_met(vs_floor <= AIM_VS_FLOOR)} |"
        )
    if "pipeline" in results.crawl:
        mine_c = results.crawl["pipeline"]
        mine_rate = results.crawl_fetched["pipeline"] / mine_c.wall
        if "scrapy" in results.crawl:
            theirs = results.crawl["scrapy"]
            their_rate = results.crawl_fetched["scrapy"] / theirs.wall
            ratio = mine_rate / their_rate
            rows.append(
                f"| crawl pages/s vs Scrapy (concurrency {results.concurrency}) | "
                f"{_relation(ratio)} ({mine_rate:,.0f} vs {their_rate:,.0f}) | faster | "
                f"{_met(ratio > 1)} |"
            )
        else:
            rows.append(
                f"| crawl pages/s (concurrency {results.concurrency}) | {mine_rate:,.0f} | "
                "faster than Scrapy | not measured (no Scrapy) |"
            )
    if len(results.ingest) >= 2:
        sizes = sorted(results.ingest)
        low, high = results.ingest[sizes[0]], results.ingest[sizes[-1]]
        growth = high.maxrss_kb / low.maxrss_kb
        decades = math.log10(sizes[-1] / sizes[0])
        per_decade = (high.maxrss_kb - low.maxrss_kb) / 1024 / decades if decades else 0.0
        rows.append(
            f"| ingest peak RSS, {sizes[0]:,} -> {sizes[-1]:,} pages | "
            f"{low.maxrss_kb / 1024:.0f} -> {high.maxrss_kb / 1024:.0f} MiB ({growth:.2f}x, "
            f"{per_decade:+.0f} MiB per 10x pages) | flat (<= {AIM_FLAT_MEMORY}x) | "
            f"{_met(growth <= AIM_FLAT_MEMORY)} |"
        )
    return rows


# --- main -----------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of page counts: {text!r}") from None
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError("sizes must be positive page counts")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark parsing, ingest and crawl on a generated corpus (see module doc).",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="corpus sizes for ingest and peak memory, comma separated [1000,10000]",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="corpus seed")
    parser.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help="pages timed in process, profiled and broken down by stage [1000]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes of in-process timings [3]")
    parser.add_argument(
        "--parse-pages",
        type=int,
        default=DEFAULT_PARSE_PAGES,
        help="pages of the whole-process `pipeline parse` comparison (a size) [10000]",
    )
    parser.add_argument(
        "--process-repeat", type=int, default=1, help="runs of each whole-process command [1]"
    )
    parser.add_argument(
        "--crawl-pages", type=int, default=DEFAULT_CRAWL_PAGES, help="pages of the site [1000]"
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="crawl [8]")
    parser.add_argument(
        "--crawl-repeat", type=int, default=3, help="runs of each crawl variant [3]"
    )
    parser.add_argument(
        "--stock-server",
        action="store_true",
        help="serve the site with SiteServer as is (Nagle on: ~40 ms stall per request)",
    )
    parser.add_argument(
        "--nginx",
        action="store_true",
        help="serve the crawled site with nginx (must be on PATH) instead of SiteServer",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: inprocess,stages,process,ingest,crawl,scrapy",
    )
    parser.add_argument("--profile", action="store_true", help="add the cProfile top entries")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--workdir", type=Path, help="keep the corpus and outputs here (default: a temp dir)"
    )
    return parser


def run(args: argparse.Namespace, command: str) -> Results:
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    sizes: list[int] = args.sizes
    parse_pages = min(args.parse_pages, max(sizes)) if "process" not in skip else 0
    results = Results(command=command, seed=args.seed, sizes=sizes)
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pipeline-bench-")))
        _log(f"work directory {work}")
        sample = corpus_sample(min(args.sample, max(sizes)), args.seed)
        if "inprocess" not in skip:
            measure_inprocess(results, sample, max(1, args.repeat))
            measure_agreement(results, sample[: min(300, len(sample))])
        if "stages" not in skip:
            measure_stages(results, sample)
            if args.profile:
                measure_profile(results, sample)
        if "process" not in skip or "ingest" not in skip:
            points = [*sizes, parse_pages] if parse_pages else sizes
            chunk = math.gcd(*points)
            largest = max(points)
            corpus = work / "corpus"
            shutil.rmtree(corpus, ignore_errors=True)
            _log(f"writing {largest:,} page files in directories of {chunk:,}")
            dirs = write_corpus(corpus, largest, args.seed, chunk)
            if parse_pages:
                measure_process(
                    results, dirs[: parse_pages // chunk], parse_pages, max(1, args.process_repeat)
                )
            if "ingest" not in skip:
                for size in sizes:
                    measure_ingest(results, dirs[: size // chunk], size, work / "ingest-out")
            shutil.rmtree(corpus, ignore_errors=True)
        if "crawl" not in skip:
            site = work / "site"
            shutil.rmtree(site, ignore_errors=True)
            count = write_site(site, args.crawl_pages, args.seed)
            results.crawl_pages = count
            _log(f"site of {args.crawl_pages:,} pages ({count:,} files) written")
            measure_crawl(
                results,
                site,
                work,
                args.concurrency,
                scrapy="scrapy" not in skip,
                repeat=args.crawl_repeat,
                nodelay=not args.stock_server,
                nginx=args.nginx,
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_yardstick"]:
        return _yardstick_main(argv[1], argv[2:])
    if argv[:1] == ["_serve"]:
        return _serve_main(argv[1], nodelay="--nagle" not in argv)
    if argv[:1] == ["_scrapy"]:
        return _scrapy_main(argv[1], int(argv[2]), argv[3])
    args = build_parser().parse_args(argv)
    command = " ".join(["python -m benchmarks.bench", *argv])
    results = run(args, command)
    report = render(results)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
