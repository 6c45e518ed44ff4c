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

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import pydantic
from selectolax.lexbor import LexborHTMLParser, LexborNode

from pipeline.errors import EmptyPage, MissingCode, NotAProcedurePage, RecordInvalid
from pipeline.extract.blocks import ChromeCount, Line, Styles, parse_styles, walk_counted
from pipeline.extract.guard import check_nesting, decode_page
from pipeline.extract.normalize.anesthesia import find_anesthesia
from pipeline.extract.normalize.codes import (
    CODE_FORMAT,
    code_from_location,
    find_code,
    infer_system,
    parse_similar_item,
    system_from_label,
)
from pipeline.extract.normalize.durations import find_duration
from pipeline.extract.normalize.roles import classify_role, split_personnel
from pipeline.extract.normalize.stay import find_hospital_stay
from pipeline.extract.normalize.text import clean_item, collapse
from pipeline.extract.normalize.venues import find_venues
from pipeline.extract.plaintext import is_prose, prose_to_html
from pipeline.extract.sections import (
    BARE_CODE,
    CODE_BADGE,
    SECTION_ORDER,
    STRONG_CUE,
    Entry,
    Section,
    SplitPage,
    clean_heading,
    intro_entries,
    is_code_label,
    repair_lost_headings,
    section_text,
    split_sections,
)
from pipeline.extract.structured import PageMeta, page_metadata
from pipeline.extract.vocabulary import Vocabulary, load_vocabulary, stems, words
from pipeline.models import CodeSystem, ExtractionReport, Procedure, code_fits

PARSER_VERSION = "2"

_SYSTEM_LABEL = (
    r"(?:CPT|HCPCS(?:\s+Level\s+II)?|ICD-?10-?(?:CM|PCS))\s*(?:®|\(R\))?\s*(?:code)?\s*[#:]?"
)
#: A code before the title: "CPT® 45378 – Colonoscopy", "45378: Colonoscopy",
#: "CPT 45378Colonoscopy".
_CODE_PREFIX = re.compile(
    # A bare prefix is a CPT or HCPCS code; an ICD-shaped one ("A1C:", "B12 -") only after its
    # system's label, and never a word ("Bladder: cystoscopy").
    rf"^(?:{_SYSTEM_LABEL}\s*(?P<code>{CODE_FORMAT})|(?P<bare>\d{{4}}[0-9FTUM]|[A-Z]\d{{4}}))"
    rf"\s*[-–—:|]\s+(?=\S)"
    rf"|^{_SYSTEM_LABEL}\s*(?P<glued>{CODE_FORMAT})(?:\s+|(?=[A-Z][a-z]))",
    re.IGNORECASE,
)
#: A code after the title: "Colonoscopy (CPT 45378)", "Colonoscopy – CPT code 45378".
_CODE_SUFFIX = re.compile(
    rf"\s*[(\[\-–—|:,]?\s*{_SYSTEM_LABEL}\s*(?P<code>{CODE_FORMAT})\s*[)\]]?\s*$", re.IGNORECASE
)
#: A page with no procedure content that shows this many codes on lines of their own (a table
#: of procedures and their codes, an A-Z index) is a listing page.
_LISTED_CODES = 5
_CODE_HREF = re.compile(r"/code/(?:cpt4?|hcpcs|icd-?10-?(?:cm|pcs))/", re.IGNORECASE)
_CODE = r"[A-Z0-9]{3,7}(?:\.[A-Z0-9]{1,4})?"
#: A bare list of codes on one line: "93454, 93459 and 93460".
_CODE_LIST = re.compile(rf"^\s*{_CODE}(?:\s*(?:[,;/]|\band\b|\bor\b)\s*{_CODE})+\s*\.?$")
_LIST_SEPARATOR = re.compile(r"\s*(?:[,;/]|\band\b|\bor\b)\s*|\.$")
_LEADING_CODE = re.compile(rf"^(?:{_SYSTEM_LABEL}\s*)?(?=\S*\d){CODE_FORMAT}\b", re.IGNORECASE)
_TITLE_SUFFIX = re.compile(r"\s+[|–—-]\s+[^|–—-]{2,60}$")

#: Sections read for the anesthesia kinds the page says are used.
_ANESTHESIA_SOURCES = (
    "summary", "purpose", "preparation", "steps", "duration", "setting", "recovery",
    "patient_experience", "anesthesia_info",
)  # fmt: skip
#: Sections only a procedure page has; a page with none of them and condition sections
#: (causes, symptoms, diagnosis, treatment options...) describes a condition.
_PROCEDURE_ONLY = frozenset(
    {"steps", "preparation", "duration", "setting", "personnel", "patient_experience"}
)
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
    doc_title = _document_title(tree)
    styles = _styles(tree) if "<style" in text or "<STYLE" in text else None
    if "tabpanel" in text:
        _unfold_tabs(tree)
    if "<pre" in text or "<PRE" in text:
        _unfold_plain_text(tree)
    stripped = _remove_chrome(tree, vocab)
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
        return _boxed_codes(_boxes(LexborHTMLParser(text)), vocab.label_max_chars)

    return _build(page, lines, doc_title, meta, source, url, vocab, chrome, boxed)


# --- tree ----------------------------------------------------------------------------------------


def _document_title(tree: LexborHTMLParser) -> str | None:
    """The ``<title>`` without the site's name ("Knee arthroscopy | Clinic | Fandom")."""
    node = tree.css_first("head > title")
    if node is None:
        return None
    title = collapse(node.text())
    while (shorter := _TITLE_SUFFIX.sub("", title)) != title and shorter:
        title = shorter
    return title or None


def _styles(tree: LexborHTMLParser) -> Styles | None:
    """Font size and weight of the page's CSS classes (PDF and Word exports mark headings so)."""
    css = "".join(node.text(deep=True) for node in tree.css("style"))
    styles = parse_styles(css) if "font" in css or "bottom:" in css else None
    return styles if styles is not None and (styles.classes or styles.places) else None


#: Elements outside the content that may still show the page's code: infoboxes, fact boxes,
#: the article's meta line and tags, breadcrumbs, badges.
_MENTION_SCOPES = (
    'aside, nav, header, footer, [class*="meta"], [class*="tag"], [class*="crumb"], '
    '[class*="infobox"], [class*="fact"], [class*="detail"], [class*="badge"], [class*="code"], '
    '[id*="crumb"], [id*="infobox"], [id*="meta"]'
)
_OWN_BOX = re.compile(r"info|meta|fact|detail|badge|crumb|tag|code|summary|header", re.IGNORECASE)
_OTHERS_BOX = re.compile(
    r"popular|related|trending|recent|widget|navbox|sidebar|rail|more|other|similar|menu",
    re.IGNORECASE,
)
_MAX_SCOPES = 40
_DIGIT = re.compile(r"\d")
_WORDY = re.compile(r"\w")


def _boxes(tree: LexborHTMLParser) -> list[tuple[float, list[str]]]:
    """The text lines of boxes around the content that may name the page's code, with weights.

    A box that describes the page (an infobox, a fact box, the article's meta line or tags,
    breadcrumbs) counts for its code; a box that lists other pages (popular, related,
    trending) counts against the codes in it. Read before chrome is dropped; the codes in
    them are looked for (:func:`_boxed_codes`) only when neither the content, the title, the
    structured data nor the URL names the code.
    """
    boxes: list[tuple[float, list[str]]] = []
    for node in tree.css(_MENTION_SCOPES)[:_MAX_SCOPES]:
        attrs = node.attributes
        marker = f"{attrs.get('class') or ''} {attrs.get('id') or ''} {node.tag}"
        weight = 1.0 + (2.0 if _OWN_BOX.search(marker) else 0.0)
        if _OTHERS_BOX.search(marker):
            weight -= 4.0
        text = node.text(separator="\n", strip=True)
        if _DIGIT.search(text):
            lines = [line for line in text.split("\n") if line][:_MAX_SCOPE_LINES]
            boxes.append((weight, lines))
    return boxes


def _boxed_codes(
    boxes: list[tuple[float, list[str]]], label_max: int
) -> list[tuple[CodeSystem | None, str]]:
    """Codes named in the boxes around the content, best first (see :func:`_boxes`)."""
    scores: dict[tuple[CodeSystem | None, str], float] = {}
    order: dict[tuple[CodeSystem | None, str], int] = {}
    for weight, lines in boxes:
        _, code = _label_codes(lines, label_max)
        found = [code] if code is not None else []
        found += [c for line in lines if (c := _mentioned_code(line))]
        for candidate in found:
            key = (candidate[0], candidate[1])
            scores[key] = scores.get(key, 0.0) + weight
            order.setdefault(key, len(order))
    return sorted((k for k, v in scores.items() if v > 0), key=lambda k: (-scores[k], order[k]))


_MAX_SCOPE_LINES = 40


def _unfold_tabs(tree: LexborHTMLParser) -> None:
    """Give each tab panel its tab's label as a heading, and drop the row of tabs.

    A tabbed page ("Overview | Getting ready | The operation") shows its section headings in a
    ``role="tablist"`` above the panels; a panel names its tab with ``aria-labelledby`` (or the
    tab names its panel with ``aria-controls``). Read in document order, the labels would all
    come first and the panels after them with no heading at all.
    """
    labels: dict[str, str] = {}
    for tab in tree.css('[role="tab"]'):
        label = collapse(tab.text(deep=True))
        attrs = tab.attributes
        for key in (attrs.get("id"), attrs.get("aria-controls")):
            if key and label:
                labels.setdefault(key, label)
    unfolded = False
    for panel in tree.css('[role="tabpanel"]'):
        attrs = panel.attributes
        named = labels.get(attrs.get("aria-labelledby") or "") or labels.get(attrs.get("id") or "")
        if not named or _opens_with_heading(panel):
            continue  # a panel with a heading of its own needs no other
        # An emphasized label, not an <h2>: the tabs may be sub-labels of a section ("Weeks
        # 0-6" under "Recovery") as often as the page's sections; a label that names a
        # section opens it either way.
        heading = LexborHTMLParser(f"<p><em>{html.escape(named)}</em></p>").css_first("p")
        if heading is not None:
            panel.insert_before(heading)
            unfolded = True
    if unfolded:
        for tablist in tree.css('[role="tablist"]'):
            tablist.decompose()


def _unfold_plain_text(tree: LexborHTMLParser) -> None:
    """Replace each ``<pre>`` that holds a document (an e-mail, a text leaflet) by the
    headings, paragraphs and lists its layout of lines shows (:mod:`pipeline.extract.plaintext`).
    """
    for pre in tree.css("pre"):
        text = pre.text(deep=True)
        if not is_prose(text):
            continue
        blocks = LexborHTMLParser(f"<div>{prose_to_html(text)}</div>").css_first("div")
        if blocks is not None:
            pre.replace_with(blocks)


def _opens_with_heading(node: LexborNode) -> bool:
    heading = node.css_first("h1, h2, h3, h4, h5, h6, [role=heading]")
    if heading is None:
        return False
    return collapse(node.text(deep=True)).startswith(collapse(heading.text(deep=True)))


def _remove_chrome(tree: LexborHTMLParser, vocab: Vocabulary) -> ChromeCount:
    """Drop elements that are never content (scripts, navigation, sidebars...) in C."""
    count = ChromeCount()
    for node in tree.css("nav, aside, dialog, menu"):
        count.blocks += 1
        count.chars += len(node.text(deep=True, strip=True))
    tree.strip_tags(list(vocab.chrome_tags))
    return count


# --- record --------------------------------------------------------------------------------------


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
    if _is_condition_page(page, present) or not (described or others or "similar_codes" in fields):
        raise _not_a_procedure(page, lines, doc_title, source, url, vocab, present)
    if not described and _not_found(page, lines, doc_title, vocab):
        raise _not_a_procedure(page, lines, doc_title, source, url, vocab, present)
    title, title_code, title_tier = _title(page, doc_title, meta)
    if not title:
        raise NotAProcedurePage("page has content sections but no title", source=source)
    try:
        system, code, shown = _code(
            page, title_code, meta, url, source, vocab.label_max_chars, boxed
        )
    except MissingCode as exc:
        if described >= 3:
            raise
        # No code, and at most two sections of a procedure page: nothing says it is one.
        kind = _not_a_procedure(page, lines, doc_title, source, url, vocab, present)
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
    if system is CodeSystem.ICD10CM and not code.startswith("Z") and _condition_like(page):
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
        "summary": _prose(sections.get("summary")) or _prose_texts(intro),
        "purpose": _prose(sections.get("purpose")),
    }
    if intro and record["summary"]:
        tiers["summary"] = "intro"
    for key in ("indications", "preparation", "risks", "benefits", "recovery", "alternatives"):
        record[key] = _items(sections.get(key))
    record["steps"] = _steps(sections.get("steps"))
    record["duration"] = _duration(sections.get("duration"))
    setting_text = _prose(sections.get("setting"))
    record["setting"] = (
        {"text": setting_text, "venues": find_venues(setting_text)} if setting_text else None
    )
    record["personnel"] = _personnel(sections.get("personnel"))
    record["hospital_stay"] = _stay(sections)
    record["patient_experience"] = _experience(sections.get("patient_experience"))
    record["similar_codes"] = _similar(sections.get("similar_codes"), system)
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
        for key, holds in (("personnel", _WORDY), ("similar_codes", _DIGIT))
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


def _is_condition_page(page: SplitPage, present: set[str]) -> bool:
    """Causes, symptoms, diagnosis, prevention... and nothing only a procedure page has.

    Only clear headings count against it (a phrase, or a strong cue), and one of them is not
    enough: "Some people also experience" under a disease's symptoms does not make the page a
    procedure page; steps and preparation do.
    """
    condition_headings = sum(1 for s in page.sections if s.key == "condition")
    if condition_headings < 2:
        return False
    procedure = {
        s.key
        for s in page.sections
        if s.key in _PROCEDURE_ONLY
        and s.entries
        and (s.tier == "phrase" or (s.verdict is not None and s.verdict.score >= STRONG_CUE))
    }
    return len(procedure) < 2 and condition_headings > len(procedure)


_CONDITION_STEMS = frozenset(
    stems(
        [
            "symptom", "symptoms", "cause", "causes", "caused", "diagnosis", "diagnosed",
            "treatment", "treatments", "treated", "treat", "prevention", "prevent", "prognosis",
            "outlook", "complications", "condition", "disease", "signs", "factors",
        ]
    )
)  # fmt: skip


def _condition_like(page: SplitPage) -> bool:
    """Headings of a disease page (symptoms, causes, diagnosis, treatment...) outnumber those
    only a procedure page has (steps, preparation, duration, setting, personnel)."""
    disease = procedure = 0
    for section in page.sections:
        if set(stems(words(section.heading.lower()))) & _CONDITION_STEMS:
            disease += 1  # "How is it diagnosed?" is the disease's, whatever section it became
        elif section.key in _PROCEDURE_ONLY and section.entries:
            procedure += 1
    return disease >= 2 and disease > procedure


def _not_found(
    page: SplitPage, lines: list[Line], doc_title: str | None, vocab: Vocabulary
) -> bool:
    head = " ".join([doc_title or "", page.title or "", *(line.text for line in lines[:5])])
    return vocab.not_found.search(head) is not None


def _not_a_procedure(
    page: SplitPage,
    lines: list[Line],
    doc_title: str | None,
    source: str,
    url: str | None,
    vocab: Vocabulary,
    present: set[str],
) -> NotAProcedurePage:
    if _not_found(page, lines, doc_title, vocab):
        return NotAProcedurePage(
            "a 'not found' page, not a procedure page", source=source, page_kind="not_found"
        )
    if "condition" in present:
        return NotAProcedurePage(
            "an ICD-10-CM condition page (causes, symptoms, treatment), not a procedure page",
            source=source,
            page_kind="condition",
        )
    code_links = sum(1 for line in lines for href, _ in line.links if _CODE_HREF.search(href))
    listed = {
        found.group("code").upper()
        for line in lines
        if len(line.text) < 40
        and (found := BARE_CODE.match(line.text) or CODE_BADGE.match(line.text))
    }
    if (
        code_links >= vocab.listing_min_links
        or len(listed) >= _LISTED_CODES
        or (url and "/code/list/" in url)
    ):
        return NotAProcedurePage(
            f"a listing page ({max(code_links, len(listed))} codes), not a procedure page",
            source=source,
            page_kind="listing",
        )
    return NotAProcedurePage(
        "no procedure content (no section describes a procedure) on the page", source=source
    )


def _title(
    page: SplitPage, doc_title: str | None, meta: PageMeta
) -> tuple[str | None, str | None, str]:
    """The official descriptor, a code if the heading carried one, and where it came from."""
    title, tier = page.title, "heading"
    if not title and meta.names:
        title, tier = meta.names[0], "structured"
    if not title:
        title, tier = doc_title, "document"
    if not title:
        return None, None, tier
    title = collapse(title)
    match = _CODE_PREFIX.match(title)
    if match:
        code = (match.group("code") or match.group("bare") or match.group("glued")).upper()
        if not any(ch.isdigit() for ch in code):
            code = ""
        if code and (infer_system(code) is not None or any(code_fits(code, s) for s in CodeSystem)):
            rest = title[match.end() :].strip(" -–—:|")
            if rest:
                return rest, code, tier
    match = _CODE_SUFFIX.search(title)
    if match and match.start() > 0:
        return title[: match.start()].rstrip(" -–—:|,("), match.group("code").upper(), tier
    return title, None, tier


def _label_codes(
    preamble: list[str], label_max: int
) -> tuple[CodeSystem | None, tuple[CodeSystem | None, str] | None]:
    """The system a label names, and the first labeled code, in the lines around the title."""
    label_system: CodeSystem | None = None
    page_code: tuple[CodeSystem | None, str] | None = None
    for i, raw in enumerate(preamble):
        text = _GLUED_LABEL.sub(" ", raw)
        if len(text) <= label_max:
            found = system_from_label(text)
            if label_system is None:
                label_system = found
            if page_code is None and is_code_label(text) and i + 1 < len(preamble):
                value = preamble[i + 1]
                bare = BARE_CODE.match(value) or _CODE_THEN_SYSTEM.match(value)
                if bare is not None:
                    named = bare.groupdict().get("system")
                    system = _label_system(named) if named else _label_system(text)
                    page_code = (system, bare.group("code").upper())
        if page_code is None:
            badge = CODE_BADGE.match(text)
            if badge is not None:
                page_code = (_label_system(badge.group("system")), badge.group("code").upper())
            else:
                page_code = find_code(text)
    return label_system, page_code


def _code_lines(page: SplitPage) -> list[str]:
    """The lines around the title that may name the page's code, in page order.

    Lines before the title that name two or more different codes are a box of other pages
    ("Popular codes: CPT 99213, CPT 99214"), not the page's badge: they are left out.
    """
    named = {found[1] for line in page.pre_title if (found := find_code(line)) is not None}
    if len(named) <= 1:
        return page.preamble
    before = set(page.pre_title)
    return [line for line in page.preamble if line not in before]


#: "66984 (CPT)": a code value followed by its system.
_CODE_THEN_SYSTEM = re.compile(
    rf"^\s*(?P<code>{CODE_FORMAT})\s*\(?\s*(?P<system>CPT|HCPCS|ICD-?10-?(?:CM|PCS))\s*\)?\s*$",
    re.IGNORECASE,
)
#: "Billing codeCPT 45385": a label glued to the system by adjacent inline elements.
_GLUED_LABEL = re.compile(r"(?<=[a-z])(?=(?:CPT|HCPCS|ICD)\b)")
_SYSTEM_WORD = re.compile(
    r"\b(?:cpt(?:\s*-?\s*4)?|hcpcs|icd\s*-?\s*10\s*-?\s*(?:cm|pcs))\b", re.IGNORECASE
)


def _label_system(label: str) -> CodeSystem | None:
    """The system a code label names anywhere in it ("Procedure code (CPT)")."""
    match = _SYSTEM_WORD.search(label)
    return system_from_label(match.group(0) + " ") if match else None


_MENTION = re.compile(
    rf"\b(?P<system>CPT|HCPCS|ICD-?10(?:-?(?:CM|PCS))?)\s*(?:®|\(R\))?\s*(?:code\s*)?[:#]?\s*"
    rf"(?P<code>{CODE_FORMAT})\b",
    re.IGNORECASE,
)


def _mentioned_code(text: str) -> tuple[CodeSystem | None, str] | None:
    """A code named with its system anywhere in a short text ("... | CPT 45378 | ...")."""
    match = _MENTION.search(text)
    if match is None or not any(c.isdigit() for c in match.group("code")):
        return None
    return _label_system(match.group("system")), match.group("code").upper()


def _meta_system(name: str | None) -> CodeSystem | None:
    return system_from_label(name + " ") if name else None


def _code(
    page: SplitPage,
    title_code: str | None,
    meta: PageMeta,
    url: str | None,
    source: str,
    label_max: int,
    boxed: Callable[[], list[tuple[CodeSystem | None, str]]],
) -> tuple[CodeSystem, str, bool]:
    """Code and system: page label and value, title, structured data, canonical link, URL;
    and whether the page's content itself shows the code (not only its address or a box)."""
    label_system, page_code = _label_codes(_code_lines(page), label_max)
    badges: list[tuple[CodeSystem | None, str]] = []
    for label, value in page.codes:
        badge = CODE_BADGE.match(value)
        found = (
            (_label_system(badge.group("system")), badge.group("code").upper())
            if badge is not None
            else (_label_system(label), value.upper())
        )
        if label and page_code is None:
            page_code = found  # "CPT code:" | "28285": a labelled value
            label_system = label_system or found[0]
        elif not label:
            badges.append(found)  # "CPT 52000" alone on a line among the sections
    if page_code is None:
        for section in page.get("name"):
            for entry in section.entries:
                page_code = find_code(entry.text)
                if page_code:
                    break

    def candidates() -> Iterator[tuple[CodeSystem | None, str, bool]]:
        if page_code:
            yield *page_code, True
        if title_code:
            yield None, title_code, True
        yield from ((_meta_system(system), code.upper(), True) for system, code in meta.codes)
        for location in (*meta.locations, url):
            located = code_from_location(location) if location else None
            if located:
                yield *located, False
        yield from ((*badge, True) for badge in badges)
        yield from ((*found, False) for found in boxed())  # read only when nothing before fits
        yield from ((*m, False) for mention in meta.mentions if (m := _mentioned_code(mention)))

    first: str | None = None
    for found_system, code, shown in candidates():
        first = first or code
        for system in (found_system, label_system, infer_system(code)):
            if system is not None and code_fits(code, system):
                return system, code, shown
    if first is not None:
        raise MissingCode(
            f"code {first!r} does not fit the {label_system or 'any'} code format", source=source
        )
    raise MissingCode(
        "no code on the page (label, title, structured data, canonical link) and none in its "
        "URL or file name",
        source=source,
    )


def _prose(entries: list[Entry] | None) -> str | None:
    if not entries:
        return None
    return _prose_texts([clean_item(e.text) if e.item else e.text for e in entries])


def _prose_texts(parts: list[str]) -> str | None:
    return "\n\n".join(p for p in (clean_item(t) for t in parts) if p) or None


def _items(entries: list[Entry] | None, slots: tuple[str, ...] | None = None) -> list[str]:
    if not entries:
        return []
    out: list[str] = []
    for entry in entries:
        if slots is not None and entry.slot not in slots:
            continue
        text = clean_item(entry.text)
        if text:
            out.append(text)
    return out


def _steps(entries: list[Entry] | None) -> list[str]:
    if not entries:
        return []
    if any(e.slot == "steps" for e in entries):
        return _items(entries, ("steps",))
    return _items(entries, ("items", "steps"))


def _duration(entries: list[Entry] | None) -> dict[str, Any] | None:
    text = _prose(entries)
    if not text:
        return None
    found = find_duration(text)
    return {
        "text": text,
        "min_minutes": found.min_minutes if found else None,
        "max_minutes": found.max_minutes if found else None,
    }


def _personnel(entries: list[Entry] | None) -> list[dict[str, str]]:
    people: list[dict[str, str]] = []
    for entry in entries or ():
        text = clean_item(entry.text)
        if not text:
            continue
        phrases = [text] if entry.item else split_personnel(text)
        people.extend({"text": p, "role": classify_role(p)} for p in phrases)
    return people


def _stay(sections: dict[str, list[Entry]]) -> dict[str, Any] | None:
    texts = [
        e.text
        for key in ("recovery", "setting", "patient_experience")
        for e in sections.get(key, ())
    ]
    found = find_hospital_stay(clean_item(t) for t in texts)
    if found is None:
        return None
    return {"text": found.text, "min_days": found.min_days, "max_days": found.max_days}


def _experience(entries: list[Entry] | None) -> dict[str, list[str]]:
    """During / after / notes; prose that follows a during or after list is a note."""
    phases: dict[str, list[str]] = {"during": [], "after": [], "notes": []}
    listed: set[str] = set()  # slots whose list has started
    closed: set[str] = set()  # slots whose list has ended with prose
    for entry in entries or ():
        text = clean_item(entry.text)
        if not text:
            continue
        slot = entry.slot if entry.slot in phases else "notes"
        if slot != "notes":
            if entry.item and slot not in closed:
                listed.add(slot)
            elif slot in listed:
                closed.add(slot)
                slot = "notes"
        phases[slot].append(text)
    return phases


_SYSTEM_ONLY = re.compile(
    r"^\s*(?:CPT(?:\s*-?\s*4)?|HCPCS(?:\s+Level\s+II)?|ICD-?10-?(?:CM|PCS))\s*$", re.IGNORECASE
)


def _paired(entries: list[Entry]) -> list[Entry]:
    """Table rows read cell by cell ("29826" | "Arthroscopic decompression"): one entry each."""
    out: list[Entry] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        following = entries[i + 1] if i + 1 < len(entries) else None
        if (
            following is not None
            and i + 2 < len(entries)
            and _SYSTEM_ONLY.match(following.text)
            and BARE_CODE.match(clean_item(entry.text))
        ):
            # "0TF4XZZ" | "ICD-10-PCS" | "Fragmentation...": the system cell says what the
            # code's format already does; the title is the cell after it.
            following = entries[i + 2]
            i += 1
        if (
            following is not None
            and BARE_CODE.match(clean_item(entry.text))
            and not _LEADING_CODE.match(clean_item(following.text))
            and len(entry.links) <= 1
        ):
            text = f"{clean_item(entry.text)} – {clean_item(following.text)}"
            out.append(replace(entry, text=text, links=entry.links or following.links))
            i += 2
            continue
        out.append(entry)
        i += 1
    return out


def _similar(entries: list[Entry] | None, system: CodeSystem) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in _paired(entries or []):
        code_links = [(h, t) for h, t in entry.links if t]
        pieces: list[tuple[str, str | None]]
        if len(code_links) > 1:
            pieces = [(t, h) for h, t in code_links]
        elif _CODE_LIST.match(entry.text):
            pieces = [(code, None) for code in _LIST_SEPARATOR.split(entry.text.strip())]
        else:
            pieces = [(entry.text, code_links[0][0] if code_links else None)]
        for text, href in pieces:
            parsed = parse_similar_item(clean_item(text), href, system)
            if parsed is None:
                continue
            code, code_system, title = parsed
            if (code, code_system) in seen:
                continue
            seen.add((code, code_system))
            out.append({"code": code, "code_system": code_system, "title": title})
    return out


__all__ = ["PARSER_VERSION", "Extraction", "Section", "extract", "parse_page"]
