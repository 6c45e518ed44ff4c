"""Tests for pipeline.extract.normalize.numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.numbers import NUMBER, VAGUE, alternation, fold, parse_number

NUMBER_RE = re.compile(NUMBER)
VAGUE_RE = re.compile(VAGUE)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("3", 3),
        ("0", 0),
        ("1.5", 1.5),
        ("12", 12),
        ("1,000", 1000),
        ("½", 0.5),
        ("¼", 0.25),
        ("¾", 0.75),
        ("1½", 1.5),
        ("1 ½", 1.5),
        ("2¾", 2.75),
        ("1/2", 0.5),
        ("1 1/2", 1.5),
        ("3/4", 0.75),
        ("one", 1),
        ("two", 2),
        ("seven", 7),
        ("ten", 10),
        ("twelve", 12),
        ("seventeen", 17),
        ("twenty", 20),
        ("thirty", 30),
        ("forty", 40),
        ("sixty", 60),
        ("ninety", 90),
        ("forty-five", 45),
        ("forty five", 45),
        ("Twenty-One", 21),
        ("a", 1),
        ("an", 1),
        ("A", 1),
        ("half", 0.5),
        ("a half", 0.5),
        ("one half", 0.5),
        ("one and a half", 1.5),
        ("two and a half", 2.5),
        ("2 and a half", 2.5),
        ("a hundred", 100),
        ("  three  ", 3),
        ("ſix", 6),  # a case-insensitive pattern matches "ſ" for "s"
    ],
)
def test_parse_number(token: str, expected: float) -> None:
    assert parse_number(token) == pytest.approx(expected)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "1,5",  # decimal comma: not a number
        "11/2",  # not "1 1/2"
        "1.5½",
        "a couple",
        "couple",
        "a few",
        "few",
        "several",
        "some",
        "many",
        "a and a half",
        "half and a half",
        "hour",
        "twenty zero",
        "zero five",
        "3 4",
        "x",
        "9" * 400,  # not finite
        "²",
    ],
)
def test_not_a_number(token: str) -> None:
    assert parse_number(token) is None


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("3-6 hours", ["3", "6"]),
        ("3–6 hours", ["3", "6"]),
        ("about forty-five minutes", ["forty-five"]),
        ("one and a half hours", ["one and a half"]),
        ("an hour", ["an"]),
        ("1½ hours", ["1½"]),
        ("1 1/2 hours", ["1 1/2"]),
        ("half an hour", ["half", "an"]),
        ("seventeen or seven", ["seventeen", "seven"]),
        ("1,5 hours", ["1"]),  # the "5" after a decimal comma is not a number of its own
        ("version 1.5.3", ["1.5"]),
        ("Some anatomy and biology", []),
        ("oneself, tenth, often, anywhere", []),
        ("24/7", ["24"]),
    ],
)
def test_number_fragment(text: str, tokens: list[str]) -> None:
    assert [m.group() for m in NUMBER_RE.finditer(text)] == tokens


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("several hours", "several"),
        ("a few minutes", "a few"),
        ("a couple of hours", "a couple of"),
        ("a number of days", "a number of"),
        ("the seventh day", None),
    ],
)
def test_vague_fragment(text: str, found: str | None) -> None:
    match = VAGUE_RE.search(text)
    assert (match.group() if match else None) == found


def test_number_fragment_is_embeddable() -> None:
    pattern = re.compile(rf"(?P<n>{NUMBER})\s+hours?", re.IGNORECASE)
    match = pattern.search("It takes Forty-Five hours")
    assert match is not None
    assert parse_number(match.group("n")) == 45


@pytest.mark.parametrize(
    "words",
    [["a", "an"], ["seven", "seventeen", "six"], ["one"], ["x", "xy", "xyz"], ["a.b", "a+b"]],
)
def test_alternation_matches_exactly_the_words(words: list[str]) -> None:
    pattern = re.compile(alternation(words))
    for word in words:
        assert pattern.fullmatch(word)
    assert not pattern.fullmatch(words[0] + "q")


def test_fold() -> None:
    assert fold("ſIX") == "six"
    assert fold("mınutes") == "minutes"


# --- properties -------------------------------------------------------------------------------


@given(st.text())
def test_parse_number_never_raises(text: str) -> None:
    value = parse_number(text)
    assert value is None or value >= 0


@given(st.text())
def test_every_number_match_parses(text: str) -> None:
    for match in NUMBER_RE.finditer(text):
        assert parse_number(match.group()) is not None, match.group()


@given(st.integers(min_value=0, max_value=10**9))
def test_integers_round_trip(value: int) -> None:
    assert parse_number(str(value)) == value
    assert NUMBER_RE.fullmatch(str(value))


@given(st.integers(min_value=1, max_value=99))
def test_word_numbers_round_trip(value: int) -> None:
    units = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    teens = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
    tens = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    if value < 10:
        word = units[value - 1]
    elif value < 20:
        word = teens.split()[value - 10]
    else:
        word = tens[value // 10 - 2] + (f"-{units[value % 10 - 1]}" if value % 10 else "")
    assert parse_number(word) == value
    assert NUMBER_RE.fullmatch(word)
