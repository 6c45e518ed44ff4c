"""The parser's extraction layer: vocabulary validation, heading classification, chrome
removal, finding the page's code, unknown sections, and the lower-casing offset regression.

Pages are built inline: a title ``<h1>``, a code (label, badge, structured data or URL) and a
few sections under ordinary headings.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import NotAProcedurePage, UsageError, VocabularyError
from pipeline.extract.classify import classify
from pipeline.extract.normalize.codes import code_from_location
from pipeline.extract.normalize.text import aligned_lower
from pipeline.extract.page import extract, parse_page
from pipeline.extract.vocabulary import (
    RECORD_SECTIONS,
    VOCABULARY_FILE,
    Vocabulary,
    heading_key,
    load_vocabulary,
)
from pipeline.models import CodeSystem, OtherSection

CPT = CodeSystem.CPT


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


def html_page(body: str, *, head: str = "", title: str = "Colonoscopy") -> str:
    """A whole HTML document around ``body``."""
    return f"<html><head><title>{title}</title>{head}</head><body>{body}</body></html>"


# === 1. vocabulary validation =================================================================


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)  # a JSON string is a TOML basic string


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def dump_toml(data: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """A small TOML writer: enough for the vocabulary (tables, strings, numbers, lists)."""
    out = ["[" + ".".join(_toml_key(p) for p in path) + "]"] if path else []
    out += [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    out += [dump_toml(v, (*path, k)) for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def shipped_data() -> dict[str, Any]:
    with VOCABULARY_FILE.open("rb") as handle:
        return tomllib.load(handle)


def write_vocabulary(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "vocabulary.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def test_shipped_vocabulary_loads(vocab: Vocabulary) -> None:
    assert isinstance(vocab, Vocabulary)
    cued = {section for entries in vocab.cues.values() for section, _ in entries}
    for section in RECORD_SECTIONS:  # every field of the record can be named by a heading
        assert section in cued or section in vocab.sections.groupindex, section
    assert vocab.section_of("risks") == "risks"
    assert vocab.chrome.marks({"class": "site-footer"})
    assert not vocab.chrome.marks({"class": "shareable-content"})


def test_toml_writer_round_trips_the_shipped_vocabulary(
    tmp_path: Path, shipped_data: dict[str, Any]
) -> None:
    # The invalid cases below rewrite the file with this writer: unchanged, it must load.
    assert tomllib.loads(dump_toml(shipped_data)) == shipped_data
    rewritten = load_vocabulary(write_vocabulary(tmp_path, shipped_data))
    assert classify("Medical Staff Involved", rewritten).section == "personnel"


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _append(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path:
            target = target[key]
        target.append(value)

    return mutate


def _delete(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


INVALID_VOCABULARIES = [
    pytest.param(
        _set("sections", "billing", value={"phrases": ["billing"]}),
        "sections.billing",
        id="unknown-section-key",
    ),
    pytest.param(
        _set("sections", "risks", value={"phrases": [], "cues": {}}),
        "a section needs phrases, cues or frames",
        id="section-with-empty-phrases-and-cues",
    ),
    pytest.param(
        _append("sections", "risks", "phrases", value=""),
        "sections.risks.phrases",
        id="empty-phrase",
    ),
    pytest.param(
        _append("sections", "risks", "phrases", value="risks? (and"),
        "does not compile",
        id="phrase-regex-does-not-compile",
    ),
    pytest.param(
        _set("sections", "steps", "frames", "^how (", value=3),
        "sections.steps.frames",
        id="frame-regex-does-not-compile",
    ),
    pytest.param(
        _set("sections", "risks", "cues", "hazard", value=0),
        "greater than 0",
        id="cue-weight-zero",
    ),
    pytest.param(
        _set("sections", "risks", "cues", "hazard", value=-1.5),
        "greater than 0",
        id="cue-weight-negative",
    ),
    pytest.param(
        _set("sections", "risks", "cues", "?!", value=2),
        "has no word",
        id="cue-without-a-word",
    ),
    pytest.param(
        _set("sections", "risks", "cues", "risks", value=2),  # same stem as the cue "risk"
        "repeats another of its cues",
        id="cue-repeats-a-stem",
    ),
    pytest.param(
        _set("sections", "risks", "synonyms", value=["hazards"]),
        "sections.risks.synonyms",
        id="unknown-field-in-a-section",
    ),
    pytest.param(
        _delete("sections", "duration"), "sections without words: duration", id="missing-section"
    ),
    pytest.param(
        _set("sublabels", "risks", "during", value=["during"]),
        "unknown slot 'during'",
        id="sublabel-slot-not-allowed-for-section",
    ),
    pytest.param(
        _set("sublabels", "risks", "items", value=[]),
        "sublabels.risks.items is empty",
        id="sublabel-empty-list",
    ),
    pytest.param(
        _set("sublabels", "risks", "items", value=["(rare"]),
        "does not compile",
        id="sublabel-regex-does-not-compile",
    ),
    pytest.param(
        _set("sublabels", "billing", value={"items": ["fees"]}),
        "sublabels.billing",
        id="sublabel-unknown-section",
    ),
    pytest.param(
        _append("chrome", "class_tokens", value="side(bar"),
        "chrome.class_tokens",
        id="chrome-class-token-regex-does-not-compile",
    ),
    pytest.param(
        _append("chrome", "keep", value="content["),
        "chrome.keep",
        id="chrome-keep-regex-does-not-compile",
    ),
    pytest.param(_append("chrome", "tags", value="Nav!"), "chrome.tags", id="chrome-bad-tag-name"),
    pytest.param(_set("chrome", "roles", value=[]), "chrome.roles", id="chrome-empty-roles"),
    pytest.param(_delete("chrome"), "chrome", id="missing-chrome-table"),
    pytest.param(
        _append("page", "not_found", value="404 ("),
        "page.not_found",
        id="not-found-regex-does-not-compile",
    ),
    pytest.param(_set("classify", "threshold", value=0), "classify.threshold", id="threshold-zero"),
    pytest.param(
        _set("classify", "stopwords", value=[]), "classify.stopwords", id="empty-stopwords"
    ),
    pytest.param(_set("extras", value={"x": 1}), "extras", id="unknown-top-level-table"),
    # Patterns that compile alone but not once joined with the others (or change meaning).
    pytest.param(
        _append("sections", "risks", "phrases", value="(?i)hazards"),
        "does not compile",
        id="global-flag-in-a-phrase",
    ),
    pytest.param(
        _append("chrome", "class_tokens", value="(?i)promo"),
        "chrome.class_tokens",
        id="global-flag-in-a-chrome-token",
    ),
    pytest.param(
        _append("sections", "summary", "phrases", value="(?P<risks>x)"),
        "named group or a back-reference",
        id="named-group-in-a-phrase",
    ),
    pytest.param(
        _append("sections", "risks", "phrases", value="(a)\\1"),
        "named group or a back-reference",
        id="back-reference-in-a-phrase",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), INVALID_VOCABULARIES)
def test_invalid_vocabulary_raises_vocabulary_error(
    tmp_path: Path,
    shipped_data: dict[str, Any],
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    data = copy.deepcopy(shipped_data)
    mutate(data)
    path = write_vocabulary(tmp_path, data)
    with pytest.raises(VocabularyError, match=re.escape(message)):
        load_vocabulary(path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[classify\nthreshold = ", id="malformed-toml"),
        pytest.param(None, id="no-file"),
    ],
)
def test_unreadable_vocabulary_raises_vocabulary_error(tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "vocabulary.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(VocabularyError, match="cannot read the vocabulary"):
        load_vocabulary(path)


def test_vocabulary_error_is_a_usage_error() -> None:
    assert issubclass(VocabularyError, UsageError)


# === 2. heading classification =================================================================


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        ("Risks", "risks"),
        ("How long does it take?", "duration"),
        ("Related codes", "similar_codes"),
        ("Aftercare", "recovery"),
        ("Where is it done?", "setting"),
        # Numbering, markdown, "Q:", "[edit]" and trailing punctuation are normalized away.
        ("2. Preparation:", "preparation"),
        ("## Recovery", "recovery"),
        ("Q: What are the risks?", "risks"),
        ("Risks [edit]", "risks"),
        ("RISKS AND COMPLICATIONS", "risks"),
    ],
)
def test_known_heading_is_classified_by_the_phrase_tier(
    vocab: Vocabulary, heading: str, section: str
) -> None:
    verdict = classify(heading, vocab)
    assert (verdict.section, verdict.tier) == (section, "phrase")


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        ("Medical Staff Involved", "personnel"),
        ("After Care and Recovery", "recovery"),
        ("What Will I Experience?", "patient_experience"),
        ("Related Procedure Codes", "similar_codes"),
        ("Common Indications", "indications"),
        ("What Happens During Surgery?", "steps"),
        # The record has no stay section: the stay is read from the recovery text.
        ("Going Home", "recovery"),
        ("Pre-operative Planning", "preparation"),
        ("Is it right for you?", "indications"),
        ("Benefits of the procedure", "benefits"),
        ("What are the alternatives?", "alternatives"),
        ("How long will I stay in hospital?", "recovery"),
    ],
)
def test_unlisted_wording_is_classified_by_the_cue_tier(
    vocab: Vocabulary, heading: str, section: str
) -> None:
    assert vocab.section_of(heading_key(heading)) is None  # not literally a phrase
    verdict = classify(heading, vocab)
    assert (verdict.section, verdict.tier) == (section, "cue")
    assert verdict.score >= vocab.threshold


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        ("How the line is placed", "steps"),
        ("Who places the line", "personnel"),
        ("What the laser is for", "purpose"),
        ("If injections aren't enough", "alternatives"),
        ("Do I need this test?", "indications"),
    ],
)
def test_sentence_frames_classify_how_who_what_headings(
    vocab: Vocabulary, heading: str, section: str
) -> None:
    verdict = classify(heading, vocab)
    assert verdict.section == section
    # A frame counts as a cue spanning no stems.
    assert any(cue.section == section and cue.stems == () for cue in verdict.cues)


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        # wordings of a second evaluation round (classes, not the pages' exact words)
        ("How the exam goes", "steps"),
        ("The scan, from start to finish", "steps"),
        ("In the OR", "steps"),  # upper-case OR is the operating room, not the stop word
        ("What does the surgeon actually do?", "steps"),
        ("What the eye surgeon does", "steps"),
        ("Choosing not to have surgery", "alternatives"),
        ("Not sure the shot is for you?", "alternatives"),
        ("When things don't go to plan", "risks"),
        ("Things to watch for", "risks"),
        ("Time in the chair", "duration"),
        ("How much of my day will it take?", "duration"),
        ("The first 48 hours", "recovery"),
        ("People in the room", "personnel"),
        ("How much relief to expect", "benefits"),
        ("Why would my hand surgeon suggest it?", "purpose"),
        ("Why might I need this?", "indications"),
        ("Who this screening is for", "indications"),
        ("Signs it may be time", "indications"),
        ("When is a diagnostic exam recommended instead of a screening one?", "indications"),
        ("Do I need sedation?", "anesthesia_info"),
        ("Pain relief during the injection", "anesthesia_info"),
        ("Do I need to do anything beforehand?", "preparation"),
        ("Still have questions?", "ignore"),
        ("More reading from Lakeshore", "ignore"),
        ("How often is it covered?", "other"),
    ],
)
def test_paraphrased_headings_find_their_section(
    vocab: Vocabulary, heading: str, section: str
) -> None:
    assert classify(heading, vocab).section == section


@pytest.mark.parametrize(
    ("heading", "not_section"),
    [
        ("Hearing milestones to watch for", "risks"),  # watching for milestones is no risk
        ("What does it do", "steps"),  # a pronoun, not a person doing the steps
        ("What can you do to help", "steps"),
        ("Why choose laparoscopy?", "purpose"),  # the benefits, in these pages' labels
        ("Other types of IV access", "other"),  # "access" alone is no accessibility notice
    ],
)
def test_paraphrase_cues_do_not_overreach(
    vocab: Vocabulary, heading: str, not_section: str
) -> None:
    assert classify(heading, vocab).section != not_section


def test_frame_outweighs_a_word_cue(vocab: Vocabulary) -> None:
    # "place" alone is a setting cue; the "how ... is placed" frame makes it the steps.
    verdict = classify("How the line is placed", vocab)
    assert (verdict.section, verdict.runner_up) == ("steps", "setting")


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        ("Reccovery", "recovery"),
        ("Altenatives", "alternatives"),
        ("Rehabilitaton", "recovery"),
        ("Expereince", "patient_experience"),
        ("Complicatons", "risks"),
    ],
)
def test_misspelt_cue_word_is_matched_fuzzily(
    vocab: Vocabulary, heading: str, section: str
) -> None:
    verdict = classify(heading, vocab)
    assert (verdict.section, verdict.tier) == (section, "cue")


@pytest.mark.parametrize(
    "heading",
    [
        pytest.param("Ecovery", id="first-letter-differs"),
        pytest.param("Rsks", id="too-short-to-correct"),
    ],
)
def test_fuzzy_matching_leaves_far_or_short_words_alone(vocab: Vocabulary, heading: str) -> None:
    assert classify(heading, vocab).section is None


@pytest.mark.parametrize(
    "heading", ["Our Awards", "Our Awards and Accreditations", "Patient Stories", "Photo Gallery"]
)
def test_unrelated_heading_names_no_section(vocab: Vocabulary, heading: str) -> None:
    verdict = classify(heading, vocab)
    assert (verdict.section, verdict.tier) == (None, "none")


# === 3. chrome by whole class tokens ==========================================================

CODE_LINE = "<p>CPT code: 29881</p>"
OVERVIEW = "<h2>Overview</h2><p>A camera is put into the knee to look at the joint.</p>"
RISKS = "<h2>Risks</h2><ul><li>Infection</li><li>Bleeding</li></ul>"
RECOVERY = "<h2>Recovery</h2><ul><li>Rest the leg</li><li>Use crutches</li></ul>"


def knee_page(body: str) -> str:
    return html_page(body, title="Knee arthroscopy")


def test_sections_inside_shareable_content_are_parsed() -> None:
    # "share" is a chrome token, but "shareable-content" is a different whole token.
    page = knee_page(
        f'<h1>Knee Arthroscopy</h1>{CODE_LINE}<div class="shareable-content">'
        f"{OVERVIEW}{RISKS}{RECOVERY}</div>"
    )
    extraction = extract(page, url="knee.html")
    record = extraction.record
    assert record.summary == "A camera is put into the knee to look at the joint."
    assert record.risks == ["Infection", "Bleeding"]
    assert record.recovery == ["Rest the leg", "Use crutches"]
    assert extraction.report.chrome_blocks == 0


def test_risks_inside_popular_questions_answered_are_kept() -> None:
    page = knee_page(
        f"<h1>Knee Arthroscopy</h1>{CODE_LINE}{OVERVIEW}"
        f'<div class="popular-questions-answered">{RISKS}</div>'
    )
    extraction = extract(page, url="knee.html")
    assert extraction.record.risks == ["Infection", "Bleeding"]
    assert extraction.report.chrome_blocks == 0


def test_article_footer_is_content_but_site_footer_is_chrome() -> None:
    page = knee_page(
        f"<article><h1>Knee Arthroscopy</h1>{CODE_LINE}{OVERVIEW}<footer>{RECOVERY}</footer>"
        "</article><footer><p>Clinic footer links</p></footer>"
    )
    extraction = extract(page, url="knee.html")
    assert extraction.record.recovery == ["Rest the leg", "Use crutches"]
    assert (extraction.report.chrome_blocks, extraction.report.chrome_chars) == (
        1,
        len("Clinic footer links"),
    )


CHROME_TEXT = "Chrome item"
CHROME_LIST = f"<ul><li>{CHROME_TEXT}</li></ul>"


@pytest.mark.parametrize(
    "chrome",
    [
        pytest.param(f"<footer>{CHROME_LIST}</footer>", id="site-footer"),
        pytest.param(f"<main><footer>{CHROME_LIST}</footer></main>", id="footer-in-main"),
        pytest.param(f"<nav>{CHROME_LIST}</nav>", id="nav"),
        pytest.param(f"<aside>{CHROME_LIST}</aside>", id="aside"),
        pytest.param(f'<div class="share-buttons">{CHROME_LIST}</div>', id="share-buttons"),
        pytest.param(f'<div class="left-sidebar">{CHROME_LIST}</div>', id="sidebar"),
        pytest.param(f'<div id="cookie-banner">{CHROME_LIST}</div>', id="cookie-id"),
        pytest.param(f'<ul class="social share"><li>{CHROME_TEXT}</li></ul>', id="list-class"),
        pytest.param(f'<div role="navigation">{CHROME_LIST}</div>', id="role-navigation"),
        pytest.param(f'<div aria-hidden="true">{CHROME_LIST}</div>', id="aria-hidden"),
        pytest.param(f"<div hidden>{CHROME_LIST}</div>", id="hidden"),
    ],
)
def test_chrome_is_dropped_and_counted(chrome: str) -> None:
    # Placed right after the risks list: kept, its item would join the risks.
    page = knee_page(f"<h1>Knee Arthroscopy</h1>{CODE_LINE}{OVERVIEW}{RISKS}{chrome}")
    extraction = extract(page, url="knee.html")
    assert extraction.record.risks == ["Infection", "Bleeding"]
    assert CHROME_TEXT not in extraction.record.model_dump_json()
    assert extraction.report.chrome_blocks == 1
    assert extraction.report.chrome_chars == len(CHROME_TEXT)


@pytest.mark.parametrize(
    "container",
    [
        pytest.param('<div class="shareable">{}</div>', id="token-only-contains-share"),
        pytest.param('<div class="sidebar content">{}</div>', id="keep-token-wins"),
        pytest.param("<section><footer>{}</footer></section>", id="footer-in-section"),
    ],
)
def test_content_that_only_looks_like_chrome_is_kept(container: str) -> None:
    page = knee_page(
        f"<h1>Knee Arthroscopy</h1>{CODE_LINE}{OVERVIEW}{RISKS}{container.format(CHROME_LIST)}"
    )
    extraction = extract(page, url="knee.html")
    assert extraction.record.risks == ["Infection", "Bleeding", CHROME_TEXT]
    assert extraction.report.chrome_blocks == 0


# === 4. finding the code ======================================================================

COLON_SECTIONS = (
    "<h2>Overview</h2><p>A thin camera looks at the lining of the bowel.</p>"
    "<h2>Risks</h2><ul><li>Bleeding</li><li>A small tear</li></ul>"
)
LD_CODE = json.dumps(
    {
        "@context": "https://schema.org",
        "@type": "MedicalProcedure",
        "name": "Colonoscopy",
        "code": {"@type": "MedicalCode", "codeValue": "45378", "codingSystem": "CPT"},
    }
)


@pytest.mark.parametrize(
    ("body", "head", "url", "code"),
    [
        pytest.param(
            "<h1>Colonoscopy</h1><table><tr><td>CPT code</td><td>45378</td></tr></table>",
            "",
            None,
            "45378",
            id="next-table-cell",
        ),
        pytest.param(
            '<span class="badge">CPT 45378</span><h1>Colonoscopy</h1>',
            "",
            None,
            "45378",
            id="badge-before-title",
        ),
        pytest.param("<h1>CPT 45378Colonoscopy</h1>", "", None, "45378", id="glued-in-title"),
        pytest.param(
            "<h1>Colonoscopy</h1>",
            f'<script type="application/ld+json">{LD_CODE}</script>',
            None,
            "45378",
            id="json-ld-medical-code",
        ),
        pytest.param(
            "<h1>Colonoscopy</h1>",
            '<link rel="canonical" href="https://ref.example/code/cpt4/45378-colonoscopy">',
            None,
            "45378",
            id="canonical-link",
        ),
        pytest.param(
            "<h1>Colonoscopy</h1>",
            '<meta property="og:url" content="https://clinic.example/procedures/cpt-45378-x">',
            None,
            "45378",
            id="og-url",
        ),
        pytest.param(
            "<h1>Colonoscopy</h1>",
            "",
            "https://clinic.example/procedures/cpt-29881-knee-arthroscopy",
            "29881",
            id="url-argument",
        ),
        pytest.param(
            '<h1>Colonoscopy</h1><div class="infobox"><p>Code: 29881</p></div>',
            "",
            None,
            "29881",
            id="infobox",
        ),
        pytest.param(
            "<h1>Colonoscopy</h1><aside><p>Code: 29881</p></aside>",
            "",
            None,
            "29881",
            id="aside",
        ),
    ],
)
def test_code_is_found(body: str, head: str, url: str | None, code: str) -> None:
    record = parse_page(html_page(body + COLON_SECTIONS, head=head), url=url)
    assert (record.code, record.code_system) == (code, CPT)
    assert record.title == "Colonoscopy"  # a code or badge never stays in the title
    assert record.risks == ["Bleeding", "A small tear"]


OTHER_CODES = "<ul><li>CPT 99213 Office visit</li><li>CPT 99214 Office visit</li></ul>"
OWN_URL = "https://clinic.example/procedures/cpt-45378-colonoscopy"


@pytest.mark.parametrize(
    ("body", "url"),
    [
        pytest.param(
            f'<div class="popular-codes">{OTHER_CODES}</div><h1>Colonoscopy</h1>'
            f"<p>CPT code: 45378</p>{COLON_SECTIONS}",
            None,
            id="popular-box-before-title-vs-label",
        ),
        pytest.param(
            f"<aside><h3>Popular codes</h3>{OTHER_CODES}</aside><h1>Colonoscopy</h1>"
            f"{COLON_SECTIONS}",
            OWN_URL,
            id="aside-before-title-vs-url",
        ),
        pytest.param(
            f'<div class="related-posts">{OTHER_CODES}</div><h1>Colonoscopy</h1>{COLON_SECTIONS}',
            OWN_URL,
            id="related-posts-vs-url",
        ),
        pytest.param(
            f'<div class="popular-codes">{OTHER_CODES}</div><h1>Colonoscopy</h1>'
            f'<div class="infobox">Code: 45378</div>{COLON_SECTIONS}',
            None,
            id="popular-box-vs-infobox",
        ),
        pytest.param(
            f'<h1>Colonoscopy</h1><div class="infobox">Code: 45378</div>{COLON_SECTIONS}'
            f'<div class="popular"><h3>Popular codes</h3>{OTHER_CODES}</div>',
            None,
            id="popular-box-after-content-vs-infobox",
        ),
        # Boxes of other codes whose class is a bare "popular", "trending"...: before the
        # title they named the page's code (99213), after the content they joined the risks.
        *(
            pytest.param(
                f'<div class="{cls}">{OTHER_CODES}</div><h1>Colonoscopy</h1>'
                f"<p>CPT code: 45378</p>{COLON_SECTIONS}",
                OWN_URL,
                id=f"{cls}-before-title",
            )
            for cls in ("popular", "related", "trending", "other-procedures", "most-viewed")
        ),
        *(
            pytest.param(
                f'<h1>Colonoscopy</h1>{COLON_SECTIONS}<div class="{cls}">{OTHER_CODES}</div>'
                '<div class="infobox">Code: 45378</div>',
                None,
                id=f"{cls}-after-content",
            )
            for cls in ("popular", "popular-widget", "widget-popular", "trending")
        ),
    ],
)
def test_sidebar_of_other_codes_does_not_win(body: str, url: str | None) -> None:
    record = parse_page(html_page(body), url=url)
    assert (record.code, record.code_system) == ("45378", CPT)
    assert record.risks == ["Bleeding", "A small tear"]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://ref.example/code/cpt4/22212-spinal-osteotomy", (CPT, "22212")),
        ("https://clinic.example/procedures/cpt-29881-knee-arthroscopy", (CPT, "29881")),
        ("https://clinic.example/eye/capsulotomy-cpt-66821", (CPT, "66821")),
        ("https://clinic.example/lookup?code=45378", (CPT, "45378")),
        ("https://clinic.example/hcpcs/G0105", (CodeSystem.HCPCS, "G0105")),
        ("https://clinic.example/tests/93306/echocardiogram", (CPT, "93306")),
        ("https://clinic.example/surgery/appendectomy-0dtj4zz", (CodeSystem.ICD10PCS, "0DTJ4ZZ")),
        ("https://ref.example/code/icd10cm/J06.9-acute-uri", (CodeSystem.ICD10CM, "J06.9")),
        ("https://ref.example/code/cpt4/45378-colonoscopy/?utm_source=x#risks", (CPT, "45378")),
        ("C:\\pages\\code\\cpt4\\45378-colonoscopy.html", (CPT, "45378")),
        ("https://clinic.example/blog/2024/05/knee-pain", None),
        ("https://clinic.example/about-us", None),
    ],
)
def test_code_from_location(location: str, expected: tuple[CodeSystem, str] | None) -> None:
    assert code_from_location(location) == expected


# === 5. other sections ========================================================================

KNEE_URL = "https://clinic.example/procedures/cpt-29881-knee-arthroscopy"


@pytest.mark.parametrize(
    ("awards", "text"),
    [
        pytest.param(
            "<p>The clinic won a regional prize for patient care.</p>",
            "The clinic won a regional prize for patient care.",
            id="paragraph",
        ),
        pytest.param(
            "<ul><li>Best clinic 2023</li><li>Top surgeon award</li></ul>",
            "Best clinic 2023\nTop surgeon award",
            id="list",
        ),
    ],
)
def test_unknown_heading_goes_to_other_sections(awards: str, text: str) -> None:
    page = knee_page(f"<h1>Knee Arthroscopy</h1>{RISKS}<h2>Our Awards</h2>{awards}{RECOVERY}")
    extraction = extract(page, url=KNEE_URL)
    record = extraction.record
    assert record.other_sections == [OtherSection(heading="Our Awards", text=text)]
    assert record.risks == ["Infection", "Bleeding"]  # not merged into the previous section
    assert record.recovery == ["Rest the leg", "Use crutches"]
    assert extraction.report.unclassified == 1


MOSTLY_UNKNOWN = (
    "<h1>Knee Arthroscopy</h1>"
    "<p>Knee arthroscopy is keyhole surgery to look inside the knee and repair cartilage.</p>"
    "<h2>Our Awards</h2><p>We won prizes.</p>"
    "<h2>Patient Stories</h2><p>Jane walked the next day.</p>"
)


def test_page_with_mostly_unknown_headings_is_not_rejected() -> None:
    extraction = extract(knee_page(MOSTLY_UNKNOWN), url=KNEE_URL)
    record = extraction.record
    assert (record.code, record.title) == ("29881", "Knee Arthroscopy")
    assert record.summary == (
        "Knee arthroscopy is keyhole surgery to look inside the knee and repair cartilage."
    )
    assert [s.heading for s in record.other_sections] == ["Our Awards", "Patient Stories"]
    assert extraction.report.unclassified == 2


def test_a_section_its_field_cannot_read_is_kept_in_other_sections() -> None:
    """ "Meet ..." reads as personnel, but names nobody: its text is kept, not lost."""
    page = knee_page(
        f"<h1>Knee Arthroscopy</h1>{RISKS}<h2>Meet Dr Smith's Cat</h2>"
        "<p>Whiskers greets every patient.</p><h2>Opening Hours</h2>"
        "<p>Monday to Friday, 8 to 6.</p>"
    )
    extraction = extract(page, url=KNEE_URL)
    record = extraction.record
    assert record.personnel == []
    assert record.duration is None  # opening hours are not how long the procedure takes
    assert record.other_sections == [
        OtherSection(heading="Meet Dr Smith's Cat", text="Whiskers greets every patient."),
        OtherSection(heading="Opening Hours", text="Monday to Friday, 8 to 6."),
    ]
    assert extraction.report.unclassified == 2
    assert "personnel" not in extraction.report.tiers


def test_page_with_only_unknown_headings_and_no_code_is_rejected() -> None:
    # The contrast: no code anywhere and nothing that names a procedure section.
    with pytest.raises(NotAProcedurePage):
        extract(knee_page(MOSTLY_UNKNOWN), url="knee.html")


# === 6. regression: lower-casing must not shift offsets ========================================


@pytest.mark.parametrize("prefix", ["İZMİR clinic.", "İLETİŞİM"])
def test_dotted_capital_i_before_noscript_does_not_expose_script_text(prefix: str) -> None:
    # "İ".lower() is two characters; with str.lower the <noscript> cut landed inside the
    # following <script> (two or more "İ" shift it past "<s"), and its string became markup.
    page = html_page(
        f"<h1>Colonoscopy</h1><p>CPT code: 45378</p><h2>Overview</h2>"
        f"<p>{prefix} A camera looks at the bowel.</p>"
        "<noscript><p>Please enable JavaScript.</p></noscript>"
        '<script>var s = "<h2>Risks</h2><ul><li>X</li></ul>";</script>'
        "<h2>Recovery</h2><ul><li>Rest at home</li></ul>"
    )
    record = parse_page(page, url=None)
    assert record.risks == []
    assert record.recovery == ["Rest at home"]
    assert record.summary == f"{prefix} A camera looks at the bowel."
    assert "enable JavaScript" not in record.model_dump_json()


@pytest.mark.parametrize(
    ("text", "lowered"),
    [
        ("İ<NOSCRIPT>", "?<noscript>"),
        ("Clinic <SCRIPT>", "clinic <script>"),
        ("ÉCOLE <Div>", "école <div>"),  # lower-casing that keeps the length keeps the letters
    ],
)
def test_aligned_lower_keeps_length(text: str, lowered: str) -> None:
    assert aligned_lower(text) == lowered
    assert len(aligned_lower(text)) == len(text)


# === second evaluation round: page furniture, bare "Related", PDF titles ======================


def _all_text(record: Any) -> str:
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)


@pytest.mark.parametrize(
    "furniture",
    [
        pytest.param(
            "<p>Email this leaflet Print this leaflet Download PDF (312 KB)</p>", id="toolbar"
        ),
        pytest.param("<p>URL: https://clinic.example/colonoscopy?format=print</p>", id="print-url"),
        pytest.param("<p>https://clinic.example/colonoscopy</p>", id="bare-url"),
        pytest.param(
            "<p>Page reviewed by the Patient Information Group, May 2024.</p>", id="review"
        ),
        pytest.param("<p>Ready to book? Call 555-0148 or request a visit online.</p>", id="cta"),
        pytest.param("<p>Not to be confused with virtual colonoscopy.</p>", id="hatnote"),
        pytest.param("<p>NHVI-PI-114 · Rev. 01/2024</p>", id="revision"),
        pytest.param("<p>colonoscopy.txt · Last modified: 2024/03/11 09:42 by jdoe</p>", id="wiki"),
    ],
)
def test_page_furniture_is_not_content(furniture: str) -> None:
    body = (
        "<h1>Colonoscopy</h1><p>CPT code: 45378</p>"
        "<h2>Overview</h2><p>A thin camera looks at the lining of the bowel.</p>"
        f"{furniture}<h2>Risks</h2><ul><li>Bleeding</li><li>A small tear</li></ul>{furniture}"
    )
    record = parse_page(html_page(body))
    assert record.risks == ["Bleeding", "A small tear"]
    assert record.summary == "A thin camera looks at the lining of the bowel."
    assert re.sub(r"<[^>]+>", "", furniture) not in _all_text(record)


def test_a_bare_related_box_of_articles_is_chrome() -> None:
    body = (
        "<h1>Colonoscopy</h1><p>CPT code: 45378</p>" + COLON_SECTIONS
        + "<h2>Related</h2><p>Trigger finger release: a quick fix for a finger that locks.</p>"
    )  # fmt: skip
    record = parse_page(html_page(body))
    assert record.other_sections == []
    assert "Trigger" not in _all_text(record)


def test_a_pdf_export_title_broken_over_two_lines_is_the_title() -> None:
    css = (
        "<style>.fs0{font-size:112px;}.fs1{font-size:68px;}.fs2{font-size:44px;}"
        ".y1{bottom:900px;}.y2{bottom:860px;}.y3{bottom:800px;}.y4{bottom:760px;}"
        ".y5{bottom:700px;}.y6{bottom:660px;}.y7{bottom:620px;}</style>"
    )
    lines = [
        ("y1 fs0", "Keyhole removal of the appendix"),
        ("y2 fs0", "(laparoscopic appendicectomy)"),
        ("y3 fs2", "Procedure code (ICD-10-PCS): 0DTJ4ZZ"),
        ("y4 fs1", "Risks"),
        ("y5 fs2", "Wound infection"),
        ("y6 fs1", "Recovery"),
        ("y7 fs2", "Most people stay in hospital for one or two nights."),
    ]
    body = "".join(f'<div class="t {cls}">{text}</div>' for cls, text in lines)
    record = parse_page(html_page(body, head=css, title=""))
    assert record.title == "Keyhole removal of the appendix (laparoscopic appendicectomy)"
    assert record.code == "0DTJ4ZZ"


def test_a_bootstrap_semibold_line_is_a_sub_label() -> None:
    body = (
        "<h1>Colposcopy</h1><p>CPT code: 57455</p>" + COLON_SECTIONS
        + "<h2>What will it feel like?</h2>"
        '<p class="fw-semibold mb-1">While it\'s happening</p>'
        "<ul><li>The vinegar solution can sting slightly.</li></ul>"
        '<p class="fw-semibold mb-1">Afterwards</p><ul><li>Mild cramping for a day.</li></ul>'
    )  # fmt: skip
    record = parse_page(html_page(body))
    assert record.patient_experience is not None
    assert record.patient_experience.during == ["The vinegar solution can sting slightly."]
    assert record.patient_experience.after == ["Mild cramping for a day."]
