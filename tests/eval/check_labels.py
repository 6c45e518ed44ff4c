"""Check the hand-written expected records of the evaluation corpus for form (not content).

    python -m tests.eval.check_labels [DIR ...]

Every ``<page>.json`` beside a page must hold ``url`` and either ``record`` (all fields of the
record, in order, with the types and vocabularies of SPEC) or ``reject``. This checks the
labels themselves, so it does not import the parser.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PAGES = Path(__file__).with_name("pages")

FIELDS = (
    "source", "code", "code_system", "title", "summary", "purpose", "indications",
    "preparation", "steps", "risks", "benefits", "recovery", "alternatives", "duration",
    "setting", "personnel", "hospital_stay", "patient_experience", "similar_codes",
    "anesthesia", "other_sections",
)  # fmt: skip
LISTS = ("indications", "preparation", "steps", "risks", "benefits", "recovery", "alternatives")
SYSTEMS = {
    "CPT": re.compile(r"\d{4}[0-9FTUM]"),
    "HCPCS": re.compile(r"[A-Z]\d{4}"),
    "ICD-10-PCS": re.compile(r"[0-9A-HJ-NP-Z]{7}"),
    "ICD-10-CM": re.compile(r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?"),
}
VENUES = {
    "hospital", "ambulatory_surgical_center", "outpatient_clinic", "physician_office",
    "imaging_center", "emergency_department", "home",
}  # fmt: skip
ROLES = {"anesthesia", "surgeon", "physician", "nurse", "technologist", "therapist", "other"}
ANESTHESIA = {"general", "regional", "local", "sedation"}
PAGE_SUFFIXES = (".html", ".htm", ".page.json", ".txt")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value == value.strip() and bool(value)


def _int_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int) and value >= 0)


def check_record(record: dict[str, Any], url: str) -> list[str]:
    problems: list[str] = []
    if tuple(record) != FIELDS:
        problems.append(f"fields must be exactly, in order: {', '.join(FIELDS)}")
        return problems
    if record["source"] != url:
        problems.append("source must equal url")
    system = record["code_system"]
    if system not in SYSTEMS:
        problems.append(f"code_system {system!r} unknown")
    elif not SYSTEMS[system].fullmatch(record["code"] or ""):
        problems.append(f"code {record['code']!r} is not a {system} code")
    if not _text(record["title"]):
        problems.append("title must be non-empty text")
    for key in ("summary", "purpose"):
        if record[key] is not None and not _text(record[key]):
            problems.append(f"{key} must be null or non-empty text")
    for key in LISTS:
        if not isinstance(record[key], list) or not all(_text(v) for v in record[key]):
            problems.append(f"{key} must be a list of non-empty texts")
    duration = record["duration"]
    if duration is not None and (
        set(duration) != {"text", "min_minutes", "max_minutes"}
        or not _text(duration["text"])
        or not _int_or_null(duration["min_minutes"])
        or not _int_or_null(duration["max_minutes"])
    ):
        problems.append("duration must be null or {text, min_minutes, max_minutes}")
    setting = record["setting"]
    if setting is not None and (
        set(setting) != {"text", "venues"}
        or not _text(setting["text"])
        or not set(setting["venues"]) <= VENUES
    ):
        problems.append("setting must be null or {text, venues} with known venues")
    for person in record["personnel"]:
        if set(person) != {"text", "role"} or person["role"] not in ROLES:
            problems.append(f"personnel entry {person!r} must be {{text, role}} with a known role")
    stay = record["hospital_stay"]
    if stay is not None and (
        set(stay) != {"text", "min_days", "max_days"}
        or not _int_or_null(stay["min_days"])
        or not _int_or_null(stay["max_days"])
    ):
        problems.append("hospital_stay must be null or {text, min_days, max_days}")
    experience = record["patient_experience"]
    if set(experience) != {"during", "after", "notes"}:
        problems.append("patient_experience must be {during, after, notes}")
    for similar in record["similar_codes"]:
        if (
            set(similar) != {"code", "code_system", "title"}
            or similar["code_system"] not in SYSTEMS
        ):
            problems.append(f"similar code {similar!r} must be {{code, code_system, title}}")
        elif not SYSTEMS[similar["code_system"]].fullmatch(similar["code"]):
            problems.append(f"similar code {similar['code']!r} is not {similar['code_system']}")
    if not set(record["anesthesia"]) <= ANESTHESIA or len(set(record["anesthesia"])) != len(
        record["anesthesia"]
    ):
        problems.append("anesthesia must be distinct kinds of general/regional/local/sedation")
    for other in record["other_sections"]:
        if set(other) != {"heading", "text"} or not _text(other["heading"]):
            problems.append(f"other section {other!r} must be {{heading, text}}")
    return problems


def check_file(path: Path) -> list[str]:
    try:
        label = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return [f"unreadable: {exc}"]
    page = [path.with_suffix(s) for s in PAGE_SUFFIXES if path.with_suffix(s).exists()]
    problems = [] if len(page) >= 1 else ["no page beside the label"]
    if not isinstance(label.get("url"), str):
        problems.append("url missing")
    if "record" in label:
        problems += check_record(label["record"], label.get("url", ""))
    elif "reject" in label:
        if not isinstance(label["reject"].get("error"), str):
            problems.append("reject.error missing")
    else:
        problems.append("neither record nor reject")
    return problems


def labels(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        found += sorted(p for p in root.rglob("*.json") if not p.name.endswith(".page.json"))
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [PAGES]
    bad = 0
    files = labels(roots)
    for path in files:
        for problem in check_file(path):
            bad += 1
            print(f"{path}: {problem}")
    print(f"{len(files)} labels, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
