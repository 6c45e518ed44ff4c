"""DOM -> lines: one pass over the parsed page that yields the visible text as block lines.

A *line* is what a reader sees as one line: a heading, a list item, a paragraph, a table cell,
or one ``<br>``-separated line inside any of them. Each line keeps what the sectioner needs to
decide the role it plays: its block tag, its heading level when the markup gives one (``<h1>``-
``<h6>``, ``role="heading"`` with ``aria-level``), a heading *hint* when the markup suggests one
(``<dt>``, ``<summary>``, an accordion button, a class token such as ``section-title``), whether
it is all bold or all in a large font (``<b>``, ``<strong>``, ``font-weight`` and ``font-size``
styles, ``<font size>``), a leading bold label, its links and how much of it is link text, and
the id of the container it came from, so that two lists can be told apart.

The walk is one ``traverse()`` (a C-level iteration over every node) with a constant amount of
Python work per node; it is iterative, so 100,000 nested elements cannot overflow the stack.
Chrome is skipped on the way and counted (:class:`ChromeCount`): a container whose *whole*
class or id token names chrome (``sidebar``, ``site-footer``, ``cookie-banner``; not
``shareable-content`` or ``popular-questions-answered``), whose ARIA role is navigation, banner,
contentinfo, complementary or search, or that is hidden; a ``<footer>`` outside an
``<article>`` or ``<section>``; a ``<header>`` that does not hold the page's title. A container that
holds most of the page's text is never chrome, whatever its class says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pipeline.extract.normalize.text import collapse

#: Elements that end the current line when they open or close.
BLOCK_TAGS: frozenset[str] = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2",
        "h3", "h4", "h5", "h6", "header", "hr", "html", "li", "main", "ol", "p", "pre",
        "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
        "legend", "label", "option", "nav",
    }
)  # fmt: skip
#: Block elements whose lines belong together (a list, a paragraph, a cell...).
GROUP_TAGS: frozenset[str] = frozenset(
    {"ul", "ol", "dl", "p", "dd", "td", "th", "blockquote", "pre", "div", "section", "article"}
)
BOLD_TAGS: frozenset[str] = frozenset({"b", "strong"})
#: Emphasis a short label line may be set in ("<em>Common</em>", "<u>Rare risks</u>").
EMPHASIS_TAGS: frozenset[str] = frozenset({"em", "i", "u"})
#: Nodes whose content is never text of the page.
SKIP_TAGS: frozenset[str] = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "head", "title", "iframe",
     "object", "embed", "canvas", "input", "select", "textarea", "img", "video",
     "audio", "map", "figcaption", "caption"}
)  # fmt: skip
#: Containers whose class, id and role are checked for chrome.
CHECKED_TAGS: frozenset[str] = frozenset(
    {"div", "section", "aside", "ul", "ol", "dl", "table", "p", "span", "header", "footer",
     "nav", "form", "article", "li", "td", "tr", "center", "font"}
)  # fmt: skip
#: Inline elements whose style may make their text bold or large.
STYLED_TAGS: frozenset[str] = frozenset({"span", "font"})
HEADING_TAGS: dict[str, int] = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
#: Block elements whose markup may make them a heading (class, role, tag).
_HEADING_HOSTS: frozenset[str] = frozenset({"div", "p", "td", "th"})
#: Sectioning content: a ``<footer>`` inside one is the article's own, not the site's (a
#: footer directly in ``<main>`` or ``<body>`` is the page's footer).
CONTENT_TAGS: frozenset[str] = frozenset({"article", "section"})

# What an open element does, coded once per tag.
_INLINE, _BLOCK, _GROUP, _BOLD, _LINK, _SKIP, _EMPHASIS = range(7)
_KIND: dict[str, int] = {
    **dict.fromkeys(BLOCK_TAGS, _BLOCK),
    **dict.fromkeys(GROUP_TAGS, _GROUP),
    **dict.fromkeys(BOLD_TAGS, _BOLD),
    **dict.fromkeys(EMPHASIS_TAGS, _EMPHASIS),
    "a": _LINK,
    **dict.fromkeys(SKIP_TAGS, _SKIP),
}

# A newline inside a text node is only a line break when the next line starts like a list
# item or a markdown heading (pages pasted from Markdown or plain text).
_SOFT_BREAK = re.compile(r"\n[ \t]*(?=[#•●▪◦*·\-–]|\d{1,2}[.)]\s|step\s+\d)", re.IGNORECASE)
#: Bold and size, as ``font-weight``/``font-size`` or in the ``font:`` shorthand
#: ("font: bold 19px/26px Helvetica").
_BOLD_STYLE = re.compile(
    r"font-weight\s*:\s*(?:bold|bolder|[6-9]00)|(?:^|[;\s])font\s*:[^;]*?\b(?:bold|bolder|[6-9]00)\b",
    re.IGNORECASE,
)
_SIZE_STYLE = re.compile(
    r"(?:font-size\s*:|(?:^|[;\s])font\s*:[^;]*?)\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>px|pt|em|rem|%)",
    re.IGNORECASE,
)
#: Class-token words that mark an element as a heading ("section-title", "card-header").
_HEADING_CLASS = re.compile(
    r"(?:^|[-_])(?:title|heading|headline|header|subheading|subtitle|hdr|accordion-button"
    r"|accordion-toggle|accordion-header|panel-title|card-title)(?:$|[-_\d])",
    re.IGNORECASE,
)
_BOLD_CLASS = re.compile(
    r"(?:^|\s)(?:font-(?:bold|semibold|extrabold|black)|fw-(?:bold|semibold|bolder)"
    r"|bold|strong)(?=\s|$)"
)
#: Large text: at least this many pixels (pt and em converted at 16 px per em, 0.75 pt per px).
BIG_PX = 17.5


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
    level: int = 0  # heading level the markup gives (h1-h6, aria-level); 0 for none
    hint: str = ""  # markup that suggests a heading: dt, summary, button, class, big
    link_chars: int = 0  # characters of the text inside links
    size: float = 0.0  # smallest font size (px) of its text that the page states; 0 unknown
    emphasis: bool = False  # all of it in italics or underlined
    y: float = 0.0  # vertical position the page states (absolute layouts: PDF exports); 0 none


@dataclass(slots=True)
class ChromeCount:
    """Containers the walk dropped as chrome, and the characters of text they held."""

    blocks: int = 0
    chars: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class Chrome:
    """How the walk recognizes chrome containers (from ``vocabulary.toml``); hashed by
    identity, like the :class:`~pipeline.extract.vocabulary.Vocabulary` that holds it."""

    token: re.Pattern[str]
    keep: re.Pattern[str]
    roles: frozenset[str]

    def marks(self, attrs: dict[str, str | None]) -> bool:
        """True when the element's class or id tokens, role or hidden flags say it is chrome."""
        if "hidden" in attrs or attrs.get("aria-hidden") == "true":
            return True
        if attrs.get("role") in self.roles:
            return True
        marked = f"{attrs.get('class') or ''} {attrs.get('id') or ''}"
        return len(marked) >= 3 and _names_chrome(self, marked)


@lru_cache(maxsize=8192)
def _names_chrome(chrome: Chrome, marked: str) -> bool:
    """Class and id tokens that name chrome (memoized: a site repeats its class names)."""
    return chrome.token.search(marked) is not None and chrome.keep.search(marked) is None


_PLACE = re.compile(r"(?:^|;)\s*(?P<side>top|bottom)\s*:\s*(?P<n>-?\d+(?:\.\d+)?)px")


def _place(style: str) -> float:
    """The vertical position a style states, top-down (``top``, or minus ``bottom``); 0 none."""
    match = _PLACE.search(style)
    if match is None:
        return 0.0
    value = float(match["n"])
    return (value if match["side"] == "top" else -value) or 1e-6


_FONT_SIZES = {1: 10.0, 2: 13.0, 3: 16.0, 4: 18.0, 5: 24.0, 6: 32.0, 7: 48.0}


def style_size(style: str) -> float:
    """The font size (px) an inline style or CSS rule states, or 0."""
    match = _SIZE_STYLE.search(style)
    if match is None:
        return 0.0
    size, unit = float(match["n"]), match["unit"].lower()
    scale = {"px": 1.0, "pt": 1 / 0.75, "em": 16.0, "rem": 16.0, "%": 0.16}[unit]
    return size * scale


def font_size(size: str | None) -> float:
    """The size (px) of ``<font size=...>`` (1-7, or +N / -N from 3)."""
    if not size:
        return 0.0
    size = size.strip()
    try:
        n = 3 + int(size) if size[:1] in "+-" else int(size)
    except ValueError:
        return 0.0
    return _FONT_SIZES.get(min(max(n, 1), 7), 0.0)


@dataclass(frozen=True, slots=True)
class Styles:
    """Font size and weight of the page's CSS classes (from its ``<style>`` elements)."""

    #: class -> (font size px or 0, bold, position of its last rule in the stylesheet)
    classes: dict[str, tuple[float, bool, int]] = field(default_factory=dict)
    #: class -> vertical position (top, or minus bottom) in px, for absolutely placed lines
    places: dict[str, float] = field(default_factory=dict)

    def place_of(self, cls: str) -> float:
        for token in cls.split():
            y = self.places.get(token)
            if y is not None:
                return y
        return 0.0

    def of(self, cls: str) -> tuple[float, bool]:
        """Size and weight of an element's classes: the later rule wins, as in CSS."""
        size, bold, size_at = 0.0, False, -1
        for token in cls.split():
            found = self.classes.get(token)
            if found is not None:
                if found[0] and found[2] > size_at:
                    size, size_at = found[0], found[2]
                bold = bold or found[1]
        return size, bold


def css_rules(css: str) -> Iterator[tuple[str, str]]:
    """(selectors, declarations) of each top-level rule of a stylesheet, in one linear pass.

    At-rule blocks (print media, font faces) are skipped whole: their rules do not style the
    page on screen. Statements before a rule ("@charset ...;") are not part of its selector.
    """
    pos, end = 0, len(css)
    while pos < end:
        opened = css.find("{", pos)
        if opened < 0:
            return
        selectors = css[pos:opened].rsplit(";", 1)[-1].strip()
        if selectors.startswith("@"):
            depth, at = 1, opened + 1
            while depth and at < end:
                nxt_open, nxt_close = css.find("{", at), css.find("}", at)
                if nxt_close < 0:
                    return
                if 0 <= nxt_open < nxt_close:
                    depth, at = depth + 1, nxt_open + 1
                else:
                    depth, at = depth - 1, nxt_close + 1
            pos = at
            continue
        closed = css.find("}", opened)
        if closed < 0:
            return
        body = css[opened + 1 : closed]
        if "{" not in body:
            yield selectors, body
        pos = closed + 1


_CLASS_SELECTOR = re.compile(r"^(?:[a-z0-9]+)?\.([\w-]+)$", re.IGNORECASE)
#: CSS read per page, at most (pdf2htmlEX pages carry their fonts' rules first).
MAX_CSS = 262_144


def parse_styles(css: str) -> Styles:
    """Size and weight of simple class selectors (``.fs2``, ``p.title``) in a stylesheet."""
    classes: dict[str, tuple[float, bool, int]] = {}
    places: dict[str, float] = {}
    for position, (selectors, body) in enumerate(css_rules(css[:MAX_CSS])):
        if body.startswith(("bottom:", "top:")):
            y = _place(body)
            match = _CLASS_SELECTOR.match(selectors.strip())
            if y and match is not None:
                places[match.group(1)] = y
            continue
        if "font" not in body:
            continue
        size = style_size(body)
        bold = _BOLD_STYLE.search(body) is not None
        if not size and not bold:
            continue
        for selector in selectors.split(","):
            match = _CLASS_SELECTOR.match(selector.strip())
            if match is not None:
                old_size, old_bold, old_at = classes.get(match.group(1), (0.0, False, -1))
                classes[match.group(1)] = (
                    size or old_size,
                    bold or old_bold,
                    position if size else old_at,
                )
    return Styles(classes, places)


def _accordion(attrs: dict[str, str | None]) -> bool:
    """A button that opens a panel (accordion, collapse): its text is the panel's heading."""
    if "aria-controls" in attrs or "aria-expanded" in attrs:
        return True
    toggle = attrs.get("data-toggle") or attrs.get("data-bs-toggle") or ""
    if toggle == "collapse":
        return True
    return _HEADING_CLASS.search(attrs.get("class") or "") is not None or "accordion" in (
        attrs.get("class") or ""
    )


class _Lines:
    """The line being built, and the lines done; one instance per page."""

    __slots__ = (
        "all_bold", "all_em", "blocks", "bold_depth", "bold_parts", "em_depth", "group", "groups",
        "hint", "hints",
        "in_list", "lead_open", "level", "levels", "lines", "link_chars", "links", "list_depth",
        "next_group", "parts", "size", "sizes", "tag", "y", "ys",
    )  # fmt: skip

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.blocks: list[str] = ["body"]
        self.groups: list[int] = [0]
        self.levels: list[int] = [0]
        self.hints: list[str] = [""]
        self.bold_depth = 0
        self.em_depth = 0
        self.sizes: list[float] = [0.0]
        self.ys: list[float] = [0.0]
        self.list_depth = 0
        self.next_group = 1
        # Set by the first _add of each line (from the open elements), read by flush().
        self.tag = ""
        self.group = 0
        self.in_list = False
        self.level = 0
        self.hint = ""
        self.y = 0.0
        self._reset()

    def _reset(self) -> None:
        self.parts: list[str] = []
        self.bold_parts: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.all_bold = True
        self.all_em = True
        self.size = -1.0
        self.lead_open = True
        self.link_chars = 0

    def flush(self) -> None:
        if not self.parts:
            return
        text = collapse("".join(self.parts))
        if text:
            lead = collapse("".join(self.bold_parts)) if self.bold_parts else ""
            self.lines.append(
                Line(
                    text, self.tag, self.group, self.all_bold, lead, self.links, self.in_list,
                    self.level, self.hint, self.link_chars, max(self.size, 0.0), self.all_em,
                    self.y,
                )
            )  # fmt: skip
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
            self.y = self.ys[-1]
            self.group = self.groups[-1]
            self.level = self.levels[-1]
            self.hint = self.hints[-1]
            self.in_list = self.list_depth > 0
        self.parts.append(raw)
        if self.bold_depth:
            if self.lead_open:
                self.bold_parts.append(raw)
        else:
            self.all_bold = False
            self.lead_open = False
        if not self.em_depth:
            self.all_em = False
        size = self.sizes[-1]
        if self.size < 0 or size < self.size:
            self.size = size
        if link is not None:
            link.append(raw)
            self.link_chars += len(raw.strip())


def _site_header(root: Any, header: Any) -> bool:
    """A ``<header>`` is site chrome unless it holds the page's title ``<h1>``."""
    # Its first <h1> by a walk, not a CSS query (the first one of a tree sets up lexbor's
    # selector engine); most site headers hold none.
    h1 = next((n for n in header.traverse() if n.tag == "h1"), None)
    if h1 is None:
        return True
    content_h1 = root.css_first("main h1, article h1, [role=main] h1")
    return content_h1 is not None and content_h1.mem_id != h1.mem_id


def _block_heading(tag: str, attrs: dict[str, str | None]) -> tuple[int, str]:
    """(level, hint) that a block element's markup gives the lines inside it."""
    level = HEADING_TAGS.get(tag, 0)
    if attrs.get("role") == "heading":
        aria = attrs.get("aria-level") or ""
        return (int(aria) if aria.isdigit() and 0 < int(aria) < 7 else level or 2), "aria"
    if level:
        return level, "h"
    cls = attrs.get("class")
    if cls and _HEADING_CLASS.search(cls):
        return 0, "class"
    return 0, ""


#: Chrome holding less text than this is never most of a page (no need to measure the page).
_SMALL_CHROME = 1500


class _Walk:
    """State of one walk: the open elements and the chrome decisions."""

    def __init__(self, root: Any, chrome: Chrome | None) -> None:
        self.root = root
        self.chrome = chrome
        self.count = ChromeCount()
        self.page_chars = -1

    def is_chrome(self, node: Any, tag: str, attrs: dict[str, str | None], inside: int) -> bool:
        if tag == "header":
            return _site_header(self.root, node)
        if tag == "footer" and not inside:
            return self._confirmed(node)
        if self.chrome is None or not attrs or not self.chrome.marks(attrs):
            return False
        return self._confirmed(node)

    def _confirmed(self, node: Any) -> bool:
        """Chrome unless the container holds most of the page's text (a mislabelled wrapper)."""
        chars = len(node.text(deep=True, strip=True))
        if chars > _SMALL_CHROME:
            if self.page_chars < 0:
                self.page_chars = len(self.root.text(deep=True, strip=True))
            if chars > 0.6 * self.page_chars:
                return False
        self.count.blocks += 1
        self.count.chars += chars
        return True


#: Elements whose attributes are read (chrome, heading markup, font size and weight).
_ATTR_TAGS: frozenset[str] = CHECKED_TAGS | STYLED_TAGS | frozenset({"th", "button"})
#: The heading level and hint an element gives by its tag alone.
_TAG_HINTS: dict[str, tuple[int, str]] = {
    **{tag: (level, "h") for tag, level in HEADING_TAGS.items()},
    "dt": (0, "dt"),
    "summary": (0, "summary"),
    "button": (0, "summary"),
}
_NO_HINT = (0, "")
#: Elements that change the font size by themselves (relative to a 16px body).
_BODY_PX = 16.0
_TAG_SIZES: dict[str, float] = {"big": 19.2, "small": 13.3}
_NO_STYLES = Styles()


def walk_counted(
    root: Any, chrome: Chrome | None = None, styles: Styles | None = None
) -> tuple[list[Line], ChromeCount]:
    """The lines of ``root`` in document order, and what was dropped as chrome.

    Open elements are kept on a stack by ``mem_id``; an element is closed when a later node's
    parent is an element below it on the stack. Skipped subtrees (``<img>``, ``<svg>``, chrome
    containers) are entered but their text is ignored. ``styles`` gives the font size and
    weight of the page's CSS classes.
    """
    css = styles or _NO_STYLES
    out = _Lines()
    state = _Walk(root, chrome)
    # The open elements, innermost last: (mem_id, kind, tag, its style makes its text bold).
    stack: list[tuple[int, int, str, bool]] = [(root.mem_id, _BLOCK, root.tag, False)]
    sizes = out.sizes  # per open element: the font size of its text (inherited), 0 unknown
    ys = out.ys  # per open element: its stated vertical position (inherited), 0 none
    saved_links: list[tuple[list[str] | None, str]] = []
    link: list[str] | None = None  # anchor text parts of the <a> we are in
    href = ""
    skip = 0
    content_depth = 0
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
        while stack[-1][0] != parent and len(stack) > 1:
            # Leave the innermost open element.
            _, kind, closed, was_bold = stack.pop()
            sizes.pop()
            ys.pop()
            if was_bold:
                out.bold_depth -= 1
            if kind == _SKIP:
                skip -= 1
            elif kind >= _BLOCK and kind <= _GROUP:
                if out.parts:
                    out.flush()
                out.blocks.pop()
                out.levels.pop()
                out.hints.pop()
                if kind == _GROUP:
                    out.groups.pop()
                if closed == "li":
                    out.list_depth -= 1
                elif closed in CONTENT_TAGS:
                    content_depth -= 1
            elif kind == _BOLD:
                out.bold_depth -= 1
            elif kind == _EMPHASIS:
                out.em_depth -= 1
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
        attrs = node.attributes if (not skip and tag in _ATTR_TAGS) or tag == "button" else None
        size = 0.0
        y = 0.0
        bold = False
        if tag == "button":
            kind = _BLOCK if attrs and _accordion(attrs) else _SKIP
        elif (
            attrs is not None
            and tag in CHECKED_TAGS
            and state.is_chrome(node, tag, attrs, content_depth)
        ):
            kind = _SKIP
        if attrs and kind != _SKIP and ("style" in attrs or "class" in attrs or tag == "font"):
            style = attrs.get("style")
            if style:
                if "font" in style:
                    size = style_size(style)
                    bold = _BOLD_STYLE.search(style) is not None
                if "top:" in style or "bottom:" in style:
                    y = _place(style)
            cls = attrs.get("class")
            if cls:
                class_size, class_bold = css.of(cls) if css.classes else (0.0, False)
                if css.places and not y:
                    y = css.place_of(cls)
                size = size or class_size
                bold = bold or class_bold or _BOLD_CLASS.search(cls) is not None
            if tag == "font":
                size = size or font_size(attrs.get("size"))
        if tag in _TAG_SIZES and not size:
            size = _TAG_SIZES[tag] * (sizes[-1] or _BODY_PX) / _BODY_PX  # relative, as browsers
        stack.append((node.mem_id, kind, tag, bold))
        sizes.append(size or sizes[-1])
        ys.append(y or ys[-1])
        if bold:
            out.bold_depth += 1
        if kind == _SKIP:
            skip += 1
        elif kind in (_BLOCK, _GROUP):
            if out.parts:
                out.flush()
            out.blocks.append(tag)
            level, hint = _TAG_HINTS.get(tag, _NO_HINT)
            if not hint:
                if attrs and tag in _HEADING_HOSTS:
                    level, hint = _block_heading(tag, attrs)
                if not hint and out.hints[-1] and tag in ("p", "div"):
                    level, hint = out.levels[-1], out.hints[-1]  # inside a heading element
            out.levels.append(level)
            out.hints.append(hint)
            if kind == _GROUP:
                out.groups.append(out.next_group)
                out.next_group += 1
            if tag == "li":
                out.list_depth += 1
            elif tag in CONTENT_TAGS:
                content_depth += 1
        elif kind == _BOLD:
            out.bold_depth += 1
        elif kind == _EMPHASIS:
            out.em_depth += 1
        elif kind == _LINK:
            saved_links.append((link, href))
            href = node.attributes.get("href") or ""
            link = []
    if link is not None:
        out.links.append((href, collapse("".join(link))))
    out.flush()
    return out.lines, state.count
