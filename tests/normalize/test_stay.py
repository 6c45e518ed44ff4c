"""Tests for pipeline.extract.normalize.stay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.stay import DayRange, find_hospital_stay

N = None


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        # SPEC examples
        ("Initial hospital stay of 3 to 7 days, depending on individual recovery", 3, 7),
        ("2-3 days in the hospital", 2, 3),
        ("Patients usually stay overnight.", 1, 1),
        ("An overnight stay is common.", 1, 1),
        ("Most patients stay one night.", 1, 1),
        ("Patients go home the same day.", 0, 0),
        ("You can go home right after the procedure.", 0, 0),
        ("You go home as soon as testing is finished.", 0, 0),
        ("You can go home once the scan is over.", 0, 0),
        ("Patients go home the same day or after one night.", 0, 1),
        ("You may go home the same day or stay overnight.", 0, 1),
        # more forms
        ("Patients are discharged within 2 to 3 days.", 2, 3),
        ("Patients are discharged, usually within 2 to 3 days.", 2, 3),
        ("1 to 2 nights", 1, 2),
        ("Expect one or two nights in the hospital.", 1, 2),
        ("Patients are admitted for a week.", 7, 7),
        ("1-2 weeks in hospital", 7, 14),
        ("23-hour observation", 1, 1),
        ("A 24-hour stay is typical.", 1, 1),
        ("Patients stay 24 to 48 hours.", 1, 2),
        ("Outpatient procedure; patients go home the same day.", 0, 0),
        ("Same-day discharge is typical.", 0, 0),
        ("Patients return home the next day.", 1, 1),
        ("Most patients are discharged the following morning.", 1, 1),
        ("Hospitalization for 2–3 days.", 2, 3),
        ("Inpatient stay: two to three days.", 2, 3),
        (
            "Patients typically remain in the hospital for 3 to 5 days, with return to work in "
            "6 weeks.",
            3,
            5,
        ),
        ("The hospital stay after spinal fusion surgery is usually 3 to 5 days.", 3, 5),
        ("Most patients return home 1-2 days after surgery.", 1, 2),
        ("Patients can go home within a few hours.", 0, 0),
        ("You will be able to go home after 1 to 2 hours of observation.", 0, 0),
        ("You can go home in 2 days and return to work in 2 weeks.", 2, 2),
        ("Expect to spend a day or two in the hospital.", 1, 2),
        ("A hospital stay of 1.5 days.", 2, 2),
        # bounds
        ("Patients stay in the hospital for at least 2 days.", 2, N),
        ("Hospital stay is less than 24 hours.", N, 1),
        ("Hospital stay of up to 2 weeks.", N, 14),
        ("Patients are discharged within 2 days.", N, 2),
        ("A hospital stay of 5 days or more.", 5, N),
        # vague
        ("A few days in the hospital may be needed.", N, N),
        ("Most patients stay in the hospital for several days.", N, N),
        ("A few days to a week in the hospital.", N, 7),
        # negations
        ("No hospital stay is needed.", 0, 0),
        ("The procedure does not require hospitalization.", 0, 0),
        ("Most patients do not need to stay overnight.", 0, 0),
        ("You don't need to be admitted.", 0, 0),
        ("It is done without an overnight stay.", 0, 0),
        ("Patients are not usually admitted to the hospital.", 0, 0),
    ],
)
def test_stay(text: str, low: int | None, high: int | None) -> None:
    assert find_hospital_stay([text]) == DayRange(text, low, high)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Return to work in 3 to 7 days.",
        "Avoid lifting for 2 weeks.",
        "Stitches removed in 7 to 10 days.",
        "Avoid driving for 2 days after discharge.",
        "Stay in bed for 2 days.",
        "Stay hydrated for 2 days.",
        "Do not stay in bed all day.",
        "Some vaginal discharge for a few days is normal.",
        "A dark, coffee-ground discharge from the paste for up to a week.",
        "You may have a discharge from the wound for 3 days.",
        "Expect a pink-tinged discharge for a week.",
        "Rest at home for 2 days.",
        "You will need someone to stay with you for 24 hours.",
        "Results are available the same day.",
        "You can resume normal activities the next day.",
        "Fast overnight before the procedure.",
        "Patients are admitted to the hospital.",
        "A short hospital stay.",
        "Physical therapy starting soon after the procedure to aid recovery",
        "Follow-up appointment in 2 weeks after going home.",
        "Call the hospital if you have a fever for 2 days.",
        "Pain may last 3 days; go home and rest.",
    ],
)
def test_no_stay(text: str) -> None:
    assert find_hospital_stay([text]) is None


def test_first_text_with_a_stay_wins_and_text_is_whole_and_collapsed() -> None:
    texts = [
        "Pain management with medications",
        "Return to work in 6 weeks.",
        "Pain is managed.   Initial hospital stay of 3 to 7 days,\n depending on recovery.",
        "Patients go home the same day.",
    ]
    assert find_hospital_stay(texts) == DayRange(
        "Pain is managed. Initial hospital stay of 3 to 7 days, depending on recovery.", 3, 7
    )


def test_first_sentence_with_a_stay_wins_within_a_text() -> None:
    text = "Patients stay overnight. Some stay 3 days in the hospital."
    assert find_hospital_stay([text]) == DayRange(text, 1, 1)


def test_sentence_without_context_does_not_borrow_from_the_next() -> None:
    text = "Return to work in 2 weeks. Patients stay in the hospital for 3 days."
    assert find_hospital_stay([text]) == DayRange(text, 3, 3)


def test_no_texts() -> None:
    assert find_hospital_stay([]) is None
    assert find_hospital_stay(iter(())) is None


def test_generator_input() -> None:
    assert find_hospital_stay(t for t in ["x", "2-3 days in the hospital"]) == DayRange(
        "2-3 days in the hospital", 2, 3
    )


# --- properties -------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "1", "2", "3", "one", "a", "few", "several", "to", "-", "or", "and", "between", "less than",
        "up to", "at least", "within", "days", "day", "nights", "night", "weeks", "hours", "hour",
        "hospital", "stay", "overnight", "same day", "next day", "go home", "discharged", "no",
        "not", "work", "avoid", "in", "the", ".", ",", ";", "24-hour", "observation", "+",
    ]
)  # fmt: skip


def _check(result: DayRange | None) -> None:
    if result is None:
        return
    assert result.text
    assert result.min_days is None or result.min_days >= 0
    assert result.max_days is None or result.max_days >= 0
    if result.min_days is not None and result.max_days is not None:
        assert result.min_days <= result.max_days


@given(st.lists(st.text(), max_size=4))
def test_never_raises_and_ordered(texts: list[str]) -> None:
    _check(find_hospital_stay(texts))


@given(st.lists(st.lists(_WORDS, max_size=14).map(" ".join), max_size=3))
def test_phrase_soup_is_ordered(texts: list[str]) -> None:
    result = find_hospital_stay(texts)
    _check(result)
    if result is not None:
        assert result.text in [" ".join(t.split()) for t in texts]


@given(st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=1000))
def test_day_ranges(a: int, b: int) -> None:
    text = f"Hospital stay of {a} to {b} days."
    assert find_hospital_stay([text]) == DayRange(text, min(a, b), max(a, b))
