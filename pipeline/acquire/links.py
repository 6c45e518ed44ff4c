"""The links of a fetched page, normalized, in page order. Pure: no network."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

from pipeline.acquire.urls import _SCHEMES, _clean, normalize_url

# --- links -----------------------------------------------------------------------------------


def extract_links(html: str | bytes, base_url: str) -> list[str]:
    """Every ``<a href>`` of the page, normalized, de-duplicated, in page order.

    Relative links resolve against the document's first ``<base href>`` (itself resolved against
    ``base_url``) or ``base_url``, which must be the URL the response came from. Empty and
    fragment-only hrefs (the page itself) and non-http(s) links are dropped. Bytes are read as
    UTF-8; pass a legacy-encoded page as text decoded the way the parser decodes it.
    """
    tree = LexborHTMLParser(html)
    base = _document_base(tree, base_url)
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}"
    seen: set[str] = set()
    links: list[str] = []
    for node in tree.css("a[href]"):
        href = (node.attributes.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        if href[0] == "/" and href[1:2] not in ("/", "\\"):
            # Root-relative (most links): resolved by hand, so that normalize_url's cache is
            # keyed by the absolute URL, which a site repeats on every page.
            url = normalize_url(origin + _clean(href))
        else:
            url = normalize_url(href, base)
        if url is not None and url not in seen:
            seen.add(url)
            links.append(url)
    return links


def _document_base(tree: LexborHTMLParser, base_url: str) -> str:
    node = tree.css_first("base[href]")
    href = (node.attributes.get("href") or "").strip() if node is not None else ""
    if not href:
        return base_url
    try:
        resolved = urljoin(_clean(base_url), _clean(href))
    except ValueError:
        return base_url
    return resolved if urlsplit(resolved).scheme.lower() in _SCHEMES else base_url
