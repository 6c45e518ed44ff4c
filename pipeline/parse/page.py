"""One page in, one validated record out: the parser's entry point.

``parse_page(data, url)`` runs, in order: the input checks (size, empty, binary, not HTML), the
decoding (:mod:`pipeline.parse.encoding`), one selectolax parse, chrome removal by one CSS
query, one walk into lines (:mod:`pipeline.parse.blocks`), the section split
(:mod:`pipeline.parse.sections`), the normalizers, and Pydantic validation. Every failure is a
typed :class:`~pipeline.errors.ParseError` or :class:`~pipeline.errors.RecordInvalid`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pydantic
from selectolax.lexbor import LexborHTMLParser

from pipeline.errors import (
    BinaryContent,
    EmptyPage,
    MissingCode,
    NotAProcedurePage,
    NotHtml,
    PageTooLarge,
    RecordInvalid,
)
from pipeline.models import CodeSystem, Procedure, code_fits
from pipeline.normalize.anesthesia import find_anesthesia
from pipeline.normalize.codes import (
    code_from_location,
    find_code,
    infer_system,
    parse_similar_item,
    system_from_label,
)
from pipeline.normalize.durations import find_duration
from pipeline.normalize.roles import classify_role, split_personnel
from pipeline.normalize.stay import find_hospital_stay
from pipeline.normalize.text import clean_item, collapse
from pipeline.normalize.venues import find_venues
from pipeline.parse.blocks import walk
from pipeline.parse.encoding import decode_html
from pipeline.parse.sections import (
    SECTION_ORDER,
    Entry,
    SplitPage,
    repair_lost_headings,
    split_sections,
)
from pipeline.parse.vocabulary import Vocabulary, load_vocabulary

#: Pages larger than this are refused before parsing (bytes).
MAX_PAGE_BYTES = 5 * 1024 * 1024

#: Deeper nesting, or more attributes on one element, is refused (see _check_nesting).
MAX_NESTING = 2048
MAX_ATTRIBUTES = 4096
MAX_OPTIONS = 10_000
MAX_LEFT_OPEN = 1000
_SCAN_FROM = 4096

PARSER_VERSION = "1"

_BINARY_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"BZh",
    b"\xfd7zXZ", b"7z\xbc\xaf", b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF",
    b"MZ", b"wOFF", b"wOF2",
)  # fmt: skip
_TAG_START = re.compile(r"<(/?)([a-z][a-z0-9]*)")
_RAW_TEXT_TAGS = frozenset({"script", "style", "textarea", "title", "xmp", "noscript"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
     "wbr", "param", "keygen"}
)  # fmt: skip
#: Start tags that close an open element of these names first (as the HTML parser does).
_CLOSED_BY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "td": (("td", "th"), ("table", "tr")), "th": (("td", "th"), ("table", "tr")),
    "tr": (("tr",), ("table",)), "li": (("li",), ("ul", "ol")),
    "p": (("p",), ("div", "td", "th", "li", "table", "blockquote", "section", "article")),
    "dt": (("dt", "dd"), ("dl",)), "dd": (("dt", "dd"), ("dl",)),
    "option": (("option",), ("select",)),
}  # fmt: skip
_LOOK_DOWN = 64
_FORMATTING = frozenset(
    {
        "a",
        "b",
        "big",
        "code",
        "em",
        "font",
        "i",
        "nobr",
        "s",
        "small",
        "strike",
        "strong",
        "tt",
        "u",
    }
)
#: Bytes that do not occur in text (C0 controls other than tab, newlines, form feed).
_CONTROL_BYTES = bytes([*range(9), *range(14, 32)])
_HTML_SIGN = re.compile(
    r"<\s*(?:!doctype\s+html|html|head|body|p|div|h[1-6]|table|ul|ol|li|br|span|a|meta|title|"
    r"main|article|section|dl|font|b|strong)\b",
    re.IGNORECASE,
)
_CODE_PREFIX = re.compile(
    r"^(?:(?:CPT|HCPCS|ICD-?10-?(?:CM|PCS))\s*®?\s*(?:code)?\s*)?([A-Z0-9]{4,7}(?:\.[A-Z0-9]{1,4})?)"
    r"\s*[-–—:|]\s+(?=\S)",
    re.IGNORECASE,
)
_CODE_HREF = re.compile(r"/code/(?:cpt4?|hcpcs|icd-?10-?(?:cm|pcs))/", re.IGNORECASE)
_CODE = r"[A-Z0-9]{3,7}(?:\.[A-Z0-9]{1,4})?"
#: A bare list of codes on one line: "93454, 93459 and 93460".
_CODE_LIST = re.compile(rf"^\s*{_CODE}(?:\s*(?:[,;/]|\band\b|\bor\b)\s*{_CODE})+\s*\.?$")
_LIST_SEPARATOR = re.compile(r"\s*(?:[,;/]|\band\b|\bor\b)\s*|\.$")
_TITLE_SUFFIX = re.compile(r"\s+[|–—-]\s+[^|–—-]{2,60}$")

#: Sections read for the anesthesia kinds the page says are used.
_ANESTHESIA_SOURCES = (
    "summary", "purpose", "preparation", "steps", "duration", "setting", "recovery",
    "patient_experience", "anesthesia_info",
)  # fmt: skip


def parse_page(
    data: bytes | str,
    url: str | None = None,
    *,
    http_charset: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> Procedure:
    """Parse one page into a validated :class:`Procedure`.

    ``url`` is where the page came from (a URL or a file path); it becomes ``source`` and is a
    fallback for the code and code system. ``http_charset`` is the charset of the HTTP
    Content-Type header, if the page was fetched.

    Raises :class:`~pipeline.errors.ParseError` subclasses for pages that are not procedure
    pages and :class:`~pipeline.errors.RecordInvalid` when the record breaks a model rule.
    """
    vocab = vocabulary or load_vocabulary()
    source = url or "<memory>"
    text = _decode(data, source, http_charset)
    _check_nesting(text, source)
    tree = LexborHTMLParser(text)
    doc_title = _document_title(tree)
    _remove_chrome(tree, vocab)
    body = tree.body
    lines = walk(body, vocab.chrome) if body is not None else []
    if not lines:
        raise EmptyPage("page has no visible text", source=source)
    page = split_sections(lines, vocab)
    repair_lost_headings(page)
    return _build(page, lines, doc_title, source, url, vocab)


# --- input checks --------------------------------------------------------------------------------


def _decode(data: bytes | str, source: str, http_charset: str | None) -> str:
    size = len(data)
    if size > MAX_PAGE_BYTES:
        raise PageTooLarge(
            f"page is {size:,} bytes, over the {MAX_PAGE_BYTES:,}-byte limit", source=source
        )
    if isinstance(data, bytes):
        if not data.strip():
            raise EmptyPage("page is empty", source=source)
        if _looks_binary(data):
            raise BinaryContent("page is binary data, not text", source=source)
        text = decode_html(data, http_charset)
    else:
        text = data
    if not text.strip():
        raise EmptyPage("page is empty", source=source)
    if "\x00" in text:
        text = text.replace("\x00", "")  # browsers ignore U+0000 in text
    if "<noscript" in text or "<NOSCRIPT" in text:
        text = _drop_noscript(text)
    if not _HTML_SIGN.search(text, 0, 65536):
        raise NotHtml("text with no HTML markup", source=source)
    return text


def _drop_noscript(text: str) -> str:
    """Remove ``<noscript>`` elements, in one forward pass.

    lexbor parses with scripting off, where ``<noscript>`` content is markup; browsers
    (scripting on) read it as raw text that is never shown. An unclosed one runs to the end.
    """
    low = text.lower()
    kept: list[str] = []
    start = 0
    while (open_at := low.find("<noscript", start)) >= 0:
        kept.append(text[start:open_at])
        close = low.find("</noscript", open_at + 9)
        if close < 0:
            return "".join(kept)
        end = low.find(">", close)
        start = len(text) if end < 0 else end + 1
    kept.append(text[start:])
    return "".join(kept)


def _check_nesting(text: str, source: str) -> None:
    """Refuse pathological markup before the HTML parser sees it.

    lexbor's tree construction is quadratic in nesting depth (100,000 nested ``<div>`` take
    25 s) and in the attributes of one element (100,000 attributes take 40 s); browsers cap
    depth at 512 for the same reason. Pages with few tags and attributes (every ordinary page)
    skip the scan; the others get one linear pass over their tags that ignores raw text
    (scripts, styles, comments) and elements that do not nest (void, auto-closing, formatting).
    """
    if text.count("<") < _SCAN_FROM and text.count("=") < _SCAN_FROM:
        return
    stack: list[str] = []
    # Formatting elements with attributes left open when their paragraph closed: the parser
    # re-creates all of them in every later paragraph (identical ones are capped at three).
    left_open = 0
    options = 0
    for is_end, name, self_closing, attributes in _scan_tags(text):
        if attributes > MAX_ATTRIBUTES:
            raise _pathological(f"an element with more than {MAX_ATTRIBUTES:,} attributes", source)
        if is_end:
            _pop_to(stack, (name,), ())
            continue
        if name in _VOID or self_closing:
            continue
        if name == "option":
            options += 1
            if options > MAX_OPTIONS:
                raise _pathological(f"more than {MAX_OPTIONS:,} form options", source)
        if name in _FORMATTING and attributes:
            stack.append(name + "=")  # marked: carries attributes
        else:
            implied = _CLOSED_BY.get(name)
            if implied:
                dropped = _pop_to(stack, *implied)
                if name == "p":
                    left_open += sum(1 for n in dropped if n.endswith("="))
                    if left_open > MAX_LEFT_OPEN:
                        raise _pathological(
                            f"more than {MAX_LEFT_OPEN:,} formatting elements left open", source
                        )
            stack.append(name)
        if len(stack) > MAX_NESTING:
            raise _pathological(f"elements nested deeper than {MAX_NESTING:,} levels", source)


def _pathological(what: str, source: str) -> PageTooLarge:
    return PageTooLarge(f"{what}: not a procedure page", source=source)


def _scan_tags(text: str) -> Iterator[tuple[bool, str, bool, int]]:
    """(is end tag, name, self-closing, number of ``=``) of each tag, in one forward pass.

    Comments and raw-text elements (scripts, styles...) are skipped; an opener with no closer
    ends the scan (the rest of the page is raw text or junk), so the pass stays linear.
    """
    low = text.lower()
    i = low.find("<")
    while i >= 0:
        if low.startswith("<!--", i):
            end = low.find("-->", i + 4)
            if end < 0:
                return
            i = low.find("<", end + 3)
            continue
        match = _TAG_START.match(low, i)
        if match is None:
            i = low.find("<", i + 1)
            continue
        close = low.find(">", match.end())
        if close < 0:
            return
        is_end, name = match.group(1) == "/", match.group(2)
        yield is_end, name, low[close - 1] == "/", low.count("=", match.end(), close)
        if not is_end and name in _RAW_TEXT_TAGS:
            end = low.find("</" + name, close + 1)
            if end < 0:
                return
            i = end
            continue
        i = low.find("<", close + 1)


def _pop_to(stack: list[str], names: tuple[str, ...], scope: tuple[str, ...]) -> list[str]:
    """Close the innermost open element named in ``names``, not looking past a ``scope``
    element (an ``<li>`` closes the open ``<li>`` of its own list, not of an outer one);
    returns the elements closed with it."""
    for i in range(len(stack) - 1, max(len(stack) - _LOOK_DOWN, 0) - 1, -1):
        name = stack[i].rstrip("=")
        if name in names:
            dropped = stack[i + 1 :]
            del stack[i:]
            return dropped
        if name in scope:
            break
    return []


def _looks_binary(data: bytes) -> bool:
    head = data[:4096]
    if head.startswith(_BINARY_MAGIC) and not head.lstrip().startswith(b"<"):
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a byte-order mark
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > len(head) * 0.1


# --- tree ----------------------------------------------------------------------------------------


def _document_title(tree: LexborHTMLParser) -> str | None:
    node = tree.css_first("head > title")
    if node is None:
        return None
    title = collapse(node.text())
    return _TITLE_SUFFIX.sub("", title) or None


def _remove_chrome(tree: LexborHTMLParser, vocab: Vocabulary) -> None:
    """Drop elements that are never content (scripts, navigation, sidebars...) in C."""
    tree.strip_tags(list(vocab.chrome_tags))


# --- record --------------------------------------------------------------------------------------


def _build(
    page: SplitPage,
    lines: list[Any],
    doc_title: str | None,
    source: str,
    url: str | None,
    vocab: Vocabulary,
) -> Procedure:
    present = {s.key for s in page.sections}
    content = present & set(SECTION_ORDER)
    if not content - {"similar_codes"} or _is_condition_page(page, present):
        raise _not_a_procedure(page, lines, doc_title, source, url, vocab, present)
    title, title_code = _title(page, doc_title)
    if not title:
        raise NotAProcedurePage("page has content sections but no title", source=source)
    system, code = _code(page, title_code, url, source, vocab.label_max_chars)
    sections = _sections_by_key(page)
    record: dict[str, Any] = {
        "source": source,
        "code": code,
        "code_system": system,
        "title": title,
        "summary": _prose(sections.get("summary")),
        "purpose": _prose(sections.get("purpose")),
    }
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
    record["anesthesia"] = find_anesthesia(
        e.text for key in _ANESTHESIA_SOURCES for e in sections.get(key, ())
    )
    try:
        return Procedure.model_validate(record)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise RecordInvalid(f"record is invalid: {problems}", source=source) from exc


def _sections_by_key(page: SplitPage) -> dict[str, list[Entry]]:
    merged: dict[str, list[Entry]] = {}
    for section in page.sections:
        merged.setdefault(section.key, []).extend(section.entries)
    return merged


#: Sections only a procedure page has; a page with none of them and condition sections
#: (causes, symptoms, diagnosis, treatment options...) describes a condition.
_PROCEDURE_ONLY = frozenset(
    {"steps", "preparation", "duration", "setting", "personnel", "patient_experience"}
)


def _is_condition_page(page: SplitPage, present: set[str]) -> bool:
    if present & _PROCEDURE_ONLY:
        return False
    condition_headings = sum(1 for s in page.sections if s.key == "condition")
    return condition_headings >= 2


def _not_a_procedure(
    page: SplitPage,
    lines: list[Any],
    doc_title: str | None,
    source: str,
    url: str | None,
    vocab: Vocabulary,
    present: set[str],
) -> NotAProcedurePage:
    head = " ".join([doc_title or "", page.title or "", *(line.text for line in lines[:5])])
    if vocab.not_found.search(head):
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
    if code_links >= vocab.listing_min_links or (url and "/code/list/" in url):
        return NotAProcedurePage(
            f"a listing page ({code_links} code links), not a procedure page",
            source=source,
            page_kind="listing",
        )
    return NotAProcedurePage(
        "no procedure sections (summary, steps, risks...) on the page", source=source
    )


def _title(page: SplitPage, doc_title: str | None) -> tuple[str | None, str | None]:
    """The official descriptor, and a code if the heading started with one."""
    title = page.title
    if title is None:
        title = next(
            (s.heading for s in page.sections if s.key == "unknown" and s.heading), doc_title
        )
    if not title:
        return None, None
    title = collapse(title)
    match = _CODE_PREFIX.match(title)
    if match and infer_system(match.group(1).upper()) is not None:
        return title[match.end() :], match.group(1).upper()
    return title, None


def _code(
    page: SplitPage, title_code: str | None, url: str | None, source: str, label_max: int
) -> tuple[CodeSystem, str]:
    """Code and system: page label and value first, then the URL or file name."""
    label_system: CodeSystem | None = None
    page_code: tuple[CodeSystem | None, str] | None = None
    for text in page.preamble:
        if label_system is None and len(text) <= label_max:
            label_system = system_from_label(text)
        if page_code is None:
            page_code = find_code(text)
    if page_code is None:
        for section in page.get("name"):
            for entry in section.entries:
                page_code = find_code(entry.text)
                if page_code:
                    break
    located = code_from_location(url) if url else None
    candidates: list[tuple[CodeSystem | None, str]] = []
    if page_code:
        candidates.append(page_code)
    if title_code:
        candidates.append((None, title_code))
    if located:
        candidates.append(located)
    for found_system, code in candidates:
        for system in (found_system, label_system, infer_system(code)):
            if system is not None and code_fits(code, system):
                return system, code
    if candidates:
        code = candidates[0][1]
        raise MissingCode(
            f"code {code!r} does not fit the {label_system or 'any'} code format", source=source
        )
    raise MissingCode(
        "no code on the page and none in its URL or file name (/code/<system>/<CODE>-<slug>)",
        source=source,
    )


def _prose(entries: list[Entry] | None) -> str | None:
    if not entries:
        return None
    parts = [clean_item(e.text) if e.item else e.text for e in entries]
    return "\n\n".join(p for p in parts if p) or None


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


def _similar(entries: list[Entry] | None, system: CodeSystem) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries or ():
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
