"""What a URL of the reference site's layout is (its kind and code), from its path alone."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

UrlKind = Literal["procedure", "listing", "sitemap", "robots", "other"]

_PROCEDURE_PATH = re.compile(
    r"/code/(cpt4|hcpcs|icd10cm|icd10pcs)/((?=[A-Za-z0-9.]*\d)[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?)"
    r"(?:-[^/]*)?",
    re.IGNORECASE,
)
_LISTING_PATH = re.compile(r"/code/list(?:/[^/]+)+", re.IGNORECASE)


# --- URL classes -----------------------------------------------------------------------------


def classify(url: str) -> UrlKind:
    """Say what a URL of the reference site's layout is, from its path alone."""
    path = urlsplit(url).path
    lower = path.lower()
    if lower == "/robots.txt":
        return "robots"
    if lower.endswith((".xml", ".xml.gz")):
        return "sitemap"
    if _PROCEDURE_PATH.fullmatch(path):
        return "procedure"
    if _LISTING_PATH.fullmatch(path):
        return "listing"
    return "other"


def procedure_key(url: str) -> tuple[str, str] | None:
    """``(system, CODE)`` of a procedure URL (``("cpt4", "22212")``), else None."""
    match = _PROCEDURE_PATH.fullmatch(urlsplit(url).path)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).upper()
