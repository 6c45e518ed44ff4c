"""Input checks before a page is parsed: size, emptiness, binary data, markup, nesting.

:func:`decode_page` refuses pages over :data:`MAX_PAGE_BYTES`, empty or binary input and text
with no HTML markup, decodes bytes the way browsers do (:mod:`pipeline.encoding`), drops
NUL characters and ``<noscript>`` elements, and turns a schema.org JSON content document into
HTML (:mod:`pipeline.extract.structured`). :func:`check_nesting` refuses markup that would make
the HTML parser quadratic, in one linear pre-scan. Each refusal is a typed
:class:`~pipeline.errors.ParseError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.encoding import decode_html
from pipeline.errors import BinaryContent, EmptyPage, NotHtml, PageTooLarge
from pipeline.extract.normalize.text import aligned_lower
from pipeline.extract.structured import json_document_html, looks_like_json
from pipeline.limits import MAX_PAGE_BYTES

#: Pages larger than this are refused before parsing (bytes).

#: Deeper nesting, or more attributes on one element, is refused (see check_nesting).
MAX_NESTING = 2048
MAX_ATTRIBUTES = 4096
MAX_OPTIONS = 10_000
MAX_LEFT_OPEN = 1000
_SCAN_FROM = 4096

_BINARY_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"BZh",
    b"\xfd7zXZ", b"7z\xbc\xaf", b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF",
    b"MZ", b"wOFF", b"wOF2",
)  # fmt: skip
_TAG_START = re.compile(r"<(/?)([a-z][a-z0-9]*)")
_RAW_TEXT_TAGS = frozenset({"script", "style", "textarea", "title", "xmp", "noscript"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
     "wbr", "param", "keygen"}
)  # fmt: skip
#: Start tags that close an open element of these names first (as the HTML parser does).
_CLOSED_BY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "td": (("td", "th"), ("table", "tr")), "th": (("td", "th"), ("table", "tr")),
    "tr": (("tr",), ("table",)), "li": (("li",), ("ul", "ol")),
    "p": (("p",), ("div", "td", "th", "li", "table", "blockquote", "section", "article")),
    "dt": (("dt", "dd"), ("dl",)), "dd": (("dt", "dd"), ("dl",)),
    "option": (("option",), ("select",)),
}  # fmt: skip
_LOOK_DOWN = 64
_FORMATTING = frozenset(
    {
        "a",
        "b",
        "big",
        "code",
        "em",
        "font",
        "i",
        "nobr",
        "s",
        "small",
        "strike",
        "strong",
        "tt",
        "u",
    }
)
#: Bytes that do not occur in text (C0 controls other than tab, newlines, form feed).
_CONTROL_BYTES = bytes([*range(9), *range(14, 32)])
_HTML_SIGN = re.compile(
    r"<\s*(?:!doctype\s+html|html|head|body|p|div|h[1-6]|table|ul|ol|li|br|span|a|meta|title|"
    r"main|article|section|dl|font|b|strong)\b",
    re.IGNORECASE,
)


def decode_page(data: bytes | str, source: str, http_charset: str | None = None) -> str:
    """The page as text, after the input checks; a JSON content document becomes HTML."""
    size = len(data)
    if size > MAX_PAGE_BYTES:
        raise PageTooLarge(
            f"page is {size:,} bytes, over the {MAX_PAGE_BYTES:,}-byte limit", source=source
        )
    if isinstance(data, bytes):
        if not data.strip():
            raise EmptyPage("page is empty", source=source)
        if _looks_binary(data):
            raise BinaryContent("page is binary data, not text", source=source)
        text = decode_html(data, http_charset)
    else:
        text = data
    if not text.strip():
        raise EmptyPage("page is empty", source=source)
    if "\x00" in text:
        text = text.replace("\x00", "")  # browsers ignore U+0000 in text
    if "<noscript" in text or "<NOSCRIPT" in text:
        text = _drop_noscript(text)
    if looks_like_json(text):
        html = json_document_html(text)
        if html is not None:
            return html
    if not _HTML_SIGN.search(text, 0, 65536):
        raise NotHtml("text with no HTML markup", source=source)
    return text


def _drop_noscript(text: str) -> str:
    """Remove ``<noscript>`` elements, in one forward pass.

    lexbor parses with scripting off, where ``<noscript>`` content is markup; browsers
    (scripting on) read it as raw text that is never shown. An unclosed one runs to the end.
    """
    low = aligned_lower(text)
    kept: list[str] = []
    start = 0
    while (open_at := low.find("<noscript", start)) >= 0:
        kept.append(text[start:open_at])
        close = low.find("</noscript", open_at + 9)
        if close < 0:
            return "".join(kept)
        end = low.find(">", close)
        start = len(text) if end < 0 else end + 1
    kept.append(text[start:])
    return "".join(kept)


def check_nesting(text: str, source: str) -> None:
    """Refuse pathological markup before the HTML parser sees it.

    lexbor's tree construction is quadratic in nesting depth (100,000 nested ``<div>`` take
    25 s) and in the attributes of one element (100,000 attributes take 40 s); browsers cap
    depth at 512 for the same reason. Pages with few tags and attributes (every ordinary page)
    skip the scan; the others get one linear pass over their tags that ignores raw text
    (scripts, styles, comments) and elements that do not nest (void, auto-closing, formatting).
    """
    if text.count("<") < _SCAN_FROM and text.count("=") < _SCAN_FROM:
        return
    stack: list[str] = []
    # Formatting elements with attributes left open when their paragraph closed: the parser
    # re-creates all of them in every later paragraph (identical ones are capped at three).
    left_open = 0
    options = 0
    for is_end, name, self_closing, attributes in _scan_tags(text):
        if attributes > MAX_ATTRIBUTES:
            raise _pathological(f"an element with more than {MAX_ATTRIBUTES:,} attributes", source)
        if is_end:
            _pop_to(stack, (name,), ())
            continue
        if name in _VOID or self_closing:
            continue
        if name == "option":
            options += 1
            if options > MAX_OPTIONS:
                raise _pathological(f"more than {MAX_OPTIONS:,} form options", source)
        if name in _FORMATTING and attributes:
            stack.append(name + "=")  # marked: carries attributes
        else:
            implied = _CLOSED_BY.get(name)
            if implied:
                dropped = _pop_to(stack, *implied)
                if name == "p":
                    left_open += sum(1 for n in dropped if n.endswith("="))
                    if left_open > MAX_LEFT_OPEN:
                        raise _pathological(
                            f"more than {MAX_LEFT_OPEN:,} formatting elements left open", source
                        )
            stack.append(name)
        if len(stack) > MAX_NESTING:
            raise _pathological(f"elements nested deeper than {MAX_NESTING:,} levels", source)


def _pathological(what: str, source: str) -> PageTooLarge:
    return PageTooLarge(f"{what}: not a procedure page", source=source)


def _scan_tags(text: str) -> Iterator[tuple[bool, str, bool, int]]:
    """(is end tag, name, self-closing, number of ``=``) of each tag, in one forward pass.

    Comments and raw-text elements (scripts, styles...) are skipped; an opener with no closer
    ends the scan (the rest of the page is raw text or junk), so the pass stays linear.
    """
    low = aligned_lower(text)
    i = low.find("<")
    while i >= 0:
        if low.startswith("<!--", i):
            end = low.find("-->", i + 4)
            if end < 0:
                return
            i = low.find("<", end + 3)
            continue
        match = _TAG_START.match(low, i)
        if match is None:
            i = low.find("<", i + 1)
            continue
        close = low.find(">", match.end())
        if close < 0:
            return
        is_end, name = match.group(1) == "/", match.group(2)
        yield is_end, name, low[close - 1] == "/", low.count("=", match.end(), close)
        if not is_end and name in _RAW_TEXT_TAGS:
            end = low.find("</" + name, close + 1)
            if end < 0:
                return
            i = end
            continue
        i = low.find("<", close + 1)


def _pop_to(stack: list[str], names: tuple[str, ...], scope: tuple[str, ...]) -> list[str]:
    """Close the innermost open element named in ``names``, not looking past a ``scope``
    element (an ``<li>`` closes the open ``<li>`` of its own list, not of an outer one);
    returns the elements closed with it."""
    for i in range(len(stack) - 1, max(len(stack) - _LOOK_DOWN, 0) - 1, -1):
        name = stack[i].rstrip("=")
        if name in names:
            dropped = stack[i + 1 :]
            del stack[i:]
            return dropped
        if name in scope:
            break
    return []


def _looks_binary(data: bytes) -> bool:
    head = data[:4096]
    if head.startswith(_BINARY_MAGIC) and not head.lstrip().startswith(b"<"):
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a byte-order mark
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > len(head) * 0.1
