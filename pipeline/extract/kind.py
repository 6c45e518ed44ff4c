"""What a page that is not a procedure page is: a 'not found' page, a condition page, a listing."""

from __future__ import annotations

import re

from pipeline.errors import NotAProcedurePage
from pipeline.extract.blocks import Line
from pipeline.extract.sections import (
    BARE_CODE,
    CODE_BADGE,
    STRONG_CUE,
    SplitPage,
)
from pipeline.extract.vocabulary import Vocabulary, stems, words

#: A page with no procedure content that shows this many codes on lines of their own (a table
#: of procedures and their codes, an A-Z index) is a listing page.
_LISTED_CODES = 5


_CODE_HREF = re.compile(r"/code/(?:cpt4?|hcpcs|icd-?10-?(?:cm|pcs))/", re.IGNORECASE)


#: Sections only a procedure page has; a page with none of them and condition sections
#: (causes, symptoms, diagnosis, treatment options...) describes a condition.
_PROCEDURE_ONLY = frozenset(
    {"steps", "preparation", "duration", "setting", "personnel", "patient_experience"}
)


def is_condition_page(page: SplitPage, present: set[str]) -> bool:
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


def condition_like(page: SplitPage) -> bool:
    """Headings of a disease page (symptoms, causes, diagnosis, treatment...) outnumber those
    only a procedure page has (steps, preparation, duration, setting, personnel)."""
    disease = procedure = 0
    for section in page.sections:
        if set(stems(words(section.heading.lower()))) & _CONDITION_STEMS:
            disease += 1  # "How is it diagnosed?" is the disease's, whatever section it became
        elif section.key in _PROCEDURE_ONLY and section.entries:
            procedure += 1
    return disease >= 2 and disease > procedure


def is_not_found(
    page: SplitPage, lines: list[Line], doc_title: str | None, vocab: Vocabulary
) -> bool:
    head = " ".join([doc_title or "", page.title or "", *(line.text for line in lines[:5])])
    return vocab.not_found.search(head) is not None


def not_a_procedure(
    page: SplitPage,
    lines: list[Line],
    doc_title: str | None,
    source: str,
    url: str | None,
    vocab: Vocabulary,
    present: set[str],
) -> NotAProcedurePage:
    if is_not_found(page, lines, doc_title, vocab):
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
