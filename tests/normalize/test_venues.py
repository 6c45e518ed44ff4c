"""Tests for pipeline.extract.normalize.venues."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.venues import find_venues
from pipeline.models import Venue

H = Venue.HOSPITAL
ASC = Venue.AMBULATORY_SURGICAL_CENTER
CLINIC = Venue.OUTPATIENT_CLINIC
OFFICE = Venue.PHYSICIAN_OFFICE
IMAGING = Venue.IMAGING_CENTER
ED = Venue.EMERGENCY_DEPARTMENT
HOME = Venue.HOME


@pytest.mark.parametrize(
    ("text", "venues"),
    [
        (
            "This surgery is performed in a hospital operating room with specialized spinal "
            "surgery equipment.",
            [H],
        ),
        # ambulatory surgical center, and nothing else for the same phrase
        ("Performed in an outpatient surgical center.", [ASC]),
        ("Performed in an outpatient surgery center.", [ASC]),
        ("An ambulatory surgery center (ASC).", [ASC]),
        ("An ambulatory surgical center.", [ASC]),
        ("At a surgicenter.", [ASC]),
        ("In a same-day surgery center.", [ASC]),
        ("In a same day surgery centre.", [ASC]),
        ("A surgery center.", [ASC]),
        ("In an outpatient surgical setting.", [ASC]),
        # hospital
        ("Hospital", [H]),
        ("hospitals", [H]),
        ("A hospital-based procedure.", [H]),
        ("In the inpatient unit.", [H]),
        ("Hospital outpatient department.", [H]),
        ("The outpatient department of a hospital.", [H]),
        ("In the endoscopy unit.", [H]),
        ("In the endoscopy suite.", [H]),
        ("Cardiac catheterization lab.", [H]),
        ("In the cath lab.", [H]),
        ("Labor and delivery unit.", [H]),
        ("ICU", [H]),
        ("NICU", [H]),
        ("In the intensive care unit.", [H]),
        ("Operating room.", [H]),
        ("An operating theatre.", [H]),
        ("Interventional radiology suite.", [H]),
        ("Radiology department.", [H]),
        ("An academic medical center.", [H]),
        # outpatient clinic
        ("Urology clinic", [CLINIC]),
        ("A pain clinic.", [CLINIC]),
        ("A wound care clinic.", [CLINIC]),
        ("An endoscopy clinic.", [CLINIC]),
        ("An urgent care clinic.", [CLINIC]),
        ("An urgent care center.", [CLINIC]),
        ("In an outpatient setting.", [CLINIC]),
        ("An outpatient facility.", [CLINIC]),
        ("An outpatient center.", [CLINIC]),
        ("An infusion center.", [CLINIC]),
        ("A dialysis center.", [CLINIC]),
        ("Clinics", [CLINIC]),
        # physician office
        ("Doctor's office", [OFFICE]),
        ("In the physician’s office.", [OFFICE]),
        ("A provider's office.", [OFFICE]),
        ("The doctors' office.", [OFFICE]),
        ("In a dermatologist's office.", [OFFICE]),
        ("In an office setting.", [OFFICE]),
        ("Done in the office.", [OFFICE]),
        ("An in-office procedure.", [OFFICE]),
        ("An office-based procedure.", [OFFICE]),
        ("A medical office.", [OFFICE]),
        # imaging center
        ("An imaging center.", [IMAGING]),
        ("An imaging facility.", [IMAGING]),
        ("A radiology center.", [IMAGING]),
        ("An MRI center.", [IMAGING]),
        ("An outpatient imaging center.", [IMAGING]),
        # emergency department
        ("The emergency room.", [ED]),
        ("The emergency department.", [ED]),
        ("In the ER.", [ED]),
        ("In the ED.", [ED]),
        ("A hospital emergency department.", [H, ED]),
        # home
        ("It can be done at home.", [HOME]),
        ("In a home setting.", [HOME]),
        ("In the patient's home.", [HOME]),
        ("Home-based therapy.", [HOME]),
        # order of first mention, no repeats
        ("In a clinic or a hospital; sometimes in a clinic.", [CLINIC, H]),
        ("Hospital, ambulatory surgery center, or doctor's office.", [H, ASC, OFFICE]),
        ("Inpatient or outpatient setting.", [H, CLINIC]),
        ("A dermatologist's office or clinic.", [OFFICE, CLINIC]),
        ("Performed as an outpatient surgery in a hospital.", [H]),
        # not venues
        ("You can go home after; return home; discharged home.", []),
        ("Patients recover at home.", []),
        ("Requires hospitalization.", []),
        ("Hospitalized patients.", []),
        ("A clinical setting.", []),
        ("The order of steps.", []),
        ("er, the device", []),
        ("", []),
        # negations
        ("Does not require a hospital stay; done in a doctor's office.", [OFFICE]),
        ("No need for hospital admission.", []),
        ("You don't need a hospital.", []),
        ("Done in the office rather than in a hospital.", [OFFICE]),
        ("Outside of a hospital.", []),
        ("Avoids a hospital visit; at home.", [HOME]),
    ],
)
def test_find_venues(text: str, venues: list[Venue]) -> None:
    assert find_venues(text) == venues


# --- properties -------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "hospital", "outpatient", "surgical", "surgery", "center", "clinic", "office", "doctor's",
        "imaging", "radiology", "department", "emergency", "room", "ER", "at", "home", "go", "not",
        "no", "in", "a", "the", "same-day", "ambulatory", "inpatient", "ICU", "setting", ",", ".",
    ]
)  # fmt: skip


def _check(venues: list[Venue]) -> None:
    assert all(isinstance(v, Venue) for v in venues)
    assert len(set(venues)) == len(venues)


@given(st.text())
def test_never_raises_vocabulary_no_repeats(text: str) -> None:
    _check(find_venues(text))


@given(st.lists(_WORDS, max_size=16).map(" ".join))
def test_phrase_soup(text: str) -> None:
    _check(find_venues(text))


@given(st.lists(_WORDS, max_size=16).map(" ".join))
def test_asc_phrase_never_adds_clinic_or_hospital(prefix: str) -> None:
    venues = find_venues(f"{prefix}. It is done in an outpatient surgery center.")
    assert ASC in venues
    before = find_venues(f"{prefix}.")
    assert set(venues) - set(before) <= {ASC}
