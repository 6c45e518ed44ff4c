"""Seeded synthetic procedure pages and whole sites, for tests and benchmarks. Pure: no I/O.

``generate_page(index, seed)`` builds one realistic procedure page (4-6 KB of HTML with page
chrome) together with the values the parser must read from it; ``generate_site(n, seed, origin)``
builds a whole site around ``n`` such pages::

    site = generate_site(500, seed=1, origin=server.base_url)   # {url path: body bytes}

The site has, like the reference site:

- ``/code/<system>/<CODE>-<slug>`` procedure pages across ``cpt4`` (five digits), ``hcpcs`` (a
  letter and four digits) and ``icd10cm`` (procedure-template ``Z`` codes such as ``Z51.11``),
  every code unique within the site;
- ``/code/list/<LETTER>`` listing pages (by the first letter of the title) and ``/`` linking them;
- ``/robots.txt`` (allow all, one ``Sitemap:`` line), ``/sitemap.xml`` (a sitemap index) and its
  sub-sitemaps ``/sitemap-cpt4.xml``, ``/sitemap-hcpcs.xml`` and ``/sitemap-icd10cm.xml.gz``
  (gzip-compressed).

Absolute URLs (robots.txt and sitemaps) use ``origin``; pass the real ``http://127.0.0.1:<port>``
of the server that will serve the site. The default, :data:`PLACEHOLDER_ORIGIN`, is the
placeholder of the demo site that :class:`pipeline.demo.server.SiteServer` rewrites; a server that
does not rewrite it must be given ``origin``. HTML pages only use root-relative links, so they do
not depend on the origin.

Pages vary over five markup styles (``reference``: h2 headings and ul/ol; ``synonyms``: other
heading words such as "Overview" and "Why it's done"; ``bold``: bold paragraphs as headings and
``•``/``-``/``*`` lines split by ``<br>``; ``dl``: ``<dt>``/``<dd>``; ``legacy``: table layout with
``<font><b>UPPER</b></font>`` headings, encoded as windows-1252) and carry chrome (navigation, a
sidebar of popular codes, footer, script, cookie banner) that is not content. Each page's
"Similar Codes" section links the previous page and one to three other earlier pages, so a
crawl that starts at the last page reaches every page by links alone; the pages a sidebar
links are earlier pages too, so every link of a page of ``generate_site(n)`` resolves.

Everything is a function of ``(index, seed)`` only: ``generate_page(i, seed)`` is the same page
whatever ``n`` the site has, and the same bytes on every run and platform.
"""

from __future__ import annotations

import gzip
import random
import re
from dataclasses import dataclass, field
from html import escape
from xml.sax.saxutils import escape as xml_escape

__all__ = [
    "PLACEHOLDER_ORIGIN",
    "STYLES",
    "SYSTEMS",
    "SynthPage",
    "content_type",
    "generate_page",
    "generate_site",
    "page_code",
    "page_path",
    "page_title",
]

#: The origin written into robots.txt and sitemaps when none is given (see the module docstring).
PLACEHOLDER_ORIGIN = "http://127.0.0.1:8765"

#: URL segment -> (code system of the record, label printed under the title).
SYSTEMS: dict[str, tuple[str, str]] = {
    "cpt4": ("CPT", "CPT4 code"),
    "hcpcs": ("HCPCS", "HCPCS code"),
    "icd10cm": ("ICD-10-CM", "ICD10CM code"),
}
_SEGMENTS = ("cpt4", "hcpcs", "icd10cm")

STYLES = ("reference", "synonyms", "bold", "dl", "legacy")

# Bijections from a per-system ordinal to a code: k -> (k * _STRIDE + offset) mod size.
_STRIDE = 7919  # prime, coprime with every size below
_CPT_SIZE = 90_000  # 10000-99999
_HCPCS_LETTERS = "ABCEGHJKLMPQRSTV"
_HCPCS_SIZE = len(_HCPCS_LETTERS) * 10_000
_ICD_TAILS = 10 + 100 + 1000  # Z00.0 - Z99.999
_ICD_SIZE = 100 * _ICD_TAILS


# --- the page and its expected values ------------------------------------------------------------


@dataclass(frozen=True)
class SynthPage:
    """One generated page and what a correct parse of it gives.

    ``duration_min``/``duration_max`` are minutes and ``stay_min``/``stay_max`` days, ``None``
    where the page's phrase leaves a bound open; ``has_duration``/``has_stay`` say whether the
    page has a duration section / stay phrase at all. ``similar`` lists the similar codes in page
    order, ``similar_paths`` the URL paths of those that are generated pages (linked).
    """

    index: int
    seed: int
    url_path: str
    code: str
    code_system: str
    system_segment: str
    title: str
    style: str
    html: bytes
    encoding: str
    steps: int
    indications: int
    risks: int
    alternatives: int
    has_duration: bool
    duration_min: int | None
    duration_max: int | None
    has_stay: bool
    stay_min: int | None
    stay_max: int | None
    venues: tuple[str, ...]
    roles: tuple[str, ...]
    anesthesia: frozenset[str]
    similar: tuple[str, ...]
    similar_paths: tuple[str, ...]
    links: tuple[str, ...] = field(default=())

    @property
    def letter(self) -> str:
        """The listing page letter (first letter of the title, upper case)."""
        return self.title[0].upper()


# --- vocabulary ----------------------------------------------------------------------------------

_PROCEDURES = (
    "Arthroscopy", "Biopsy", "Catheterization", "Debridement", "Drainage", "Excision",
    "Endoscopy", "Fixation", "Grafting", "Incision", "Injection", "Ligation", "Manipulation",
    "Nerve decompression", "Osteotomy", "Puncture aspiration", "Reconstruction", "Repair",
    "Removal of foreign body", "Transplantation", "Ultrasound guidance", "Vertebroplasty",
    "Wound closure", "Dilation", "Implantation of device", "Tenotomy", "Lithotripsy",
)  # fmt: skip
_SITES = (
    "knee", "shoulder", "hip", "elbow", "wrist", "ankle", "spine", "bladder", "kidney",
    "gallbladder", "colon", "stomach", "esophagus", "thyroid", "breast", "skin", "prostate",
    "heart", "coronary artery", "carotid artery", "lung", "sinus", "middle ear", "cornea", "tendon",
)  # fmt: skip
_APPROACHES = (
    "open", "percutaneous", "endoscopic", "laparoscopic", "arthroscopic", "transcatheter",
    "surgical", "diagnostic", "image guided",
)  # fmt: skip
_QUALIFIERS = (
    "single lesion", "each additional segment", "with removal of tissue",
    "without imaging guidance", "including radiological supervision and interpretation",
    "unilateral", "bilateral", "first 20 sq cm or less", "with insertion of implant",
    "initial treatment", "complex, over 5 cm",
    "with specimen collection, when performed", "simple, under 2.5 cm",
)  # fmt: skip

# (phrase, min minutes, max minutes); {…} fields are filled per page.
_DURATIONS: tuple[tuple[str, int | None, int | None], ...] = (
    ("The procedure takes {a} to {b} minutes.", -1, -1),
    ("It usually takes {h1}-{h2} hours.", -2, -2),
    ("Expect it to last between {h1} and {h2} hours.", -2, -2),
    ("Most procedures take 30 minutes to 1 hour.", 30, 60),
    ("It lasts 45 minutes to 1.5 hours in most cases.", 45, 90),
    ("The procedure takes about {a} minutes.", -3, -3),
    ("It typically takes less than an hour.", None, 60),
    ("Plan for at least 2 hours in the procedure room.", 120, None),
    ("It takes one to two hours.", 60, 120),
    ("The procedure itself takes about half an hour.", 30, 30),
    ("The operation takes 1 hour.", 60, 60),
    ("It can take several hours, depending on the findings.", None, None),
)
_DURATION_TAIL = (
    "Allow extra time for check-in and for the recovery area.",
    "The time depends on what the doctor finds.",
    "Your care team will tell you how long to plan for.",
    "",
)
# (phrase, min days, max days)
_STAYS: tuple[tuple[str, int | None, int | None], ...] = (
    ("Most patients go home the same day.", 0, 0),
    ("A hospital stay of {d1} to {d2} days is usual.", -1, -1),
    ("Expect {d1}-{d2} days in the hospital.", -1, -1),
    ("You will stay overnight for observation.", 1, 1),
    ("You may go home the same day or after one night in the hospital.", 0, 1),
)
_RECOVERY = (
    "Rest for the remainder of the day.",
    "Keep the dressing clean and dry.",
    "Avoid heavy lifting until your doctor says it is safe.",
    "Take pain medicine as directed.",
    "Call your doctor for fever, redness, or swelling that gets worse.",
    "Resume your usual diet as tolerated.",
    "Keep your follow-up appointment.",
    "Gentle walking helps circulation and healing.",
)
# (text, venue)
_VENUES = (
    ("Hospital operating room", "hospital"),
    ("Ambulatory surgical center", "ambulatory_surgical_center"),
    ("Pain clinic", "outpatient_clinic"),
    ("Doctor's office", "physician_office"),
    ("Outpatient imaging center", "imaging_center"),
    ("Emergency department", "emergency_department"),
    ("At home, with a visiting nurse", "home"),
)
# (text, role)
_PEOPLE = (
    ("Orthopedic surgeon", "surgeon"),
    ("General surgeon", "surgeon"),
    ("Anesthesiologist", "anesthesia"),
    ("Nurse anesthetist (CRNA)", "anesthesia"),
    ("Gastroenterologist", "physician"),
    ("Radiologist", "physician"),
    ("Cardiologist", "physician"),
    ("Registered nurse", "nurse"),
    ("Operating room nurse", "nurse"),
    ("Surgical technologist", "technologist"),
    ("Radiology technician", "technologist"),
    ("Physical therapist", "therapist"),
    ("Medical assistant", "other"),
    ("Pharmacist", "other"),
)
# (sentence placed at the start of the steps, anesthesia kinds it names)
_ANESTHESIA: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("You are given general anesthesia, so you are asleep.", ("general",)),
    ("A local anesthetic is injected to numb the area.", ("local",)),
    ("Moderate sedation is given through an IV.", ("sedation",)),
    ("Spinal anesthesia is used to block feeling below the waist.", ("regional",)),
    ("A nerve block and light sedation keep you comfortable.", ("regional", "sedation")),
    ("", ()),
)
_STEP_VERBS = (
    "The skin over the {site} is cleaned and covered with sterile drapes.",
    "A small cut is made to reach the {site}.",
    "The doctor checks the position with imaging.",
    "Special instruments are passed to the treatment area.",
    "Any damaged tissue is removed and sent for testing.",
    "The area is rinsed with sterile fluid.",
    "The {site} is examined closely for other problems.",
    "The instruments are removed.",
    "The cut is closed with stitches or skin glue.",
    "A bandage is applied and you are moved to the recovery area.",
    "Images are saved for your medical record.",
    "Bleeding is controlled with gentle pressure.",
)
_INDICATIONS = (
    "Pain in the {site} that does not improve with rest or medicine",
    "A growth or abnormal area seen on imaging",
    "Injury to the {site}",
    "Ongoing swelling or stiffness",
    "Bleeding that needs to be found and stopped",
    "Infection that has not cleared with antibiotics",
    "Follow-up of an earlier treatment",
    "Loss of function that limits daily activities",
)
_PREPARATION = (
    "Do not eat or drink after midnight before the procedure.",
    "Tell your doctor about all medicines you take, including blood thinners.",
    "Arrange for an adult to drive you home.",
    "Wear loose, comfortable clothing.",
    "Bring a list of your allergies.",
    "Shower the night before.",
    "Leave jewelry and valuables at home.",
)
_RISKS = (
    "Bleeding",
    "Infection",
    "Pain or bruising",
    "Damage to nearby nerves or blood vessels",
    "Allergic reaction to medicines",
    "Blood clots",
    "A need for a second procedure",
    "Scarring",
)
_BENEFITS = (
    "Relief of symptoms",
    "A clear diagnosis",
    "Faster return to daily activities",
    "Small scars",
    "Lower chance of the problem coming back",
)
_ALTERNATIVES = (
    "Watchful waiting",
    "Medicine to control symptoms",
    "Physical therapy",
    "Open surgery",
    "Imaging tests alone",
    "Referral to a specialist center",
)
_DURING = (
    "You may feel pressure but should not feel sharp pain.",
    "You lie still on a padded table.",
    "The room may feel cool.",
    "You may hear the instruments working.",
)
_AFTER = (
    "Mild soreness is common for a few days.",
    "You may feel tired for the rest of the day.",
    "Some bruising may appear around the site.",
)
_SUMMARIES = (
    "This procedure treats a problem of the {site} using {approach} techniques. "
    "It is a common, well-studied procedure that helps many patients every year.",
    "In this procedure the doctor works on the {site} to find and treat the cause of symptoms. "
    "The approach is {approach}, which shapes how long healing takes.",
    "This is a {approach} procedure on the {site}. "
    "It is usually planned in advance, after an exam and tests.",
)
_PURPOSES = (
    "The goal is to relieve symptoms and restore normal function of the {site}.",
    "It is done to confirm a diagnosis and to guide further treatment.",
    "The procedure aims to repair damage and prevent problems from getting worse.",
)

_SYNONYMS = {
    "name": "Name of the Procedure:",
    "summary": "Overview",
    "purpose": "Why it's done",
    "indications": "Who needs it",
    "preparation": "How to prepare",
    "steps": "What happens during the procedure",
    "duration": "How long does it take?",
    "setting": "Where is it performed?",
    "personnel": "Care team",
    "risks": "Possible risks",
    "benefits": "Benefits",
    "recovery": "Recovery",
    "alternatives": "Other options",
    "patient_experience": "What to expect",
    "similar_codes": "Related codes",
}
_HEADINGS = {
    "name": "Name of the Procedure:",
    "summary": "Summary",
    "purpose": "Purpose",
    "indications": "Indications",
    "preparation": "Preparation",
    "steps": "Procedure Description",
    "duration": "Duration",
    "setting": "Setting",
    "personnel": "Personnel",
    "risks": "Risks and Complications",
    "benefits": "Benefits",
    "recovery": "Recovery",
    "alternatives": "Alternatives",
    "patient_experience": "Patient Experience",
    "similar_codes": "Similar Codes",
}
_SITE_NAMES = ("MedCodeGuide", "ProcedurePedia", "Lakeside Health Library", "Valley General")

#: Letters that navigation bars link to; ``generate_site`` always has a listing page for each.
NAV_LETTERS = tuple(sorted({p[0] for p in _PROCEDURES}))

_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


# --- codes, titles, paths ----------------------------------------------------------------------


def _segment(index: int) -> str:
    return _SEGMENTS[index % 3]


def page_code(index: int, seed: int = 0) -> str:
    """The code of page ``index``: unique among the pages of one seed (for index < 270,000)."""
    if index < 0:
        raise ValueError("index must not be negative")
    k = index // 3
    segment = _segment(index)
    if segment == "cpt4":
        return str(10_000 + (k * _STRIDE + seed * 13) % _CPT_SIZE)
    if segment == "hcpcs":
        v = (k * _STRIDE + seed * 31) % _HCPCS_SIZE
        return f"{_HCPCS_LETTERS[v // 10_000]}{v % 10_000:04d}"
    v = (k * _STRIDE + seed * 17) % _ICD_SIZE
    head, tail = v % 100, v // 100
    if tail < 10:
        rest = str(tail)
    elif tail < 110:
        rest = f"{tail - 10:02d}"
    else:
        rest = f"{tail - 110:03d}"
    return f"Z{head:02d}.{rest}"


def _title_rng(index: int, seed: int) -> random.Random:
    return random.Random(f"synth-title:{seed}:{index}")


def page_title(index: int, seed: int = 0) -> str:
    """The official descriptor of page ``index`` (HCPCS titles lower case after the first word)."""
    rng = _title_rng(index, seed)
    proc = rng.choice(_PROCEDURES)
    site = rng.choice(_SITES)
    approach = rng.choice(_APPROACHES)
    qualifier = rng.choice(_QUALIFIERS)
    segment = _segment(index)
    if segment == "icd10cm":
        return f"Encounter for {proc.lower()} of {site}, {approach}"
    if segment == "hcpcs":
        return f"{proc} of {site}, {approach}, {qualifier.lower()}"
    return f"{proc}, {site}, {approach}; {qualifier}"


def _slug(title: str) -> str:
    return _SLUG_JUNK.sub("-", title.lower()).strip("-")[:90].rstrip("-")


def page_path(index: int, seed: int = 0) -> str:
    """``/code/<system>/<CODE>-<slug>`` of page ``index``."""
    return f"/code/{_segment(index)}/{page_code(index, seed)}-{_slug(page_title(index, seed))}"


def _site_of(title: str) -> str:
    """The body site named in a generated title (for text that mentions it)."""
    return next((s for s in sorted(_SITES, key=len, reverse=True) if s in title), "area")


# --- building blocks ------------------------------------------------------------------------------


@dataclass
class _Content:
    """The page's sections as text, before markup."""

    name_lines: list[str]
    summary: list[str]
    purpose: list[str]
    indications: list[str]
    preparation: list[str]
    anesthesia_line: str
    steps: list[str]
    duration: str | None
    setting: list[str]
    setting_prose: bool
    personnel: list[str]
    risks: list[str]
    benefits: list[str]
    recovery: list[str]
    alternatives: list[str]
    during: list[str]
    after: list[str]
    note: str
    similar: list[tuple[str, str, str | None]]  # (code, title, path or None)
    duration_bounds: tuple[int | None, int | None]
    stay: tuple[bool, int | None, int | None]


def _pick(rng: random.Random, pool: tuple[str, ...], low: int, high: int) -> list[str]:
    return rng.sample(pool, rng.randint(low, min(high, len(pool))))


def _fill(text: str, site: str) -> str:
    return text.replace("{site}", site)


def _duration(rng: random.Random) -> tuple[str | None, int | None, int | None]:
    if rng.random() < 0.08:
        return None, None, None
    phrase, low, high = rng.choice(_DURATIONS)
    a = rng.choice((5, 10, 15, 20, 30))
    b = a + rng.choice((10, 15, 30))
    h1 = rng.randint(1, 3)
    h2 = h1 + rng.randint(1, 3)
    if low == -1:
        low, high = a, b
    elif low == -2:
        low, high = h1 * 60, h2 * 60
    elif low == -3:
        low = high = a
    text = phrase.format(a=a, b=b, h1=h1, h2=h2)
    tail = rng.choice(_DURATION_TAIL)
    return (f"{text} {tail}".strip(), low, high)


def _stay(rng: random.Random) -> tuple[str | None, int | None, int | None]:
    if rng.random() < 0.3:
        return None, None, None
    phrase, low, high = rng.choice(_STAYS)
    d1 = rng.randint(1, 3)
    d2 = d1 + rng.randint(1, 4)
    if low == -1:
        low, high = d1, d2
    return phrase.format(d1=d1, d2=d2), low, high


def _similar(index: int, seed: int, rng: random.Random) -> list[tuple[str, str, str | None]]:
    """2-4 entries: the previous page and other earlier pages (linked), or unlinked codes."""
    count = rng.randint(2, 4)
    earlier: list[int] = []
    if index > 0:
        earlier.append(index - 1)
        candidates = list(range(max(0, index - 40), index - 1))
        earlier += rng.sample(candidates, min(len(candidates), count - 1))
    out: list[tuple[str, str, str | None]] = [
        (page_code(i, seed), page_title(i, seed), page_path(i, seed)) for i in earlier
    ]
    # Unlinked entries (codes far beyond any generated site) fill up the count.
    filler = 0
    while len(out) < count:
        far = 300_000 + index * 7 + filler
        filler += 1
        code = page_code(far, seed)
        if any(code == c for c, _, _ in out):
            continue
        out.append((code, page_title(far, seed), None))
    return out


def _content(index: int, seed: int, rng: random.Random, title: str, system: str) -> _Content:
    site = _site_of(title)
    approach = next((a for a in _APPROACHES if a in title), "standard")
    common = re.split(r"[,;]", title, maxsplit=1)[0]
    name_lines = rng.choice(
        (
            [title],
            [f"Common Name(s): {common} of the {site}", f"Technical/Medical Term(s): {title}"],
            [f"{common} ({SYSTEMS[_segment(index)][0]} Code {page_code(index, seed)})"],
        )
    )
    summary = [_fill(rng.choice(_SUMMARIES), site).replace("{approach}", approach)]
    purpose = [_fill(rng.choice(_PURPOSES), site)]
    duration, dmin, dmax = _duration(random.Random(rng.random()))
    stay_text, smin, smax = _stay(random.Random(rng.random()))
    recovery = [_fill(r, site) for r in _pick(rng, _RECOVERY, 2, 4)]
    if stay_text:
        recovery.insert(rng.randint(0, len(recovery)), stay_text)
    anesthesia_line, _ = rng.choice(_ANESTHESIA)
    steps = [_fill(s, site) for s in _pick(rng, _STEP_VERBS, 3, 7)]
    venue_count = rng.randint(1, 3)
    setting = [v for v, _ in rng.sample(_VENUES, venue_count)]
    people = [p for p, _ in rng.sample(_PEOPLE, rng.randint(2, 4))]
    del system
    return _Content(
        name_lines=name_lines,
        summary=summary,
        purpose=purpose,
        indications=[_fill(i, site) for i in _pick(rng, _INDICATIONS, 2, 5)],
        preparation=_pick(rng, _PREPARATION, 2, 5),
        anesthesia_line=anesthesia_line,
        steps=steps,
        duration=duration,
        setting=setting,
        setting_prose=rng.random() < 0.3,
        personnel=people,
        risks=_pick(rng, _RISKS, 3, 6),
        benefits=_pick(rng, _BENEFITS, 2, 4),
        recovery=recovery,
        alternatives=_pick(rng, _ALTERNATIVES, 2, 4),
        during=_pick(rng, _DURING, 1, 3),
        after=_pick(rng, _AFTER, 1, 2),
        note="Ask your care team any questions you have before the day of the procedure.",
        similar=_similar(index, seed, rng),
        duration_bounds=(dmin, dmax),
        stay=(stay_text is not None, smin, smax),
    )


def _setting_prose(places: list[str]) -> str:
    lowered = [p[0].lower() + p[1:] for p in places]
    lowered = [p if p.startswith("at home") else f"a {p}" for p in lowered]
    lowered = [p.replace("a ambulatory", "an ambulatory").replace("a emergency", "an emergency")
               .replace("a outpatient", "an outpatient") for p in lowered]  # fmt: skip
    joined = lowered[-1]
    if len(lowered) > 1:
        joined = ", ".join(lowered[:-1]) + " or " + joined
    return f"The procedure is done in {joined}."


# --- markup styles ------------------------------------------------------------------------------


def _e(text: str) -> str:
    return escape(text, quote=False)


def _ul(items: list[str], tag: str = "ul") -> str:
    return f"<{tag}>\n" + "".join(f"  <li>{_e(i)}</li>\n" for i in items) + f"</{tag}>\n"


def _similar_li(entries: list[tuple[str, str, str | None]]) -> str:
    out = []
    for code, title, path in entries:
        if path:
            out.append(f'  <li><a href="{_e(path)}">{_e(code)}</a> - {_e(title)}</li>\n')
        else:
            out.append(f"  <li>{_e(code)} - {_e(title)}</li>\n")
    return '<ul class="similar-codes">\n' + "".join(out) + "</ul>\n"


def _popular(index: int, seed: int, rng: random.Random) -> list[tuple[str, str]]:
    """(path, code) of a few earlier pages for the sidebar (chrome: never similar codes)."""
    if index < 2:
        return []
    picks = sorted(set(rng.sample(range(index), min(index, 3))))
    return [(page_path(i, seed), page_code(i, seed)) for i in picks]


def _chrome_top(brand: str, letters: list[str]) -> str:
    nav = "".join(f'<li><a href="/code/list/{x}">Codes starting with {x}</a></li>' for x in letters)
    return (
        '<header class="site-header">\n'
        f'  <a class="logo" href="/">{_e(brand)}</a>\n'
        f'  <nav class="main-nav" aria-label="Main"><ul>{nav}</ul></nav>\n'
        '  <form class="search-form" action="/search" role="search">'
        '<input name="q" type="search" placeholder="Search codes"></form>\n'
        "</header>\n"
    )


def _chrome_side(popular: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="{_e(p)}">{_e(c)}</a> Popular procedure</li>' for p, c in popular)
    return (
        '<aside class="sidebar" aria-label="Popular codes">\n  <h2>Popular codes</h2>\n'
        f'  <ul class="code-links">{items}</ul>\n</aside>\n'
    )


def _chrome_bottom(brand: str) -> str:
    return (
        f'<footer class="site-footer"><p>&copy; 2024 {_e(brand)}. CPT&reg; is a registered '
        "trademark of the American Medical Association. For general information only, not "
        'medical advice.</p><p><a href="/about">About</a> &middot; <a href="/privacy">Privacy'
        "</a></p></footer>\n"
        '<div id="cookie-banner" class="cookie-banner" role="dialog"><p>We use cookies to '
        'analyse traffic. <a href="/privacy#cookies">Learn more</a></p><button type="button">'
        "Accept all</button></div>\n"
        "<script>(function(){var b=document.getElementById('cookie-banner');"
        "if(localStorage.getItem('ok')){b.hidden=true;}})();</script>\n"
    )


def _head(title: str, doc_title: str, charset: str) -> str:
    meta = (
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'
        if charset != "utf-8"
        else '<meta charset="utf-8">'
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{meta}\n'
        f"<title>{_e(doc_title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="stylesheet" href="/static/site.css">\n'
        '<script async src="/static/analytics.js"></script>\n</head>\n'
    )


def _sections_h2(c: _Content, headings: dict[str, str], ordered_steps: bool) -> str:
    h = headings
    parts = [f"<h2>{_e(h['name'])}</h2>\n" + "".join(f"<p>{_e(x)}</p>\n" for x in c.name_lines)]
    parts.append(f"<h2>{_e(h['summary'])}</h2>\n" + "".join(f"<p>{_e(x)}</p>\n" for x in c.summary))
    parts.append(f"<h2>{_e(h['purpose'])}</h2>\n" + "".join(f"<p>{_e(x)}</p>\n" for x in c.purpose))
    parts.append(f"<h2>{_e(h['indications'])}</h2>\n" + _ul(c.indications))
    parts.append(f"<h2>{_e(h['preparation'])}</h2>\n" + _ul(c.preparation))
    steps = f"<h2>{_e(h['steps'])}</h2>\n"
    if c.anesthesia_line:
        steps += f"<p><strong>Anesthesia/Sedation:</strong> {_e(c.anesthesia_line)}</p>\n"
        steps += "<p><strong>Steps Involved:</strong></p>\n"
    steps += _ul(c.steps, "ol" if ordered_steps else "ul")
    parts.append(steps)
    if c.duration:
        parts.append(f"<h2>{_e(h['duration'])}</h2>\n<p>{_e(c.duration)}</p>\n")
    setting = f"<p>{_e(_setting_prose(c.setting))}</p>\n" if c.setting_prose else _ul(c.setting)
    parts.append(f"<h2>{_e(h['setting'])}</h2>\n" + setting)
    parts.append(f"<h2>{_e(h['personnel'])}</h2>\n" + _ul(c.personnel))
    parts.append(f"<h2>{_e(h['risks'])}</h2>\n" + _ul(c.risks))
    parts.append(f"<h2>{_e(h['benefits'])}</h2>\n" + _ul(c.benefits))
    parts.append(f"<h2>{_e(h['recovery'])}</h2>\n" + _ul(c.recovery))
    parts.append(f"<h2>{_e(h['alternatives'])}</h2>\n" + _ul(c.alternatives))
    parts.append(
        f"<h2>{_e(h['patient_experience'])}</h2>\n<h3>During the procedure:</h3>\n"
        + _ul(c.during)
        + "<h3>After the procedure:</h3>\n"
        + _ul(c.after)
        + f"<p>{_e(c.note)}</p>\n"
    )
    parts.append(f"<h2>{_e(h['similar_codes'])}</h2>\n" + _similar_li(c.similar))
    return "".join(parts)


def _page_reference(c: _Content, title: str, label: str, synonyms: bool) -> str:
    headings = _SYNONYMS if synonyms else _HEADINGS
    return (
        '<main id="main-content">\n<article class="code-detail">\n'
        f'<h1 class="code-title">{_e(title)}</h1>\n'
        f'<span class="code-system-badge">{_e(label)}</span>\n'
        '<div class="explanation">\n'
        + _sections_h2(c, headings, ordered_steps=not synonyms)
        + "</div>\n</article>\n</main>\n"
    )


def _br(items: list[str], bullet: str) -> str:
    return "<p>" + "<br>\n".join(f"{bullet} {_e(i)}" for i in items) + "</p>\n"


def _page_bold(c: _Content, title: str, label: str, rng: random.Random) -> str:
    bullet = rng.choice(("•", "-", "*"))

    def head(text: str) -> str:
        tag = rng.choice(("b", "strong"))
        return f"<p><{tag}>{_e(text)}</{tag}></p>\n"

    h = _HEADINGS
    parts = [f'<h1>{_e(title)}</h1>\n<p class="sys">{_e(label)}</p>\n']
    parts.append(head(h["name"]) + "".join(f"<p>{_e(x)}</p>\n" for x in c.name_lines))
    parts.append(head("Summary") + "".join(f"<p>{_e(x)}</p>\n" for x in c.summary))
    parts.append(head("Purpose:") + "".join(f"<p>{_e(x)}</p>\n" for x in c.purpose))
    parts.append(head("Indications:") + _br(c.indications, bullet))
    parts.append(head("Preparation:") + _br(c.preparation, bullet))
    steps = head("Procedure Description")
    if c.anesthesia_line:
        steps += f"<p><b>Anesthesia/Sedation:</b> {_e(c.anesthesia_line)}</p>\n"
    steps += "<p>" + "<br>\n".join(f"Step {n}: {_e(s)}" for n, s in enumerate(c.steps, 1))
    parts.append(steps + "</p>\n")
    if c.duration:
        parts.append(f"<p><b>Duration:</b> {_e(c.duration)}</p>\n")
    if c.setting_prose:
        parts.append(f"<p><b>Setting:</b> {_e(_setting_prose(c.setting))}</p>\n")
    else:
        parts.append(head("Setting:") + _br(c.setting, bullet))
    parts.append(head("Personnel:") + _br(c.personnel, bullet))
    parts.append(head("Risks:") + _br(c.risks, bullet))
    parts.append(head("Benefits") + _br(c.benefits, bullet))
    parts.append(head("Recovery:") + _br(c.recovery, bullet))
    parts.append(head("Alternatives") + _br(c.alternatives, bullet))
    parts.append(
        head("Patient Experience")
        + "<p>During the procedure:<br>\n"
        + "<br>\n".join(f"{bullet} {_e(x)}" for x in c.during)
        + "</p>\n<p>After the procedure:<br>\n"
        + "<br>\n".join(f"{bullet} {_e(x)}" for x in c.after)
        + f"</p>\n<p>{_e(c.note)}</p>\n"
    )
    parts.append(head("Similar Codes") + _similar_li(c.similar))
    return '<div class="page"><div class="main-col">\n' + "".join(parts) + "</div></div>\n"


def _page_dl(c: _Content, title: str, label: str) -> str:
    h = _HEADINGS

    def dd(inner: str) -> str:
        return f"<dd>{inner}</dd>\n"

    def prose(xs: list[str]) -> str:
        return "".join(f"<p>{_e(x)}</p>" for x in xs)

    parts = [f'<h1>{_e(title)}</h1>\n<div class="code-type">{_e(label)}</div>\n<dl class="proc">\n']
    parts.append(f"<dt>{h['name']}</dt>\n" + dd("<br>\n".join(_e(x) for x in c.name_lines)))
    parts.append("<dt>Summary</dt>\n" + dd(prose(c.summary)))
    parts.append("<dt>Purpose</dt>\n" + dd(prose(c.purpose)))
    parts.append("<dt>Indications</dt>\n" + dd(_ul(c.indications)))
    parts.append(
        "<dt>Preparation</dt>\n"
        + dd("<strong>Pre-procedure Instructions</strong>\n" + _ul(c.preparation))
    )
    steps = ""
    if c.anesthesia_line:
        steps += f"<p><strong>Anesthesia/Sedation:</strong> {_e(c.anesthesia_line)}</p>\n"
        steps += "<p><strong>Steps Involved:</strong></p>\n"
    parts.append("<dt>Procedure Description</dt>\n" + dd(steps + _ul(c.steps, "ol")))
    if c.duration:
        parts.append("<dt>Duration</dt>\n" + dd(_e(c.duration)))
    setting = _e(_setting_prose(c.setting)) if c.setting_prose else _ul(c.setting)
    parts.append("<dt>Setting</dt>\n" + dd(setting))
    parts.append("<dt>Personnel</dt>\n" + dd(_ul(c.personnel)))
    parts.append("<dt>Risks and Complications</dt>\n" + dd(_ul(c.risks)))
    parts.append("<dt>Benefits</dt>\n" + dd(_ul(c.benefits)))
    parts.append("<dt>Recovery</dt>\n" + dd(_ul(c.recovery)))
    parts.append("<dt>Alternatives</dt>\n" + dd(_ul(c.alternatives)))
    parts.append(
        "<dt>Patient Experience</dt>\n"
        + dd(
            "<p><em>During the procedure:</em></p>\n"
            + _ul(c.during)
            + "<p><em>After the procedure:</em></p>\n"
            + _ul(c.after)
            + f"<p>{_e(c.note)}</p>"
        )
    )
    parts.append("<dt>Similar Codes</dt>\n" + dd(_similar_li(c.similar)))
    parts.append("</dl>\n")
    return '<main>\n<section class="pp-entry">\n' + "".join(parts) + "</section>\n</main>\n"


def _page_legacy(c: _Content, title: str, label: str) -> str:
    def row_head(text: str) -> str:
        return f"<tr><td><font face=Arial><b>{_e(text.upper())}</b></font></td></tr>\n"

    def row(inner: str) -> str:
        return f"<tr><td><font face=Arial size=2>{inner}</font></td></tr>\n"

    def bullets(items: list[str]) -> str:
        return "<br>\n".join(f"• {_e(i)}" for i in items)

    parts = [
        f'<h1><font face="Arial" size="4">{_e(title)}</font></h1>\n'
        f'<font face="Arial" size="2"><i>{_e(label)}</i></font>\n'
        '<table width="100%" border="0" cellpadding="3" cellspacing="0">\n'
    ]
    name = "<br>\n".join(_e(x) for x in c.name_lines)
    parts.append(row_head("Name of the Procedure:") + row(name))
    parts.append(row_head("Summary") + row(" ".join(_e(x) for x in c.summary)))
    parts.append(row_head("Purpose") + row(" ".join(_e(x) for x in c.purpose)))
    parts.append(row_head("Indications") + row(bullets(c.indications)))
    parts.append(row_head("Preparation") + row("<br>\n".join(f"- {_e(x)}" for x in c.preparation)))
    steps = "<br>\n".join(f"{n}. {_e(s)}" for n, s in enumerate(c.steps, 1))
    if c.anesthesia_line:
        steps = (
            f"<b>Anesthesia/Sedation:</b> {_e(c.anesthesia_line)}<br>\n"
            f"<b>Steps Involved:</b><br>\n{steps}"
        )
    parts.append(row_head("Procedure") + row(steps))
    if c.duration:
        parts.append(row_head("Duration") + row(_e(c.duration.replace("-", "–"))))
    setting = _e(_setting_prose(c.setting)) if c.setting_prose else bullets(c.setting)
    parts.append(row_head("Setting") + row(setting))
    parts.append(row_head("Personnel") + row(bullets(c.personnel)))
    parts.append(row_head("Risks and Complications") + row(bullets(c.risks)))
    parts.append(row_head("Benefits") + row(bullets(c.benefits)))
    parts.append(row_head("Recovery") + row(bullets(c.recovery)))
    parts.append(row_head("Alternatives") + row(bullets(c.alternatives)))
    parts.append(
        row_head("Patient Experience")
        + row(
            "During the procedure:<br>\n"
            + bullets(c.during)
            + "<br>\nAfter the procedure:<br>\n"
            + bullets(c.after)
        )
        + row(_e(c.note))
    )
    similar = "<br>\n".join(
        (f'<a href="{_e(p)}">{_e(code)}</a> – {_e(t)}' if p else f"{_e(code)} – {_e(t)}")
        for code, t, p in c.similar
    )
    parts.append(row_head("Similar Codes") + row(similar))
    parts.append("</table>\n")
    return "".join(parts)


def _legacy_wrap(body: str, brand: str, popular: list[tuple[str, str]]) -> str:
    side = "<br>\n".join(f'<a href="{_e(p)}">{_e(c)}</a> Popular procedure' for p, c in popular)
    return (
        '<body bgcolor="#FFFFFF" text="#000000">\n'
        '<table width="100%" border="0" cellpadding="4" cellspacing="0">\n'
        f'<tr><td colspan="2" bgcolor="#003366"><font face="Arial" color="#FFFFFF" size="2">'
        f'<b>{_e(brand.upper())} – Patient Information</b> | <a href="/">Home</a> | '
        f'<a href="/code/list/{NAV_LETTERS[0]}">Procedure Index</a></font></td></tr>\n'
        '<tr>\n<td width="170" valign="top" bgcolor="#EEEEEE" class="sidebar">'
        f'<font face="Arial" size="1"><b>POPULAR CODES</b><br>\n{side}</font></td>\n'
        f'<td valign="top">\n{body}</td>\n</tr>\n'
        '<tr><td colspan="2" align="center"><font face="Arial" size="1" class="copyright">'
        f"© 1999–2006 {_e(brand)}. For information only.</font></td></tr>\n"
        "</table>\n"
        '<script language="JavaScript">document.write(\'<img src="/c.pl">\');</script>\n'
        "</body>\n</html>\n"
    )


# --- public API -----------------------------------------------------------------------------------


def generate_page(index: int, seed: int = 0) -> SynthPage:
    """Page ``index`` of the synthetic site of ``seed``, with the values a parse must give."""
    segment = _segment(index)
    system, label = SYSTEMS[segment]
    code = page_code(index, seed)
    title = page_title(index, seed)
    path = page_path(index, seed)
    rng = random.Random(f"synth-page:{seed}:{index}")
    style = STYLES[rng.randrange(len(STYLES))]
    brand = rng.choice(_SITE_NAMES)
    c = _content(index, seed, rng, title, system)
    popular = _popular(index, seed, rng)
    letters = sorted(rng.sample(NAV_LETTERS, 4))
    doc_title = rng.choice(
        (
            f"{title} | {brand}",
            f"{code} - {title} | {brand}",
            f"{label.split()[0]} {code} - {title} - {brand}",
        )
    )
    encoding = "windows-1252" if style == "legacy" else "utf-8"
    head = _head(title, doc_title, encoding)
    if style == "legacy":
        text = head + _legacy_wrap(_page_legacy(c, title, label), brand, popular)
    else:
        if style in ("reference", "synonyms"):
            main = _page_reference(c, title, label, synonyms=style == "synonyms")
        elif style == "bold":
            main = _page_bold(c, title, label, rng)
        else:
            main = _page_dl(c, title, label)
        text = (
            head
            + f'<body class="code-page {segment}">\n'
            + _chrome_top(brand, letters)
            + '<div class="page-wrap">\n'
            + main
            + _chrome_side(popular)
            + "</div>\n"
            + _chrome_bottom(brand)
            + "</body>\n</html>\n"
        )
    links = tuple(p for _, _, p in c.similar if p) + tuple(p for p, _ in popular)
    return SynthPage(
        index=index,
        seed=seed,
        url_path=path,
        code=code,
        code_system=system,
        system_segment=segment,
        title=title,
        style=style,
        html=text.encode(encoding),
        encoding=encoding,
        steps=len(c.steps),
        indications=len(c.indications),
        risks=len(c.risks),
        alternatives=len(c.alternatives),
        has_duration=c.duration is not None,
        duration_min=c.duration_bounds[0],
        duration_max=c.duration_bounds[1],
        has_stay=c.stay[0],
        stay_min=c.stay[1],
        stay_max=c.stay[2],
        venues=tuple(dict(_VENUES)[t] for t in c.setting),
        roles=tuple(dict(_PEOPLE)[t] for t in c.personnel),
        anesthesia=frozenset(k for t, ks in _ANESTHESIA for k in ks if t == c.anesthesia_line),
        similar=tuple(code for code, _, _ in c.similar),
        similar_paths=tuple(p for _, _, p in c.similar if p),
        links=links,
    )


def _listing(letter: str, entries: list[SynthPage], letters: list[str]) -> bytes:
    nav = " ".join(
        f"<strong>{x}</strong>" if x == letter else f'<a href="/code/list/{x}">{x}</a>'
        for x in letters
    )
    items = "".join(
        f'<li><a href="{_e(p.url_path)}"><span class="code">{_e(p.code)}</span> '
        f'{_e(p.title)}</a> <span class="system">{_e(p.code_system)}</span></li>\n'
        for p in entries
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>Medical codes starting with {letter}</title>\n</head>\n<body class="listing">\n'
        f'<main>\n<h1>Medical codes starting with "{letter}"</h1>\n'
        f'<nav class="letters">{nav}</nav>\n<ul class="code-list">\n{items}</ul>\n</main>\n'
        "</body>\n</html>\n"
    ).encode()


def _urlset(origin: str, paths: list[str], seed: int) -> bytes:
    rng = random.Random(f"synth-lastmod:{seed}")
    urls = "".join(
        f"  <url><loc>{xml_escape(origin + p)}</loc>"
        f"<lastmod>2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}</lastmod></url>\n"
        for p in paths
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{urls}</urlset>\n"
    ).encode()


def content_type(path: str) -> str:
    """The Content-Type a server should send for ``path`` of a generated site.

    HTML gets no charset parameter: every page declares its own in a meta tag (the legacy pages
    are windows-1252, the others UTF-8), so a server must not claim UTF-8 for all of them.
    """
    if path.endswith(".xml.gz"):
        return "application/gzip"
    if path.endswith(".xml"):
        return "application/xml"
    if path.endswith(".txt"):
        return "text/plain; charset=utf-8"
    return "text/html"


def generate_site(n: int, seed: int = 0, origin: str = PLACEHOLDER_ORIGIN) -> dict[str, bytes]:
    """``n`` procedure pages plus listings, ``/``, robots.txt and sitemaps: ``{path: body}``.

    ``origin`` (``http://host:port``, no trailing slash) is written into robots.txt and the
    sitemaps; see the module docstring.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    origin = origin.rstrip("/")
    pages = [generate_page(i, seed) for i in range(n)]
    site: dict[str, bytes] = {p.url_path: p.html for p in pages}
    by_letter: dict[str, list[SynthPage]] = {x: [] for x in NAV_LETTERS}
    for page in pages:
        by_letter.setdefault(page.letter, []).append(page)
    letters = sorted(by_letter)
    for letter in letters:
        site[f"/code/list/{letter}"] = _listing(letter, by_letter[letter], letters)
    home_links = "".join(f'<li><a href="/code/list/{x}">{x}</a></li>' for x in letters)
    site["/"] = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Medical codes in plain language</title>\n</head>\n<body>\n<main>\n"
        f"<h1>Browse medical codes</h1>\n<ul>{home_links}</ul>\n</main>\n</body>\n</html>\n"
    ).encode()
    site["/robots.txt"] = (
        f"# Synthetic site (seed {seed}): everything may be crawled.\n"
        f"User-agent: *\nAllow: /\n\nSitemap: {origin}/sitemap.xml\n"
    ).encode()
    subs = {
        "/sitemap-cpt4.xml": [p.url_path for p in pages if p.system_segment == "cpt4"],
        "/sitemap-hcpcs.xml": [p.url_path for p in pages if p.system_segment == "hcpcs"],
        "/sitemap-icd10cm.xml.gz": [p.url_path for p in pages if p.system_segment == "icd10cm"],
    }
    index_entries = ""
    for name, paths in subs.items():
        body = _urlset(origin, paths, seed)
        site[name] = gzip.compress(body, mtime=0) if name.endswith(".gz") else body
        index_entries += (
            f"  <sitemap><loc>{xml_escape(origin + name)}</loc>"
            "<lastmod>2024-06-01</lastmod></sitemap>\n"
        )
    site["/sitemap.xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{index_entries}</sitemapindex>\n"
    ).encode()
    return site
