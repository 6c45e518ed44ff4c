"""Score the parser against the evaluation corpus, field by field.

Two kinds of ground truth:

* ``tests/eval/pages/<split>/<layout>/<page>`` with ``<page>.json`` beside it: the whole
  expected record (see LABELING.md). Each field of each page scores between 0 and 1; a field's
  score is its mean over the pages.
* ``tests/eval/real/<page>.json``: expected *fields* of real pages written by others (kept
  outside the project; ``PIPELINE_REAL_PAGES`` or ``../shared/real-pages``). Each expectation
  holds or not; a field's recall is the share of the pages expecting it where it holds.

Scoring rules (the same for every field of the same shape):

* text fields (code, code_system, title, summary, purpose): equal after white space collapse;
* list fields: F1 of the expected and produced items (a multiset match of whole items);
* duration, setting, hospital_stay: the normalized part (bounds, venues) and the text are
  scored as two rows (``duration`` and ``duration.text``...);
* personnel, patient_experience, similar_codes, other_sections: F1 over whole entries;
* anesthesia: the set of kinds is equal;
* a page that should be a record but is rejected scores 0 on every field; a page that should
  be rejected scores 1 on every field when it is rejected with the expected error and kind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.extract.page import parse_page

HERE = Path(__file__).parent
PAGES = HERE / "pages"
REAL = HERE / "real"
SPLITS = ("dev", "heldout")
PAGE_SUFFIXES = (".html", ".htm", ".page.json", ".txt")

ROWS = (
    "code", "code_system", "title", "summary", "purpose", "indications", "preparation", "steps",
    "risks", "benefits", "recovery", "alternatives", "duration", "duration.text", "setting",
    "setting.text", "personnel", "hospital_stay", "hospital_stay.text", "patient_experience",
    "similar_codes", "anesthesia", "other_sections",
)  # fmt: skip
LISTS = ("indications", "preparation", "steps", "risks", "benefits", "recovery", "alternatives")

_SPACE = re.compile(r"\s+")


def norm(text: Any) -> Any:
    return _SPACE.sub(" ", text).strip() if isinstance(text, str) else text


def f1(expected: Iterable[Any], got: Iterable[Any]) -> float:
    want, have = Counter(expected), Counter(got)
    if not want and not have:
        return 1.0
    hit = sum((want & have).values())
    if not hit:
        return 0.0
    precision, recall = hit / sum(have.values()), hit / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def _part(value: dict[str, Any] | None, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    return (
        None
        if value is None
        else tuple(tuple(value[k]) if isinstance(value[k], list) else value[k] for k in keys)
    )


def _text_of(value: dict[str, Any] | None) -> str | None:
    return None if value is None else norm(value["text"])


def field_scores(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """Scores of one page's record against its label, one per row of ``ROWS``."""
    scores: dict[str, float] = {}
    for key in ("code", "code_system", "title", "summary", "purpose"):
        scores[key] = float(norm(expected[key]) == norm(got.get(key)))
    for key in LISTS:
        scores[key] = f1(map(norm, expected[key]), map(norm, got.get(key) or []))
    for key, parts in (
        ("duration", ("min_minutes", "max_minutes")),
        ("setting", ("venues",)),
        ("hospital_stay", ("min_days", "max_days")),
    ):
        scores[key] = float(_part(expected[key], parts) == _part(got.get(key), parts))
        scores[key + ".text"] = float(_text_of(expected[key]) == _text_of(got.get(key)))
    scores["personnel"] = f1(
        ((norm(p["text"]), p["role"]) for p in expected["personnel"]),
        ((norm(p["text"]), p["role"]) for p in got.get("personnel") or []),
    )
    experience = got.get("patient_experience") or {}
    scores["patient_experience"] = f1(
        (
            (slot, norm(t))
            for slot in ("during", "after", "notes")
            for t in expected["patient_experience"][slot]
        ),
        (
            (slot, norm(t))
            for slot in ("during", "after", "notes")
            for t in experience.get(slot, [])
        ),
    )
    scores["similar_codes"] = f1(
        ((s["code"], s["code_system"], norm(s["title"])) for s in expected["similar_codes"]),
        ((s["code"], s["code_system"], norm(s["title"])) for s in got.get("similar_codes") or []),
    )
    scores["anesthesia"] = float(set(expected["anesthesia"]) == set(got.get("anesthesia") or []))
    scores["other_sections"] = f1(
        ((norm(o["heading"]), norm(o["text"])) for o in expected["other_sections"]),
        ((norm(o["heading"]), norm(o["text"])) for o in got.get("other_sections") or []),
    )
    return scores


@dataclass
class PageResult:
    path: Path
    scores: dict[str, float]
    error: str | None = None
    diff: dict[str, dict[str, Any]] = field(default_factory=dict)


def page_file(label: Path) -> Path:
    for suffix in PAGE_SUFFIXES:
        candidate = label.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no page beside {label}")


def labels(split: str) -> list[Path]:
    root = PAGES / split
    return sorted(p for p in root.rglob("*.json") if not p.name.endswith(".page.json"))


def _record(data: bytes, url: str) -> dict[str, Any]:
    return parse_page(data, url=url).model_dump(mode="json")


def score_page(label_path: Path) -> PageResult:
    label = json.loads(label_path.read_text("utf-8"))
    data = page_file(label_path).read_bytes()
    if "reject" in label:
        want = label["reject"]
        try:
            _record(data, label["url"])
        except errors.PipelineError as exc:
            kind_ok = getattr(exc, "page_kind", None) == want.get(
                "page_kind", getattr(exc, "page_kind", None)
            )
            ok = type(exc).__name__ == want["error"] and kind_ok
            return PageResult(label_path, dict.fromkeys(ROWS, float(ok)), None if ok else str(exc))
        return PageResult(
            label_path, dict.fromkeys(ROWS, 0.0), "became a record, expected a reject"
        )
    expected = label["record"]
    try:
        got = _record(data, label["url"])
    except errors.PipelineError as exc:
        return PageResult(label_path, dict.fromkeys(ROWS, 0.0), f"{type(exc).__name__}: {exc}")
    scores = field_scores(expected, got)
    diff = {}
    for row, value in scores.items():
        if value < 1.0:
            key = row.split(".")[0]
            diff[row] = {"expected": expected[key], "got": got.get(key)}
    return PageResult(label_path, scores, None, diff)


def score_split(split: str) -> list[PageResult]:
    return [score_page(p) for p in labels(split)]


def summarize(results: list[PageResult]) -> dict[str, float]:
    if not results:
        return {}
    table = {row: sum(r.scores[row] for r in results) / len(results) for row in ROWS}
    table["page"] = sum(all(v == 1.0 for v in r.scores.values()) for r in results) / len(results)
    return table


# --- real pages ----------------------------------------------------------------------------------


def real_pages_dir() -> Path | None:
    configured = os.environ.get("PIPELINE_REAL_PAGES")
    candidates = [Path(configured)] if configured else []
    candidates.append(HERE.parents[2] / "shared" / "real-pages")
    return next((c for c in candidates if c.is_dir()), None)


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_value_text(v) for v in value)
    if isinstance(value, dict):
        return "\n".join(_value_text(v) for v in value.values())
    return str(value)


def _holds(check: Any, value: Any) -> bool:
    if not isinstance(check, dict):
        return bool(norm(value) == check)
    ok = True
    if "contains" in check:
        ok &= check["contains"].casefold() in norm(_value_text(value)).casefold()
    if "min_items" in check:
        ok &= isinstance(value, list) and len(value) >= check["min_items"]
    for bound in ("min_days", "max_days", "min_minutes", "max_minutes"):
        if bound in check:
            ok &= isinstance(value, dict) and value.get(bound) == check[bound]
    if "includes" in check:
        ok &= set(check["includes"]) <= set(value or [])
    if "codes" in check:
        ok &= set(check["codes"]) <= {s["code"] for s in value or []}
    if "headings" in check:
        ok &= set(check["headings"]) <= {norm(o["heading"]) for o in value or []}
    return ok


@dataclass
class RealResult:
    name: str
    checks: dict[str, bool]
    error: str | None = None


def score_real(root: Path) -> list[RealResult]:
    results: list[RealResult] = []
    for label_path in sorted(REAL.glob("*.json")):
        label = json.loads(label_path.read_text("utf-8"))
        data = (root / label["file"]).read_bytes()
        if "reject" in label:
            want = label["reject"]
            try:
                _record(data, label["url"])
            except errors.PipelineError as exc:
                ok = type(exc).__name__ == want["error"] and getattr(
                    exc, "page_kind", None
                ) == want.get("page_kind")
                results.append(RealResult(label["file"], {"reject": ok}, str(exc)))
                continue
            results.append(RealResult(label["file"], {"reject": False}, "became a record"))
            continue
        try:
            got = _record(data, label["url"])
        except errors.PipelineError as exc:
            checks = dict.fromkeys(label["expect"], False)
            results.append(RealResult(label["file"], checks, f"{type(exc).__name__}: {exc}"))
            continue
        checks = {
            key: any(_holds(check, got.get(alt)) for alt in key.split("|"))
            for key, check in label["expect"].items()
        }
        results.append(RealResult(label["file"], checks))
    return results


def summarize_real(results: list[RealResult]) -> dict[str, float]:
    per: dict[str, list[bool]] = {}
    for result in results:
        for key, ok in result.checks.items():
            per.setdefault(key, []).append(ok)
    table = {key: sum(v) / len(v) for key, v in sorted(per.items())}
    every = [ok for r in results for ok in r.checks.values()]
    table["all"] = sum(every) / len(every) if every else 0.0
    return table


def render(table: dict[str, float], counts: dict[str, int] | None = None) -> Iterator[str]:
    width = max(map(len, table), default=5)
    for row, value in table.items():
        extra = f"  (n={counts[row]})" if counts and row in counts else ""
        yield f"  {row:<{width}}  {value:6.3f}{extra}"


ScoreFn = Callable[[str], list[PageResult]]


# --- the gate ------------------------------------------------------------------------------------

#: Per-field floors the gate holds (``python -m tests.eval --record`` rewrites it).
BASELINE = HERE / "baseline.json"


def corpus_digest(split: str) -> str:
    """A digest of a split's pages and labels (or of the real-page expectations)."""
    digest = hashlib.sha256()
    files = sorted(REAL.glob("*.json")) if split == "real" else sorted((PAGES / split).rglob("*"))
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(HERE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def record_baseline(tables: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Write the floors: each field's score now, rounded down, with the corpus digests."""
    data = {
        split: {
            "corpus": corpus_digest(split),
            "floors": {row: math.floor(v * 1000) / 1000 for row, v in table.items()},
        }
        for split, table in tables.items()
    }
    BASELINE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", "utf-8")
    return data
