"""Layouts met on pages the parser was not written against (found by the blind dev pages and a
review): tabs, plain-text e-mails, infoboxes, listing tables, Q&A disease pages, link boxes,
codes that only look like codes. Each case is a small page written for the test."""

from __future__ import annotations

import time

import pytest

from pipeline.errors import NotAProcedurePage
from pipeline.extract.blocks import css_rules, parse_styles
from pipeline.extract.page import extract
from pipeline.extract.plaintext import is_prose, prose_to_html
from pipeline.models import AnesthesiaKind, OtherSection

URL = "https://clinic.example/procedures/cpt-60240-thyroidectomy"


def page(body: str, title: str = "Thyroidectomy") -> str:
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>"


# --- tabs -----------------------------------------------------------------------------------


TABS = """
<h1>Total thyroidectomy</h1>
<ol role="tablist">
  <li role="tab" id="t1" aria-controls="p1">Overview</li>
  <li role="tab" id="t2" aria-controls="p2">Getting Ready</li>
  <li role="tab" id="t3" aria-controls="p3">Risks</li>
</ol>
<div role="tabpanel" id="p1" aria-labelledby="t1"><p>Surgery to remove the thyroid gland.</p></div>
<div role="tabpanel" id="p2" aria-labelledby="t2">
  <ul><li>Blood tests</li><li>Fast from midnight</li></ul></div>
<div role="tabpanel" id="p3" aria-labelledby="t3">
  <ul><li>Low calcium</li><li>Hoarse voice</li></ul></div>
"""


def test_each_tab_panel_is_the_section_its_tab_names() -> None:
    record = extract(page(TABS), URL).record
    assert record.summary == "Surgery to remove the thyroid gland."
    assert record.preparation == ["Blood tests", "Fast from midnight"]
    assert record.risks == ["Low calcium", "Hoarse voice"]


def test_tabs_inside_a_section_are_its_sub_labels() -> None:
    body = """<h1>Rotator cuff repair</h1><h2>Recovery</h2><p>You go home the same day.</p>
    <ul role="tablist"><li><button role="tab" id="a" aria-controls="w1">Weeks 0-6</button></li>
    <li><button role="tab" id="b" aria-controls="w2">Weeks 6-12</button></li></ul>
    <div role="tabpanel" id="w1" aria-labelledby="a"><ul><li>Wear the sling</li></ul></div>
    <div role="tabpanel" id="w2" aria-labelledby="b"><ul><li>Start strengthening</li></ul></div>"""
    record = extract(page(body), "https://x.example/cpt-29827-rotator-cuff").record
    assert record.recovery == [
        "You go home the same day.", "Wear the sling", "Start strengthening"
    ]  # fmt: skip
    assert record.other_sections == []


# --- plain text in <pre> -------------------------------------------------------------------

EMAIL = """<pre>
==============================
  Having an IUD placed
==============================

This message explains what happens when you have an IUD placed
at our office.

BEFORE YOUR VISIT

  - Eat a normal meal before you come in.
  - Take 600 mg of ibuprofen about an hour before your
    appointment.

WHAT HAPPENS DURING THE INSERTION

  1. You lie on the exam table.
  2. The clinician places a speculum and cleans the
     cervix.

--
Cedar Women's Health | 555-0100
</pre>"""


def test_plain_text_email_reads_as_headings_paragraphs_and_lists() -> None:
    record = extract(page(EMAIL, "Your visit"), "https://x.example/visit/z30-430").record
    assert record.title == "Having an IUD placed"
    assert record.summary == (
        "This message explains what happens when you have an IUD placed at our office."
    )
    assert record.preparation == [
        "Eat a normal meal before you come in.",
        "Take 600 mg of ibuprofen about an hour before your appointment.",
    ]
    assert record.steps == [
        "You lie on the exam table.", "The clinician places a speculum and cleans the cervix."
    ]  # fmt: skip
    assert "Cedar" not in record.model_dump_json()  # the signature after "--"


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ("def f(x):\n    return x;\n}\n{\nvar a = 1;\n", False),
        ("a\nb\nc\n", False),  # too short to be a document
        ("Word one two.\nMore words here.\nAnd more words.\nLast line of it.\n", True),
    ],
)
def test_only_documents_in_pre_are_unfolded(text: str, prose: bool) -> None:
    assert is_prose(text) is prose


def test_prose_to_html_escapes_text() -> None:
    assert prose_to_html("A <b> & c\nmore") == "<p>A &lt;b&gt; &amp; c more</p>"


# --- infobox and tables of facts --------------------------------------------------------------

INFOBOX = """<h1>Percutaneous liver biopsy</h1>
<table class="infobox"><tr><th colspan="2">Percutaneous liver biopsy</th></tr>
<tr><td colspan="2">
  <div class="infobox-caption">Core of liver tissue obtained with a needle</div></td></tr>
<tr><th>Other names</th><td>Closed liver biopsy</td></tr>
<tr><th>Specialty</th><td>Hepatology</td></tr>
<tr><th>ICD-10-PCS</th><td>0FB03ZX</td></tr>
<tr><th>MeSH</th><td>D008113</td></tr>
<tr><th>Duration</th><td>15–30 minutes</td></tr></table>
<p>A liver biopsy removes a small sample of liver tissue with a needle.</p>
<h2>Procedure</h2><ol><li>The skin is numbed.</li><li>The needle is passed into the liver.</li></ol>
"""


def test_infobox_rows_are_metadata_but_a_duration_row_is_kept() -> None:
    record = extract(page(INFOBOX, "Liver biopsy"), "liver.html").record
    assert (record.code, record.code_system.value) == ("0FB03ZX", "ICD-10-PCS")
    assert record.summary == "A liver biopsy removes a small sample of liver tissue with a needle."
    assert record.duration is not None
    assert (record.duration.text, record.duration.min_minutes) == ("15–30 minutes", 15)
    assert record.alternatives == []  # "Other names" is not the alternatives
    assert record.other_sections == []
    assert "Core of liver tissue" not in record.model_dump_json()  # an image caption


def test_two_column_table_of_facts_in_plain_cells() -> None:
    body = """<h1>CPT 27447 – Total knee arthroplasty</h1><h2>Summary</h2><p>A new knee.</p>
    <table><tr><td>Anaesthetic</td><td>General or spinal</td></tr>
    <tr><td>Hospital stay</td><td>1 to 3 nights</td></tr>
    <tr><td>Time off work</td><td>6 to 12 weeks</td></tr></table>"""
    record = extract(page(body, "Knee replacement"), "knee.html").record
    assert record.hospital_stay is not None
    assert (record.hospital_stay.min_days, record.hospital_stay.max_days) == (1, 3)
    assert AnesthesiaKind.GENERAL in record.anesthesia
    assert "6 to 12 weeks" in record.recovery


# --- pages that are not procedure pages -------------------------------------------------------


def test_table_of_procedures_and_codes_is_a_listing() -> None:
    rows = "".join(
        f"<tr><td><a href='g?id={n}'>{name}</a></td><td>{code}</td></tr>"
        for n, (name, code) in enumerate(
            [("Cardiac catheterization", "93458"), ("Cardioversion", "92960"),
             ("Carpal tunnel release", "64721"), ("Cataract surgery", "66984"),
             ("Colonoscopy", "45378")]
        )
    )  # fmt: skip
    head = "<tr><th>Procedure</th><th>Billing code</th></tr>"
    body = f"<h1>Procedure guides: C</h1><table>{head}{rows}</table>"
    with pytest.raises(NotAProcedurePage) as caught:
        extract(page(body, "Guides"), "https://h.example/guides/index.php?letter=C")
    assert caught.value.page_kind == "listing"


def test_questions_about_a_disease_are_a_condition_page() -> None:
    qa = "".join(
        f"<h2>{q}</h2><p>{a}</p>"
        for q, a in [
            ("What is plantar fasciitis?", "Irritation of the band of tissue under the foot."),
            ("What causes it?", "Repeated strain on the fascia."),
            ("How is it diagnosed?", "Your podiatrist presses on the heel."),
            ("How is it treated?", "Stretches, supportive shoes and rest."),
            ("What happens during a steroid injection?", "The heel is cleaned and injected."),
            ("Can I prevent it from coming back?", "Keep stretching your calves."),
        ]
    )
    body = f"<h1>Heel pain: your questions answered</h1><p>ICD-10-CM M72.2</p>{qa}"
    with pytest.raises(NotAProcedurePage) as caught:
        extract(page(body, "Heel pain"), "heel.html")
    assert caught.value.page_kind == "condition"


@pytest.mark.parametrize(
    "url", ["https://h.example/news/12345/new-car-park", "https://h.example/news/car-park-a1234"]
)
def test_a_number_in_the_address_alone_does_not_make_a_procedure_page(url: str) -> None:
    body = "<h1>New car park opens</h1><h2>Parking</h2><p>300 spaces.</p><h2>Fees</h2><p>£2.</p>"
    with pytest.raises(NotAProcedurePage, match="only in the page's address"):
        extract(page(body, "News"), url)


@pytest.mark.parametrize(
    "title", ["A1C: what your result means", "B12 – vitamin injections", "Bladder: cystoscopy"]
)
def test_a_word_before_the_title_colon_is_not_a_code(title: str) -> None:
    body = f"<h1>{title}</h1><h2>Summary</h2><p>A test.</p><h2>Risks</h2><ul><li>Pain</li></ul>"
    with pytest.raises(NotAProcedurePage):
        extract(page(body, "x"), "page.html")


def test_code_in_breadcrumbs_marked_by_id() -> None:
    body = """<ol id="breadcrumbs"><li><a href="/">Home</a></li>
    <li><a href="c.html">CPT 31624</a></li></ol>
    <h1>Bronchoscopy with lavage</h1><h2>Why it is done</h2><p>To find the cause of a cough.</p>"""
    record = extract(page(body, "Bronchoscopy"), "https://wiki.example/display/Bronchoscopy").record
    assert record.code == "31624"


# --- nothing lost in silence -------------------------------------------------------------------


def test_list_items_that_link_to_their_own_pages_are_kept() -> None:
    body = """<h1>CPT 27447 – Knee replacement</h1>
    <h2>Summary</h2><p>A partial knee replacement does not replace the whole joint.</p>
    <p>This information does not replace the advice of your surgeon.</p>
    <h2>Risks</h2><ul><li><a href="/c/infection">Infection</a></li><li>Stiffness</li></ul>
    <h2>Recovery</h2><ul><li>Call your surgeon on 0161 123 4567 straight away when the wound
    bleeds.</li></ul>
    <h2>Other treatments</h2><ul><li><a href="/a">Knee arthroscopy</a></li>
    <li><a href="/b">Physiotherapy</a></li></ul><p><a href="/book">Book online</a></p>"""
    extraction = extract(page(body, "Knee"), "knee.html")
    record = extraction.record
    assert record.summary == "A partial knee replacement does not replace the whole joint."
    assert record.risks == ["Infection", "Stiffness"]
    assert record.recovery == [
        "Call your surgeon on 0161 123 4567 straight away when the wound bleeds."
    ]
    # The disclaimer, the all-link list and "Book online" are dropped, and counted.
    assert record.alternatives == []
    assert extraction.report.chrome_blocks >= 4


# --- linear time on hostile style sheets --------------------------------------------------------


def test_css_rules_skip_at_blocks_and_statements() -> None:
    css = "@charset 'x'; .a{font-size:20px} @media print{.b{font:bold}} .c,.d{font-weight:bold}"
    assert list(css_rules(css)) == [(".a", "font-size:20px"), (".c,.d", "font-weight:bold")]


@pytest.mark.parametrize("css", ["a" * 200_000, "@" * 100_000, ".a{" * 60_000, "}" * 100_000])
def test_style_sheets_are_read_in_linear_time(css: str) -> None:
    started = time.perf_counter()
    parse_styles(css)
    assert time.perf_counter() - started < 0.5


def test_many_bold_lines_find_a_title_quickly() -> None:
    body = "".join(f"<p><b>Line {i}</b></p>" for i in range(10_000))
    started = time.perf_counter()
    with pytest.raises(NotAProcedurePage):
        extract(page(body, "x"), "x.html")
    assert time.perf_counter() - started < 5.0


def test_other_section_keeps_heading_and_text() -> None:
    body = """<h1>CPT 29881 – Knee arthroscopy</h1><h2>Summary</h2><p>Keyhole surgery.</p>
    <h2>Parking and directions</h2><p>Use car park B.</p>"""
    record = extract(page(body, "Knee"), "knee.html").record
    assert record.other_sections == [
        OtherSection(heading="Parking and directions", text="Use car park B.")
    ]
