"""The evaluation gate: no field may score below its floor in ``tests/eval/baseline.json``.

The corpus (``tests/eval/pages``: dev and held-out pages written to imitate real sites, each
with its expected record) is scored field by field (``tests/eval/score.py``); the real pages
(kept outside the project) are scored on the fields their own headings announce and the test
skips when they are absent. ``python -m tests.eval`` prints the same tables; after a change
that should move a floor, ``python -m tests.eval --record`` rewrites the baseline.

A floor fails the test when the field drops below it; a corpus that changed without new floors
fails too (the floors would describe other pages).
"""

from __future__ import annotations

import json

import pytest

from tests.eval import score

BASELINE = json.loads(score.BASELINE.read_text("utf-8"))
#: Scores are means of per-page fractions; allow for float noise only.
EPSILON = 1e-9


def _check(split: str, table: dict[str, float]) -> None:
    floors = BASELINE[split]["floors"]
    assert set(floors) <= set(table), f"{split}: fields missing from the scores"
    dropped = {
        row: f"{table[row]:.3f} < floor {floor:.3f}"
        for row, floor in floors.items()
        if table[row] + EPSILON < floor
    }
    assert not dropped, f"{split}: fields fell below their floors: {dropped}"


@pytest.mark.parametrize("split", score.SPLITS)
def test_corpus_matches_the_baseline(split: str) -> None:
    assert score.corpus_digest(split) == BASELINE[split]["corpus"], (
        f"the {split} pages or labels changed: run `python -m tests.eval --record` and commit "
        "the new floors with the pages"
    )


@pytest.mark.parametrize("split", score.SPLITS)
def test_every_field_holds_its_floor(split: str) -> None:
    results = score.score_split(split)
    assert len(results) >= (60 if split == "dev" else 30)
    _check(split, score.summarize(results))


def test_the_corpus_has_the_size_the_issue_asks_for() -> None:
    pages = [p for split in score.SPLITS for p in score.labels(split)]
    layouts = {p.parent.name for p in pages}
    assert len(pages) >= 60
    assert len(layouts) >= 10


def test_real_pages_hold_their_floors() -> None:
    root = score.real_pages_dir()
    if root is None:
        pytest.skip("real pages not present (set PIPELINE_REAL_PAGES or ../shared/real-pages)")
    assert score.corpus_digest("real") == BASELINE["real"]["corpus"], (
        "the real-page expectations changed: run `python -m tests.eval --record`"
    )
    results = score.score_real(root)
    assert results, f"no real page scored under {root}"
    _check("real", score.summarize_real(results))


def test_a_field_below_its_floor_fails_the_gate() -> None:
    floors = BASELINE["dev"]["floors"]
    table = dict(floors.items())
    _check("dev", table)  # at the floor: holds
    table["steps"] = floors["steps"] - 0.01
    with pytest.raises(AssertionError, match="steps"):
        _check("dev", table)
