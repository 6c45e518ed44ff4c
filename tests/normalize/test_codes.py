"""Tests for pipeline.extract.normalize.codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.codes import (
    code_from_location,
    find_code,
    infer_system,
    parse_similar_item,
    system_from_label,
    system_from_segment,
)
from pipeline.models import CODE_PATTERNS, CodeSystem, code_fits

CPT = CodeSystem.CPT
HCPCS = CodeSystem.HCPCS
CM = CodeSystem.ICD10CM
PCS = CodeSystem.ICD10PCS


@pytest.mark.parametrize(
    ("label", "system"),
    [
        ("CPT4 code", CPT),
        ("CPT® code", CPT),
        ("CPT code", CPT),
        ("CPT", CPT),
        ("cpt-4", CPT),
        ("CPT-4 Code", CPT),
        (" CPT ® Code ", CPT),
        ("CPT™ code", CPT),
        ("CPT code 22212", CPT),
        ("CPT 42214", CPT),
        ("HCPCS code", HCPCS),
        ("HCPCS Level II code", HCPCS),
        ("HCPCS Level 2 Code", HCPCS),
        ("hcpcs", HCPCS),
        ("ICD10CM code", CM),
        ("ICD-10-CM code", CM),
        ("ICD 10 CM code", CM),
        ("ICD-10-CM Diagnosis Code", CM),
        ("ICD10PCS code", PCS),
        ("ICD-10-PCS code", PCS),
        ("ICD-10-PCS", PCS),
    ],
)
def test_system_from_label(label: str, system: CodeSystem) -> None:
    assert system_from_label(label) is system


@pytest.mark.parametrize(
    "label",
    ["", "ICD-10 code", "Search all medical codes", "CPTX", "Name of the Procedure:", "Codes: CPT"],
)
def test_no_system_from_label(label: str) -> None:
    assert system_from_label(label) is None


@pytest.mark.parametrize(
    ("segment", "system"),
    [
        ("cpt4", CPT),
        ("cpt", CPT),
        ("CPT4", CPT),
        ("hcpcs", HCPCS),
        ("icd10cm", CM),
        ("icd-10-cm", CM),
        ("ICD10CM", CM),
        ("icd10pcs", PCS),
        ("icd-10-pcs", PCS),
        ("list", None),
        ("", None),
        ("code", None),
    ],
)
def test_system_from_segment(segment: str, system: CodeSystem | None) -> None:
    assert system_from_segment(segment) is system


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("22212", CPT),
        ("0042T", CPT),
        ("1159F", CPT),
        ("0001U", CPT),
        ("99091", CPT),
        ("G0105", HCPCS),
        ("J0585", HCPCS),
        ("g0105", HCPCS),
        ("J06.9", CM),
        ("S72.001A", CM),
        ("J06", CM),
        ("0SRC0J9", PCS),
        ("J069", None),
        ("abc", None),
        ("", None),
        ("12345678", None),
        ("2221", None),
        ("0SRC0JO", None),  # "O" is not in the PCS alphabet
    ],
)
def test_infer_system(code: str, system: CodeSystem | None) -> None:
    assert infer_system(code) is system


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            "https://example.org/code/cpt4/22212-osteotomy-of-spine-posterior-or-posterolateral",
            (CPT, "22212"),
        ),
        ("/code/hcpcs/G0202-screening-mammography", (HCPCS, "G0202")),
        ("https://x.org/code/hcpcs/G0202-screening?x=1#top", (HCPCS, "G0202")),
        ("/code/icd10cm/J06.9-acute-upper-respiratory-infection-unspecified", (CM, "J06.9")),
        ("/code/icd10cm/J06.9-acute-upper-respiratory-infection.html", (CM, "J06.9")),
        ("/code/icd10cm/J06.9.html", (CM, "J06.9")),
        ("C:\\site\\code\\icd10cm\\J06.9-acute.htm", (CM, "J06.9")),
        ("https://x.org/code/icd10cm/J06%2E9-acute", (CM, "J06.9")),
        ("/code/cpt4/22212/", (CPT, "22212")),
        ("/code/cpt4/22212", (CPT, "22212")),
        ("/code/hcpcs/g0105-colorectal.html", (HCPCS, "G0105")),
        ("/code/cpt4/0042T-ct-perfusion", (CPT, "0042T")),
        ("/code/icd10pcs/0SRC0J9-replacement", (PCS, "0SRC0J9")),
        ("/code/unknown/22212-x", (CPT, "22212")),  # inferred from the format
        ("/code/cpt4/G0105-x", (HCPCS, "G0105")),  # the segment's system does not fit
        ("file:///data/pages/code/cpt4/22212-osteotomy.html", (CPT, "22212")),
        ("pages/cpt4/22212-osteotomy.html", (CPT, "22212")),
        ("pages/J06.9-acute-upper-respiratory-infection.html", (CM, "J06.9")),
        ("pages/J06.9.html", (CM, "J06.9")),
        ("1159F.html", (CPT, "1159F")),
        ("G0105-colorectal-cancer-screening.html", (HCPCS, "G0105")),
    ],
)
def test_code_from_location(location: str, expected: tuple[CodeSystem | None, str]) -> None:
    assert code_from_location(location) == expected


@pytest.mark.parametrize(
    "location",
    [
        "",
        "/code/list/A",
        "https://x.org/code/list/B?page=2",
        "index.html",
        "page-2.html",
        "https://x.org/",
        "/code/cpt4/",
        "/about-us",
        "osteotomy-of-spine.html",
        # a local file: directory names are the user's filing, not the site's address
        "/tmp/t31/else/b.html",
        "/data/k08-scrape/2024-07/pages/osteotomy-of-spine.html",
    ],
)
def test_no_code_from_location(location: str) -> None:
    assert code_from_location(location) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(HCPCS Code G0206)", (HCPCS, "G0206")),
        ("Name of the Procedure: Screening (HCPCS Code G0206)", (HCPCS, "G0206")),
        ("CPT code 22212", (CPT, "22212")),
        ("CPT® 22212", (CPT, "22212")),
        ("CPT 42214 is billed", (CPT, "42214")),
        ("Code: J06.9", (None, "J06.9")),
        ("ICD-10-CM J06.9.", (CM, "J06.9")),
        ("ICD-10-PCS code 0SRC0J9", (PCS, "0SRC0J9")),
        ("CPT codes 22212 and 22214", (CPT, "22212")),
        ("HCPCS code 22212", (None, "22212")),  # labeled, but the label does not fit
        ("cpt code 0042t", (CPT, "0042T")),
        ("Procedure code (CPT): 55250", (CPT, "55250")),  # the system after the label
        ("Codes (HCPCS): G0121", (HCPCS, "G0121")),
        ("cpt_code 64721", (CPT, "64721")),  # a front-matter key
    ],
)
def test_find_code(text: str, expected: tuple[CodeSystem | None, str]) -> None:
    assert find_code(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The patient had 22212 things",
        "Code of conduct applies",
        "The code for this is unknown",
        "CPT code",
        "About 30 minutes",
    ],
)
def test_no_code(text: str) -> None:
    assert find_code(text) is None


@pytest.mark.parametrize(
    ("text", "href", "default", "expected"),
    [
        (
            "22210 - Osteotomy of spine, posterior or posterolateral approach, 1 vertebral "
            "segment; cervical",
            None,
            CPT,
            (
                "22210",
                CPT,
                "Osteotomy of spine, posterior or posterolateral approach, 1 vertebral segment; "
                "cervical",
            ),
        ),
        (
            "CPT 22214: Osteotomy of spine; lumbar",
            None,
            HCPCS,
            ("22214", CPT, "Osteotomy of spine; lumbar"),
        ),
        (
            "G0105 Colorectal cancer screening; colonoscopy on individual at high risk",
            None,
            CPT,
            ("G0105", HCPCS, "Colorectal cancer screening; colonoscopy on individual at high risk"),
        ),
        (
            "J06.9 (Acute upper respiratory infection, unspecified)",
            None,
            CM,
            ("J06.9", CM, "Acute upper respiratory infection, unspecified"),
        ),
        ("22210 – Osteotomy", "/code/cpt4/22210-x", CPT, ("22210", CPT, "Osteotomy")),
        ("22210 —   Osteotomy   of spine ", None, CPT, ("22210", CPT, "Osteotomy of spine")),
        ("22210", None, CPT, ("22210", CPT, None)),
        ("22210 -", None, CPT, ("22210", CPT, None)),
        ("• 22210: Osteotomy", None, CPT, ("22210", CPT, "Osteotomy")),
        ("0042T | CT perfusion", None, CPT, ("0042T", CPT, "CT perfusion")),
        # the title only; the code is in the link
        (
            "Osteotomy of spine",
            "/code/cpt4/22210-osteotomy",
            HCPCS,
            ("22210", CPT, "Osteotomy of spine"),
        ),
        # the href's system wins over the format when the code fits it
        (
            "J06.9 - Acute URI",
            "https://x.org/code/icd10cm/J06.9-acute",
            CPT,
            ("J06.9", CM, "Acute URI"),
        ),
        # the href's system does not fit: inferred
        ("J06.9 - x", "/code/cpt4/J06.9-x", CPT, ("J06.9", CM, "x")),
        # lower case code
        ("g0105 screening", None, HCPCS, ("G0105", HCPCS, "screening")),
        # a title in parentheses inside is kept
        ("22210 Osteotomy (cervical)", None, CPT, ("22210", CPT, "Osteotomy (cervical)")),
    ],
)
def test_parse_similar_item(
    text: str,
    href: str | None,
    default: CodeSystem,
    expected: tuple[str, CodeSystem, str | None],
) -> None:
    assert parse_similar_item(text, href, default) == expected


@pytest.mark.parametrize(
    ("text", "href"),
    [
        ("Nothing here", None),
        ("", None),
        ("See all codes", "/code/list/A"),
        ("J069 - not a code", None),
    ],
)
def test_parse_similar_item_without_code(text: str, href: str | None) -> None:
    assert parse_similar_item(text, href, CPT) is None


# --- properties -------------------------------------------------------------------------------

_CODES = st.one_of(
    st.from_regex(CODE_PATTERNS[CPT], fullmatch=True),
    st.from_regex(CODE_PATTERNS[HCPCS], fullmatch=True),
    st.from_regex(CODE_PATTERNS[CM], fullmatch=True),
    st.from_regex(CODE_PATTERNS[PCS], fullmatch=True),
).filter(lambda c: c.isascii())


@given(st.text())
def test_never_raise(text: str) -> None:
    system_from_label(text)
    system_from_segment(text)
    inferred = infer_system(text)
    assert inferred is None or code_fits(text.strip().upper(), inferred)
    located = code_from_location(text)
    if located is not None:
        system, code = located
        assert code == code.upper()
        assert system is None or code_fits(code, system)
    found = find_code(text)
    if found is not None:
        system, code = found
        assert system is None or code_fits(code, system)
    for default in CodeSystem:
        item = parse_similar_item(text, text, default)
        if item is not None:
            code, system, title = item
            assert code_fits(code, system)
            assert title is None or title.strip() == title != ""


@given(
    _CODES, st.sampled_from(["cpt4", "hcpcs", "icd10cm", "icd10pcs"]), st.text("abc-", max_size=20)
)
def test_location_round_trip(code: str, segment: str, slug: str) -> None:
    slug = f"-{slug}" if slug else ""
    located = code_from_location(f"https://example.org/code/{segment}/{code}{slug}.html")
    assert located is not None
    system, found = located
    assert found == code
    assert system is not None
    assert code_fits(code, system)


# Published codes all carry a digit; a digit-free word ("RELATED") is never read as a code.
@given(
    _CODES.filter(lambda c: any(ch.isdigit() for ch in c)),
    st.text(max_size=40),
    st.sampled_from(list(CodeSystem)),
)
def test_similar_item_round_trip(code: str, title: str, default: CodeSystem) -> None:
    item = parse_similar_item(f"{code} - {title}", None, default)
    assert item is not None
    assert item[0] == code
    assert code_fits(code, item[1])


@given(_CODES)
def test_infer_system_fits(code: str) -> None:
    system = infer_system(code)
    assert system is not None
    assert code_fits(code, system)
