"""One page in, one validated record out: the extractor's entry point.

:func:`extract` runs, in order: the input checks and decoding (:mod:`pipeline.extract.guard`),
one selectolax parse, the page's structured data (:mod:`pipeline.extract.structured`: JSON-LD,
canonical link), chrome removal by tag in C, one walk into lines that also drops chrome by
class token, role and position (:mod:`pipeline.extract.blocks`), the split into title and sections
by heading role and meaning (:mod:`pipeline.extract.sections`), the normalizers, and Pydantic
validation. It returns the record and an :class:`~pipeline.models.ExtractionReport` of what the
page lost (headings left unclassified, chrome dropped). Every failure is a typed
:class:`~pipeline.errors.ParseError` or :class:`~pipeline.errors.RecordInvalid`.

It is a pure function of the bytes (and the location they came from): no network, no state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import pydantic
from selectolax.lexbor import LexborHTMLParser

from pipeline.errors import EmptyPage, MissingCode, NotAProcedurePage, RecordInvalid
from pipeline.extract.blocks import ChromeCount, Line, walk_counted
from pipeline.extract.fields import (
    duration_of,
    experience_of,
    items_of,
    join_prose,
    personnel_of,
    prose_of,
    similar_of,
    stay_of,
    steps_of,
)
from pipeline.extract.guard import check_nesting, decode_page
from pipeline.extract.identity import find_page_code, page_title
from pipeline.extract.kind import condition_like, is_condition_page, is_not_found, not_a_procedure
from pipeline.extract.normalize.anesthesia import find_anesthesia
from pipeline.extract.normalize.venues import find_venues
from pipeline.extract.sections import (
    SECTION_ORDER,
    Entry,
    Section,
    SplitPage,
    clean_heading,
    intro_entries,
    repair_lost_headings,
    section_text,
    split_sections,
)
from pipeline.extract.structured import PageMeta, page_metadata
from pipeline.extract.tree import (
    DIGIT,
    boxed_codes,
    document_title,
    fact_boxes,
    page_styles,
    remove_chrome,
    unfold_plain_text,
    unfold_tabs,
)
from pipeline.extract.vocabulary import Vocabulary, load_vocabulary
from pipeline.models import CodeSystem, ExtractionReport, Procedure

PARSER_VERSION = "2"


#: Sections read for the anesthesia kinds the page says are used.
_ANESTHESIA_SOURCES = (
    "summary", "purpose", "preparation", "steps", "duration", "setting", "recovery",
    "patient_experience", "anesthesia_info",
)  # fmt: skip


#: Sections whose text the record keeps in ``other_sections``.
_KEPT_AS_OTHER = frozenset({"other", "anesthesia_info", "condition"})


@dataclass(frozen=True, slots=True)
class Extraction:
    """A page's validated record and what extracting it saw."""

    record: Procedure
    report: ExtractionReport


def parse_page(
    data: bytes | str,
    url: str | None = None,
    *,
    http_charset: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> Procedure:
    """Parse one page into a validated :class:`Procedure` (see :func:`extract`)."""
    return extract(data, url, http_charset=http_charset, vocabulary=vocabulary).record


def extract(
    data: bytes | str,
    url: str | None = None,
    *,
    http_charset: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> Extraction:
    """Extract one page: its validated record and its :class:`ExtractionReport`.

    ``url`` is where the page came from (a URL or a file path); it becomes ``source`` and is the
    last place the code is looked for. ``http_charset`` is the charset of the HTTP Content-Type
    header, if the page was fetched.

    Raises :class:`~pipeline.errors.ParseError` subclasses for pages that are not procedure
    pages and :class:`~pipeline.errors.RecordInvalid` when the record breaks a model rule.
    """
    vocab = vocabulary or load_vocabulary()
    source = url or "<memory>"
    text = decode_page(data, source, http_charset)
    check_nesting(text, source)
    tree = LexborHTMLParser(text)
    meta = (
        page_metadata(tree)
        if "ld+json" in text or "<meta" in text or "<link" in text
        else PageMeta()
    )
    doc_title = document_title(tree)
    styles = page_styles(tree) if "<style" in text or "<STYLE" in text else None
    if "tabpanel" in text:
        unfold_tabs(tree)
    if "<pre" in text or "<PRE" in text:
        unfold_plain_text(tree)
    stripped = remove_chrome(tree, vocab)
    body = tree.body
    lines, chrome = (
        walk_counted(body, vocab.chrome, styles) if body is not None else ([], ChromeCount())
    )
    if not lines:
        raise EmptyPage("page has no visible text", source=source)
    page = split_sections(lines, vocab, doc_title)
    repair_lost_headings(page)
    chrome.blocks += stripped.blocks + page.dropped[0]
    chrome.chars += stripped.chars + page.dropped[1]
    for section in page.sections:
        if section.key in ("ignore", "navigation") and section.entries:
            # A FAQ block, "Related articles", a menu: dropped as chrome, and counted.
            chrome.blocks += 1
            chrome.chars += sum(len(entry.text) for entry in section.entries)
    if doc_title:
        meta = replace(meta, mentions=(*meta.mentions, doc_title))

    def boxed() -> list[tuple[CodeSystem | None, str]]:
        # Rare (no code in the content, title, structured data or URL): the boxes are read
        # from a fresh tree, since chrome has been dropped from this one.
        return boxed_codes(fact_boxes(LexborHTMLParser(text)), vocab.label_max_chars)

    return _build(page, lines, doc_title, meta, source, url, vocab, chrome, boxed)


_WORDY = re.compile(r"\w")


def _build(
    page: SplitPage,
    lines: list[Line],
    doc_title: str | None,
    meta: PageMeta,
    source: str,
    url: str | None,
    vocab: Vocabulary,
    chrome: ChromeCount,
    boxed: Callable[[], list[tuple[CodeSystem | None, str]]],
) -> Extraction:
    sections = _sections_by_key(page)
    present = set(sections)
    fields = present & set(SECTION_ORDER)
    intro = [] if "summary" in present else intro_entries(page)
    # A heading with nothing under it ("Numb fingers keeping you up at night?" over a button)
    # holds nothing to keep.
    others = [s for s in page.sections if s.key in _KEPT_AS_OTHER and s.entries]
    described = len(fields - {"similar_codes"})
    if is_condition_page(page, present) or not (described or others or "similar_codes" in fields):
        raise not_a_procedure(page, lines, doc_title, source, url, vocab, present)
    if not described and is_not_found(page, lines, doc_title, vocab):
        raise not_a_procedure(page, lines, doc_title, source, url, vocab, present)
    title, title_code, title_tier = page_title(page, doc_title, meta)
    if not title:
        raise NotAProcedurePage("page has content sections but no title", source=source)
    try:
        system, code, shown = find_page_code(
            page, title_code, meta, url, source, vocab.label_max_chars, boxed
        )
    except MissingCode as exc:
        if described >= 3:
            raise
        # No code, and at most two sections of a procedure page: nothing says it is one.
        kind = not_a_procedure(page, lines, doc_title, source, url, vocab, present)
        if not described or kind.page_kind != "unknown":
            raise kind from None  # a listing, a 'not found' or a condition page
        named = ", ".join(sorted(fields - {"similar_codes"}))
        raise NotAProcedurePage(
            f"{exc.reason}; with only {described} section(s) of a procedure page ({named}) "
            "that is too little to take it for one",
            source=source,
        ) from None
    if not shown and not described and not intro:
        # A number in the address ("/news/12345/new-car-park") and no section of a procedure
        # page: nothing on the page says it is one.
        raise NotAProcedurePage(
            f"no section describes a procedure, and code {code} is only in the page's address "
            "or a box beside the content",
            source=source,
        )
    if system is CodeSystem.ICD10CM and not code.startswith("Z") and condition_like(page):
        # A diagnosis code (not a Z encounter) and the sections of a disease page.
        raise NotAProcedurePage(
            "an ICD-10-CM condition page (causes, symptoms, treatment), not a procedure page",
            source=source,
            page_kind="condition",
        )
    tiers: dict[str, str] = {}
    for section in page.sections:
        if section.key in fields:
            tiers.setdefault(section.key, section.tier)
    record: dict[str, Any] = {
        "source": source,
        "code": code,
        "code_system": system,
        "title": title,
        "summary": prose_of(sections.get("summary")) or join_prose(intro),
        "purpose": prose_of(sections.get("purpose")),
    }
    if intro and record["summary"]:
        tiers["summary"] = "intro"
    for key in ("indications", "preparation", "risks", "benefits", "recovery", "alternatives"):
        record[key] = items_of(sections.get(key))
    record["steps"] = steps_of(sections.get("steps"))
    record["duration"] = duration_of(sections.get("duration"))
    setting_text = prose_of(sections.get("setting"))
    record["setting"] = (
        {"text": setting_text, "venues": find_venues(setting_text)} if setting_text else None
    )
    record["personnel"] = personnel_of(sections.get("personnel"))
    record["hospital_stay"] = stay_of(sections)
    record["patient_experience"] = experience_of(sections.get("patient_experience"))
    record["similar_codes"] = similar_of(sections.get("similar_codes"), system)
    anesthesia_texts = [
        # "Anaesthetic" | "General or spinal": the heading says what the short text is about.
        f"{clean_heading(s.heading)}: {e.text}" if s.key == "anesthesia_info" else e.text
        for s in page.sections
        if s.key in _ANESTHESIA_SOURCES
        for e in s.entries
    ]
    if intro and "summary" not in present:
        anesthesia_texts += intro
    record["anesthesia"] = find_anesthesia(anesthesia_texts)
    # A section the classifier gave to a field whose reader finds nothing in it ("Meet the
    # team" over "Friendly faces, ten years running.") is kept too, not lost in silence.
    unread = {
        key
        for key, holds in (("personnel", _WORDY), ("similar_codes", DIGIT))
        if not record[key] and any(holds.search(e.text) for e in sections.get(key, ()))
    }  # similar codes: only text with a number in it ("No related codes listed" says nothing)
    for key in unread:
        tiers.pop(key, None)
    kept = [s for s in page.sections if s.key in unread and s.entries] if unread else []
    record["other_sections"] = [
        {"heading": clean_heading(s.heading) or "(untitled)", "text": text}
        for s in (_in_page_order(page, [*others, *kept]) if kept else others)
        if (text := section_text(s)) or s.key != "other"
    ]
    try:
        procedure = Procedure.model_validate(record)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise RecordInvalid(f"record is invalid: {problems}", source=source) from exc
    tiers["title"] = title_tier
    report = ExtractionReport(
        headings=sum(
            1 for s in page.sections if s.key not in ("ignore", "navigation") and s.heading
        ),
        unclassified=len(record["other_sections"]),
        chrome_blocks=chrome.blocks,
        chrome_chars=chrome.chars,
        tiers=MappingProxyType(tiers),
    )
    return Extraction(procedure, report)


def _in_page_order(page: SplitPage, sections: list[Section]) -> list[Section]:
    position = {id(section): i for i, section in enumerate(page.sections)}
    return sorted(sections, key=lambda section: position[id(section)])


def _sections_by_key(page: SplitPage) -> dict[str, list[Entry]]:
    merged: dict[str, list[Entry]] = {}
    for section in page.sections:
        merged.setdefault(section.key, []).extend(section.entries)
    return merged


__all__ = ["PARSER_VERSION", "Extraction", "Section", "extract", "parse_page"]
