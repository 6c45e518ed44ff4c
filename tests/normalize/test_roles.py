"""Tests for pipeline.extract.normalize.roles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.extract.normalize.roles import classify_role, split_personnel
from pipeline.models import Role


@pytest.mark.parametrize(
    ("text", "role"),
    [
        # the seed page
        ("Orthopedic or neurosurgeon specializing in spinal surgery", Role.SURGEON),
        ("Anesthesiologist", Role.ANESTHESIA),
        ("Surgical nurses", Role.NURSE),
        ("Surgical technologists", Role.TECHNOLOGIST),
        ("Radiologic technologists (if real-time imaging is used)", Role.TECHNOLOGIST),
        # anesthesia
        ("nurse anesthetist (CRNA)", Role.ANESTHESIA),
        ("Certified Registered Nurse Anesthetist", Role.ANESTHESIA),
        ("CRNA", Role.ANESTHESIA),
        ("anaesthetist", Role.ANESTHESIA),
        ("anesthesia provider", Role.ANESTHESIA),
        ("Anesthesia team", Role.ANESTHESIA),
        ("Surgeon and anesthesiologist", Role.ANESTHESIA),
        # surgeon
        ("Surgeon", Role.SURGEON),
        ("Cardiothoracic surgeons", Role.SURGEON),
        ("Orthopedic or neurosurgeon", Role.SURGEON),
        ("spine surgeon (orthopedic or neurosurgeon)", Role.SURGEON),
        ("obstetrician", Role.SURGEON),
        ("Obstetrician-gynecologist", Role.SURGEON),
        ("OB/GYN", Role.SURGEON),
        ("Ophthalmologist", Role.SURGEON),
        ("ENT surgeon", Role.SURGEON),
        ("Otolaryngologist (ENT surgeon)", Role.SURGEON),  # a short aside renames the person
        ("Nurse (supervised by a doctor)", Role.NURSE),  # a longer one names someone else
        ("Surgical team", Role.SURGEON),
        ("Surgeon assisted by a nurse", Role.SURGEON),
        # physician
        ("physician", Role.PHYSICIAN),
        ("doctor", Role.PHYSICIAN),
        ("provider", Role.PHYSICIAN),
        ("healthcare provider", Role.PHYSICIAN),
        ("specialist", Role.PHYSICIAN),
        ("physician or advanced practice provider", Role.PHYSICIAN),
        ("gastroenterologist", Role.PHYSICIAN),
        ("cardiologist", Role.PHYSICIAN),
        ("Interventional cardiologists", Role.PHYSICIAN),
        ("urologist", Role.PHYSICIAN),
        ("dermatologist", Role.PHYSICIAN),
        ("pulmonologist", Role.PHYSICIAN),
        ("ENT", Role.PHYSICIAN),
        ("ENT doctor", Role.PHYSICIAN),
        ("otolaryngologist", Role.PHYSICIAN),
        ("pediatrician", Role.PHYSICIAN),
        ("emergency physician", Role.PHYSICIAN),
        ("pain management physician", Role.PHYSICIAN),
        ("interventional radiologist", Role.PHYSICIAN),
        ("Radiologist", Role.PHYSICIAN),
        ("Pathologist", Role.PHYSICIAN),
        ("general practitioner", Role.PHYSICIAN),
        ("Physician or physician assistant", Role.PHYSICIAN),
        ("Radiologist and radiologic technologist", Role.PHYSICIAN),
        # nurse
        ("nurse", Role.NURSE),
        ("Registered nurse (RN)", Role.NURSE),
        ("nurse practitioner", Role.NURSE),
        ("Nurse-practitioner", Role.NURSE),
        ("Nursing staff", Role.NURSE),
        ("Sedation nurse", Role.NURSE),
        ("Radiology nurse", Role.NURSE),
        ("Certified nurse-midwife", Role.NURSE),
        ("Nurse or technician", Role.NURSE),
        # technologist
        ("technologist", Role.TECHNOLOGIST),
        ("X-ray technician", Role.TECHNOLOGIST),
        ("Scrub tech", Role.TECHNOLOGIST),
        ("phlebotomist", Role.TECHNOLOGIST),
        ("perfusionist", Role.TECHNOLOGIST),
        ("sonographer", Role.TECHNOLOGIST),
        ("Ultrasound sonographers", Role.TECHNOLOGIST),
        ("Cytotechnologist", Role.TECHNOLOGIST),
        ("Sleep technologist", Role.TECHNOLOGIST),
        # therapist
        ("respiratory therapist", Role.THERAPIST),
        ("Physical therapist", Role.THERAPIST),
        ("occupational therapists", Role.THERAPIST),
        ("Physiotherapist", Role.THERAPIST),
        ("Speech-language pathologist", Role.OTHER),
        # other
        ("physician assistant", Role.OTHER),
        ("Physician Assistant (PA)", Role.OTHER),
        ("Physician's assistant", Role.OTHER),
        ("medical assistant", Role.OTHER),
        ("pharmacist", Role.OTHER),
        ("Nursing assistant", Role.OTHER),
        ("Dietitian", Role.OTHER),
        ("Care team", Role.OTHER),
        ("Support staff", Role.OTHER),
        ("", Role.OTHER),
        ("xyz", Role.OTHER),
    ],
)
def test_classify_role(text: str, role: Role) -> None:
    assert classify_role(text) is role


@pytest.mark.parametrize(
    ("text", "people"),
    [
        (
            "The procedure is performed by a gastroenterologist, assisted by a nurse and an "
            "anesthesiologist who gives sedation.",
            ["gastroenterologist", "nurse", "anesthesiologist"],
        ),
        (
            "An interventional radiologist performs the procedure with a radiologic technologist.",
            ["interventional radiologist", "radiologic technologist"],
        ),
        ("Orthopedic or neurosurgeon", ["Orthopedic or neurosurgeon"]),
        (
            "Orthopedic or neurosurgeon specializing in spinal surgery",
            ["Orthopedic or neurosurgeon"],
        ),
        (
            "The team includes a cardiologist, nurses, and technologists.",
            ["cardiologist", "nurses", "technologists"],
        ),
        ("A surgeon performs the procedure, typically with a nurse.", ["surgeon", "nurse"]),
        (
            "Typically performed by an experienced urologist along with surgical nurses as well "
            "as an anesthesia provider.",
            ["experienced urologist", "surgical nurses", "anesthesia provider"],
        ),
        (
            "A team of nurses and one or more specially trained technologists.",
            ["nurses", "specially trained technologists"],
        ),
        (
            "An anesthesiologist or a nurse anesthetist gives the sedation.",
            ["anesthesiologist", "nurse anesthetist"],
        ),
        (
            "Performed by a physician or advanced practice provider.",
            ["physician or advanced practice provider"],
        ),
        (
            "A nurse anesthetist (CRNA) monitors the patient while the Surgeon operates.",
            ["nurse anesthetist", "CRNA", "Surgeon"],
        ),
        (
            "The cardiologist; a perfusionist; physician assistants.",
            ["cardiologist", "perfusionist", "physician assistants"],
        ),
        (
            "Surgeon: board-certified plastic surgeon.",
            ["Surgeon", "board-certified plastic surgeon"],
        ),
        ("Nurse and/or technician", ["Nurse", "technician"]),
        ("The procedure is quick.", []),
        ("Staff only.", []),
        ("", []),
    ],
)
def test_split_personnel(text: str, people: list[str]) -> None:
    assert split_personnel(text) == people


# --- properties -------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "surgeon", "nurse", "anesthetist", "anesthesiologist", "physician", "assistant", "a", "the",
        "radiologic", "technologist", "and", "with", "by", "or", "who", ",", ".", "(", ")", "team",
        "surgical", "practitioner", "therapist", "typically", "performs", "procedure", "ENT",
    ]
)  # fmt: skip


@given(st.text())
def test_classify_never_raises(text: str) -> None:
    assert isinstance(classify_role(text), Role)


@given(st.text())
def test_split_never_raises(text: str) -> None:
    people = split_personnel(text)
    for person in people:
        assert person
        assert person == person.strip()
        assert person in text


@given(st.lists(_WORDS, max_size=16).map(" ".join))
def test_split_fragments_are_substrings_with_a_role(text: str) -> None:
    for person in split_personnel(text):
        assert person in text
        assert person.split()[-1].rstrip(".,").lower() not in ("a", "the", "and", "with")


_SINGLE = {
    "anesthesiologist": Role.ANESTHESIA,
    "nurse anesthetist": Role.ANESTHESIA,
    "neurosurgeon": Role.SURGEON,
    "obstetrician": Role.SURGEON,
    "cardiologist": Role.PHYSICIAN,
    "doctor": Role.PHYSICIAN,
    "nurse practitioner": Role.NURSE,
    "surgical nurse": Role.NURSE,
    "radiologic technologist": Role.TECHNOLOGIST,
    "phlebotomist": Role.TECHNOLOGIST,
    "respiratory therapist": Role.THERAPIST,
    "physician assistant": Role.OTHER,
    "pharmacist": Role.OTHER,
}


@given(st.lists(st.sampled_from(sorted(_SINGLE)), min_size=1, max_size=4))
def test_first_rule_in_spec_order_wins(people: list[str]) -> None:
    order = list(Role)
    expected = min((_SINGLE[p] for p in people), key=order.index)
    assert classify_role(", ".join(people)) is expected
    assert split_personnel(" and ".join(people)) == people
