"""Tests for pipeline.extract.normalize.anesthesia."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.anesthesia import find_anesthesia
from pipeline.models import AnesthesiaKind

G = AnesthesiaKind.GENERAL
R = AnesthesiaKind.REGIONAL
L = AnesthesiaKind.LOCAL
S = AnesthesiaKind.SEDATION


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        # general
        ("The patient is placed under general anesthesia.", [G]),
        ("General anaesthesia is used.", [G]),
        ("A general anesthetic is given.", [G]),
        ("Performed under general.", [G]),
        ("You will be put to sleep.", [G]),
        ("You will be asleep under anesthesia.", [G]),
        ("The patient is fully asleep.", [G]),
        ("Anesthesia: General", [G]),
        # regional
        ("Regional anesthesia", [R]),
        ("Spinal anesthesia", [R]),
        ("A spinal block", [R]),
        ("An epidural is placed.", [R]),
        ("A nerve block numbs the arm.", [R]),
        ("A brachial plexus block", [R]),
        ("Anesthesia: spinal", [R]),
        # local
        ("Local anesthesia", [L]),
        ("A local anesthetic is injected.", [L]),
        ("A numbing injection", [L]),
        ("A numbing spray is used.", [L]),
        ("Numbing drops are placed in the eye.", [L]),
        ("Numbing gel", [L]),
        ("Numbing cream", [L]),
        ("Numbing medicine is given.", [L]),
        ("Numbing medication", [L]),
        ("The doctor will numb the area.", [L]),
        ("The doctor numbs the skin.", [L]),
        ("Lidocaine is injected.", [L]),
        ("Topical anesthetic", [L]),
        ("Anesthetic eye drops", [L]),
        ("Done under local.", [L]),
        # sedation
        ("Moderate sedation", [S]),
        ("Conscious sedation", [S]),
        ("IV sedation", [S]),
        ("Light sedation", [S]),
        ("Deep sedation", [S]),
        ("Minimal sedation", [S]),
        ("A sedative is given.", [S]),
        ("You will be sedated.", [S]),
        ("Twilight anesthesia", [S]),
        ("Monitored anesthesia care", [S]),
        # several, in order of first mention, no repeats
        ("General anesthesia or sedation", [G, S]),
        ("Local anesthesia with sedation", [L, S]),
        ("Sedation and local anesthetic; sedation again.", [S, L]),
        ("Anesthesia/Sedation: Local anesthesia with sedation", [L, S]),
        ("Spinal or general anesthesia", [R, G]),
        ("General or local anesthesia", [G, L]),
        ("Local and/or general anesthesia", [L, G]),
        ("Local/regional anesthetic", [L, R]),
        ("General, spinal, or epidural anesthesia", [G, R]),
        ("No general or local anesthetic is needed.", []),
        ("with or without sedation", [S]),
        ("Local anesthesia is used instead of general anesthesia.", [L]),
        ("Local anesthesia is used and sedation is not needed.", [L]),
        ("Local anesthesia, not general anesthesia, is used.", [L]),
        ("There is no pain as local anesthetic is used.", [L]),
        ("Sedation is not needed, but a numbing spray is used.", [L]),
        # negations
        ("No anesthesia is needed.", []),
        ("Without general anesthesia", []),
        ("The test does not require sedation.", []),
        ("Sedation is not usually needed.", []),
        ("Sedation isn't required.", []),
        ("General anesthesia is rarely used.", []),
        ("There is no need for general anesthesia.", []),
        ("This approach avoids general anesthesia.", []),
        ("Instead of general anesthesia", []),
        ("No sedation or general anesthesia is required.", []),
        ("You don't need general anesthesia.", []),
        ("Anesthesia/Sedation: None", []),
        # nothing
        ("Anesthesia is given.", []),
        ("An anesthetic is used.", []),
        ("The anesthesiologist monitors you.", []),
        ("Allergic reaction to anesthesia", []),
        ("Allergic reaction to local anesthetic", []),
        ("Risks of general anesthesia include nausea.", []),
        ("The needle is placed in the epidural space.", []),
        ("Epidural steroid injection", []),
        ("Spinal fusion", []),
        ("Nerve injury, leading to numbness", []),
        ("General health is assessed.", []),
        ("", []),
    ],
)
def test_find_anesthesia(text: str, kinds: list[AnesthesiaKind]) -> None:
    assert find_anesthesia([text]) == kinds


def test_across_texts_in_order_without_repeats() -> None:
    texts = [
        "The surgeon makes an incision.",
        "Local anesthesia is injected.",
        "General anesthesia is not needed.",
        "Light sedation may be given; local anesthetic again.",
    ]
    assert find_anesthesia(texts) == [L, S]


def test_negation_does_not_cross_texts() -> None:
    assert find_anesthesia(["You will not", "general anesthesia"]) == [G]


def test_generator_and_empty() -> None:
    assert find_anesthesia([]) == []
    assert find_anesthesia(t for t in ["IV sedation"]) == [S]


# --- properties -------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "general", "anesthesia", "local", "anesthetic", "sedation", "spinal", "block", "epidural",
        "nerve", "numbing", "spray", "no", "not", "without", "is", "needed", "or", "and", "with",
        "instead", "of", "used", ",", ".", "lidocaine", "twilight", "reaction", "to", "avoids",
    ]
)  # fmt: skip


def _check(kinds: list[AnesthesiaKind]) -> None:
    assert all(isinstance(k, AnesthesiaKind) for k in kinds)
    assert len(set(kinds)) == len(kinds)


@given(st.lists(st.text(), max_size=4))
def test_never_raises_vocabulary_no_repeats(texts: list[str]) -> None:
    _check(find_anesthesia(texts))


@given(st.lists(st.lists(_WORDS, max_size=14).map(" ".join), max_size=3))
def test_phrase_soup(texts: list[str]) -> None:
    _check(find_anesthesia(texts))


@given(st.lists(st.lists(_WORDS, max_size=14).map(" ".join), max_size=3))
def test_more_text_never_removes_kinds(texts: list[str]) -> None:
    kinds = find_anesthesia(texts)
    assert set(kinds) <= set(find_anesthesia([*texts, "General anesthesia is used."]))
