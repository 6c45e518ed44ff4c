"""Lines -> title and typed sections, by the role each line plays and what its heading means.

**Which lines are headings** (:func:`heading_of`) is read from the role a line plays on the page,
whatever element carries it: the markup says so (``<h1>``-``<h6>``, ``role="heading"``,
``<dt>``, ``<summary>``, an accordion button, a class such as ``section-title``), the line is
set apart by style (all bold, all large, ``<font><b>``, UPPER CASE, a Markdown ``#####`` or
``**...**`` line), it is a short line of its own ending in a colon, or a short question that
stands alone above its answer. A plain line is a heading only when it is, word for word, a
known heading.

**What a heading means** is decided by :mod:`pipeline.extract.classify` (phrases, then stemmed
cues); close calls are settled by the shape of the section's content (:func:`_settle`). A short
line just above a heading (a "kicker": "Recovery & results" above "What to expect") lends its
words when the heading alone names nothing. A heading made only of the procedure's name is the
summary ("Total Knee Replacement" on the knee replacement page), one made only of "Surgery" or
"The Operation" is the steps.

**Where content goes**: under its heading's section. Sub-labels ("Common risks:", "During the
procedure") route items within a section. A heading deeper than the current section's that
names no section is a sub-label of it; a heading at the same level or higher that names no
section opens an *other* section, which the record keeps in ``other_sections``: it is never
merged into its neighbour. Chrome headings ("Frequently asked questions", "Ready to book?")
open an ignored section; link-dense sections that name nothing are chrome too.

After the split, :func:`repair_lost_headings` moves text whose heading line was lost on the page
into the section it belongs to, using the reference site's section order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import pairwise

from pipeline.extract.blocks import BIG_PX, Line
from pipeline.extract.classify import Verdict, classify, classify_key
from pipeline.extract.normalize.codes import CODE_FORMAT
from pipeline.extract.normalize.text import clean_item, has_marker
from pipeline.extract.vocabulary import RECORD_SECTIONS, Vocabulary, heading_key, stems, words

#: Content sections of a procedure page, in the reference site's order.
SECTION_ORDER: tuple[str, ...] = RECORD_SECTIONS
PROSE_SECTIONS: frozenset[str] = frozenset({"summary", "purpose", "duration", "setting"})
LIST_SECTIONS: frozenset[str] = frozenset(SECTION_ORDER) - PROSE_SECTIONS
#: Sections that are page chrome: their headings are not counted as the page's headings.
CHROME_KEYS: frozenset[str] = frozenset({"ignore", "navigation"})

# Levels: a smaller level is a higher-level heading.
LEVEL_DT = 4
LEVEL_HINT = 4  # a class, summary or accordion button that marks a heading
LEVEL_STYLED = 5  # bold or large paragraph, upper case line, a known heading in plain text
LEVEL_LABEL = 7  # "Something:" on a line of its own

_MARKDOWN = re.compile(r"^(#{1,6})\s*(\S.*)$")
#: A word of three or more capitals standing alone ("RISKS", "STEP 1"; not "URO-031").
_THREE_LETTERS = re.compile(
    r"(?:^|[\s(/&])(?=[A-Z-]*[A-Z]{3})[A-Z]+(?:-[A-Z]+)*(?=$|[\s,:?.)/&’'])"
)
_CAPS_OK = re.compile(r"^[A-Z0-9 ,&/()'’\-:?.]+$")
_INLINE_LABEL = re.compile(r"^([^:.!?]{2,60}?)\s*:\s+(\S.*)$")
_SENTENCE_END = re.compile(r"[.!]$")
_MAX_HEADING = 100
_MAX_QUESTION_WORDS = 14
#: A bold or large line longer than this is a lead sentence or a tagline, not a heading.
_MAX_STYLED_WORDS = 10
#: A plain line at most this long may be a sub-label ("During", "Rare risks").
_MAX_PLAIN_SUBLABEL = 40
_ENUMERATOR_ONLY = re.compile(r"^(?:(?:step|stage|phase)\s*)?\d{1,2}[.):]?$", re.IGNORECASE)
_ANSWER = re.compile(r"^(?:A|Answer)\s*[:.]\s*", re.IGNORECASE)
_WORDY = re.compile(r"\w")
#: Lines that are never a section's content: disclaimers, cookie notices, copyright, bylines,
#: calls to action with a phone number. Each rule is (words, pattern): every match of the
#: pattern holds one of its words, so a line is searched only with the rules whose words it
#: holds (one search of the whole alternation costs several microseconds a line). Matched
#: against lower-case text: IGNORECASE makes every search several times slower.
_NOT_CONTENT_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (words, re.compile(pattern))
    for words, pattern in (
        (
            ("only",),
            r"for (?:general )?(?:information(?:al)?|education(?:al)?)(?: purposes)? only",
        ),
        (
            # a disclaimer about the page itself, not "a partial knee replacement does not
            # replace..."
            (" not ",),
            r"(?:information|content|leaflet|page|article|website|site|guide|material|booklet)\b"
            r"[^.]{0,60}?\b(?:does|do|is|are) not (?:intended to )?"
            r"(?:replace|constitute|substitute)",
        ),
        (
            ("substitute for",),
            r"not (?:a |intended (?:as|to be) a )?substitute for (?:professional|medical|the advice"
            r"|advice|your (?:doctor|physician|healthcare|gp|care))",
        ),
        (("all rights reserved", "©", "copyright"), r"all rights reserved|^©|^copyright\b"),
        (("cookies",), r"(?:we|this (?:site|website)) (?:use|uses|are using) cookies"),
        (("read",), r"\b\d+\s+min(?:ute)?s?\s+read\b"),
        (
            ("tags", "categories", "filed under", "posted in", "tagged"),
            r"^(?:tags|categories)\s*:|^(?:filed under|posted in|tagged)\b",
        ),
        (
            # a call to action with a phone number; "call us on ... if/when you notice ..." is
            # advice
            ("call", "phone", "book", "request", "schedule"),
            r"^\W*(?:call|phone|book|request|schedule)\b(?![^:]*\b(?:if|when|whenever|immediately"
            r"|urgently|straight away|right away)\b)[^.:]{0,40}\(?\d{3,5}\)?[\s.-]?\d{3}[\s.-]?"
            r"\d{3,4}\b[^:]*$",
        ),
        (
            (
                "large print", "other formats", "other languages", "braille", "audio",
                "easy read", "another language",
            ),
            r"available in (?:large print|other formats|other languages|braille|audio)"
            r"|(?:leaflet|information|page|document|booklet) in (?:large print|audio|braille"
            r"|easy read|another language|other languages|other formats)",
        ),
        (
            ("last", "next", "review"),
            r"^(?:page\s+|this page was\s+)?last\s+(?:reviewed|updated|modified)\b"
            r"|^next\s+review\b|^review\s+(?:date|due)\b|^(?:date\s+)?last\s+reviewed\b"
            r"|^(?:online\s+)?medical\s+reviewer\b|^(?:medically\s+)?reviewed\s+by\b",
        ),
        (
            ("helpful", "useful"),
            r"^was\s+this\s+(?:page|article|information)\s+(?:helpful|useful)",
        ),
        (("printed",), r"^printed (?:from|on)\b"),
        # a wiki's hatnote and page footer ("Not to be confused with ...", "... · Last
        # modified: 2024/03/11 09:42 by jdoe")
        (
            ("confused", "redirects here", "modified"),
            r"^not to be confused with\b|\bredirects here\b|\blast (?:modified|edited):?\s*"
            r"(?:on\s+)?\d",
        ),
        # a leaflet's reference and revision ("NHVI-PI-114 · Rev. 01/2024")
        (("rev",), r"^[a-z]{2,}[-a-z0-9]*\d\s*[·|•,-]?\s*rev(?:ision|\.)?\s*\d[\d/.-]*$"),
        # a print view's address line ("URL: https://...", the bare address)
        (("http",), r"^(?:(?:url|link|web address|address)\s*:\s*)?https?://\S+$"),
        (
            # a share / print toolbar ("Email this leaflet Print this leaflet Download PDF")
            ("print", "download", "email this", "share this"),
            r"^(?:(?:email|print|download|share|save)\s+(?:this|as|the|a)?\s*"
            r"(?:page|leaflet|article|handout|guide|pdf|link)\b[^.]{0,30}?\s*){2,}",
        ),
        (
            # "Page reviewed by the Patient Information Group, February 2024."
            ("review", "produced", "written"),
            r"^(?:this\s+)?(?:page|leaflet|handout|information|article)\s+(?:was\s+)?"
            r"(?:last\s+)?(?:reviewed|updated|produced|written)\s+(?:by|on|in)\b",
        ),
        (
            # "Ready to schedule your screening? Call 555-0148 or request an appointment"
            ("ready", "want to", "need to", "would you like", "interested"),
            r"^(?:ready|want|need|would you like|interested)\b[^.?]{0,60}\?\s*"
            r"(?:call|book|contact|request|schedule|ring|phone|email|message|visit)\b",
        ),
        (
            ("reschedule", "questions?", "call us", "contact us"),
            r"(?:reschedule|questions\?|call us|contact us)(?![^:.]{0,120}\b(?:if|when|whenever"
            r"|immediately|urgently|straight away|right away)\b)[^.]{0,80}?\d{3}[\s.-]?\d{4}",
        ),
    )
)  # fmt: skip
#: Words one of which every line of _NOT_CONTENT_RULES holds: a cheap test before the regex.
_NOT_CONTENT_WORDS: tuple[str, ...] = (
    "only", "not ", "reserved", "©", "copyright", "cookie", " read", "tags", "categories",
    "filed", "posted", "tagged", "call", "phone", "book", "request", "schedul", "available",
    "printed", "question", "contact", "review", "updated", "modified", "print", "braille",
    "audio", "language", "format", "easy read", "helpful", "useful", "http", "download",
    "email this", "share this", "produced", "written", "ready", "want to", "need to",
    "would you like", "interested", "confused", "redirects here", "rev",
)  # fmt: skip


def _link_only(line: Line) -> bool:
    """A short line that is all link text ("Book online", "Radiofrequency ablation")."""
    return line.link_chars * 10 >= len(line.text) * 9 and len(line.text.split()) <= _MAX_LINK_WORDS


def _link_lists(lines: list[Line]) -> frozenset[int]:
    """Lists (by group) whose every item is a short link: a box of links to other pages
    ("Related procedures"), unlike a list in which some items are links (a risk that links
    to its own page)."""
    plain: set[int] = set()
    linked: set[int] = set()
    for line in lines:
        if not line.in_list:
            continue
        if _link_only(line):
            linked.add(line.group)
        else:
            plain.add(line.group)
    return frozenset(linked - plain)


def _not_content_words(lines: list[Line]) -> tuple[str, ...]:
    """The words of _NOT_CONTENT_WORDS the page holds (a substring search per word, in C)."""
    page = "\n".join(line.text for line in lines).lower()
    return tuple(word for word in _NOT_CONTENT_WORDS if word in page)


#: Longer lines are prose, never a disclaimer or a call to action (and bound the regex's work).
_MAX_NOT_CONTENT = 600


def _not_content(text: str, words: tuple[str, ...] = _NOT_CONTENT_WORDS) -> bool:
    """A disclaimer, cookie notice, byline or call to action: never a section's content.

    ``words`` narrows the cheap test to the words the page holds (:func:`_not_content_words`).
    """
    if not words or len(text) > _MAX_NOT_CONTENT:
        return False
    low = text.lower()
    if _any_of(words).search(low) is None:
        return False
    return any(
        pattern.search(low) is not None
        for hints, pattern in _NOT_CONTENT_RULES
        if any(hint in low for hint in hints)
    )


@lru_cache(maxsize=256)
def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """One search for any of ``words`` (literal substrings; a site's pages share their set)."""
    return re.compile("|".join(map(re.escape, words)))


#: A line this short may be a bullet on its own (PDF exports put the glyph on its own line).
_BULLET_ONLY = 3
#: A line that is all link and at most this long is a call to action, not content.
_MAX_LINK_WORDS = 6
#: An italic or underlined line of at most this many words is a label ("Less common").
_MAX_LABEL_WORDS = 6
#: Slots an inline label ("During the procedure: ...") opens for its own line only.
_LINE_SCOPED_SLOTS = frozenset({"during", "after", "skip"})
_DURING = frozenset(stems(["during", "while", "throughout"]))
_AFTER = frozenset(
    stems(["after", "afterwards", "afterward", "following", "post", "later", "once", "next"])
)


def _phase(key: str) -> str | None:
    """The patient-experience phase a heading names: "during", "after" or None."""
    found = set(stems(words(key)))
    if found & _DURING:
        return "during"
    if found & _AFTER:
        return "after"
    return None


#: Lines that are page furniture of printed documents, never content.
_FURNITURE = re.compile(
    r"^(?:page\s+\d+(?:\s+of\s+\d+)?|\d+\s*/\s*\d+|-\s*\d+\s*-|\d{1,3}|\[\s*edit\s*\]|[¶§#])$",
    re.IGNORECASE,
)
#: A cue verdict weaker than this does not open a section under a deeper heading: the heading
#: stays a sub-label of the section it is in ("Blocked breathing during sleep" under
#: "Is surgery right for your child?").
STRONG_CUE = 2.5
#: A line that is only a code ("58558"), the value cell of a code label.
BARE_CODE = re.compile(rf"^\s*(?=\S*\d)(?P<code>{CODE_FORMAT})\s*$")
#: A line that only labels a code ("CPT code:", "Procedure code (CPT)", "Diagnosis code").
_CODE_LABEL = re.compile(
    r"^(?!.*\b(?:codes|similar|related|also|other|see|popular)\b)"
    r"(?:.*\b(?:code|cpt|hcpcs|icd[-\s]?10(?:[-\s]?(?:cm|pcs))?|billing\s+(?:ref|reference|no|number|id))\b.*)$",
    re.IGNORECASE,
)


_DIGIT = re.compile(r"\d")


def is_code_label(text: str) -> bool:
    """A line that only labels the page's code ("CPT code:", "Procedure code (CPT)")."""
    if not 2 <= len(text) <= 60 or _DIGIT.search(text.replace("10", "")):
        return False
    return _CODE_LABEL.match(text) is not None


#: A short line that names a code ("CPT 52000", "HCPCS G0008"): metadata, never a heading.
CODE_BADGE = re.compile(
    r"^\W*(?P<system>cpt|hcpcs|icd-?10(?:-?(?:cm|pcs))?)\b\s*(?:®|\(r\))?\s*(?:level\s+ii\s*)?"
    rf"(?:code\b\s*)?[:#]?\s*(?P<code>{CODE_FORMAT})(?=$|[^0-9A-Za-z]|[A-Z][a-z])",
    re.IGNORECASE,
)
_BYLINE = re.compile(
    r"^(?:by\b|written by|reviewed by|medically reviewed|last (?:updated|reviewed|modified)|"
    r"updated|published|posted|date|next review|review date|leaflet|reference"
    r"|ref(?:erence)?\s*(?:no|number)"
    r"|author|photo|image|credit|\d{1,2}\s+\w+\s+\d{4}$|\w+\s+\d{1,2},\s+\d{4}$)",
    re.IGNORECASE,
)


@dataclass(slots=True, eq=False)
class Entry:
    """One piece of section content."""

    text: str
    slot: str
    item: bool
    group: int
    links: list[tuple[str, str]] = field(default_factory=list)
    part: int = 0  # how many sub-labels of its section came before it
    link_chars: int = 0
    y: float = 0.0  # stated vertical position of its last line (PDF exports); 0 none


@dataclass(slots=True, eq=False)
class Section:
    """The content under one heading."""

    key: str
    heading: str
    rank: int
    entries: list[Entry] = field(default_factory=list)
    sublabels: list[str] = field(default_factory=list)
    tier: str = "phrase"
    verdict: Verdict | None = None
    sub_rank: int = -1  # level of sub-labels set at the section's own level


@dataclass(slots=True)
class SplitPage:
    """The result of splitting a page: title, the lines around it, sections, counts."""

    title: str | None
    preamble: list[str]
    sections: list[Section]
    headings: list[str]
    intro: list[Entry] = field(default_factory=list)  # content between title and sections
    codes: list[tuple[str, str]] = field(default_factory=list)  # (label, code) pairs
    #: Lines of ``preamble`` that stand before the title (site header, badges, boxes).
    pre_title: list[str] = field(default_factory=list)
    #: Lines dropped as chrome inside the content (calls to action, disclaimers, link boxes),
    #: and their characters.
    dropped: tuple[int, int] = (0, 0)

    def get(self, key: str) -> list[Section]:
        return [s for s in self.sections if s.key == key]


@dataclass(slots=True)
class Heading:
    text: str
    rank: int
    colon: bool
    strong: bool = True  # markup or style says heading (not only its words)


# --- which lines are headings ------------------------------------------------------------------


def heading_of(line: Line, vocab: Vocabulary) -> Heading | None:
    """The heading ``line`` is, or None for content."""
    text = line.text
    colon = text.endswith(":")
    if line.level:
        return Heading(text, line.level, colon)
    if len(text) > _MAX_HEADING:
        return None
    md = _MARKDOWN.match(text) if text[0] == "#" else None
    if md:
        return Heading(md.group(2), len(md.group(1)), text.endswith(":"))
    if len(text) < 40 and (
        (text[0] in "CcHhIi" and CODE_BADGE.match(text)) or BARE_CODE.match(text)
    ):
        return None  # "CPT 52000", "0UTC0ZZ": a code, not a heading
    hint = line.hint
    if hint == "dt":
        return Heading(text, LEVEL_DT, colon)
    if hint in ("summary", "class") and (
        len(text.split()) <= _MAX_STYLED_WORDS or text.endswith("?")
    ):
        return Heading(text, LEVEL_HINT, colon)
    if line.tag == "li" or line.in_list:
        return None
    if (
        (line.bold or hint == "big" or line.tag == "th")
        and not _SENTENCE_END.search(text)
        and len(text.split()) <= _MAX_STYLED_WORDS
    ):
        return Heading(text, LEVEL_STYLED, colon)
    if line.emphasis and len(text.split()) <= _MAX_LABEL_WORDS and not _SENTENCE_END.search(text):
        return Heading(text.rstrip(":"), LEVEL_LABEL, colon, strong=False)  # "<em>Common</em>"
    if text.startswith("**") and text.endswith(("**", "**:")):
        return Heading(text.strip("*: "), LEVEL_STYLED, colon)
    if len(text) <= 60 and text.isupper() and _CAPS_OK.match(text) and _THREE_LETTERS.search(text):
        return Heading(text, LEVEL_STYLED, colon)
    if colon and len(text) <= 80 and not has_marker(text) and not _lead_in(text):
        return Heading(text[:-1], LEVEL_LABEL, True)
    if (
        text.endswith("?")
        and len(text.split()) <= _MAX_QUESTION_WORDS
        and line.link_chars < len(text) // 2
    ):
        return Heading(text, LEVEL_STYLED, False, strong=False)
    if len(text) <= 60 and text[0].isupper() and vocab.section_of(heading_key(text)) is not None:
        return Heading(text, LEVEL_STYLED, colon, strong=False)
    return None


_VERB = re.compile(
    r"\b(?:is|are|was|were|be|been|may|might|will|would|can|could|should|must|do|does|did|have|"
    r"has|had|need|needs|include|includes|including|such as|following|these|this|if|when|you|your|"
    r"we|us|it|they)\b",
    re.IGNORECASE,
)
_LEAD_IN_END = re.compile(
    r"\b(?:to|if|when|after|before|of|for|by|with|that|because|and|or|as|from|in|on|are|is|"
    r"include|includes|including|following|these|below|like|about|than)\s*:$",
    re.IGNORECASE,
)


def _lead_in(text: str) -> bool:
    """A sentence that ends in a colon to introduce a list ("Call us if you notice:").

    A label is a short phrase ("Common risks:", "Before the day:"); a lead-in has a verb or
    a pronoun, or ends with a word that needs the list to finish it.
    """
    if _LEAD_IN_END.search(text):
        return True
    return len(text.split()) > 3 and _VERB.search(text) is not None


def _inline_label(line: Line, vocab: Vocabulary, current: str) -> tuple[str, str] | None:
    """Split "Duration: About an hour." into heading and content when the label is known."""
    if line.lead_bold:
        label = line.lead_bold.rstrip(": ")
        rest = line.text[len(line.lead_bold) :].lstrip(" :")
        if (
            label
            and rest
            and (
                line.lead_bold.endswith(":")
                or line.text[len(line.lead_bold) :].lstrip().startswith(":")
            )
        ):
            key = heading_key(label)
            if vocab.sublabel_of(current, key) or vocab.section_of(key):
                return label, rest
    colon = line.text.find(":", 2, 62)
    if colon < 0:
        return None
    match = _INLINE_LABEL.match(line.text)
    if match:
        key = heading_key(match.group(1))
        if vocab.sublabel_of(current, key) or (
            not line.in_list and vocab.section_of(key) not in (None, "name", "ignore")
        ):
            return match.group(1), match.group(2)
    return None


# --- the title ---------------------------------------------------------------------------------


def find_title(lines: list[Line], heads: list[Heading | None], vocab: Vocabulary) -> int | None:
    """Index of the page's main heading: its ``<h1>``, else the top heading that names no section.

    Without an ``<h1>``, the first heading (of any kind) that is at least as high as every
    heading after it is the title when it names no section, or when it is strictly higher than
    all of them (a ``<h2>`` above ``<h3>`` sections).
    """
    h1 = next((i for i, line in enumerate(lines) if line.level == 1 and heads[i]), None)
    if h1 is not None:
        return h1
    found = [(i, h) for i, h in enumerate(heads) if h is not None and h.strong]
    largest = _largest_heading(lines, heads, vocab)
    if largest is not None:
        return largest
    # The highest rank (smallest number) among the headings after each one, in one pass.
    later_min: list[int | None] = [None] * len(found)
    lowest: int | None = None
    for position in range(len(found) - 1, -1, -1):
        later_min[position] = lowest
        rank = found[position][1].rank
        lowest = rank if lowest is None else min(lowest, rank)
    for position, (i, head) in enumerate(found):
        later = later_min[position]
        if later is not None and head.rank > later:
            continue
        verdict = classify(head.text, vocab)
        if verdict.section in ("ignore", "navigation"):
            continue
        if verdict.section is None or (later is not None and head.rank < later):
            return i
        return None
    return None


def _largest_heading(
    lines: list[Line], heads: list[Heading | None], vocab: Vocabulary
) -> int | None:
    """The line set in the page's largest font, when one stands out (a ``<font size=4>``
    title among bold table cells), even when it is too long to read as a section heading."""
    sized = [(line.size, i) for i, line in enumerate(lines) if line.hint == "big"]
    if not sized:
        return None
    top = max(size for size, _ in sized)
    tops = [i for size, i in sized if size == top]
    # one line, or one title broken over consecutive lines (a PDF export), stands out
    apart = any(b != a + 1 for a, b in pairwise(tops))
    if apart or (len(sized) > 1 and top <= min(size for size, _ in sized)):
        return None
    index = tops[0]
    verdict = classify(lines[index].text, vocab)
    return index if verdict.section is None or verdict.tier == "cue" else None


# --- the split ---------------------------------------------------------------------------------


class _Splitter:
    __slots__ = (
        "broken", "codes", "current", "dropped", "dropped_chars", "gap", "headings", "intro",
        "link_lists", "noise_words", "preamble", "sections", "slot", "title_stems", "vocab", "wide",
    )  # fmt: skip

    def __init__(self, vocab: Vocabulary, title_stems: frozenset[str]) -> None:
        self.vocab = vocab
        self.title_stems = title_stems
        self.preamble: list[str] = []
        self.intro = Section("intro", "", 0)
        self.broken = False  # the page breaks its paragraphs into lines (a PDF export)
        self.wide = 0  # length of a full line on such a page
        self.gap = 0.0  # the usual distance between two lines of a paragraph there
        self.sections: list[Section] = []
        self.headings: list[str] = []
        self.codes: list[tuple[str, str]] = []
        self.current = Section("preamble", "", 0)
        self.slot = "items"
        self.noise_words = _NOT_CONTENT_WORDS  # words of disclaimers and bylines on the page
        self.link_lists: frozenset[int] = frozenset()  # lists whose every item is a link
        self.dropped = 0
        self.dropped_chars = 0

    def verdict(self, text: str, kicker: str | None) -> Verdict:
        verdict = classify(text, self.vocab).without(self.title_stems, self.vocab)
        if verdict.section is None and kicker:
            lent = classify(kicker, self.vocab)
            if lent.section is not None:
                return replace(lent, tier="kicker")
        return verdict

    def heading(self, head: Heading, kicker: str | None = None) -> None:
        key = heading_key(head.text)
        cur = self.current
        sub = self.vocab.sublabel_of(cur.key, key)
        deeper = head.rank > cur.rank or (head.rank == cur.rank and head.colon)
        if sub is not None and (deeper or head.rank >= LEVEL_LABEL):
            self._sublabel(cur, key, sub)
            return
        if cur.key == "ignore" and head.rank > cur.rank:
            # A question under "Frequently Asked Questions", "Similar codes" under "Popular
            # codes": still chrome.
            return
        under = deeper or head.rank == cur.sub_rank or (not cur.entries and head.rank == cur.rank)
        verdict = self.verdict(head.text, kicker)
        if cur.key == "patient_experience" and under:
            phase = _phase(key)
            names_other = (
                verdict.tier == "phrase"
                and verdict.section not in (None, "patient_experience")
                and head.rank <= cur.rank
            )  # "What happens during the procedure:" after "Patient experience:" is the steps
            if phase is not None and not names_other:
                self._sublabel(cur, key, phase, head.rank)  # "While it's happening", "Later"
                return
        section = verdict.section
        if section is None:
            section = self._by_words(verdict)
        if (
            cur.key == "other"
            and deeper
            and verdict.tier != "phrase"
            and section not in CHROME_KEYS
        ):
            # A label inside a section that names nothing stays in it, as a line.
            cur.entries.append(Entry(head.text, "items", False, 0))
            return
        if section is not None and section == cur.key and deeper:
            self._sublabel(cur, key, self._slot_of(section, verdict))
            return
        if (
            section is not None
            and verdict.tier == "cue"
            and verdict.score < STRONG_CUE
            and head.rank > cur.rank
            and cur.key in SECTION_ORDER
        ):
            self._sublabel(cur, key, "items" if cur.key != "patient_experience" else "notes")
            return
        if section is not None:
            self._open(section, head, verdict)
            return
        if cur.key in SECTION_ORDER and under:
            # An unknown heading deeper than the section's own, or right under it at the same
            # level ("Things that can go wrong" then "Common", "Less common"): a sub-label.
            slot = "items" if cur.key != "patient_experience" else "notes"
            self._sublabel(cur, key, slot, head.rank)
            return
        if cur.key in CHROME_KEYS and deeper:
            return
        self._open("other", head, verdict)

    def _by_words(self, verdict: Verdict) -> str | None:
        """A heading of nothing but the procedure's name (summary) or "Surgery" (steps)."""
        if verdict.tier == "phrase" or any(c.section for c in verdict.cues):
            return None
        all_stems = set(stems(words(verdict.key)))
        vocab = self.vocab
        if all_stems & vocab.event_words and all_stems <= (
            vocab.stopwords | vocab.event_words | self.title_stems
        ):
            return "steps"  # "The operation", "The exam itself", "The laser treatment"
        content = set(verdict.content) - vocab.stopwords
        named = content & self.title_stems
        if (
            self.title_stems
            and (named == content or (len(named) >= 2 and len(content - named) <= 1))
            and named
            and not any(s.key == "summary" for s in self.sections)
        ):
            return "summary"  # "Knee Replacement", "Total Knee Replacement": what it is
        return None

    def _sublabel(self, cur: Section, key: str, slot: str, rank: int = 0) -> None:
        cur.sublabels.append(key)
        self.slot = slot
        if rank == cur.rank:
            cur.sub_rank = rank  # its sibling sub-labels share the section's level

    def _slot_of(self, section: str, verdict: Verdict) -> str:
        if section != "patient_experience":
            return "items"
        return _phase(verdict.key) or "notes"

    def _open(self, key: str, head: Heading, verdict: Verdict | None) -> None:
        tier = verdict.tier if verdict is not None else "phrase"
        self.current = Section(key, head.text, head.rank, tier=tier, verdict=verdict)
        self.sections.append(self.current)
        self.headings.append(heading_key(head.text))
        self.slot = self._slot_of(key, verdict) if verdict is not None else "items"
        if key == "patient_experience" and self.slot == "items":
            self.slot = "notes"

    def content(self, line: Line, text: str) -> None:
        if text[:2] in ("A:", "A.") or text[:7].lower() == "answer:":
            text = _ANSWER.sub("", text)  # the answer of a "Q: ... A: ..." page
            if not text:
                return
        elif not _WORDY.search(text) and not has_marker(text):
            return  # an icon or emoji on a line of its own ("⏱️"), not a bullet
        elif _ENUMERATOR_ONLY.match(text):
            text = "• "  # "Step 1" or "01" on a line of its own: the next line is the item
        cur = self.current
        if cur.key == "preamble":
            self.preamble.append(text)
            if cur.heading != "title":
                return
            cur = self.intro
        if (
            line.link_chars * 10 >= len(text) * 9
            and (not line.in_list or line.group in self.link_lists)
            and len(text.split()) <= _MAX_LINK_WORDS
            and cur.key not in ("similar_codes", "ignore", "navigation")
            and not _CODE_START.search(text)
        ) or _not_content(text, self.noise_words):
            self.dropped += 1  # counted as chrome in the page's report
            self.dropped_chars += len(text)
            return  # "Book online", "Learn more →", a disclaimer, a byline: not content
        item = line.in_list or has_marker(text)
        entries = cur.entries
        if (
            entries
            and entries[-1].item
            and len(entries[-1].text) <= _BULLET_ONLY
            and not clean_item(entries[-1].text)
        ):
            # A bullet on a line of its own (PDF exports): the next line is its text.
            last = entries[-1]
            entries[-1] = replace(last, text=f"{last.text} {text}", links=line.links)
            return
        if (
            entries
            and not line.in_list
            and (not item or entries[-1].item)
            and not has_marker(text)
            and not self._paragraph_break(entries[-1], line)
            and (
                _continues(entries[-1].text, text, line)
                or (self.broken and _runs_on(entries[-1].text, line, self.wide))
            )
        ):
            last = entries[-1]
            joined = last.text[:-1] + text if last.text.endswith("-") else f"{last.text} {text}"
            entries[-1] = replace(
                last, text=joined, link_chars=last.link_chars + line.link_chars, y=line.y
            )
            return
        entries.append(
            Entry(text, self.slot, item, line.group, line.links, len(cur.sublabels),
                  line.link_chars, line.y)
        )  # fmt: skip

    def _paragraph_break(self, last: Entry, line: Line) -> bool:
        """On a page placed line by line, a wider gap than between lines ends a paragraph."""
        if not (self.gap and last.y and line.y):
            return False
        return line.y - last.y > self.gap * _PARAGRAPH_GAP

    def feed(self, line: Line, head: Heading | None, kicker: str | None) -> None:
        cur = self.current
        text = line.text
        inline = _inline_label(line, self.vocab, cur.key) if line.lead_bold or ":" in text else None
        if inline is None and cur.key == "patient_experience" and ":" in text[:40]:
            label, _, rest = text.partition(":")
            phase = _phase(heading_key(label)) if len(label.split()) <= 5 else None
            if phase is not None and _WORDY.search(rest):
                # "During the injection: you feel pressure" labels its own line.
                kept = self.slot
                self.slot = phase
                self.content(line, rest.strip())
                self.slot = kept
                return
        if inline is not None and cur.key != "preamble":
            label, rest = inline
            key = heading_key(label)
            slot = self.vocab.sublabel_of(cur.key, key)
            if (line.in_list or has_marker(text)) and slot not in _LINE_SCOPED_SLOTS - {"skip"}:
                # "Anesthesia: general", "Pain control: tablets" or "Surgical team: two nurses"
                # as a bullet: an item that keeps its label.
                self.content(line, text)
                return
            if slot == "items":
                # "Fasting: nothing after midnight" in preparation: the label stays in the item.
                cur.sublabels.append(key)
                self.slot = "items"
                self.content(line, line.text)
                return
            rank = line.level or (LEVEL_LABEL if not line.bold else LEVEL_STYLED)
            self.heading(Heading(label, max(rank, self.current.rank), True))
            self.content(line, rest)
            if self.slot in _LINE_SCOPED_SLOTS:
                # "After the procedure: ..." on one line labels that line only.
                self.slot = "notes" if self.current.key == "patient_experience" else "items"
            return
        if inline is not None and self.current.key == "preamble":
            label, rest = inline
            if self.vocab.section_of(heading_key(label)) not in (None, "name", "ignore"):
                self.heading(Heading(label, LEVEL_LABEL, True))
                self.content(line, rest)
                return
        if (
            head is None
            and len(text) <= _MAX_PLAIN_SUBLABEL
            and not line.in_list
            and cur.key in self.vocab.sublabels
            and text[-1:] != "."
        ):
            slot = self.vocab.sublabel_of(cur.key, heading_key(text))
            if slot is not None:
                # A sub-label on a plain line of its own ("During", "Rare risks").
                self._sublabel(cur, heading_key(line.text), slot)
                return
        if head is None:
            self.content(line, line.text)
            return
        self.heading(head, kicker)


def _runs_on(previous: str, line: Line, wide: int) -> bool:
    """On a page broken into lines, a line whose predecessor filled the width continues it."""
    if line.tag not in ("div", "p", "span", "td") or not previous or _CODE_START.match(line.text):
        return False
    return previous[-1:] not in ".!?:;" or len(previous) >= wide


#: A gap this many times the usual line distance separates two paragraphs.
_PARAGRAPH_GAP = 1.4


def _line_gap(lines: list[Line]) -> float:
    """The usual vertical distance between consecutive lines on a page placed line by line."""
    gaps = sorted(b.y - a.y for a, b in pairwise(lines) if a.y and b.y and 0 < b.y - a.y < _MAX_GAP)
    return gaps[len(gaps) // 2] if len(gaps) >= _MIN_GAPS else 0.0


_MAX_GAP = 200.0
_MIN_GAPS = 8


def _broken_lines(lines: list[Line], heads: list[Heading | None]) -> int:
    """The length of a full line when the page breaks its paragraphs into lines, else 0.

    Web pages end their paragraphs with punctuation; a PDF or print export shows one visual
    line per element, and many of them stop mid-sentence.
    """
    texts = [
        line.text for line, head in zip(lines, heads, strict=True)
        if head is None and not line.in_list and not has_marker(line.text)
    ]  # fmt: skip
    long = [t for t in texts if len(t) >= 25]
    if len(long) < 8:
        return 0
    open_ended = sum(1 for t in long if t[-1:] not in '.!?:;)"”’')
    lower = sum(1 for t in texts if t[:1].islower())
    if open_ended * 10 < len(long) * 3 or lower * 100 < len(texts) * 15:
        return 0
    widths = sorted(len(t) for t in long)
    return int(widths[int(len(widths) * 0.9)] * 0.85)


def _continues(previous: str, text: str, line: Line) -> bool:
    """A line that carries on the sentence of the line before (a PDF line break)."""
    if line.tag not in ("div", "p", "span", "td", "body", "section", "article"):
        return False
    first = text[:1]
    if previous.endswith("-") and previous[-2:-1].isalpha() and first.islower():
        return True
    if previous[-1:] == "," and (first.islower() or first.isdigit()):
        return True
    return previous[-1:] not in '.!?:;)"”’' and first.islower()


def _kickers(lines: list[Line], heads: list[Heading | None]) -> dict[int, str]:
    """Short lines just above a heading that label it ("Recovery & results" over "What to expect").

    A kicker is not a list item, has at most five words and no closing punctuation, follows a
    line of another kind (so the last of a run of short items is not taken for one), and is
    directly followed by a heading.
    """
    found: dict[int, str] = {}
    for i in range(1, len(lines) - 1):
        line = lines[i]
        if heads[i] is not None or heads[i + 1] is None or line.in_list or line.link_chars:
            continue
        text = line.text
        if (
            len(text.split()) > 5
            or text[-1:] in '.!?:;,"”)'
            or has_marker(text)
            or any(c.isdigit() for c in text)
        ):
            continue
        prev = lines[i - 1]
        if heads[i - 1] is not None:
            continue  # the only line under a heading is its content, not a kicker
        if prev.group == line.group:
            continue  # the last line of a block of lines (a <br> list), not a label above it
        if not prev.in_list and len(prev.text.split()) <= 5:
            continue
        found[i] = text
    return found


def split_sections(
    lines: list[Line], vocab: Vocabulary, title_words: str | None = None
) -> SplitPage:
    """Split the lines of a page into its title, preamble and sections.

    ``title_words`` is a fallback title (the document's ``<title>``) whose words help classify
    headings when the page has no title heading.
    """
    small = _mark_large(lines)
    heads = [heading_of(line, vocab) for line in lines]
    _row_labels(lines, heads, vocab)
    title_at = find_title(lines, heads, vocab)
    title = lines[title_at].text if title_at is not None else None
    title_end = title_at
    while (
        title_at is not None
        and title is not None
        and title_end is not None
        and title_end + 1 < len(lines)
        and lines[title_end + 1].hint == "big"
        and lines[title_end + 1].size == lines[title_at].size
        and title[-1:] not in ".!?:"
    ):
        # A title broken over two lines of the same large font (a PDF export).
        title_end += 1
        title = f"{title} {lines[title_end].text}"
    title_stems = _title_stems(title or title_words or "", vocab)
    kickers = _kickers(lines, heads)
    as_items = _heading_runs(lines, heads, vocab)
    splitter = _Splitter(vocab, title_stems)
    splitter.noise_words = _not_content_words(lines)
    splitter.link_lists = _link_lists(lines)
    splitter.wide = _broken_lines(lines, heads)
    splitter.broken = splitter.wide > 0
    splitter.gap = _line_gap(lines) if splitter.broken else 0.0
    skip = _header_rows(lines)
    metadata, after_facts = _metadata_rows(lines, heads, vocab)
    facts_from = set(after_facts.values())
    sections_before: dict[int, int] = {}  # sections opened before each facts table
    pre_title: list[str] = []
    for i, line in enumerate(lines):
        if title_at is not None and title_end is not None and title_at <= i <= title_end:
            splitter.current = Section("preamble", "title", 0)
            continue
        if i in skip or _FURNITURE.match(line.text):
            continue
        if (
            title is not None
            and heads[i] is not None
            and i > (title_end or 0)
            and heading_key(line.text) == heading_key(title)
        ):
            splitter.preamble.append(line.text)  # the title again (an infobox's own title)
            continue
        if i in facts_from:
            sections_before[i] = sum(1 for s in splitter.sections if s.key in SECTION_ORDER)
        if i in metadata:
            splitter.preamble.append(line.text)  # "BETOS" | "I2A": a fact about the code
            continue
        if i in after_facts and heads[i] is None and not sections_before.get(after_facts[i]):
            # The lead paragraph after an infobox is the page's introduction, not the
            # infobox's last row ("Duration" | "15-30 minutes").
            splitter.current = Section("preamble", "title", 0)
        if (title_at is not None and i < title_at) or line.size in small:
            # The site's header, badges and breadcrumbs; small print (running headers and
            # footers of a printed document): read for the code, never section content.
            splitter.preamble.append(line.text)
            if title_at is not None and i < title_at:
                pre_title.append(line.text)
            continue
        following = lines[i + 1].text if i + 1 < len(lines) else ""
        if (
            following
            and len(following) < 40
            and (BARE_CODE.match(following) or CODE_BADGE.match(following))
            and splitter.current.key != "similar_codes"
            and is_code_label(line.text)
        ):
            # "CPT code:" | "28285" in two cells: the page's code, not content.
            splitter.codes.append((line.text, lines[i + 1].text.strip()))
            skip.add(i + 1)
            continue
        label, colon, value = line.text.partition(":")
        if (
            colon
            and len(value) < 20
            and splitter.current.key not in ("similar_codes", "preamble")
            and BARE_CODE.match(value)
            and is_code_label(label)
        ):
            splitter.codes.append((label, value.strip()))  # "Code: 45378" in a box of facts
            continue
        badge = (
            CODE_BADGE.match(line.text)
            if line.text[0] in "CcHhIi" and len(line.text) < 40
            else None
        )
        if (
            badge is not None
            and badge.end() >= len(line.text.rstrip(" .)"))
            and splitter.current.key not in ("similar_codes", "ignore", "preamble")
        ):
            splitter.codes.append(("", line.text))  # "CPT 52000" in a box of its own
            continue
        if i in kickers and splitter.current.key != "preamble":
            continue
        head = heads[i]
        if (
            head is not None
            and title_end is not None
            and i == title_end + 1
            and not line.level
            and i + 1 < len(lines)
            and heads[i + 1] is None
            and classify(head.text, vocab).score < STRONG_CUE
            and vocab.section_of(heading_key(head.text)) is None
        ):
            # A styled line right under the title ("Total and partial knee arthroplasty at
            # Mount Private Hospital"): the page's subtitle, not a section.
            splitter.preamble.append(line.text)
            continue
        if (
            i in as_items
            and splitter.current.key in SECTION_ORDER
            and (head is not None and head.rank > splitter.current.rank)
        ):
            # One of several headings in a row with nothing under them ("Pediatric ENT
            # surgeon", "Recovery room nurse" as icon-box titles): items of the section;
            # titles of cards that link to other pages are not.
            if not _link_only(line):
                splitter.content(replace(line, in_list=True), line.text)
            continue
        splitter.feed(line, head, kickers.get(i - 1))
    page = SplitPage(
        title, splitter.preamble, splitter.sections, splitter.headings, splitter.intro.entries,
        splitter.codes, pre_title, (splitter.dropped, splitter.dropped_chars),
    )  # fmt: skip
    _settle(page, vocab)
    return page


#: A line whose font is this much larger than the page's body text reads as a heading.
LARGE_RATIO = 1.15


#: A line whose font is this much smaller than the body text is small print.
SMALL_RATIO = 0.8


def _mark_large(lines: list[Line]) -> frozenset[float]:
    """Hint "big" on lines set in a font larger than the body text (the size most text has).

    Sizes are what the page states (inline styles, CSS classes, ``<font size>``); a page that
    states none for most of its text has body text of unknown size, and then only lines of
    at least BIG_PX count as large. Returns the sizes of small print (below SMALL_RATIO of a
    known body size).
    """
    weights: dict[float, int] = {}
    for line in lines:
        weights[line.size] = weights.get(line.size, 0) + len(line.text)
    if len(weights) < 2:
        return frozenset()
    body = max(weights, key=weights.__getitem__)
    limit = body * LARGE_RATIO if body else BIG_PX
    for line in lines:
        if line.size >= limit and not line.hint and not line.in_list:
            line.hint = "big"
    return frozenset(size for size in weights if 0 < size < body * SMALL_RATIO)


def _row_labels(lines: list[Line], heads: list[Heading | None], vocab: Vocabulary) -> None:
    """Plain label cells of a two-column table of facts ("Hospital stay" | "1 to 3 nights",
    "Anaesthetic" | "General or spinal"): labels of the cells beside them, as a bold or
    ``<th>`` label would be. A run of table cells is read as label/value pairs when every
    first cell is short and at least half of them name fields of the record (two or more
    different ones: a table of risks is not a table of facts)."""
    i = 0
    while i < len(lines):
        if lines[i].tag != "td":
            i += 1
            continue
        j = i
        while (
            j < len(lines)
            and lines[j].tag == "td"
            and heads[j] is None
            and (j == i or lines[j].group != lines[j - 1].group)  # one line per cell
        ):
            j += 1
        if j < len(lines) and j > i and lines[j].group == lines[j - 1].group:
            j -= 1  # the last cell holds more lines: not a cell of one value
        cells = range(i, j)
        labels = cells[0::2]
        if (
            len(cells) >= 4
            and len(cells) % 2 == 0
            and all(
                len(lines[k].text.split()) <= _MAX_LABEL_WORDS
                and not _SENTENCE_END.search(lines[k].text)
                for k in labels
            )
        ):
            named = {
                k: section
                for k in labels
                if (section := classify(lines[k].text, vocab).section) in _FACT_FIELDS
            }
            values_named = sum(
                1 for k in cells[1::2] if classify(lines[k].text, vocab).section is not None
            )  # a value reads as a value, not as another label ("Operating room nurse")
            if (
                len(named) * 2 >= len(labels)
                and len(set(named.values())) >= 2
                and values_named * 4 <= len(labels)
            ):
                for k in labels:
                    text = lines[k].text
                    heads[k] = Heading(text.rstrip(":"), LEVEL_LABEL, text.endswith(":"))
        i = max(j, i + 1)


def _title_stems(title: str, vocab: Vocabulary) -> frozenset[str]:
    return frozenset(s for s in stems(words(title.lower())) if s not in vocab.stopwords)


#: Label/value rows in a row before they read as a table of facts.
_FACT_ROWS = 3
_FACT_WORDS = 8


def _metadata_rows(
    lines: list[Line], heads: list[Heading | None], vocab: Vocabulary
) -> tuple[set[int], dict[int, int]]:
    """Rows of a table of facts about the code ("Global period" | "010 days", "Status" |
    "Active", an infobox's "Specialty" | "Hepatology"): label and value lines that are
    metadata, not sections; and the lines just after each such table.

    A run of at least three short label/value pairs is a facts table. A row whose label
    plainly names a field of the record ("Time needed", "Duration") stays a section; every
    other row is metadata. The content after the table is not the last row's: the caller
    starts afresh there.
    """
    found: set[int] = set()
    after: dict[int, int] = {}
    i = 0
    while i < len(lines) - 1:
        run: list[tuple[int, Heading]] = []
        j = i
        while j + 1 < len(lines):
            head = heads[j]
            if (
                head is None
                or heads[j + 1] is not None
                or lines[j].level  # an <h2> over a one-line section is a section, not a fact
                or lines[j + 1].in_list
                or len(lines[j + 1].text.split()) > _FACT_WORDS
                or len(head.text.split()) > _FACT_WORDS
            ):
                break
            run.append((j, head))
            j += 2
        if len(run) >= _FACT_ROWS:
            verdicts = [(k, classify(head.text, vocab)) for k, head in run]
            if sum(1 for _, verdict in verdicts if _names_field(verdict)) * 2 <= len(run):
                # Mostly facts: the rows that name a field stay sections ("Duration" in an
                # infobox); a table of mostly fields ("Time needed", "Where") is content.
                for k, verdict in verdicts:
                    if verdict.section not in _FACT_FIELDS:
                        found.update((k, k + 1))
                after[run[-1][0] + 2] = run[0][0]
        i = j + 1 if run else i + 1
    return found, after


def _names_field(verdict: Verdict) -> bool:
    """True when a label plainly names a field of the record (not the similar codes)."""
    return verdict.section in _FACT_FIELDS and (
        verdict.tier == "phrase" or verdict.score >= STRONG_CUE
    )


_FACT_FIELDS = frozenset(RECORD_SECTIONS) - {"similar_codes"} | {"anesthesia_info"}


def _heading_runs(lines: list[Line], heads: list[Heading | None], vocab: Vocabulary) -> set[int]:
    """Headings of one level, two or more in a row with no text under any of them, none a
    known heading: the item titles of a card or icon-box list, not sections."""
    found: set[int] = set()
    ranks = [head.rank if head is not None else 0 for head in heads]
    i = 0
    while i < len(lines):
        if not ranks[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(lines) and ranks[j + 1] == ranks[i]:
            j += 1
        ends = j + 1 >= len(lines) or 0 < ranks[j + 1] < ranks[i]
        run = range(i, j + 1 if ends else j)
        if len(run) >= 2 and not any(vocab.section_of(heading_key(lines[k].text)) for k in run):
            found.update(run)
        i = j + 1
    return found


def _header_rows(lines: list[Line]) -> set[int]:
    """Runs of two or more ``<th>`` lines: the column headers of a table, never content."""
    found: set[int] = set()
    run: list[int] = []
    for i, line in enumerate([*lines, None]):
        if line is not None and line.tag == "th":
            run.append(i)
            continue
        if len(run) >= 2:
            found.update(run)
        run = []
    return found


# --- settling sections by their content ------------------------------------------------------

_CODE_TOKEN = re.compile(r"\b(?:\d{4}[0-9FTUM]|[A-Z]\d{4}|[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)\b")
_ROLE_WORD = re.compile(
    r"\b(?:surgeon|anaesthetist|anesthetist|anesthesiologist|anaesthesiologist|nurse|technician|"
    r"technologist|radiologist|doctor|physician|specialist|consultant|therapist|assistant|"
    r"sonographer|radiographer|team)s?\b",
    re.IGNORECASE,
)
_DURATION_WORD = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:-|–|to)?\s*\d*\s*(?:minutes?|mins?|hours?|hrs?)\b"
    r"|\b(?:an?|one|two|half an?)\s+(?:hour|minute)",
    re.IGNORECASE,
)
_LINK_DENSE = 0.7
#: A line that starts with a code ("33206 – Insertion of..."): a new entry, never a run-on.
_CODE_START = re.compile(rf"^(?=\S*\d){CODE_FORMAT}\b")
_CODE_STEMS = frozenset(stems(["code", "codes", "coding", "cpt", "hcpcs", "icd"]))
_FEEL = re.compile(
    r"\b(?:feel|feels|feeling|felt|sensation|pressure|discomfort|uncomfortable|sore|soreness|"
    r"sting|stinging|hurt|hurts|painful|pain|numb|numbness|awake|asleep|drowsy|relax|relaxed|"
    r"tingl\w*|pinch|tender|ache|aching|cramp\w*|notice|groggy|sleepy|bloat\w*|warm|cold)\b",
    re.IGNORECASE,
)
_ACTION = re.compile(
    r"^(?:the|a|an|your)\s+(?:\w+\s+){0,2}(?:is|are)\s+(?:\w+ly\s+)?\w+ed\b"
    r"|^(?:the|your)\s+(?:doctor|surgeon|nurse|radiologist|consultant|specialist|team|"
    r"technician|technologist|sonographer|endoscopist|urologist|anaesthetist|anesthesiologist)s?\b",
    re.IGNORECASE,
)
_ANESTHESIA_WORD = re.compile(
    r"\b(?:an(?:a)?esthe\w+|sedat\w+|numb\w*|nerve\s+block|spinal\s+injection|asleep"
    r"|epidural|lidocaine|entonox|gas\s+and\s+air)\b",
    re.IGNORECASE,
)
_INSTRUCTION = re.compile(
    r"^(?:avoid|keep|take|call|rest|do not|don't|don’t|return|resume|wear|use|drink|eat|walk|"
    r"change|contact|wait|apply|remove|shower|bathe|follow|ask|arrange|plan|stop|try|get|go)\b"
    r"|\byou (?:can|should|may|will be able to|must) (?:return|go|drive|resume|shower|eat)\b",
    re.IGNORECASE,
)


def _shape(section: Section) -> set[str]:
    """Sections the content of ``section`` looks like (cheap tests on its text)."""
    texts = [e.text for e in section.entries]
    if not texts:
        return set()
    joined = " ".join(texts)
    shapes: set[str] = set()
    if sum(1 for t in texts if _CODE_TOKEN.search(t)) * 2 >= len(texts):
        shapes.add("similar_codes")
    if sum(1 for t in texts if _ROLE_WORD.search(t)) * 2 > len(texts) and len(joined) < 600:
        shapes.add("personnel")
    if len(joined) < 400 and _DURATION_WORD.search(joined):
        shapes.add("duration")
    items = [e for e in section.entries if e.item]
    if len(items) >= 3 and any(has_marker(e.text) for e in items[:3]):
        shapes.add("steps")
    if sum(1 for t in texts if _ACTION.search(t)) * 2 >= len(texts):
        shapes.add("steps")
    if sum(1 for t in texts if _FEEL.search(t)) * 2 >= len(texts):
        shapes.add("patient_experience")
    if sum(1 for t in texts if _INSTRUCTION.search(t)) * 2 >= len(texts):
        shapes.add("recovery")
    if sum(1 for t in texts if _ANESTHESIA_WORD.search(t)) * 3 >= len(texts) * 2:
        shapes.add("anesthesia_info")
    return shapes


#: Stems of a heading that only says "related" ("Related", "See also", "Related pages").
_BARE_RELATED = frozenset(stems(["related", "see", "also", "pages", "page", "more"]))


def _link_dense(section: Section) -> bool:
    chars = sum(len(e.text) for e in section.entries)
    links = sum(e.link_chars for e in section.entries)
    return chars > 0 and links >= _LINK_DENSE * chars and any(e.links for e in section.entries)


def _settle(page: SplitPage, vocab: Vocabulary) -> None:
    """Settle close calls and implausible verdicts with what each section's content looks like."""
    for section in page.sections:
        verdict = section.verdict
        if (
            section.key == "similar_codes"
            and not _CODE_STEMS & set(stems(words(section.heading.lower())))
            and "similar_codes" not in _shape(section)
        ):
            # "Related information" over article links: no code, so not the similar codes. A
            # bare "Related" / "See also" over no code is a box of other articles.
            bare = set(stems(words(section.heading.lower()))) <= _BARE_RELATED
            chrome = bare or _link_dense(section) or not section.entries
            section.key = "ignore" if chrome else "other"
            continue
        if section.key == "other":
            if _link_dense(section):
                section.key = "ignore"
                continue
            shapes = _shape(section) & {"similar_codes", "personnel"}
            if len(shapes) == 1 and verdict is not None and _codes_or_people(verdict, shapes):
                section.key = shapes.pop()
                section.tier = "content"
            continue
        if (
            section.key in ("recovery", "patient_experience")
            and verdict is not None
            and verdict.tier == "cue"
            and verdict.score < STRONG_CUE
            and "anesthesia_info" in _shape(section)
        ):
            # "Pain relief" over two paragraphs about the anaesthetic: the anesthesia section.
            section.key = "anesthesia_info"
            section.tier = "content"
            continue
        if verdict is None or not verdict.ambiguous or verdict.runner_up is None:
            continue
        shapes = _shape(section)
        if verdict.runner_up in shapes and section.key not in shapes:
            section.key = verdict.runner_up
            section.tier = "content"


def _codes_or_people(verdict: Verdict, shapes: set[str]) -> bool:
    """Content alone decides only where the heading does not contradict it."""
    return not verdict.cues


# --- lost headings -----------------------------------------------------------------------------

_CUES: dict[str, re.Pattern[str]] = {
    "duration": re.compile(
        r"\b(takes?|lasts?|last|duration|length)\b.*\b(minutes?|mins?|hours?|hrs?|seconds?)\b"
        r"|\b(minutes?|hours?)\b.*\b(to complete|long)\b",
        re.IGNORECASE,
    ),
    "setting": re.compile(
        r"\b(performed|done|carried out|takes place|conducted)\b.*\b(in|at)\b.*"
        r"\b(hospital|clinic|office|center|centre|facility|setting|room|suite|lab|unit)\b",
        re.IGNORECASE,
    ),
    "purpose": re.compile(
        r"\b(goal|purpose|aim|objective|is (done|performed|used) to|helps? to|in order to)\b",
        re.IGNORECASE,
    ),
    "summary": re.compile(r"\b(is a|is an|involves|refers to|procedure (in|where|that))\b", re.I),
}


def _present(page: SplitPage) -> set[str]:
    return {s.key for s in page.sections}


def repair_lost_headings(page: SplitPage) -> None:
    """Move text whose heading was lost into the section it belongs to.

    When a heading line is missing, its text stays at the end of the previous section. For each
    section followed (in the reference order) by sections absent from the page, trailing content
    that does not fit the section is moved to the first absent section it fits: list items after
    prose go to the next list section; prose after list items goes to the next prose section
    whose cue it matches; a second, separate list goes to the next list section.
    Only pages that follow the reference site's order (at least four of its sections, in its
    order) are repaired: elsewhere a section's own trailing prose is its own.
    """
    present = _present(page)
    if not _reference_order(page):
        return
    if "name" in present and "summary" not in present:
        _adopt_from(page, "name", ["summary"], present)
    for section in list(page.sections):
        if section.key not in SECTION_ORDER:
            continue
        position = SECTION_ORDER.index(section.key)
        missing: list[str] = []
        for key in SECTION_ORDER[position + 1 :]:
            if key in present:
                break
            missing.append(key)
        if missing:
            _adopt_from(page, section.key, missing, present, section)


#: Sections of the reference site's skeleton a page needs (by phrase, in order) to be repaired.
_REFERENCE_MIN = 6


def _reference_order(page: SplitPage) -> bool:
    """True when the page's sections follow the reference site's order."""
    keys = [s.key for s in page.sections if s.key in SECTION_ORDER and s.tier == "phrase"]
    if len(set(keys)) < _REFERENCE_MIN:
        return False
    positions = [SECTION_ORDER.index(k) for k in keys]
    return all(a <= b for a, b in pairwise(positions))


def _adopt_from(
    page: SplitPage,
    key: str,
    missing: list[str],
    present: set[str],
    section: Section | None = None,
) -> None:
    source = section or next(s for s in page.sections if s.key == key)
    entries = source.entries
    if not entries:
        return
    cut = _cut_point(source)
    if cut is None:
        return
    moved = entries[cut:]
    target = _target_for(moved, missing, source.key)
    if target is None:
        return
    del entries[cut:]
    slot = "notes" if target == "patient_experience" else "items"
    new = Section(target, "", source.rank, [replace(e, slot=slot) for e in moved], tier="lost")
    page.sections.insert(page.sections.index(source) + 1, new)
    present.add(target)
    if target in missing[:-1]:
        # What was moved may itself hold the text of a later lost section.
        rest = missing[missing.index(target) + 1 :]
        _adopt_from(page, target, rest, present, new)


def _cut_point(section: Section) -> int | None:
    """Where the content that does not belong to ``section`` starts, or None."""
    entries = section.entries
    if section.key == "name":
        # The restated title and "Common Name(s):" lines are the name; prose after it is not.
        for i, entry in enumerate(entries):
            if i and len(entry.text) > 120:
                return i
        return None
    if section.key in PROSE_SECTIONS:
        for i, entry in enumerate(entries):
            if entry.item:
                return i
        if section.key in ("duration", "setting") and len(entries) > 1:
            return 1
        if len(entries) > 1:
            return len(entries) - 1
        return None
    # List section: prose after items, or a second separate list.
    seen_items = False
    first_group = None
    first_size = 0
    for i, entry in enumerate(entries):
        if entry.item:
            if first_group is None:
                first_group = entry.group
            if entry.group == first_group:
                first_size += 1
            elif (
                seen_items
                and first_size >= 2
                and entries[i - 1].group != entry.group
                and entry.part == entries[i - 1].part
            ):
                # A second list with no sub-label of its own: its heading was lost.
                return i
            seen_items = True
        elif seen_items:
            return i
    return None


def _target_for(moved: list[Entry], missing: list[str], source: str) -> str | None:
    """The first absent section the moved entries fit."""
    first = moved[0]
    text = first.text
    for key in missing:
        if key in ("similar_codes", "patient_experience"):
            continue
        if key in PROSE_SECTIONS:
            if first.item:
                continue
            cue = _CUES.get(key)
            if cue is not None and cue.search(text):
                return key
            continue
        if first.item or (source in PROSE_SECTIONS and key == "indications"):
            return key
    return None


_HEADING_MARKS = re.compile(r"^\s*\[\s*edit\s*\]\s*|\s*\[\s*edit\s*\]\s*$|[\s¶§#]+$|^#{1,6}\s*")


def clean_heading(text: str) -> str:
    """A heading as shown, without edit links, permalink marks, Markdown or a trailing colon."""
    text = _HEADING_MARKS.sub("", clean_item(text)).strip()
    return text.rstrip(":").strip() or text


def section_text(section: Section) -> str:
    """The lines of a section as one text: bullets removed, one line each."""
    return "\n".join(t for t in (clean_item(e.text) for e in section.entries) if t)


def intro_entries(page: SplitPage) -> list[str]:
    """Prose between the title and the first section: the summary of a page that has none."""
    out: list[str] = []
    for entry in page.intro:
        text = entry.text
        if entry.link_chars * 2 > len(text) or _BYLINE.match(text):
            continue
        if entry.item:
            out.append(text)
            continue
        if len(text.split()) >= 6 and text[-1:] in ".!?":
            out.append(text)
    return out


__all__ = [
    "LIST_SECTIONS",
    "PROSE_SECTIONS",
    "SECTION_ORDER",
    "Entry",
    "Heading",
    "Section",
    "SplitPage",
    "classify_key",
    "clean_heading",
    "heading_of",
    "intro_entries",
    "repair_lost_headings",
    "section_text",
    "split_sections",
]
