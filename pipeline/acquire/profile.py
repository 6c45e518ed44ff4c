"""A site's URL layout, in one place: which links a crawl follows and what each URL is for.

A crawl fetches every URL a sitemap lists, whatever its shape. Links found on pages are followed
when they match one of the profile's ``follow`` patterns and none of its ``deny`` patterns, as
Scrapy's link extractors decide with ``allow`` and ``deny``. Patterns are regular expressions
searched in the whole normalized URL (``re.search``).

A fetched URL is one of:

- ``sitemap`` or ``robots``, by its path;
- ``listing``: a page of links (an index by letter, the home page), fetched for its links and
  never extracted; a URL matching a ``listing`` pattern, or a seed that matches no ``pages``
  pattern (a crawl starts from navigation);
- ``page``: everything else. Whether a page is a procedure page is decided by its content when
  it is built, not by its URL.

The defaults describe the reference site (``/code/<system>/<CODE>-<slug>`` pages and
``/code/list/...`` listings); another site's layout is set in the config (``follow``, ``deny``,
``listing``, ``pages``), validated when it loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pipeline.errors import UsageError

UrlKind = Literal["page", "listing", "sitemap", "robots"]

#: The reference site's procedure pages: /code/<system>/<CODE>[-<slug>].
REFERENCE_PAGES = (
    r"/code/(?:cpt4|hcpcs|icd10cm|icd10pcs)/(?=[A-Za-z0-9.]*\d)[A-Za-z0-9.]+(?:-[^/?#]*)?$",
)
#: The reference site's listing pages (/code/list/A) and its home page.
REFERENCE_LISTINGS = (r"/code/list(?:/[^/?#]+)+$", r"^https?://[^/]+/?$")


def _compile(patterns: Iterable[str], name: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise UsageError(
                f"{name} pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return tuple(compiled)


@dataclass(frozen=True)
class SiteProfile:
    """A site's URL layout (see the module docstring); patterns are checked when it is made."""

    follow: tuple[str, ...] = REFERENCE_PAGES + REFERENCE_LISTINGS[:1]
    deny: tuple[str, ...] = ()
    listing: tuple[str, ...] = REFERENCE_LISTINGS
    pages: tuple[str, ...] = REFERENCE_PAGES
    _follow: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _deny: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _listing: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _pages: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("follow", "deny", "listing", "pages"):
            object.__setattr__(self, "_" + name, _compile(getattr(self, name), name))

    def follows(self, url: str) -> bool:
        """A link on a page is followed: it matches a ``follow`` pattern and no ``deny`` one."""
        return _any(self._follow, url) and not _any(self._deny, url)

    def kind(self, url: str, *, seed: bool = False) -> UrlKind:
        """What a URL is fetched for (see the module docstring)."""
        path = urlsplit(url).path.lower()
        if path == "/robots.txt":
            return "robots"
        if path.endswith((".xml", ".xml.gz")):
            return "sitemap"
        if _any(self._listing, url):
            return "listing"
        if seed and not _any(self._pages, url):
            return "listing"
        return "page"


def _any(patterns: tuple[re.Pattern[str], ...], url: str) -> bool:
    return any(pattern.search(url) for pattern in patterns)


#: The reference site's layout (the default).
REFERENCE = SiteProfile()
