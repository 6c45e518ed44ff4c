"""The parsed tree made ready for the walk: the document's title and styles, boxes of facts, tab
panels and plain-text pages unfolded, chrome removed by tag."""

from __future__ import annotations

import html
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from pipeline.extract.blocks import ChromeCount, Styles, parse_styles
from pipeline.extract.identity import label_codes, mentioned_code
from pipeline.extract.normalize.text import collapse
from pipeline.extract.plaintext import is_prose, prose_to_html
from pipeline.extract.vocabulary import Vocabulary
from pipeline.models import CodeSystem

DIGIT = re.compile(r"\d")


_TITLE_SUFFIX = re.compile(r"\s+[|–—-]\s+[^|–—-]{2,60}$")


def document_title(tree: LexborHTMLParser) -> str | None:
    """The ``<title>`` without the site's name ("Knee arthroscopy | Clinic | Fandom")."""
    # By tag, not "head > title": a CSS query costs the setup of lexbor's selector engine.
    node = next((n for n in tree.tags("title") if (up := n.parent) and up.tag == "head"), None)
    if node is None:
        return None
    title = collapse(node.text())
    while (shorter := _TITLE_SUFFIX.sub("", title)) != title and shorter:
        title = shorter
    return title or None


def page_styles(tree: LexborHTMLParser) -> Styles | None:
    """Font size and weight of the page's CSS classes (PDF and Word exports mark headings so)."""
    css = "".join(node.text(deep=True) for node in tree.tags("style"))
    styles = parse_styles(css) if "font" in css or "bottom:" in css else None
    return styles if styles is not None and (styles.classes or styles.places) else None


#: Elements outside the content that may still show the page's code: infoboxes, fact boxes,
#: the article's meta line and tags, breadcrumbs, badges.
_MENTION_SCOPES = (
    'aside, nav, header, footer, [class*="meta"], [class*="tag"], [class*="crumb"], '
    '[class*="infobox"], [class*="fact"], [class*="detail"], [class*="badge"], [class*="code"], '
    '[id*="crumb"], [id*="infobox"], [id*="meta"]'
)


_OWN_BOX = re.compile(r"info|meta|fact|detail|badge|crumb|tag|code|summary|header", re.IGNORECASE)


_OTHERS_BOX = re.compile(
    r"popular|related|trending|recent|widget|navbox|sidebar|rail|more|other|similar|menu",
    re.IGNORECASE,
)


_MAX_SCOPES = 40


def fact_boxes(tree: LexborHTMLParser) -> list[tuple[float, list[str]]]:
    """The text lines of boxes around the content that may name the page's code, with weights.

    A box that describes the page (an infobox, a fact box, the article's meta line or tags,
    breadcrumbs) counts for its code; a box that lists other pages (popular, related,
    trending) counts against the codes in it. Read before chrome is dropped; the codes in
    them are looked for (:func:`boxed_codes`) only when neither the content, the title, the
    structured data nor the URL names the code.
    """
    boxes: list[tuple[float, list[str]]] = []
    for node in tree.css(_MENTION_SCOPES)[:_MAX_SCOPES]:
        attrs = node.attributes
        marker = f"{attrs.get('class') or ''} {attrs.get('id') or ''} {node.tag}"
        weight = 1.0 + (2.0 if _OWN_BOX.search(marker) else 0.0)
        if _OTHERS_BOX.search(marker):
            weight -= 4.0
        text = node.text(separator="\n", strip=True)
        if DIGIT.search(text):
            lines = [line for line in text.split("\n") if line][:_MAX_SCOPE_LINES]
            boxes.append((weight, lines))
    return boxes


def boxed_codes(
    boxes: list[tuple[float, list[str]]], label_max: int
) -> list[tuple[CodeSystem | None, str]]:
    """Codes named in the boxes around the content, best first (see :func:`fact_boxes`)."""
    scores: dict[tuple[CodeSystem | None, str], float] = {}
    order: dict[tuple[CodeSystem | None, str], int] = {}
    for weight, lines in boxes:
        _, code = label_codes(lines, label_max)
        found = [code] if code is not None else []
        found += [c for line in lines if (c := mentioned_code(line))]
        for candidate in found:
            key = (candidate[0], candidate[1])
            scores[key] = scores.get(key, 0.0) + weight
            order.setdefault(key, len(order))
    return sorted((k for k, v in scores.items() if v > 0), key=lambda k: (-scores[k], order[k]))


_MAX_SCOPE_LINES = 40


def unfold_tabs(tree: LexborHTMLParser) -> None:
    """Give each tab panel its tab's label as a heading, and drop the row of tabs.

    A tabbed page ("Overview | Getting ready | The operation") shows its section headings in a
    ``role="tablist"`` above the panels; a panel names its tab with ``aria-labelledby`` (or the
    tab names its panel with ``aria-controls``). Read in document order, the labels would all
    come first and the panels after them with no heading at all.
    """
    labels: dict[str, str] = {}
    for tab in tree.css('[role="tab"]'):
        label = collapse(tab.text(deep=True))
        attrs = tab.attributes
        for key in (attrs.get("id"), attrs.get("aria-controls")):
            if key and label:
                labels.setdefault(key, label)
    unfolded = False
    for panel in tree.css('[role="tabpanel"]'):
        attrs = panel.attributes
        named = labels.get(attrs.get("aria-labelledby") or "") or labels.get(attrs.get("id") or "")
        if not named or _opens_with_heading(panel):
            continue  # a panel with a heading of its own needs no other
        # An emphasized label, not an <h2>: the tabs may be sub-labels of a section ("Weeks
        # 0-6" under "Recovery") as often as the page's sections; a label that names a
        # section opens it either way.
        heading = LexborHTMLParser(f"<p><em>{html.escape(named)}</em></p>").css_first("p")
        if heading is not None:
            panel.insert_before(heading)
            unfolded = True
    if unfolded:
        for tablist in tree.css('[role="tablist"]'):
            tablist.decompose()


def unfold_plain_text(tree: LexborHTMLParser) -> None:
    """Replace each ``<pre>`` that holds a document (an e-mail, a text leaflet) by the
    headings, paragraphs and lists its layout of lines shows (:mod:`pipeline.extract.plaintext`).
    """
    for pre in tree.css("pre"):
        text = pre.text(deep=True)
        if not is_prose(text):
            continue
        blocks = LexborHTMLParser(f"<div>{prose_to_html(text)}</div>").css_first("div")
        if blocks is not None:
            pre.replace_with(blocks)


def _opens_with_heading(node: LexborNode) -> bool:
    heading = node.css_first("h1, h2, h3, h4, h5, h6, [role=heading]")
    if heading is None:
        return False
    return collapse(node.text(deep=True)).startswith(collapse(heading.text(deep=True)))


#: Elements that remove_chrome counts before it strips them.
_CHROME_BY_TAG = ("nav", "aside", "dialog", "menu")


def remove_chrome(tree: LexborHTMLParser, vocab: Vocabulary) -> ChromeCount:
    """Drop elements that are never content (scripts, navigation, sidebars...) in C."""
    count = ChromeCount()
    for tag in _CHROME_BY_TAG:  # by tag: no CSS query (see document_title)
        for node in tree.tags(tag):
            count.blocks += 1
            count.chars += len(node.text(deep=True, strip=True))
    tree.strip_tags(list(vocab.chrome_tags))
    return count
