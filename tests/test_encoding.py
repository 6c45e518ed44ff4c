"""pipeline.encoding: bytes -> text the way a browser decides a page's encoding.

Order: a byte-order mark wins; then the HTTP charset; then a <meta> charset within the first 1024
bytes; then detection (strict UTF-8, a multi-byte guess, else windows-1252). Labels mean what they
mean to a browser (latin-1, iso-8859-1 and ascii are windows-1252); unknown labels are ignored;
undecodable bytes become U+FFFD and nothing raises.
"""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.encoding import (
    charset_from_content_type,
    decode_html,
    normalize_label,
    sniff_encoding,
)

#: windows-1252 bytes for ’ “ ” – (0x92 0x93 0x94 0x96) and é (0xE9).
CP1252_PUNCTUATION = b"\x92 \x93quoted\x94 \x96 caf\xe9"
PUNCTUATION = "\u2019 \u201cquoted\u201d \u2013 caf\u00e9"
UTF8_TEXT = "Caf\u00e9 \u2013 it\u2019s \u201cfine\u201d \u2713"


def page(head: str = "", body: str = UTF8_TEXT) -> str:
    return (
        f"<!DOCTYPE html><html><head>{head}<title>T</title></head><body><p>{body}</p></body></html>"
    )


def codec(data: bytes, http_charset: str | None = None) -> str:
    name, _ = sniff_encoding(data, http_charset)
    return codecs.lookup(name).name


# --- byte-order marks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bom", "encoding", "expected"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
    ],
)
def test_bom_wins_over_http_and_meta(bom: bytes, encoding: str, expected: str) -> None:
    html = page('<meta charset="windows-1252">')
    data = bom + html.encode(encoding)
    assert codec(data, "iso-8859-2") == expected
    assert sniff_encoding(data, "iso-8859-2")[1] == len(bom)
    text = decode_html(data, "iso-8859-2")
    assert text == html  # the BOM is dropped, nothing else changes
    assert UTF8_TEXT in text


def test_utf8_bom_with_cp1252_meta_keeps_utf8_text() -> None:
    data = (
        codecs.BOM_UTF8
        + page(
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        ).encode()
    )
    text = decode_html(data)
    assert UTF8_TEXT in text
    assert "\ufeff" not in text
    assert "â€" not in text


# --- HTTP charset --------------------------------------------------------------------------------


def test_http_charset_wins_over_meta() -> None:
    data = page('<meta charset="windows-1252">').encode("utf-8")
    assert codec(data, "utf-8") == "utf-8"
    assert UTF8_TEXT in decode_html(data, "utf-8")
    # ...and the other way round: cp1252 bytes, meta utf-8, HTTP windows-1252.
    data = page('<meta charset="utf-8">', PUNCTUATION).encode("cp1252")
    assert PUNCTUATION in decode_html(data, "windows-1252")


@pytest.mark.parametrize("label", ["UTF-8", " utf-8 ", '"utf-8"', "utf8", "Unicode-1-1-UTF-8"])
def test_http_charset_labels_are_normalized(label: str) -> None:
    data = page('<meta charset="windows-1252">').encode("utf-8")
    assert codec(data, label) == "utf-8"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html; charset=UTF-8", "UTF-8"),
        ('text/html;charset="windows-1252"', "windows-1252"),
        ("text/html; Charset = iso-8859-1 ; q=1", "iso-8859-1"),
        ("text/html", None),
        ("text/html; charset=", None),
        (None, None),
    ],
)
def test_charset_from_content_type(content_type: str | None, expected: str | None) -> None:
    assert charset_from_content_type(content_type) == expected


# --- meta charset --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1252">',
        "<meta charset=windows-1252>",
        "<META CHARSET='Windows-1252'>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
        "<meta content='text/html; charset=windows-1252' http-equiv='content-type'>",
        '<META HTTP-EQUIV="Content-Type" CONTENT="text/html;charset=windows-1252">',
    ],
)
def test_meta_charset_both_forms(meta: str) -> None:
    data = page(meta, PUNCTUATION).encode("cp1252")
    assert codec(data) == "cp1252"
    assert PUNCTUATION in decode_html(data)


def test_meta_charset_is_read_only_in_the_first_1024_bytes() -> None:
    # UTF-8 bytes with a windows-1252 meta after 1024 bytes: the meta is not seen, detection
    # finds UTF-8.
    late = page("<!--" + "x" * 1100 + '--><meta charset="windows-1252">').encode("utf-8")
    assert late.index(b"<meta") > 1024
    assert codec(late) == "utf-8"
    assert UTF8_TEXT in decode_html(late)
    # The same meta early is obeyed (and garbles the UTF-8 text, as in a browser).
    early = page('<meta charset="windows-1252">').encode("utf-8")
    assert codec(early) == "cp1252"


def test_meta_that_ends_past_1024_bytes_is_not_read() -> None:
    head = "<!--" + "x" * (1024 - len('<!DOCTYPE html><html><head><!----><meta charset="w')) + "-->"
    data = page(head + '<meta charset="windows-1252">').encode("utf-8")
    assert data.index(b"<meta") < 1024 < data.index(b"<meta") + len(b'<meta charset="windows')
    assert codec(data) == "utf-8"


def test_meta_utf16_means_utf8() -> None:
    # A page whose bytes could carry an ASCII <meta> is not UTF-16, whatever it says.
    data = page('<meta charset="utf-16">').encode("utf-8")
    assert codec(data) == "utf-8"
    assert UTF8_TEXT in decode_html(data)


# --- labels that mean windows-1252 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    ["latin1", "latin-1", "iso-8859-1", "ISO-8859-1", "iso8859-1", "iso_8859-1", "l1", "ascii",
     "us-ascii", "windows-1252", "x-cp1252"],
)  # fmt: skip
def test_latin1_and_ascii_labels_mean_windows_1252(label: str) -> None:
    assert normalize_label(label) == "cp1252"
    data = (
        page(f'<meta charset="{label}">', "x")
        .encode()
        .replace(b"<p>x", b"<p>" + CP1252_PUNCTUATION)
    )
    assert PUNCTUATION in decode_html(data)
    assert PUNCTUATION in decode_html(CP1252_PUNCTUATION + b"<p>", label)


# --- detection -----------------------------------------------------------------------------------


def test_undeclared_utf8_is_detected() -> None:
    assert codec(page().encode()) == "utf-8"


@pytest.mark.parametrize(
    "body",
    [
        "The doctor\u2019s office is caf\u00e9-side; you\u2019ll wait \u2013 briefly.",
        "Na\u00efve patients\u2019 \u201cpre-op\u201d r\u00e9sum\u00e9 \u2013 d\u00e9j\u00e0 vu.",
        "Caf\u00e9",
    ],
)
def test_undeclared_windows_1252_is_detected(body: str) -> None:
    data = page(body=body).encode("cp1252")
    assert codec(data) == "cp1252"
    assert body in decode_html(data)


def test_detection_is_not_fooled_by_a_long_ascii_prefix() -> None:
    data = page(body="x " * 40_000 + "caf\u00e9 \u2019").encode("cp1252")
    assert decode_html(data).endswith("caf\u00e9 \u2019</p></body></html>")


# --- unknown labels and bad bytes ----------------------------------------------------------------


@pytest.mark.parametrize("label", ["x-unknown", "utf-9", "", "   ", "\u00e9t\u00e9", "nope;drop"])
def test_unknown_http_label_is_ignored(label: str) -> None:
    assert normalize_label(label) is None
    data = page('<meta charset="windows-1252">', PUNCTUATION).encode("cp1252")
    assert codec(data, label) == "cp1252"  # the meta decides
    assert PUNCTUATION in decode_html(data, label)


@pytest.mark.parametrize("label", ["x-unknown", "utf-9", "klingon"])
def test_unknown_meta_label_is_ignored(label: str) -> None:
    data = page(f'<meta charset="{label}">').encode()
    assert codec(data) == "utf-8"
    assert UTF8_TEXT in decode_html(data)


#: Labels Python's codec registry resolves but that name no text encoding a browser knows.
NOT_TEXT_ENCODINGS = ["base64", "hex", "rot13", "zlib", "bz2", "uu", "quopri", "undefined",
                      "idna", "punycode", "unicode_escape", "raw_unicode_escape"]  # fmt: skip


@pytest.mark.parametrize("label", NOT_TEXT_ENCODINGS)
def test_labels_of_codecs_that_are_not_text_encodings_are_ignored(label: str) -> None:
    assert normalize_label(label) is None
    data = page(f'<meta charset="{label}">').encode()
    assert UTF8_TEXT in decode_html(data)
    assert UTF8_TEXT in decode_html(page().encode(), label)


def test_label_with_a_nul_is_unknown() -> None:
    assert normalize_label("utf-8\x00") is None


@pytest.mark.parametrize(
    ("data", "http_charset"),
    [
        (b"<p>\xff\xfe\xfd \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x80</p>", "utf-8"),
        (page('<meta charset="utf-8">').encode() + b"\xe2\x82", None),  # truncated at the end
        (b"<p>\x81\x8d\x8f\x90\x9d</p>", "windows-1252"),  # the five bytes cp1252 leaves undefined
        # UTF-16LE with a lone high surrogate, odd length
        (b"\xff\xfe<\x00p\x00>\x00\x00\xd8", None),
        (b"\xfe\xff\x00<\x00p\x00", None),
        (b"<p>\x82\xa0\x82\xa2 \x8e\x9f</p>", "shift_jis"),
        (b"<p>\xa4\xa4\xa4\xe5\xff</p>", "gb18030"),
    ],
)
def test_invalid_bytes_are_replaced_never_raised(data: bytes, http_charset: str | None) -> None:
    text = decode_html(data, http_charset)
    assert isinstance(text, str)
    assert "\ufffd" in text or http_charset in ("windows-1252", "shift_jis", "gb18030")


def test_invalid_utf8_in_a_page_declared_utf8_becomes_replacement_characters() -> None:
    data = page('<meta charset="utf-8">', "caf_ \u2019").encode().replace(b"caf_", b"caf\xe9")
    text = decode_html(data)
    assert "caf\ufffd \u2019" in text


#: Labels a page or server might send: the real ones, Python-only names, junk.
_LABEL_NAMES = ["utf-8", "UTF8", "windows-1252", "latin1", "ascii", "iso-8859-2", "koi8-r",
                "shift_jis", "euc-jp", "gb2312", "big5", "utf-16", "utf-16le", "utf-7",
                "x-user-defined", "bogus", "", *NOT_TEXT_ENCODINGS]  # fmt: skip
LABELS = st.one_of(st.none(), st.sampled_from(_LABEL_NAMES), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=64),
    label=LABELS,
    meta=LABELS,
    body=st.binary(max_size=2048),
)
def test_decode_never_raises(
    prefix: bytes, label: str | None, meta: str | None, body: bytes
) -> None:
    head = f'<meta charset="{meta}">'.encode("utf-8", "replace") if meta is not None else b""
    for data in (prefix + head + body, prefix + body, head + body):
        name, skip = sniff_encoding(data, label)
        assert 0 <= skip <= 3
        codecs.lookup(name)
        assert isinstance(decode_html(data, label), str)
