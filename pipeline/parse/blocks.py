"""DOM -> lines: one pass over the parsed page that yields the visible text as block lines.

A *line* is what a reader sees as one line: a heading, a list item, a paragraph, a table cell,
or one ``<br>``-separated line inside any of them. Each line keeps what the sectioner needs
to decide what it is (its block tag, whether it is all bold, a leading bold label, its links)
and the id of the container it came from, so that two lists can be told apart.

The walk is one ``traverse()`` (a C-level iteration over every node) with a constant amount of
Python work per node; it is iterative, so 100,000 nested elements cannot overflow the stack.
Chrome is skipped on the way: container elements whose class, id or role marks them as chrome
(cookie banners, ads, sidebars, FAQ blocks...) are entered but ignored, with their subtree.
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
    {"script", "style", "noscript", "template", "svg", "math", "head", "title", "iframe",
     "object", "embed", "canvas", "input", "select", "textarea", "button", "img", "video",
     "audio", "map"}
)  # fmt: skip
#: Containers whose class, id and role are checked for chrome.
CHECKED_TAGS: frozenset[str] = frozenset(
    {"div", "section", "aside", "ul", "ol", "dl", "table", "p", "span", "header", "footer",
     "nav", "form", "article", "li", "td", "tr", "center", "font"}
)  # fmt: skip
HEADING_TAGS: dict[str, int] = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

# What an open element does, coded once per tag.
_INLINE, _BLOCK, _GROUP, _BOLD, _LINK, _SKIP = range(6)
_KIND: dict[str, int] = {
    **dict.fromkeys(BLOCK_TAGS, _BLOCK),
    **dict.fromkeys(GROUP_TAGS, _GROUP),
    **dict.fromkeys(BOLD_TAGS, _BOLD),
    "a": _LINK,
    **dict.fromkeys(SKIP_TAGS, _SKIP),
}

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


@dataclass(frozen=True, slots=True)
class Chrome:
    """How the walk recognizes chrome containers (from ``vocabulary.toml``)."""

    class_or_id: re.Pattern[str]
    roles: frozenset[str]

    def marks(self, node: Any) -> bool:
        """True when the element's class, id, role or hidden flags say it is not content."""
        attrs = node.attributes
        if not attrs:
            return False
        if "hidden" in attrs or attrs.get("aria-hidden") == "true":
            return True
        if attrs.get("role") in self.roles:
            return True
        marker = f"{attrs.get('class') or ''} {attrs.get('id') or ''}"
        return len(marker) > 1 and self.class_or_id.search(marker) is not None


class _Lines:
    """The line being built, and the lines done; one instance per page."""

    __slots__ = (
        "all_bold", "blocks", "bold_depth", "bold_parts", "group", "groups", "in_list",
        "lead_open", "lines", "links", "list_depth", "next_group", "parts", "tag",
    )  # fmt: skip

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.blocks: list[str] = ["body"]
        self.groups: list[int] = [0]
        self.bold_depth = 0
        self.list_depth = 0
        self.next_group = 1
        self._reset()

    def _reset(self) -> None:
        self.parts: list[str] = []
        self.bold_parts: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.all_bold = True
        self.lead_open = True
        self.tag = ""
        self.group = 0
        self.in_list = False

    def flush(self) -> None:
        if not self.parts:
            return
        text = collapse("".join(self.parts))
        if text:
            lead = collapse("".join(self.bold_parts)) if self.bold_parts else ""
            self.lines.append(
                Line(text, self.tag, self.group, self.all_bold, lead, self.links, self.in_list)
            )
        self._reset()

    def add(self, raw: str, link: list[str] | None) -> None:
        if "\n" in raw and _SOFT_BREAK.search(raw):
            for i, piece in enumerate(raw.split("\n")):
                if i:
                    self.flush()
                if piece.strip():
                    self._add(piece, link)
            return
        self._add(raw, link)

    def _add(self, raw: str, link: list[str] | None) -> None:
        if not self.parts:
            self.tag = self.blocks[-1]
            self.group = self.groups[-1]
            self.in_list = self.list_depth > 0
        self.parts.append(raw)
        if self.bold_depth:
            if self.lead_open:
                self.bold_parts.append(raw)
        else:
            self.all_bold = False
            self.lead_open = False
        if link is not None:
            link.append(raw)


def _site_header(root: Any, header: Any) -> bool:
    """A ``<header>`` is site chrome unless it holds the page's title ``<h1>``."""
    h1 = header.css_first("h1")
    if h1 is None:
        return True
    content_h1 = root.css_first("main h1, article h1, [role=main] h1")
    return content_h1 is not None and content_h1.mem_id != h1.mem_id


def walk(root: Any, chrome: Chrome | None = None) -> list[Line]:
    """The lines of ``root`` (a selectolax node) in document order.

    Open elements are kept on a stack by ``mem_id``; an element is closed when a later node's
    parent is an element below it on the stack. Skipped subtrees (``<img>``, ``<svg>``, chrome
    containers) are entered but their text is ignored.
    """
    out = _Lines()
    ids: list[int] = [root.mem_id]
    kinds: list[int] = [_BLOCK]
    tags: list[str] = [root.tag]
    saved_links: list[tuple[list[str] | None, str]] = []
    link: list[str] | None = None  # anchor text parts of the <a> we are in
    href = ""
    skip = 0
    kind_of = _KIND.get
    nodes = root.traverse(include_text=True)
    next(nodes, None)  # the root itself
    for node in nodes:
        tag = node.tag
        if tag == "-text":
            raw = node.text_content
            if not raw or raw.isspace():
                if out.parts:
                    out.parts.append(" ")
                continue
        elif tag == "-comment":
            continue
        parent = node.parent.mem_id
        while ids[-1] != parent and len(ids) > 1:
            # Leave the innermost open element.
            ids.pop()
            kind = kinds.pop()
            closed = tags.pop()
            if kind == _SKIP:
                skip -= 1
            elif kind >= _BLOCK and kind <= _GROUP:
                if out.parts:
                    out.flush()
                out.blocks.pop()
                if kind == _GROUP:
                    out.groups.pop()
                if closed == "li":
                    out.list_depth -= 1
            elif kind == _BOLD:
                out.bold_depth -= 1
            elif kind == _LINK and link is not None:
                out.links.append((href, collapse("".join(link))))
                link, href = saved_links.pop()
        if tag == "-text":
            if not skip:
                out.add(raw, link)
            continue
        if tag == "br":
            if out.parts:
                out.flush()
            continue
        kind = kind_of(tag, _INLINE)
        if not skip and tag in CHECKED_TAGS:
            if tag == "header":
                if _site_header(root, node):
                    kind = _SKIP
            elif chrome is not None and chrome.marks(node):
                kind = _SKIP
        ids.append(node.mem_id)
        kinds.append(kind)
        tags.append(tag)
        if kind == _SKIP:
            skip += 1
        elif kind in (_BLOCK, _GROUP):
            if out.parts:
                out.flush()
            out.blocks.append(tag)
            if kind == _GROUP:
                out.groups.append(out.next_group)
                out.next_group += 1
            if tag == "li":
                out.list_depth += 1
        elif kind == _BOLD:
            out.bold_depth += 1
        elif kind == _LINK:
            saved_links.append((link, href))
            href = node.attributes.get("href") or ""
            link = []
    if link is not None:
        out.links.append((href, collapse("".join(link))))
    out.flush()
    return out.lines
