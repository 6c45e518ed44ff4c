"""DOM -> lines: one pass over the parsed page that yields the visible text as block lines.

A *line* is what a reader sees as one line: a heading, a list item, a paragraph, a table cell,
or one ``<br>``-separated line inside any of them. Each line keeps what the sectioner needs
to decide what it is (its block tag, whether it is all bold, a leading bold label, its links)
and the id of the container it came from, so that two lists can be told apart.

The walk is iterative (a page of 100,000 nested elements cannot overflow the stack) and does
a constant amount of Python work per node; chrome was removed before by one CSS query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.normalize.text import collapse

#: Elements that end the current line when they open or close.
BLOCK_TAGS: frozenset[str] = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2",
        "h3", "h4", "h5", "h6", "header", "hr", "html", "li", "main", "ol", "p", "pre",
        "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
        "legend", "label", "option",
    }
)  # fmt: skip
#: Block elements whose lines belong together (a list, a paragraph, a cell...).
GROUP_TAGS: frozenset[str] = frozenset(
    {"ul", "ol", "dl", "p", "dd", "td", "th", "blockquote", "pre", "div", "section", "article"}
)
BOLD_TAGS: frozenset[str] = frozenset({"b", "strong"})
#: Nodes whose content is never text of the page.
SKIP_TAGS: frozenset[str] = frozenset(
    {"-comment", "script", "style", "noscript", "template", "svg", "math", "head", "title",
     "iframe", "object", "embed", "canvas", "input", "select", "textarea", "button", "img",
     "video", "audio", "map", "!doctype", "_doctype"}
)  # fmt: skip
HEADING_TAGS: dict[str, int] = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

# A newline inside a text node is only a line break when the next line starts like a list
# item or a markdown heading (pages pasted from Markdown or plain text).
_SOFT_BREAK = re.compile(r"\n[ \t]*(?=[#•●▪◦*·\-–]|\d{1,2}[.)]\s|step\s+\d)", re.IGNORECASE)


@dataclass(slots=True)
class Line:
    """One visible line of the page."""

    text: str
    tag: str
    group: int
    bold: bool = False
    lead_bold: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)
    in_list: bool = False


@dataclass(slots=True)
class _Buffer:
    parts: list[str] = field(default_factory=list)
    bold_parts: list[str] = field(default_factory=list)
    all_bold: bool = True
    lead_open: bool = True
    links: list[tuple[str, str]] = field(default_factory=list)
    tag: str = ""
    group: int = 0
    in_list: bool = False


class _Walker:
    """Collects lines while walking the tree; one instance per page."""

    __slots__ = ("blocks", "bold_depth", "buf", "groups", "lines", "list_depth", "next_group")

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.buf = _Buffer()
        self.bold_depth = 0
        self.list_depth = 0
        self.blocks: list[str] = ["body"]
        self.groups: list[int] = [0]
        self.next_group = 1

    def flush(self) -> None:
        buf = self.buf
        if not buf.parts:
            return
        if True:
            text = collapse("".join(buf.parts))
            if text:
                lead = collapse("".join(buf.bold_parts)) if buf.bold_parts else ""
                self.lines.append(
                    Line(
                        text=text,
                        tag=buf.tag or self.blocks[-1],
                        group=buf.group,
                        bold=buf.all_bold,
                        lead_bold=lead,
                        links=buf.links,
                        in_list=buf.in_list,
                    )
                )
        self.buf = _Buffer()

    def text(self, raw: str, link: list[str] | None) -> None:
        if "\n" in raw and _SOFT_BREAK.search(raw):
            pieces = raw.split("\n")
            for i, piece in enumerate(pieces):
                if i:
                    self.flush()
                self._append(piece, link)
            return
        self._append(raw, link)

    def _append(self, raw: str, link: list[str] | None) -> None:
        buf = self.buf
        if not raw.strip():
            if buf.parts:
                buf.parts.append(" ")
            return
        if not buf.parts:
            buf.tag = self.blocks[-1]
            buf.group = self.groups[-1]
            buf.in_list = self.list_depth > 0
        buf.parts.append(raw)
        if self.bold_depth:
            if buf.lead_open:
                buf.bold_parts.append(raw)
        else:
            buf.all_bold = False
            buf.lead_open = False
        if link is not None:
            link.append(raw)


def walk(root: Any) -> list[Line]:
    """The lines of ``root`` (a selectolax node) in document order.

    One ``traverse()`` (a C-level iteration) visits every node; the stack of open elements is
    kept by ``mem_id``, and an element is closed when a later node's parent is an element
    below it on the stack. Skipped subtrees (``<img>``, ``<svg>``...) are entered but ignored.
    """
    w = _Walker()
    ids: list[int] = [root.mem_id]
    tags: list[str] = [root.tag]
    grouped: list[bool] = [False]
    saved_links: list[tuple[list[str] | None, str]] = []
    link: list[str] | None = None  # anchor text parts of the <a> we are in
    href = ""
    skip = 0
    first = True
    for node in root.traverse(include_text=True):
        if first:
            first = False
            continue
        tag = node.tag
        if tag == "-text":
            raw = node.text_content
            if not raw or raw.isspace():
                if w.buf.parts:
                    w.buf.parts.append(" ")
                continue
        elif tag == "-comment":
            continue
        parent = node.parent.mem_id
        while ids[-1] != parent and len(ids) > 1:
            # Leave the innermost open element.
            ids.pop()
            closed = tags.pop()
            was_group = grouped.pop()
            if closed in SKIP_TAGS:
                skip -= 1
            elif closed in BLOCK_TAGS:
                w.flush()
                w.blocks.pop()
                if was_group:
                    w.groups.pop()
                if closed == "li":
                    w.list_depth -= 1
            elif closed in BOLD_TAGS:
                w.bold_depth -= 1
            elif closed == "a" and link is not None:
                w.buf.links.append((href, collapse("".join(link))))
                link, href = saved_links.pop()
        if tag == "-text":
            if not skip:
                w.text(raw, link)
            continue
        if tag == "br":
            w.flush()
            continue
        ids.append(node.mem_id)
        tags.append(tag)
        is_group = False
        if tag in SKIP_TAGS:
            skip += 1
        elif tag in BLOCK_TAGS:
            w.flush()
            w.blocks.append(tag)
            if tag in GROUP_TAGS:
                w.groups.append(w.next_group)
                w.next_group += 1
                is_group = True
            if tag == "li":
                w.list_depth += 1
        elif tag in BOLD_TAGS:
            w.bold_depth += 1
        elif tag == "a":
            saved_links.append((link, href))
            href = node.attributes.get("href") or ""
            link = []
        grouped.append(is_group)
    # Close whatever is still open, so trailing links are kept.
    if link is not None:
        w.buf.links.append((href, collapse("".join(link))))
    w.flush()
    return w.lines
