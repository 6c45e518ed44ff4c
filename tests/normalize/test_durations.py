"""Tests for pipeline.extract.normalize.durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.durations import MinuteRange, find_duration

N = None


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        # ranges
        ("The procedure typically takes 3 to 6 hours, depending on the complexity.", 180, 360),
        ("3-6 hours", 180, 360),
        ("3–6 hours", 180, 360),
        ("3 — 6 hrs", 180, 360),
        ("3 - 6 hours", 180, 360),
        ("between 2 and 4 hours", 120, 240),
        ("Between 1 hour and 90 minutes", 60, 90),
        ("1-2 hours", 60, 120),
        ("1 or 2 hours", 60, 120),
        ("one to two hours", 60, 120),
        ("Ten to fifteen minutes", 10, 15),
        ("forty-five minutes to an hour", 45, 60),
        ("an hour or two", 60, 120),
        ("a day or two", 1440, 2880),
        ("takes 10–15 min.", 10, 15),
        ("1.5-2 hours", 90, 120),
        ("a 2- to 3-hour procedure", 120, 180),
        # mixed units
        ("30 minutes to 1 hour", 30, 60),
        ("45 minutes to 1.5 hours", 45, 90),
        ("half an hour to an hour", 30, 60),
        ("an hour and a half to two hours", 90, 120),
        # reversed bounds are swapped
        ("6 to 3 hours", 180, 360),
        ("1 hour to 30 minutes", 30, 60),
        # compounds
        ("1 hour and 30 minutes", 90, 90),
        ("1 hour 30 minutes", 90, 90),
        ("2 hrs, 15 mins", 135, 135),
        ("an hour and a half", 90, 90),
        ("one and a half hours", 90, 90),
        ("1½ hours", 90, 90),
        ("1 1/2 hours", 90, 90),
        # single values
        ("about 20 minutes", 20, 20),
        ("approximately 20 minutes", 20, 20),
        ("around 20 minutes", 20, 20),
        ("roughly 20 minutes", 20, 20),
        ("typically 20 minutes", 20, 20),
        ("usually 20 minutes", 20, 20),
        ("~20 minutes", 20, 20),
        ("1 hour", 60, 60),
        ("an hour", 60, 60),
        ("An hour", 60, 60),
        ("half an hour", 30, 30),
        ("a half hour", 30, 30),
        ("a half-hour", 30, 30),
        ("half a day", 720, 720),
        ("90 min", 90, 90),
        ("90min", 90, 90),
        ("45 mins", 45, 45),
        ("2 hrs", 120, 120),
        ("2 hr.", 120, 120),
        ("2h", 120, 120),
        ("2 h", 120, 120),
        ("1.5 hours", 90, 90),
        ("twenty minutes", 20, 20),
        ("2 days", 2880, 2880),
        ("a full day", 1440, 1440),
        ("6 weeks", 60480, 60480),
        ("3 months", 129600, 129600),
        ("an hour-long procedure", 60, 60),
        ("a 30-minute procedure", 30, 30),
        ("a 30-minute outpatient procedure", 30, 30),
        ("a 2-hour-long session", 120, 120),
        ("a 45 minute appointment", 45, 45),
        # seconds: rounded, at least 1 minute when above 0
        ("30 seconds", 1, 1),
        ("20 seconds", 1, 1),
        ("90 seconds", 2, 2),
        ("150 secs", 3, 3),
        ("0 minutes", 0, 0),
        ("10 to 30 seconds", 1, 1),
        # rounding half up
        ("2.5 minutes", 3, 3),
        ("0.75 hours", 45, 45),
        # upper bounds
        ("less than an hour", N, 60),
        ("Less than 30 minutes", N, 30),
        ("under an hour", N, 60),
        ("up to an hour", N, 60),
        ("no more than an hour", N, 60),
        ("within an hour", N, 60),
        ("at most 2 hours", N, 120),
        ("30 minutes or less", N, 30),
        ("less than half an hour", N, 30),
        ("up to 2-3 hours", N, 180),
        # lower bounds
        ("at least 2 hours", 120, N),
        ("more than 2 hours", 120, N),
        ("over 2 hours", 120, N),
        ("2 hours or more", 120, N),
        ("2 hours or longer", 120, N),
        ("2+ hours", 120, N),
        ("at least 2-3 hours", 120, N),
        # within a range keeps the range
        ("within 2 to 3 hours", 120, 180),
        # vague
        ("several hours", N, N),
        ("a few minutes", N, N),
        ("a couple of hours", N, N),
        ("a couple hours", N, N),
        ("many hours", N, N),
        ("minutes to hours", N, N),
        ("a few minutes to an hour", N, 60),
        ("several more hours", N, N),
        ("The study is performed overnight.", N, N),
        ("It takes all day.", N, N),
        ("It may last from 30 minutes to several hours.", 30, N),
        ("a few minutes to several hours", N, N),
        # "over" after "given" spreads the treatment, it is not a lower bound
        ("The treatment is given over 3 days.", 4320, 4320),
        ("It lasts over 2 hours.", 120, N),
        # the first phrase wins
        ("About 1 hour, plus 2 hours of recovery.", 60, 60),
        ("The scan itself takes 10–15 minutes, but plan for an hour.", 10, 15),
        ("Recovery takes 6 weeks; the surgery takes 2 hours.", 60480, 60480),
        # timing offsets and frequencies are skipped, the next phrase counts
        ("Arrive 30 minutes before the procedure; it takes 2 hours.", 120, 120),
        ("Stop eating 8 hours prior to the test, which lasts 1 hour.", 60, 60),
        ("Take the drug every 4 hours for 2 days.", 2880, 2880),
        ("Apply twice a day for 2 weeks.", 20160, 20160),
        ("2 hours a day", 120, 120),
        ("The test involves a 24-hour urine collection and a 20 minute scan.", 20, 20),
    ],
)
def test_find_duration(text: str, low: int | None, high: int | None) -> None:
    assert find_duration(text) == MinuteRange(low, high)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "No duration here.",
        "Duration varies depending on the number of lesions treated.",
        "The test involves a 24-hour urine collection.",
        "A 24-hour Holter monitor is worn.",
        "1,5 hours",  # a decimal comma is not read
        "It can take hours.",
        "Arrive 30 minutes before your appointment.",
        "Take every 4 hours.",
        "Infants 6 months old.",
        "Stop blood thinners 3 days prior to surgery.",
        "Fast overnight before the test.",
        "The 24/7 hotline.",
        "Step 3: the hospital.",
        "the hour hand",
        "hourly checks",
    ],
)
def test_no_duration(text: str) -> None:
    assert find_duration(text) is None


def test_result_is_frozen() -> None:
    result = find_duration("1 hour")
    assert result is not None
    with pytest.raises(AttributeError):
        result.min_minutes = 5  # type: ignore[misc]


# --- properties -------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "1", "2", "3.5", "½", "one", "two", "forty-five", "a", "an", "half", "several", "a few",
        "to", "-", "–", "or", "and", "between", "less than", "up to", "at least", "over", "more",
        "hours", "hour", "minutes", "min", "hrs", "h", "days", "weeks", "months", "seconds",
        "about", "every", "before", "procedure", "long", "+", ",", ".", "or more", "or less",
    ]
)  # fmt: skip


@given(st.text())
def test_never_raises_and_ordered(text: str) -> None:
    result = find_duration(text)
    if result is not None:
        assert result.min_minutes is None or result.min_minutes >= 0
        assert result.max_minutes is None or result.max_minutes >= 0
        if result.min_minutes is not None and result.max_minutes is not None:
            assert result.min_minutes <= result.max_minutes


@given(st.lists(_WORDS, max_size=12).map(" ".join))
def test_phrase_soup_is_ordered(text: str) -> None:
    result = find_duration(text)
    if result is not None and result.min_minutes is not None and result.max_minutes is not None:
        assert 0 <= result.min_minutes <= result.max_minutes


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["to", "-", "–", "or"]),
)
def test_ranges_in_minutes(a: int, b: int, sep: str) -> None:
    result = find_duration(f"It takes {a} {sep} {b} minutes.")
    assert result == MinuteRange(min(a, b), max(a, b))


@given(st.integers(min_value=1, max_value=1000), st.sampled_from(["hours", "hrs", "hour"]))
def test_hours_are_sixty_minutes(value: int, unit: str) -> None:
    assert find_duration(f"about {value} {unit}") == MinuteRange(value * 60, value * 60)


@given(st.text(alphabet=st.characters(categories=["Ll", "Lu", "Zs"]), max_size=60))
def test_prefix_text_does_not_change_a_later_phrase(prefix: str) -> None:
    result = find_duration(f"{prefix}. It takes 3 to 6 hours")
    assert result is not None
