"""The synthetic site generator: every page parses to the record it was built to give."""

from __future__ import annotations

import gzip
import re
import time
from urllib.parse import urlsplit

import pytest

from pipeline.acquire.links import extract_links
from pipeline.acquire.profile import REFERENCE
from pipeline.acquire.sitemaps import parse_sitemap
from pipeline.extract.page import parse_page
from pipeline.models import CodeSystem, code_fits
from tests.synth import (
    PLACEHOLDER_ORIGIN,
    STYLES,
    SynthPage,
    generate_page,
    generate_site,
)

SEEDS = (0, 1, 7)
PER_SEED = 100
ICD_FORMAT = re.compile(r"[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4}")


def _procedure_url(url: str) -> bool:
    """A link the reference profile follows to a page (not a listing)."""
    return REFERENCE.follows(url) and REFERENCE.kind(url) == "page"


def _pages() -> list[SynthPage]:
    return [generate_page(i, seed) for seed in SEEDS for i in range(PER_SEED)]


@pytest.fixture(scope="module")
def pages() -> list[SynthPage]:
    return _pages()


def test_every_page_parses_to_its_expected_record(pages: list[SynthPage]) -> None:
    failures: list[str] = []
    for page in pages:
        record = parse_page(page.html, url=page.url_path)
        got = {
            "code": record.code,
            "code_system": str(record.code_system),
            "title": record.title,
            "steps": len(record.steps),
            "indications": len(record.indications),
            "risks": len(record.risks),
            "alternatives": len(record.alternatives),
            "duration": None
            if record.duration is None
            else (record.duration.min_minutes, record.duration.max_minutes),
            "stay": None
            if record.hospital_stay is None
            else (record.hospital_stay.min_days, record.hospital_stay.max_days),
            "venues": tuple(str(v) for v in record.setting.venues) if record.setting else (),
            "roles": tuple(str(p.role) for p in record.personnel),
            "anesthesia": frozenset(str(k) for k in record.anesthesia),
            "similar": tuple(s.code for s in record.similar_codes),
        }
        want = {
            "code": page.code,
            "code_system": page.code_system,
            "title": page.title,
            "steps": page.steps,
            "indications": page.indications,
            "risks": page.risks,
            "alternatives": page.alternatives,
            "duration": (page.duration_min, page.duration_max) if page.has_duration else None,
            "stay": (page.stay_min, page.stay_max) if page.has_stay else None,
            "venues": page.venues,
            "roles": page.roles,
            "anesthesia": page.anesthesia,
            "similar": page.similar,
        }
        for key, value in want.items():
            if got[key] != value:
                failures.append(
                    f"{page.url_path} (seed {page.seed}, {page.style}): {key} {got[key]!r} "
                    f"!= {value!r}"
                )
    assert not failures, "\n".join(failures[:20])


def test_pages_cover_every_style_system_and_size(pages: list[SynthPage]) -> None:
    assert {p.style for p in pages} == set(STYLES)
    assert {p.code_system for p in pages} == {"CPT", "HCPCS", "ICD-10-CM"}
    assert {p.encoding for p in pages} == {"utf-8", "windows-1252"}
    sizes = [len(p.html) for p in pages]
    assert min(sizes) >= 3_500, min(sizes)
    assert max(sizes) <= 8_000, max(sizes)
    assert any(p.anesthesia for p in pages)
    assert any(not p.anesthesia for p in pages)
    assert any(p.has_stay for p in pages)
    assert any(not p.has_stay for p in pages)
    assert any(p.duration_min is None and p.has_duration for p in pages)


def test_codes_have_their_system_format_and_are_unique() -> None:
    for seed in SEEDS:
        pages = [generate_page(i, seed) for i in range(3_000)]
        codes = [p.code for p in pages]
        assert len(set(codes)) == len(codes)
        for p in pages:
            assert code_fits(p.code, CodeSystem(p.code_system)), p.code
            if p.system_segment == "icd10cm":
                assert ICD_FORMAT.fullmatch(p.code), p.code
            elif p.system_segment == "cpt4":
                assert re.fullmatch(r"\d{5}", p.code), p.code
            else:
                assert re.fullmatch(r"[A-Z]\d{4}", p.code), p.code
            assert p.url_path.startswith(f"/code/{p.system_segment}/{p.code}-")
            assert _procedure_url("http://h" + p.url_path)


def test_deterministic() -> None:
    again = [generate_page(i, s) for s in SEEDS for i in range(PER_SEED)]
    assert _pages() == again
    assert generate_site(60, 3) == generate_site(60, 3)
    assert generate_site(60, 3) != generate_site(60, 4)
    # A page does not depend on the size of the site it is part of.
    small, big = generate_site(20, 5), generate_site(80, 5)
    page = generate_page(10, 5)
    assert small[page.url_path] == big[page.url_path] == page.html


def test_site_links_resolve_and_sitemaps_list_every_page() -> None:
    origin = "http://127.0.0.1:4242"
    n = 120
    site = generate_site(n, seed=2, origin=origin)
    pages = {generate_page(i, 2).url_path for i in range(n)}
    assert pages <= site.keys()
    for path, body in site.items():
        if path.endswith((".xml", ".gz", ".txt")):
            continue
        for link in extract_links(body.decode("windows-1252"), origin + path):
            if REFERENCE.follows(link):
                assert urlsplit(link).path in site, f"{path} links {link}"
    assert f"Sitemap: {origin}/sitemap.xml" in site["/robots.txt"].decode()
    index = parse_sitemap(site["/sitemap.xml"])
    assert len(index.sitemaps) == 3
    listed: set[str] = set()
    for sub in index.sitemaps:
        assert sub.startswith(origin)
        body = site[urlsplit(sub).path]
        if sub.endswith(".gz"):
            assert body[:2] == b"\x1f\x8b"
            assert gzip.decompress(body).startswith(b"<?xml")
        listed |= {urlsplit(e.loc).path for e in parse_sitemap(body).urls}
    assert listed == pages
    listing_links = {
        urlsplit(link).path
        for path, body in site.items()
        if path.startswith("/code/list/")
        for link in extract_links(body.decode(), origin + path)
    }
    assert pages <= listing_links


def test_links_alone_reach_every_page_from_the_last() -> None:
    n = 90
    site = generate_site(n, seed=4)
    start = generate_page(n - 1, 4).url_path
    seen, todo = {start}, [start]
    while todo:
        path = todo.pop()
        for link in extract_links(site[path].decode("windows-1252"), "http://h" + path):
            target = urlsplit(link).path
            if _procedure_url(link) and target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == {generate_page(i, 4).url_path for i in range(n)}


def test_placeholder_origin_by_default() -> None:
    site = generate_site(3)
    assert PLACEHOLDER_ORIGIN.encode() in site["/robots.txt"]
    assert PLACEHOLDER_ORIGIN.encode() in site["/sitemap.xml"]


def test_fast() -> None:
    started = time.perf_counter()
    site = generate_site(2_000, seed=9)
    elapsed = time.perf_counter() - started
    assert len(site) > 2_000
    assert elapsed < 5.0, f"2,000 pages took {elapsed:.2f} s"
