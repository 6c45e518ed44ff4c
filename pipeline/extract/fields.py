"""The record's fields from the entries of its sections: prose, items, steps, and the
normalizers that read them (duration, personnel, hospital stay, patient experience, similar
codes)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from pipeline.extract.identity import SYSTEM_LABEL
from pipeline.extract.normalize.codes import (
    CODE_FORMAT,
    parse_similar_item,
)
from pipeline.extract.normalize.durations import find_duration
from pipeline.extract.normalize.roles import classify_role, split_personnel
from pipeline.extract.normalize.stay import find_hospital_stay
from pipeline.extract.normalize.text import clean_item
from pipeline.extract.sections import (
    BARE_CODE,
    Entry,
)
from pipeline.models import CodeSystem

_CODE = r"[A-Z0-9]{3,7}(?:\.[A-Z0-9]{1,4})?"


#: A bare list of codes on one line: "93454, 93459 and 93460".
_CODE_LIST = re.compile(rf"^\s*{_CODE}(?:\s*(?:[,;/]|\band\b|\bor\b)\s*{_CODE})+\s*\.?$")


_LIST_SEPARATOR = re.compile(r"\s*(?:[,;/]|\band\b|\bor\b)\s*|\.$")


_LEADING_CODE = re.compile(rf"^(?:{SYSTEM_LABEL}\s*)?(?=\S*\d){CODE_FORMAT}\b", re.IGNORECASE)


def prose_of(entries: list[Entry] | None) -> str | None:
    if not entries:
        return None
    return join_prose([clean_item(e.text) if e.item else e.text for e in entries])


def join_prose(parts: list[str]) -> str | None:
    return "\n\n".join(p for p in (clean_item(t) for t in parts) if p) or None


def items_of(entries: list[Entry] | None, slots: tuple[str, ...] | None = None) -> list[str]:
    if not entries:
        return []
    out: list[str] = []
    for entry in entries:
        if slots is not None and entry.slot not in slots:
            continue
        text = clean_item(entry.text)
        if text:
            out.append(text)
    return out


def steps_of(entries: list[Entry] | None) -> list[str]:
    if not entries:
        return []
    if any(e.slot == "steps" for e in entries):
        return items_of(entries, ("steps",))
    return items_of(entries, ("items", "steps"))


def duration_of(entries: list[Entry] | None) -> dict[str, Any] | None:
    text = prose_of(entries)
    if not text:
        return None
    found = find_duration(text)
    return {
        "text": text,
        "min_minutes": found.min_minutes if found else None,
        "max_minutes": found.max_minutes if found else None,
    }


def personnel_of(entries: list[Entry] | None) -> list[dict[str, str]]:
    people: list[dict[str, str]] = []
    for entry in entries or ():
        text = clean_item(entry.text)
        if not text:
            continue
        phrases = [text] if entry.item else split_personnel(text)
        people.extend({"text": p, "role": classify_role(p)} for p in phrases)
    return people


def stay_of(sections: dict[str, list[Entry]]) -> dict[str, Any] | None:
    texts = [
        e.text
        for key in ("recovery", "setting", "patient_experience")
        for e in sections.get(key, ())
    ]
    found = find_hospital_stay(clean_item(t) for t in texts)
    if found is None:
        return None
    return {"text": found.text, "min_days": found.min_days, "max_days": found.max_days}


def experience_of(entries: list[Entry] | None) -> dict[str, list[str]]:
    """During / after / notes; prose that follows a during or after list is a note."""
    phases: dict[str, list[str]] = {"during": [], "after": [], "notes": []}
    listed: set[str] = set()  # slots whose list has started
    closed: set[str] = set()  # slots whose list has ended with prose
    for entry in entries or ():
        text = clean_item(entry.text)
        if not text:
            continue
        slot = entry.slot if entry.slot in phases else "notes"
        if slot != "notes":
            if entry.item and slot not in closed:
                listed.add(slot)
            elif slot in listed:
                closed.add(slot)
                slot = "notes"
        phases[slot].append(text)
    return phases


_SYSTEM_ONLY = re.compile(
    r"^\s*(?:CPT(?:\s*-?\s*4)?|HCPCS(?:\s+Level\s+II)?|ICD-?10-?(?:CM|PCS))\s*$", re.IGNORECASE
)


def _paired(entries: list[Entry]) -> list[Entry]:
    """Table rows read cell by cell ("29826" | "Arthroscopic decompression"): one entry each."""
    out: list[Entry] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        following = entries[i + 1] if i + 1 < len(entries) else None
        if (
            following is not None
            and i + 2 < len(entries)
            and _SYSTEM_ONLY.match(following.text)
            and BARE_CODE.match(clean_item(entry.text))
        ):
            # "0TF4XZZ" | "ICD-10-PCS" | "Fragmentation...": the system cell says what the
            # code's format already does; the title is the cell after it.
            following = entries[i + 2]
            i += 1
        if (
            following is not None
            and BARE_CODE.match(clean_item(entry.text))
            and not _LEADING_CODE.match(clean_item(following.text))
            and len(entry.links) <= 1
        ):
            text = f"{clean_item(entry.text)} – {clean_item(following.text)}"
            out.append(replace(entry, text=text, links=entry.links or following.links))
            i += 2
            continue
        out.append(entry)
        i += 1
    return out


def similar_of(entries: list[Entry] | None, system: CodeSystem) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in _paired(entries or []):
        code_links = [(h, t) for h, t in entry.links if t]
        pieces: list[tuple[str, str | None]]
        if len(code_links) > 1:
            pieces = [(t, h) for h, t in code_links]
        elif _CODE_LIST.match(entry.text):
            pieces = [(code, None) for code in _LIST_SEPARATOR.split(entry.text.strip())]
        else:
            pieces = [(entry.text, code_links[0][0] if code_links else None)]
        for text, href in pieces:
            parsed = parse_similar_item(clean_item(text), href, system)
            if parsed is None:
                continue
            code, code_system, title = parsed
            if (code, code_system) in seen:
                continue
            seen.add((code, code_system))
            out.append({"code": code, "code_system": code_system, "title": title})
    return out
