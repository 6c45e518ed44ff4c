"""Bytes -> text, the way browsers decide a page's encoding.

Order (WHATWG "encoding sniffing", simplified): a byte-order mark wins; then the charset of the
HTTP Content-Type header; then a ``<meta charset>`` or ``<meta http-equiv="Content-Type">``
within the first 1024 bytes; then detection: strict UTF-8 if it decodes, else charset-normalizer,
else windows-1252. Labels are mapped as browsers map them (``latin1``, ``iso-8859-1`` and
``ascii`` all mean windows-1252). Undecodable bytes become U+FFFD, never an exception.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

#: WHATWG label aliases that Python's codec registry resolves differently.
_LABEL_ALIASES: dict[str, str] = {
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "l1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
}

#: Python text codecs that no page can be written in.
_NOT_CHARSETS = frozenset(
    {"undefined", "idna", "punycode", "raw-unicode-escape", "unicode-escape", "rot-13", "mbcs",
     "oem", "raw_unicode_escape", "unicode_escape", "rot13", "charmap"}
)  # fmt: skip
_META_CHARSET = re.compile(
    rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.IGNORECASE
)
_PRESCAN_BYTES = 1024
_SINGLE_BYTE = re.compile(r"(cp\d+|latin|iso8859|mac|ascii|utf_8|koi8|tis)", re.IGNORECASE)


def normalize_label(label: str | None) -> str | None:
    """A charset label -> a Python codec name, or None if the label names no known encoding."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    key = _LABEL_ALIASES.get(key, key)
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    # Only text encodings: "base64", "zlib", "rot13", "idna"... are codecs, not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def charset_from_content_type(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header value, if any."""
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def sniff_encoding(data: bytes, http_charset: str | None = None) -> tuple[str, int]:
    """Return (codec name, number of leading bytes to skip) for ``data``."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    declared = normalize_label(http_charset)
    if declared:
        return declared, 0
    match = _META_CHARSET.search(data, 0, _PRESCAN_BYTES)
    if match:
        declared = normalize_label(match.group(1).decode("ascii", "replace"))
        if declared:
            if declared.startswith("utf-16") or declared.startswith("utf_16"):
                declared = "utf-8"
            return declared, 0
    return _detect(data), 0


def _detect(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    # Browsers in English locales fall back to windows-1252; detection only overrides that for
    # multi-byte encodings (Shift_JIS, GB18030, EUC-KR...) that a single-byte guess would garble.
    best = from_bytes(data[:65536]).best()
    if best is not None and not _SINGLE_BYTE.match(best.encoding):
        found = normalize_label(best.encoding)
        if found:
            return found
    return "cp1252"


def decode_html(data: bytes, http_charset: str | None = None) -> str:
    """Decode a page's bytes to text as a browser would."""
    name, skip = sniff_encoding(data, http_charset)
    return data[skip:].decode(name, errors="replace")
