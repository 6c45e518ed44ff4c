"""Codes and code systems: from page labels, URL segments, locations, page text and formats.

* :func:`system_from_label` - the label under a page's title: "CPT4 code", "CPT® code",
  "HCPCS Level II code", "ICD-10-CM code", "ICD10PCS code" (case, ®/™, spaces and hyphens do not
  matter); the label may lead a longer line ("CPT code 22212"). A bare "ICD-10" is ambiguous.
* :func:`system_from_segment` - a URL path segment: "cpt4"/"cpt", "hcpcs", "icd10cm"/"icd-10-cm",
  "icd10pcs"/"icd-10-pcs".
* :func:`infer_system` - from the format alone, when exactly one system's published format
  (``models.CODE_PATTERNS``) fits: "22212"/"0042T" CPT, "G0105" HCPCS, "J06.9"/"J06" ICD-10-CM,
  "0SRC0J9" ICD-10-PCS.
* :func:`code_from_location` - "/code/<system>/<CODE>-<slug>" in a URL or file path (with an
  extension, query, fragment, %-encoding or Windows backslashes), else a basename
  "<CODE>-<slug>.html" / "<CODE>.html" whose code fits some system, the system then coming from the
  parent directory's name or the format. The code ends at the first "-" after it, so the dot of
  "J06.9-acute-..." stays in the code.
* :func:`find_code` - a *labeled* code in page text: "(HCPCS Code G0206)", "CPT code 22212",
  "CPT® 22212", "ICD-10-CM J06.9", "Code: J06.9" (system ``None`` when the label names none).
* :func:`parse_similar_item` - one entry of a "Similar Codes" section: code, system (href
  segment, then a label in the text, then the format, then the page's default) and title.

Codes are returned upper case.
"""

from __future__ import annotations

import re
from itertools import pairwise
from urllib.parse import parse_qsl, unquote

from pipeline.extract.normalize.text import clean_item, collapse
from pipeline.models import CODE_PATTERNS, CodeSystem, code_fits

# --- data -------------------------------------------------------------------------------------

#: A page label naming a system; group names are the systems' keys in ``_LABEL_SYSTEM``.
_LABEL = (
    r"(?:(?P<cpt>cpt)(?:\s*[-‐]?\s*4(?![\d.]))?|(?P<hcpcs>hcpcs)(?:\s*(?:level\s*(?:ii|2)))?"
    r"|(?P<cm>icd\s*[-‐]?\s*10\s*[-‐]?\s*cm)|(?P<pcs>icd\s*[-‐]?\s*10\s*[-‐]?\s*pcs))"
    r"(?:\s*(?:®|™|\(r\)|\(tm\)))?"
)
_LABEL_SYSTEM: dict[str, CodeSystem] = {
    "cpt": CodeSystem.CPT,
    "hcpcs": CodeSystem.HCPCS,
    "cm": CodeSystem.ICD10CM,
    "pcs": CodeSystem.ICD10PCS,
}
_LABEL_LINE = re.compile(
    rf"^\W*{_LABEL}(?:\s*(?:level\s*(?:ii|2)\s*)?(?:codes?|code\s+set|\(|:|$|\s|\d))", re.IGNORECASE
)
_SEGMENTS: dict[str, CodeSystem] = {
    "cpt4": CodeSystem.CPT,
    "cpt": CodeSystem.CPT,
    "hcpcs": CodeSystem.HCPCS,
    "hcpcs2": CodeSystem.HCPCS,
    "icd10cm": CodeSystem.ICD10CM,
    "icd10pcs": CodeSystem.ICD10PCS,
}
_SEGMENT_JUNK = re.compile(r"[\s\-_.]+")

#: A code-shaped token: 3-7 letters/digits, optionally a dot and 1-4 more (ICD-10-CM).
#: One code of any system as a page writes it (upper case): CPT "45378"/"0042T", HCPCS "G0105",
#: ICD-10-PCS "0DTJ4ZZ", ICD-10-CM "Z51.11". A regular-expression fragment for other patterns.
CODE_FORMAT = r"(?:\d{4}[0-9FTUM]|[A-Z]\d{4}|[0-9A-HJ-NP-Z]{7}|[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)"
_CODE = r"[A-Za-z0-9]{3,7}(?:\.[A-Za-z0-9]{1,4})?"
_CODE_PATH = re.compile(r"(?:^|/)code/(?P<segment>[^/]+)/(?P<name>[^/]+)/*$", re.IGNORECASE)
_EXTENSION = re.compile(r"\.(?:html?|xhtml|php|aspx?|txt|json)$", re.IGNORECASE)
_CODE_NAME = re.compile(rf"(?P<code>{_CODE})(?:-|$)")

_FIND_CODE = re.compile(
    rf"""(?:\b{_LABEL}(?:\s+codes?)?|\bcodes?)
         (?:\s+(?:is|number|no\.?|\#))?\s*[:\#]?\s*
         (?P<code>(?=[A-Za-z]*\d){_CODE})(?!\w|\.\w)""",
    re.IGNORECASE | re.VERBOSE,
)
_SIMILAR = re.compile(
    rf"""^(?:{_LABEL}(?:\s+codes?)?\s*[:\#]?\s*)?
         (?P<code>{_CODE})(?=$|[\s:\-–—(,;|])
         (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_HREF_SEGMENT = re.compile(r"(?:^|/)code/(?P<segment>[^/?#]+)/", re.IGNORECASE)
_TITLE_LEAD = " \t-–—:;|,.·•"
_TITLE_TAIL = " \t-–—:;|,"


# --- logic ------------------------------------------------------------------------------------


def _labeled_system(match: re.Match[str]) -> CodeSystem | None:
    for key, system in _LABEL_SYSTEM.items():
        if match.group(key) is not None:
            return system
    return None


def system_from_label(text: str) -> CodeSystem | None:
    """The system a page label names ("CPT4 code", "HCPCS Level II code", "ICD-10-CM code")."""
    match = _LABEL_LINE.match(text.strip() + " ")
    return None if match is None else _labeled_system(match)


def system_from_segment(segment: str) -> CodeSystem | None:
    """The system of a URL path segment ("cpt4", "hcpcs", "icd10cm", "icd-10-pcs")."""
    return _SEGMENTS.get(_SEGMENT_JUNK.sub("", segment.lower()))


def infer_system(code: str) -> CodeSystem | None:
    """The one system whose published format fits ``code``; ``None`` when none or several do."""
    code = code.strip().upper()
    fits = [system for system, pattern in CODE_PATTERNS.items() if pattern.fullmatch(code)]
    return fits[0] if len(fits) == 1 else None


def _fitting(code: str, system: CodeSystem | None) -> tuple[CodeSystem | None, str] | None:
    """(system, code) when the code fits ``system`` or some system; else ``None``."""
    if system is not None and code_fits(code, system):
        return system, code
    inferred = infer_system(code)
    if inferred is not None or any(p.fullmatch(code) for p in CODE_PATTERNS.values()):
        return inferred, code
    return None


_QUERY_KEYS = frozenset(
    {"code", "cpt", "hcpcs", "icd", "icd10", "proc", "procedure", "procedure_code", "cpt_code",
     "hcpcs_code", "icd_code", "codevalue"}
)  # fmt: skip
#: A code named by its system inside a path segment: "cpt-42826-tonsillectomy", "icd10pcs_0DTJ4ZZ".
_LABELED_SEGMENT = re.compile(
    rf"(?:^|[-_.])(?P<segment>cpt4?|hcpcs2?|icd-?10-?(?:cm|pcs))[-_]?(?P<code>{_CODE})(?=$|[-_.])",
    re.IGNORECASE,
)


#: A code at the end of a slug: "laparoscopic-appendectomy-0dtj4zz", "knee-arthroscopy-29881".
_SLUG_TAIL = re.compile(
    r"[-_](?P<code>\d{4}[0-9ftum]|[a-z]\d{4}|(?=[a-z0-9]*\d)(?=[a-z0-9]*[a-z])[0-9a-hj-np-z]{7}"
    r"|[a-z]\d[0-9a-z]\.[0-9a-z]{1,4})$",
    re.IGNORECASE,
)


def _has_digit(code: str) -> bool:
    return any(c.isdigit() for c in code)


def code_from_location(location: str) -> tuple[CodeSystem | None, str] | None:
    """(system, CODE) from a page's URL or file path; ``None`` when nothing there is code-like.

    In order: the reference layout ``/code/<system>/<CODE>-<slug>``; a segment naming its system
    (``/procedures/cpt-42826-tonsillectomy``, ``.../capsulotomy-cpt-66821``); a query parameter
    (``?code=45378``, ``?cpt=27130``); a segment after a system segment (``/cpt/45378``); a file
    name ``<CODE>-<slug>.html`` or ``<CODE>.html``; a segment that is only a code
    (``/tests/93306/echocardiogram``); a code at the end of a slug (``.../appendectomy-0dtj4zz``).
    """
    without_fragment = location.strip().split("#", 1)[0]
    path, _, query = without_fragment.partition("?")
    # An encoded slash is part of a name, not a path separator: keep it encoded.
    path = unquote(path.replace("%2F", "%252F").replace("%2f", "%252f"))
    path = path.replace("\\", "/").rstrip("/")
    match = _CODE_PATH.search(path)
    if match is not None:
        name = _EXTENSION.sub("", match.group("name"))
        code_match = _CODE_NAME.match(name)
        if code_match is not None:
            code = code_match.group("code").upper()
            found = _fitting(code, system_from_segment(match.group("segment")))
            if found is not None:
                return found
    segments = [_EXTENSION.sub("", s) for s in path.split("/") if s]
    if segments and "://" in location:
        segments = segments[2:]  # scheme and host
    for segment in reversed(segments):
        for labeled in _LABELED_SEGMENT.finditer(segment):
            code = labeled.group("code").upper()
            found = _fitting(code, system_from_segment(labeled.group("segment")))
            if found is not None and _has_digit(code):
                return found
    for key, value in parse_qsl(query):
        if key.lower() in _QUERY_KEYS:
            code = value.strip().upper()
            found = _fitting(code, None) if _has_digit(code) else None
            if found is not None:
                return found
    for previous, segment in pairwise(segments):
        system = system_from_segment(previous)
        if system is not None:
            code_match = _CODE_NAME.match(segment)
            if code_match is not None:
                found = _fitting(code_match.group("code").upper(), system)
                if found is not None:
                    return found
    if segments:
        code_match = _CODE_NAME.match(segments[-1])
        if code_match is not None and _has_digit(code_match.group("code")):
            found = _fitting(code_match.group("code").upper(), _parent_system(segments))
            if found is not None:
                return found
    # In a file path, directories are the user's filing ("/tmp/t31/page.html"), not the site's
    # address: an unlabelled directory name is never read as the code.
    for segment in reversed(segments[:-1] if "://" in location else []):
        if _has_digit(segment) and any(
            p.fullmatch(segment.upper()) for p in CODE_PATTERNS.values()
        ):
            return _fitting(segment.upper(), None)
    for segment in reversed(segments if "://" in location else segments[-1:]):
        tail = _SLUG_TAIL.search(segment)
        if tail is not None:
            found = _fitting(tail.group("code").upper(), None)
            if found is not None:
                return found
    return None


def _parent_system(segments: list[str]) -> CodeSystem | None:
    return system_from_segment(segments[-2]) if len(segments) > 1 else None


#: "Procedure code (CPT): 55250", "cpt_code 64721": the label's words in another order or
#: joined by an underscore; read as "CPT code".
_LABEL_AFTER = re.compile(
    r"\b(codes?)\s*\(\s*(cpt(?:-?4)?|hcpcs|icd-?10-?(?:cm|pcs))\s*\)", re.IGNORECASE
)
_LABEL_JOINED = re.compile(r"\b(cpt|hcpcs)_(codes?)\b", re.IGNORECASE)


def find_code(text: str) -> tuple[CodeSystem | None, str] | None:
    """The first labeled code in page text ("CPT code 22212", "(HCPCS Code G0206)",
    "Procedure code (CPT): 55250")."""
    if "(" in text or "_" in text:
        text = _LABEL_JOINED.sub(r"\1 \2", _LABEL_AFTER.sub(r"\2 \1", text))
    for match in _FIND_CODE.finditer(text):
        code = match.group("code").upper()
        labeled = _labeled_system(match)
        if labeled is not None and code_fits(code, labeled):
            return labeled, code
        if any(pattern.fullmatch(code) for pattern in CODE_PATTERNS.values()):
            return None, code
    return None


def _title(rest: str) -> str | None:
    title = collapse(rest).lstrip(_TITLE_LEAD).rstrip(_TITLE_TAIL)
    if title.startswith("(") and title.endswith(")") and title.count("(") == 1:
        title = title[1:-1].lstrip(_TITLE_LEAD).rstrip(_TITLE_TAIL)
    return title or None


def parse_similar_item(
    text: str, href: str | None, default_system: CodeSystem
) -> tuple[str, CodeSystem, str | None] | None:
    """(CODE, system, title) of one "Similar Codes" entry; ``None`` when it holds no valid code."""
    text = clean_item(text)
    href_system: CodeSystem | None = None
    if href:
        segment = _HREF_SEGMENT.search(unquote(href).replace("\\", "/"))
        if segment is not None:
            href_system = system_from_segment(segment.group("segment"))
    match = _SIMILAR.match(text)
    code: str | None = None
    title: str | None = None
    label_system: CodeSystem | None = None
    if match is not None:
        # Every published code has a digit: "Related procedures" holds no code "RELATED".
        candidate = match.group("code")
        candidate = candidate.upper() if any(c.isdigit() for c in candidate) else ""
        if candidate and any(pattern.fullmatch(candidate) for pattern in CODE_PATTERNS.values()):
            code = candidate
            title = _title(match.group("rest"))
            label_system = _labeled_system(match)
    if code is None:
        # The entry is only a title; the code is in the link ("/code/cpt4/22210-...").
        located = code_from_location(href) if href else None
        if located is None:
            return None
        href_system = href_system or located[0]
        code = located[1]
        title = _title(text)
    for system in (href_system, label_system, infer_system(code), default_system):
        if system is not None and code_fits(code, system):
            return code, system, title
    return None
