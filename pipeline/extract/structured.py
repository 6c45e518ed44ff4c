"""What a page says about itself outside its visible text, and pages that arrive as JSON.

* :func:`page_metadata` reads, before scripts are stripped: the page's JSON-LD
  (``<script type="application/ld+json">``: a ``MedicalProcedure``'s ``code`` with ``codeValue``
  and ``codingSystem``, a page's ``name`` or ``headline``), its canonical link (``<link
  rel=canonical>``, ``og:url``) and its ``og:title``. The extractor falls back on these for the
  code and the title when the visible page does not show them.
* :func:`json_document_html` turns a content-API document (schema.org ``MedicalWebPage`` as
  JSON, sections as HTML fragments under ``mainEntityOfPage`` / ``hasPart``, as the NHS website
  content API serves them) into one HTML page: the name as ``<h1>``, each part's ``headline`` as
  ``<h2>`` followed by its fragments, in document order, each fragment once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from typing import Any

#: JSON-LD larger than this (characters) is not read.
MAX_JSON_LD = 200_000
#: Characters of a meta description or title read for a code.
_MENTION_CHARS = 300
#: Keys of a JSON document that hold site metadata, never the page's content.
_METADATA_KEYS = frozenset(
    {
        "author", "copyrightHolder", "breadcrumb", "relatedLink", "license", "publisher",
        "keywords", "genre", "lastReviewed", "dateModified", "datePublished", "contentSubTypes",
        "webpage", "url", "@context", "@id", "logo", "image", "about", "mainEntity", "sameAs",
        "isPartOf", "potentialAction", "audience", "significantLink",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PageMeta:
    """Codes, names and locations a page states in its structured data."""

    codes: tuple[tuple[str | None, str], ...] = ()  # (coding system as written, code value)
    names: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()  # canonical link, og:url
    #: Short texts that may name the code: the document title, meta description, og:title,
    #: breadcrumbs and the site header (read last, for a labelled code only).
    mentions: tuple[str, ...] = ()


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``value`` (depth first, document order)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _code_of(node: dict[str, Any]) -> tuple[str | None, str] | None:
    value = node.get("codeValue")
    if isinstance(value, str | int) and str(value).strip():
        system = node.get("codingSystem")
        return (str(system) if system else None, str(value).strip())
    value = node.get("code")
    if isinstance(value, str | int) and str(value).strip() and any(c.isdigit() for c in str(value)):
        return (None, str(value).strip())  # "code": "45378" on the procedure itself
    return None


def _ld_codes_and_names(data: Any) -> tuple[list[tuple[str | None, str]], list[str]]:
    codes: list[tuple[str | None, str]] = []
    names: list[str] = []
    for node in _objects(data):
        found = _code_of(node)
        if found is not None:
            codes.append(found)
        kind = node.get("@type")
        kinds = kind if isinstance(kind, list) else [kind]
        if any(
            k
            in (
                "MedicalProcedure",
                "MedicalTest",
                "MedicalTherapy",
                "SurgicalProcedure",
                "DiagnosticProcedure",
                "TherapeuticProcedure",
            )
            for k in kinds
        ):
            name = node.get("name")
            if isinstance(name, str) and name.strip():
                names.append(name.strip())
    return codes, names


def page_metadata(tree: Any) -> PageMeta:
    """The codes, procedure names and canonical locations a parsed page states about itself."""
    codes: list[tuple[str | None, str]] = []
    names: list[str] = []
    # The first CSS query of a tree sets up lexbor's selector engine (~50 us): it runs only
    # when an element by tag could match it (a lower-case value test, a superset of the match).
    has_ld = any(
        "ld+json" in (script.attributes.get("type") or "").lower() for script in tree.tags("script")
    )
    for script in tree.css('script[type="application/ld+json"]') if has_ld else ():
        raw = script.text(deep=True)
        if not raw or len(raw) > MAX_JSON_LD:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        found_codes, found_names = _ld_codes_and_names(data)
        codes += found_codes
        names += found_names
    locations: list[str] = []
    mentions: list[str] = []
    if not _may_state(tree):
        return PageMeta(tuple(codes), tuple(names))
    for node in tree.css(
        'link[rel="canonical"], meta[property="og:url"], meta[name="description"], '
        'meta[property="og:title"], meta[property="og:description"], meta[name="keywords"]'
    ):
        attrs = node.attributes
        value = (attrs.get("href") or attrs.get("content") or "").strip()
        if not value:
            continue
        if node.tag == "link" or attrs.get("property") == "og:url":
            locations.append(value)
        else:
            mentions.append(value[:_MENTION_CHARS])
    return PageMeta(tuple(codes), tuple(names), tuple(locations), mentions=tuple(mentions))


#: Values of ``<meta property|name>`` that page_metadata reads, lower case.
_META_VALUES = frozenset({"og:url", "description", "og:title", "og:description", "keywords"})


def _may_state(tree: Any) -> bool:
    """A canonical ``<link>`` or a read ``<meta>`` may be there (a superset of the selector)."""
    if any("canonical" in (n.attributes.get("rel") or "").lower() for n in tree.tags("link")):
        return True
    for node in tree.tags("meta"):
        attrs = node.attributes
        for key in ("property", "name"):
            value = attrs.get(key)
            if value and value.lower() in _META_VALUES:
                return True
    return False


# --- JSON documents ------------------------------------------------------------------------------


def looks_like_json(text: str) -> bool:
    head = text.lstrip()[:1]
    return head in ("{", "[")


def json_document_html(text: str) -> str | None:
    """The HTML page of a schema.org JSON document, or None when ``text`` is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not any(
        k in data for k in ("mainEntityOfPage", "hasPart", "articleBody", "text")
    ):
        return None
    parts: list[str] = []
    title = data.get("name") or data.get("headline")
    if isinstance(title, str) and title.strip():
        parts.append(f"<h1>{escape(title.strip())}</h1>")
    seen: set[str] = set()
    _emit(data, parts, seen, top=True)
    if len(parts) <= 1:
        return None
    return "<!DOCTYPE html><html><body><main>" + "".join(parts) + "</main></body></html>"


def _emit(value: Any, parts: list[str], seen: set[str], *, top: bool = False) -> None:
    if isinstance(value, list):
        for item in value:
            _emit(item, parts, seen)
        return
    if not isinstance(value, dict):
        return
    headline = value.get("headline")
    if not top and isinstance(headline, str) and headline.strip():
        parts.append(f"<h2>{escape(headline.strip())}</h2>")
    for key in ("articleBody", "text"):
        fragment = value.get(key)
        if isinstance(fragment, str) and fragment.strip() and fragment not in seen:
            seen.add(fragment)
            parts.append(fragment if "<" in fragment else f"<p>{escape(fragment)}</p>")
    for key, child in value.items():
        if key in _METADATA_KEYS or key in ("headline", "name", "text", "articleBody"):
            continue
        if key == "description" and not top:
            continue
        if isinstance(child, dict | list):
            _emit(child, parts, seen)
