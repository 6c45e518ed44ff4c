"""A page's code, code system and title, wherever it shows them (SPEC: the code is found beside
its label, before or after the title, in the title, in structured data, then in the URL)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from pipeline.errors import MissingCode
from pipeline.extract.normalize.codes import (
    CODE_FORMAT,
    code_from_location,
    find_code,
    infer_system,
    system_from_label,
)
from pipeline.extract.normalize.text import collapse
from pipeline.extract.sections import (
    BARE_CODE,
    CODE_BADGE,
    SplitPage,
    is_code_label,
)
from pipeline.extract.structured import PageMeta
from pipeline.models import CodeSystem, code_fits

SYSTEM_LABEL = (
    r"(?:CPT|HCPCS(?:\s+Level\s+II)?|ICD-?10-?(?:CM|PCS))\s*(?:®|\(R\))?\s*(?:code)?\s*[#:]?"
)


#: A code before the title: "CPT® 45378 – Colonoscopy", "45378: Colonoscopy",
#: "CPT 45378Colonoscopy".
_CODE_PREFIX = re.compile(
    # A bare prefix is a CPT or HCPCS code; an ICD-shaped one ("A1C:", "B12 -") only after its
    # system's label, and never a word ("Bladder: cystoscopy").
    rf"^(?:{SYSTEM_LABEL}\s*(?P<code>{CODE_FORMAT})|(?P<bare>\d{{4}}[0-9FTUM]|[A-Z]\d{{4}}))"
    rf"\s*[-–—:|]\s+(?=\S)"
    rf"|^{SYSTEM_LABEL}\s*(?P<glued>{CODE_FORMAT})(?:\s+|(?=[A-Z][a-z]))",
    re.IGNORECASE,
)


#: A code after the title: "Colonoscopy (CPT 45378)", "Colonoscopy – CPT code 45378".
_CODE_SUFFIX = re.compile(
    rf"\s*[(\[\-–—|:,]?\s*{SYSTEM_LABEL}\s*(?P<code>{CODE_FORMAT})\s*[)\]]?\s*$", re.IGNORECASE
)


def page_title(
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


def label_codes(
    preamble: list[str], label_max: int
) -> tuple[CodeSystem | None, tuple[CodeSystem | None, str] | None]:
    """The system a label names, and the first labeled code, in the lines around the title."""
    label_system: CodeSystem | None = None
    page_code: tuple[CodeSystem | None, str] | None = None
    for i, raw in enumerate(preamble):
        text = _GLUED_LABEL.sub(" ", raw.replace("_", " "))  # "cpt_code" in a front matter
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


def mentioned_code(text: str) -> tuple[CodeSystem | None, str] | None:
    """A code named with its system anywhere in a short text ("... | CPT 45378 | ...")."""
    match = _MENTION.search(text)
    if match is None or not any(c.isdigit() for c in match.group("code")):
        return None
    return _label_system(match.group("system")), match.group("code").upper()


def _meta_system(name: str | None) -> CodeSystem | None:
    return system_from_label(name + " ") if name else None


def find_page_code(
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
    label_system, page_code = label_codes(_code_lines(page), label_max)
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
        yield from ((*m, False) for mention in meta.mentions if (m := mentioned_code(mention)))

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
