"""Text clean-up shared by the parser and the normalizers: white space, bullets, enumerators."""

from __future__ import annotations

import re

#: A leading bullet or enumerator: "•", "-", "*", "·", "–", "—", "▪", "○", "1.", "1)", "(1)",
#: "a.", "a)", "Step 1:", "Step 1 -", "i." - with the white space that follows it.
_MARKER = re.compile(
    r"""^(?:
        [•●◦▪▫■□○·‣⁃∙\-–—*✓✔☐☑➢➤►▸→§\uf0b7\uf0a7\uf076\uf0d8\uf0fc\uf0a8]+\s*   # bullet glyphs
      | (?:step|phase|stage)\s+\d{1,3}\s*[:.)\-–—]\s*   # "Step 1:", "Step 2 -"
      | \(?\d{1,3}[.)]\s+(?!\d)                  # "1. ", "2) ", "(3) " (not "1. 5 mg")
      | \(?\d{1,3}[.)](?=[A-Za-z])              # "1.Do this"
      | \(?[a-hj-z][.)]\s+(?=[A-Z])             # "a. ", "b) " before a capital
      | (?:i{1,3}|iv|v|vi{1,3}|ix|x)[.)]\s+(?=[A-Z])  # roman numerals "ii. "
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_MARKER_FIRST = frozenset("•●◦▪▫■□○·‣⁃∙-–—*(✓✔☐☑➢➤►▸→§\uf0b7\uf0a7\uf076\uf0d8\uf0fc\uf0a8")
_STEP_WORDS = frozenset({"step", "phas", "stag"})
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s*")
_MARKDOWN_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")


#: Characters a browser does not show: zero-width spaces and joiners, soft hyphens, BOMs.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_HAS_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def collapse(text: str) -> str:
    """Collapse every run of white space (including non-breaking spaces) to one space, and
    drop characters a browser does not show (zero-width spaces, soft hyphens)."""
    # str.isascii() is a flag lookup; the search runs in C; translate() maps every character
    # through a dict, so it runs only on text that holds one.
    if not text.isascii() and _HAS_INVISIBLE.search(text):
        text = text.translate(_INVISIBLE)
    return " ".join(text.split())


def aligned_lower(text: str) -> str:
    """``text`` lower-cased with every character where it was, so offsets into the result are
    offsets into ``text``. ``str.lower`` may lengthen a string ("İ" becomes two characters);
    then only A-Z are lowered and other non-ASCII characters read as ``?``."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return text.encode("ascii", "replace").decode("ascii").lower()


def strip_marker(text: str) -> str:
    """Remove leading bullets and enumerators, repeatedly ("- 1. Item" -> "Item")."""
    if not _may_have_marker(text):
        return text
    previous = None
    while previous != text:
        previous = text
        text = _MARKER.sub("", text, count=1).lstrip()
    return text


def _may_have_marker(text: str) -> bool:
    """A cheap test that rules out most lines: a marker needs one of these first characters."""
    if not text:
        return False
    first = text[0]
    if first.isdigit() or first in _MARKER_FIRST:
        return True
    if first.isalpha():
        # "a. ", "ii) ", "Step 1:": a short token followed by "." or ")", or a step word.
        head = text[1:5]
        return "." in head or ")" in head or text[:4].lower() in _STEP_WORDS
    return False


def has_marker(text: str) -> bool:
    """True when the line starts with a bullet or an enumerator."""
    return _may_have_marker(text) and _MARKER.match(text) is not None


def clean_item(text: str) -> str:
    """One list item as it goes in a record: markers and markdown emphasis gone."""
    text = collapse(text)
    if "**" in text or "__" in text:
        text = _MARKDOWN_EMPHASIS.sub(r"\2", text)
    elif not text.startswith("#") and not _may_have_marker(text):
        return text  # most items: nothing to strip (collapsed text has no outer white space)
    previous = None
    while previous != text:  # "• # · x", "- ## 1. Step": bullets and "#" in any order
        previous = text
        if text.startswith("#"):
            text = _MARKDOWN_HEADING.sub("", text)
        text = strip_marker(text)
    return text.strip()
