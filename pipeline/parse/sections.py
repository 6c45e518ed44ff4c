"""Lines -> typed sections, driven by what the page says rather than by one site's CSS.

A line is a *heading* when its markup says so (``<h1>``-``<h6>``, ``<dt>``, a paragraph that is
all bold, ``<font><b>``), when its text says so (a markdown ``#####`` line, a short upper-case
line, a short line ending in a colon) or when it is, word for word, a known heading. Known
headings open sections; sub-labels ("Steps Involved:", "During the procedure:") route the items
that follow to a slot inside the current section; unknown headings become sub-labels when they
are deeper than the current section's heading and open an ignored section otherwise.

After the split, :func:`repair_lost_headings` moves text whose heading line was lost on the page
into the section it belongs to, using the reference site's section order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from pipeline.normalize.text import has_marker
from pipeline.parse.blocks import HEADING_TAGS, Line
from pipeline.parse.vocabulary import Vocabulary, heading_key

#: Content sections of a procedure page, in the reference site's order.
SECTION_ORDER: tuple[str, ...] = (
    "summary",
    "purpose",
    "indications",
    "preparation",
    "steps",
    "duration",
    "setting",
    "personnel",
    "risks",
    "benefits",
    "recovery",
    "alternatives",
    "patient_experience",
    "similar_codes",
)
PROSE_SECTIONS: frozenset[str] = frozenset({"summary", "purpose", "duration", "setting"})
LIST_SECTIONS: frozenset[str] = frozenset(SECTION_ORDER) - PROSE_SECTIONS
#: Sections whose content never reaches the record.
DROPPED: frozenset[str] = frozenset(
    {"preamble", "name", "ignore", "navigation", "unknown", "condition"}
)

# Ranks: a smaller rank is a higher-level heading.
RANK_DT = 4
RANK_STYLED = 5  # bold paragraph, upper case line, a known heading in plain text
RANK_LABEL = 7  # "Something:" on a line of its own

_MARKDOWN = re.compile(r"^(#{1,6})\s*(\S.*)$")
_THREE_LETTERS = re.compile(r"[A-Z][^A-Z]*[A-Z][^A-Z]*[A-Z]")
_CAPS_OK = re.compile(r"^[A-Z0-9 ,&/()'’\-:?.]+$")
_INLINE_LABEL = re.compile(r"^([^:.!?]{2,60}?)\s*:\s+(\S.*)$")
_SENTENCE_END = re.compile(r"[.!]$")
_MAX_HEADING = 100
#: Slots an inline label ("During the procedure: ...") opens for its own line only.
_LINE_SCOPED_SLOTS = frozenset({"during", "after", "skip"})


@dataclass(slots=True)
class Entry:
    """One piece of section content."""

    text: str
    slot: str
    item: bool
    group: int
    links: list[tuple[str, str]] = field(default_factory=list)
    part: int = 0  # how many sub-labels of its section came before it


@dataclass(slots=True)
class Section:
    """The content under one heading."""

    key: str
    heading: str
    rank: int
    entries: list[Entry] = field(default_factory=list)
    sublabels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SplitPage:
    """The result of splitting a page: title, the lines before the first section, sections."""

    title: str | None
    preamble: list[str]
    sections: list[Section]
    headings: list[str]

    def get(self, key: str) -> list[Section]:
        return [s for s in self.sections if s.key == key]


@dataclass(slots=True)
class _Heading:
    text: str
    rank: int
    colon: bool


def _heading_of(line: Line, vocab: Vocabulary) -> _Heading | None:
    """The heading ``line`` is, or None for content."""
    text = line.text
    rank = HEADING_TAGS.get(line.tag)
    if rank is not None:
        return _Heading(text, rank, text.endswith(":"))
    if len(text) > _MAX_HEADING:
        return None
    md = _MARKDOWN.match(text) if text[0] == "#" else None
    if md:
        return _Heading(md.group(2), len(md.group(1)), text.endswith(":"))
    colon = text.endswith(":")
    if line.tag == "dt":
        return _Heading(text, RANK_DT, colon)
    if line.tag == "li" or line.in_list:
        return None
    if line.bold and not _SENTENCE_END.search(text):
        return _Heading(text, RANK_STYLED, colon)
    if text.startswith("**") and text.endswith(("**", "**:")):
        return _Heading(text.strip("*: "), RANK_STYLED, colon)
    if len(text) <= 60 and text.isupper() and _CAPS_OK.match(text) and _THREE_LETTERS.search(text):
        return _Heading(text, RANK_STYLED, colon)
    if colon and len(text) <= 80 and not has_marker(text):
        return _Heading(text[:-1], RANK_LABEL, True)
    key = heading_key(text)
    if len(text) <= 60 and vocab.section_of(key) is not None:
        return _Heading(text, RANK_STYLED, colon)
    return None


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


class _Splitter:
    __slots__ = ("current", "headings", "preamble", "sections", "slot", "title", "vocab")

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.title: str | None = None
        self.preamble: list[str] = []
        self.sections: list[Section] = []
        self.headings: list[str] = []
        self.current = Section("preamble", "", 0)
        self.slot = "items"

    def heading(self, head: _Heading) -> None:
        key = heading_key(head.text)
        self.headings.append(key)
        cur = self.current
        sub = self.vocab.sublabel_of(cur.key, key)
        deeper = head.rank > cur.rank or (head.rank == cur.rank and head.colon)
        if sub is not None and (deeper or head.rank >= RANK_LABEL):
            self.slot = sub
            cur.sublabels.append(key)
            return
        if cur.key == "ignore" and head.rank > cur.rank:
            # A question under "Frequently Asked Questions", "Similar codes" under "Popular
            # codes": still chrome.
            return
        section = self.vocab.section_of(key)
        if section is not None:
            self._open(section, head)
            return
        if cur.key in DROPPED or head.rank <= cur.rank:
            self._open("unknown", head)
            return
        # An unknown heading deeper than the section's own: a sub-label of it.
        cur.sublabels.append(key)
        self.slot = "items" if cur.key != "patient_experience" else "notes"

    def _open(self, key: str, head: _Heading) -> None:
        self.current = Section(key, head.text, head.rank)
        self.sections.append(self.current)
        self.slot = "notes" if key == "patient_experience" else "items"

    def content(self, line: Line, text: str) -> None:
        cur = self.current
        if cur.key == "preamble":
            self.preamble.append(text)
            return
        cur.entries.append(
            Entry(
                text,
                self.slot,
                line.in_list or has_marker(text),
                line.group,
                line.links,
                len(cur.sublabels),
            )
        )

    def feed(self, line: Line) -> None:
        if self.title is None and line.tag == "h1":
            self.title = line.text
            return
        inline = _inline_label(line, self.vocab, self.current.key)
        if inline is not None:
            label, rest = inline
            rank = HEADING_TAGS.get(line.tag, RANK_LABEL if not line.bold else RANK_STYLED)
            self.heading(_Heading(label, max(rank, self.current.rank), True))
            self.content(line, rest)
            if self.slot in _LINE_SCOPED_SLOTS:
                # "After the procedure: ..." on one line labels that line only.
                self.slot = "notes" if self.current.key == "patient_experience" else "items"
            return
        head = _heading_of(line, self.vocab)
        if head is None:
            self.content(line, line.text)
            return
        self.heading(head)


def split_sections(lines: list[Line], vocab: Vocabulary) -> SplitPage:
    """Split the lines of a page into its title, preamble and sections."""
    splitter = _Splitter(vocab)
    for line in lines:
        splitter.feed(line)
    return SplitPage(splitter.title, splitter.preamble, splitter.sections, splitter.headings)


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
    """
    present = _present(page)
    if not present & set(SECTION_ORDER):
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
    new = Section(target, "", source.rank, [replace(e, slot=slot) for e in moved])
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
    for i, entry in enumerate(entries):
        if entry.item:
            if first_group is None:
                first_group = entry.group
            elif (
                seen_items
                and entry.group != first_group
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
