"""Plain text laid out with spaces and blank lines (an e-mail in ``<pre>``) as HTML blocks.

A browser shows a ``<pre>`` block as it is written; its structure is in the text itself:
paragraphs are separated by blank lines and hard-wrapped at ~70 characters, headings are lines
of their own in CAPITALS or framed by rules (``=====``), bullets start with ``-``, ``*`` or
``1.`` and their wrapped lines are indented, and an e-mail's signature follows a ``--`` line.
:func:`prose_to_html` rebuilds those blocks, so the page is read like any other; text that
looks like code or a table of figures is left alone (:func:`is_prose`).
"""

from __future__ import annotations

import html
import re

#: A line that is only a rule: "=====", "-----", "*****", "_____".
_RULE = re.compile(r"^\s*([=\-*_~#])\1{3,}\s*$")
#: A bullet or an enumerator at the start of a line, with its indentation.
_MARKER = re.compile(r"^(\s*)(?:[-*•+o]|\d{1,2}[.)]|[a-z][.)])\s+(?=\S)")
#: The e-mail signature delimiter ("-- ") and what follows it is not the message.
_SIGNATURE = re.compile(r"^--\s?$")
_CODE_LINE = re.compile(r"[;{}]\s*$|^\s*(?:def|class|import|function|var|let|const|if|for)\b")
_WORD = re.compile(r"[A-Za-z]{3,}")
#: At least this many non-blank lines before a block is read as a document.
_MIN_LINES = 4
#: A heading line of capitals is at most this long.
_MAX_HEADING = 70


def is_prose(text: str) -> bool:
    """True when ``text`` reads as a document of sentences, not code or a table of figures."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < _MIN_LINES:
        return False
    wordy = sum(1 for line in lines if len(_WORD.findall(line)) >= 2)
    code = sum(1 for line in lines if _CODE_LINE.search(line))
    return wordy * 10 >= len(lines) * 6 and code * 10 < len(lines)


def prose_to_html(text: str) -> str:
    """``text`` as headings (``<h2>``), paragraphs (``<p>``) and lists (``<ul>``), escaped."""
    out: list[str] = []
    framed = False  # inside a banner between two rules: each line is a line of its own
    titled = False
    for block in _blocks(text):
        if all(_RULE.match(line) for line in block):
            framed = not framed
            continue
        if framed:
            for line in block:
                if _RULE.match(line):
                    framed = not framed
                    continue
                tag = "h1" if not titled else "p"
                titled = True
                out.append(f"<{tag}>{html.escape(line.strip())}</{tag}>")
            continue
        out.extend(_block_html(block))
    return "\n".join(out)


def _blocks(text: str) -> list[list[str]]:
    """Runs of non-blank lines; a rule line is a block of its own; the signature is dropped."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if _SIGNATURE.match(line):
            break
        if not line.strip() or _RULE.match(line):
            if current:
                blocks.append(current)
                current = []
            if _RULE.match(line):
                blocks.append([line])
            continue
        current.append(line.rstrip())
    if current:
        blocks.append(current)
    return blocks


def _block_html(block: list[str]) -> list[str]:
    """One block: a heading line, then paragraphs and list items in the order written."""
    out: list[str] = []
    if len(block) == 1 and _is_heading(block[0]):
        return [f"<h2>{html.escape(block[0].strip())}</h2>"]
    paragraph: list[str] = []
    items: list[str] = []
    item_indent = -1
    for line in block:
        marker = _MARKER.match(line)
        if marker is not None:
            if paragraph:
                out.append(_paragraph(paragraph))
                paragraph = []
            items.append(line[marker.end() :].strip())
            item_indent = len(marker.group(1))
            continue
        indent = len(line) - len(line.lstrip())
        if items and indent > item_indent:
            items[-1] = f"{items[-1]} {line.strip()}"  # the wrapped rest of the item
            continue
        if items:
            out.append(_list(items))
            items = []
        paragraph.append(line.strip())
    if paragraph:
        out.append(_paragraph(paragraph))
    if items:
        out.append(_list(items))
    return out


def _is_heading(line: str) -> bool:
    text = line.strip()
    return len(text) <= _MAX_HEADING and text.isupper() and _WORD.search(text) is not None


def _paragraph(lines: list[str]) -> str:
    return f"<p>{html.escape(' '.join(lines))}</p>"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"
