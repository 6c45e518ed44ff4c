"""Paraphrase tests for the normalizers: wordings that SPEC.md's examples and the other tests of
``tests/normalize`` do not use.

British and American spelling, patient-leaflet phrasing, hedged phrasing, numbers in words,
ranges, negations, and clauses that name a length or a stay which is not the procedure's own.
Every expected value follows SPEC.md ("anesthesia", "Durations", "Hospital stay", "Setting
venues", "Personnel roles").
"""

from __future__ import annotations

import pytest

from pipeline.extract.normalize.anesthesia import find_anesthesia
from pipeline.extract.normalize.durations import MinuteRange, find_duration
from pipeline.extract.normalize.roles import classify_role, split_personnel
from pipeline.extract.normalize.stay import DayRange, find_hospital_stay
from pipeline.extract.normalize.venues import find_venues
from pipeline.models import AnesthesiaKind, Role, Venue

N = None

G = AnesthesiaKind.GENERAL
R = AnesthesiaKind.REGIONAL
L = AnesthesiaKind.LOCAL
S = AnesthesiaKind.SEDATION

H = Venue.HOSPITAL
ASC = Venue.AMBULATORY_SURGICAL_CENTER
CLINIC = Venue.OUTPATIENT_CLINIC
OFFICE = Venue.PHYSICIAN_OFFICE
IMAGING = Venue.IMAGING_CENTER
ED = Venue.EMERGENCY_DEPARTMENT
HOME = Venue.HOME


# --- anesthesia -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        # local: the skin, throat, eye or urethra is numbed
        ("Your skin will be numbed first.", [L]),
        ("a spray to numb your throat", [L]),
        ("The back of your throat is sprayed with a local anaesthetic spray.", [L]),
        ("An anaesthetic gel is used to numb the urethra.", [L]),
        ("Your eye will be numbed with drops.", [L]),
        ("A small injection numbs the skin first.", [L]),
        # regional: spinal, epidural, nerve block, numb from the waist down
        ("You will be numb from the waist down.", [R]),
        ("An injection in your back numbs you from the waist down.", [R]),
        ("You may be offered an anaesthetic that numbs you from the chest down.", [R]),
        ("Some people choose to have a spinal anaesthetic instead.", [R]),
        ("The anaesthetist will numb your arm with a nerve block, so you can stay awake.", [R]),
        # sedation: medicine to help you relax
        ("You are awake but given medicine to relax.", [S]),
        ("We can give you something to help you relax.", [S]),
        ("You may be offered a sedative to help you feel relaxed.", [S]),
        ("You might be offered a light sedative through a drip.", [S]),
        ("You will be given medication to make you drowsy.", [S]),
        # general, British spelling
        ("The operation is done under general anaesthetic, so you will be asleep throughout.", [G]),
        ("Your child will be put to sleep with a general anaesthetic.", [G]),
        # hedged: several kinds, in order of first mention
        (
            "The procedure is usually done under local anaesthetic, but sometimes a general "
            "anaesthetic is used.",
            [L, G],
        ),
        ("You may have a general or spinal anaesthetic.", [G, R]),
        ("You might have a general anaesthetic, or you might be sedated.", [G, S]),
        ("You can choose sedation or a throat spray.", [S, L]),
        # negations: the negated kind is dropped, the kind used instead is kept
        ("You will not need a general anaesthetic.", []),
        ("You do not usually need sedation.", []),
        ("You will not need sedation or an anaesthetic.", []),
        ("Unlike open surgery, you will not need to be put to sleep.", []),
        ("This avoids the need for a general anaesthetic.", []),
        ("You do not need a general anaesthetic for this; the skin is numbed instead.", [L]),
        ("You won't be put to sleep; instead the area is numbed.", [L]),
        ("You will have local anaesthetic, not a general anaesthetic.", [L]),
        # no kind named
        ("No anaesthetic is needed because the test is painless.", []),
        ("The anaesthetist will talk to you about the anaesthetic.", []),
        ("You'll be awake during the procedure.", []),
        # found by a blind paraphrase probe and fixed
        ("Either a general or a spinal anaesthetic can be used.", [G, R]),
        ("Lignocaine is injected into the skin.", [L]),
        ("Your dentist will numb your gums with an injection.", [L]),
        ("The skin over the vein is numbed before the needle goes in.", [L]),
        ("We may give you medicine to make you feel sleepy.", [S]),
        ("Instead of a general anaesthetic, a spinal is used.", [R]),
        ("Sedation: none required.", []),
        ("A spinal cord injury is rare.", []),
    ],
)
def test_anesthesia_paraphrase(text: str, kinds: list[AnesthesiaKind]) -> None:
    assert find_anesthesia([text]) == kinds


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # fractions of an hour and numbers in words
        ("It usually takes about three quarters of an hour.", MinuteRange(45, 45)),
        ("The test itself lasts about a quarter of an hour.", MinuteRange(15, 15)),
        ("The procedure takes about 1 hour 15 minutes.", MinuteRange(75, 75)),
        ("Two hours, give or take.", MinuteRange(120, 120)),
        ("It takes three hours or so.", MinuteRange(180, 180)),
        # ranges, in words and in digits
        ("The procedure normally lasts between forty and sixty minutes.", MinuteRange(40, 60)),
        ("It generally takes between one and two hours.", MinuteRange(60, 120)),
        ("It can take anything from 10 to 40 minutes.", MinuteRange(10, 40)),
        ("The surgery can last anywhere from two to four hours.", MinuteRange(120, 240)),
        ("It can take anything between 20 minutes and an hour.", MinuteRange(20, 60)),
        ("Generally between half an hour and an hour.", MinuteRange(30, 60)),
        ("One and a half to two hours.", MinuteRange(90, 120)),
        ("It lasts 2 to 2.5 hours.", MinuteRange(120, 150)),
        ("Most operations take 1–2 hrs.", MinuteRange(60, 120)),
        ("The scan takes 30-60 mins.", MinuteRange(30, 60)),
        # hedged bounds
        ("It should take no longer than 20 minutes.", MinuteRange(N, 20)),
        ("It takes just under half an hour.", MinuteRange(N, 30)),
        ("The procedure is quick, usually 10 minutes or less.", MinuteRange(N, 10)),
        ("It might take up to an hour and a half.", MinuteRange(N, 90)),
        ("It is usually over within 15 minutes.", MinuteRange(N, 15)),
        ("It takes a little over an hour.", MinuteRange(60, N)),
        ("It may take longer than an hour if several polyps are removed.", MinuteRange(60, N)),
        ("It will probably take two hours or more.", MinuteRange(120, N)),
        ("Allow at least an hour.", MinuteRange(60, N)),
        # vague
        ("It takes a matter of minutes.", MinuteRange(N, N)),
        ("The injection only takes a few seconds.", MinuteRange(N, N)),
        # "given over" spreads the treatment
        ("The treatment is given over four hours.", MinuteRange(240, 240)),
        # fasting, an offset or recovery is not the procedure's length
        (
            "You must fast for 6 hours before the procedure, which takes 20 minutes.",
            MinuteRange(20, 20),
        ),
        (
            "Don't eat or drink for 6 hours before the test; the test lasts about 15 minutes.",
            MinuteRange(15, 15),
        ),
        (
            "You will be nil by mouth for six hours before; the operation takes about an hour.",
            MinuteRange(60, 60),
        ),
        (
            "The operation takes around ninety minutes, but recovery takes six weeks.",
            MinuteRange(90, 90),
        ),
        (
            "The procedure lasts about 40 minutes and you may need to rest for 2 hours afterwards.",
            MinuteRange(40, 40),
        ),
        (
            "The procedure itself takes just 5 minutes, though you'll be in the clinic an hour.",
            MinuteRange(5, 5),
        ),
        ("You will need to fast for 6 hours beforehand.", None),
        ("Do not eat for six hours before your appointment.", None),
        ("Stop taking aspirin seven days beforehand.", None),
        # A hyphenated word number is one number, never a range ("twenty-five" is not 5-20).
        ("It takes twenty-five minutes.", MinuteRange(25, 25)),
        ("about forty-five minutes", MinuteRange(45, 45)),
        ("sixty-five minutes", MinuteRange(65, 65)),
        ("twenty-five to thirty minutes", MinuteRange(25, 30)),
        ("five-six minutes", MinuteRange(5, 6)),
        ("Around 2-and-a-half hours.", MinuteRange(150, 150)),
        ("It takes about one and a quarter hours.", MinuteRange(75, 75)),
        ("The operation should not take more than an hour.", MinuteRange(None, 60)),
        ("It won't take longer than half an hour.", MinuteRange(None, 30)),
        ("It can take as little as 10 minutes.", MinuteRange(10, None)),
    ],
)
def test_duration_paraphrase(text: str, expected: MinuteRange | None) -> None:
    assert find_duration(text) == expected


# --- hospital stay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        # same day
        ("You can go home the same afternoon.", 0, 0),
        ("You should be able to go home later the same day.", 0, 0),
        ("This is a day case procedure, so you can go home afterwards.", 0, 0),
        ("Patients are sent home on the same day.", 0, 0),
        ("You'll be free to go home straight away.", 0, 0),
        ("You can usually go home within an hour of the test.", 0, 0),
        ("You'll stay in the recovery area for about an hour before going home.", 0, 0),
        # one night
        ("You will probably need to stay in hospital overnight.", 1, 1),
        ("Expect to stay one night on the ward.", 1, 1),
        ("Your child may need to stay overnight for observation.", 1, 1),
        ("You will usually go home the next morning.", 1, 1),
        # numbers in words, ranges, hedged bounds
        ("Most people stay in hospital for two or three nights.", 2, 3),
        ("Most people spend one to two nights in hospital.", 1, 2),
        ("Some people need to stay for a night or two.", 1, 2),
        ("You will be in hospital for between five and ten days.", 5, 10),
        ("Most patients leave hospital after four or five days.", 4, 5),
        ("Patients typically remain in hospital for around a week.", 7, 7),
        ("The average hospital stay is five days.", 5, 5),
        ("The usual length of stay is 2 nights.", 2, 2),
        ("You will be admitted on the morning of surgery and stay 3 nights.", 3, 3),
        ("You may need to stay in hospital for up to a week.", N, 7),
        ("Most people are well enough to leave hospital within 48 hours.", N, 2),
        ("You'll need to stay in for at least three nights.", 3, N),
        # the same day or one night
        ("Most go home the same day, although some stay one night.", 0, 1),
        # negations
        ("You won't need to stay overnight.", 0, 0),
        ("You will not have to stay in hospital.", 0, 0),
        ("You won't need to be admitted to hospital.", 0, 0),
        ("There's usually no need for an overnight stay.", 0, 0),
        # a recovery or activity length beside the stay is not the stay
        ("Wound healing takes about 2 weeks; most people leave hospital after 2 days.", 2, 2),
        ("You'll be in hospital for 2 to 3 nights and off work for 4 to 6 weeks.", 2, 3),
        ("Plan to stay 1 night; full recovery takes 3 months.", 1, 1),
        ("It is done as a day case.", 0, 0),
        ("You will be allowed home the same day.", 0, 0),
        ("You will not need to stay in hospital overnight.", 0, 0),
        ("You should be able to go home on the day of your operation.", 0, 0),
        ("You may go home the same day or the day after.", 0, 1),
    ],
)
def test_stay_paraphrase(text: str, low: int | None, high: int | None) -> None:
    assert find_hospital_stay([text]) == DayRange(text, low, high)


@pytest.mark.parametrize(
    "text",
    [
        "Recovery takes six weeks.",
        "You should be able to return to work after two weeks.",
        "Someone should stay with you for 24 hours.",
        "Do not drive for 24 hours.",
        "Keep the dressing dry for five days.",
        "You can shower after 48 hours.",
        "Stay off work for two weeks.",
        "The numbness wears off after a few hours.",
    ],
)
def test_no_stay_paraphrase(text: str) -> None:
    assert find_hospital_stay([text]) is None


# --- venues -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "venues"),
    [
        # physician office
        ("at your GP surgery", [OFFICE]),
        ("at the doctor’s surgery", [OFFICE]),
        ("at your family doctor's office", [OFFICE]),
        # outpatient clinic
        ("in our outpatient clinic", [CLINIC]),
        ("at the eye clinic", [CLINIC]),
        ("in the fracture clinic", [CLINIC]),
        ("at a community health centre", [CLINIC]),
        ("in an urgent care centre", [CLINIC]),
        # hospital, British spelling
        ("at the bedside", [H]),
        ("in the hospital's day surgery unit", [H]),
        ("It takes place in the endoscopy department.", [H]),
        ("in the radiology department at the hospital", [H]),
        ("in the cardiac catheterisation laboratory", [H]),
        ("in a paediatric intensive care unit", [H]),
        # ambulatory surgical center, "centre"
        ("in a freestanding ambulatory surgery centre", [ASC]),
        ("in a day surgery centre", [ASC]),
        # imaging center
        ("at an imaging centre", [IMAGING]),
        ("at a diagnostic imaging facility", [IMAGING]),
        ("at a radiology clinic", [IMAGING]),
        # emergency department
        ("in the Accident and Emergency department", [ED]),
        # home
        ("It can be done in your own home.", [HOME]),
        ("at home, by a district nurse", [HOME]),
        # several, in order of first mention
        (
            "either in a specialist's office or in a hospital outpatient department",
            [OFFICE, H],
        ),
        ("In the hospital's endoscopy unit or an ambulatory surgical centre.", [H, ASC]),
        # negations and going home are not venues
        ("You will be able to go home afterwards.", []),
        ("You will not need to go to hospital.", []),
        ("You won't need to come into hospital.", []),
        ("Rather than a hospital, it is done in a clinic.", [CLINIC]),
        ("It is done in a clinic, so you don't need to go into hospital.", [CLINIC]),
        ("It is done in theatre.", [H]),
        ("You will be looked after on the ward.", [H]),
        ("The test is done on the labour ward.", [H]),
        ("in the X-ray department", [H]),
        ("in the outpatients department", [H]),
        ("in the day surgery unit", [H]),
        ("Go straight to A&E.", [ED]),
        ("in the comfort of your own home", [HOME]),
        ("in a minor injuries unit", [CLINIC]),
        ("at a walk-in centre", [CLINIC]),
        ("The theatre team will greet you.", []),
    ],
)
def test_venues_paraphrase(text: str, venues: list[Venue]) -> None:
    assert find_venues(text) == venues


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role"),
    [
        # anesthesia, British spelling
        ("consultant anaesthetist", Role.ANESTHESIA),
        ("paediatric anaesthetist", Role.ANESTHESIA),
        ("Anaesthetist: consultant or trainee", Role.ANESTHESIA),
        # surgeon
        ("Consultant orthopaedic surgeon", Role.SURGEON),
        ("paediatric surgeon", Role.SURGEON),
        ("gynaecologist", Role.SURGEON),
        ("ear, nose and throat surgeon", Role.SURGEON),
        ("oral and maxillofacial surgeon", Role.SURGEON),
        # physician
        ("the consultant urologist", Role.PHYSICIAN),
        ("consultant radiologist", Role.PHYSICIAN),
        ("a junior doctor", Role.PHYSICIAN),
        ("a paediatrician", Role.PHYSICIAN),
        ("ear, nose and throat specialist", Role.PHYSICIAN),
        ("a heart specialist (cardiologist)", Role.PHYSICIAN),
        # nurse
        ("specialist nurse", Role.NURSE),
        ("staff nurse", Role.NURSE),
        ("a theatre nurse", Role.NURSE),
        ("nurse endoscopist", Role.NURSE),
        ("a community midwife", Role.NURSE),
        ("Advanced nurse practitioner", Role.NURSE),
        # technologist
        ("radiographer", Role.TECHNOLOGIST),
        ("ultrasound technician", Role.TECHNOLOGIST),
        ("a sonographer (ultrasound specialist)", Role.TECHNOLOGIST),
        # therapist
        ("a speech and language therapist", Role.THERAPIST),
        ("respiratory physiotherapist", Role.THERAPIST),
        # other: anyone else
        ("a play specialist", Role.OTHER),
        ("a theatre practitioner", Role.OTHER),
        ("healthcare assistant", Role.OTHER),
        ("dietician", Role.OTHER),
        ("medical student", Role.OTHER),
        ("your GP", Role.PHYSICIAN),
        ("the consultant", Role.PHYSICIAN),
        ("a consultant in respiratory medicine", Role.PHYSICIAN),
        ("clinical nurse specialist", Role.NURSE),
        ("a urology nurse specialist", Role.NURSE),
        ("nurse consultant", Role.NURSE),
        ("surgical registrar", Role.SURGEON),
        ("physio", Role.THERAPIST),
        ("anaesthetic practitioner", Role.ANESTHESIA),
        ("physician associate", Role.OTHER),
        ("consultant pharmacist", Role.OTHER),
    ],
)
def test_classify_role_paraphrase(text: str, role: Role) -> None:
    assert classify_role(text) is role


@pytest.mark.parametrize(
    ("text", "people"),
    [
        (
            "You will be looked after by a team including a consultant urologist, a specialist "
            "nurse and a healthcare assistant.",
            ["consultant urologist", "specialist nurse", "healthcare assistant"],
        ),
        (
            "A play specialist can help your child, and a nurse will stay with you.",
            ["play specialist", "nurse"],
        ),
        (
            "The procedure is performed by an ENT surgeon with help from a theatre practitioner.",
            ["ENT surgeon", "theatre practitioner"],
        ),
        (
            "You'll meet the anaesthetist, the surgeon and the ward nurses.",
            ["anaesthetist", "surgeon", "ward nurses"],
        ),
        (
            "The procedure is done by a consultant gastroenterologist or a nurse endoscopist, "
            "helped by two endoscopy nurses.",
            ["consultant gastroenterologist", "nurse endoscopist", "endoscopy nurses"],
        ),
        (
            "The scan is carried out by a radiographer, and the images are read by a radiologist.",
            ["radiographer", "radiologist"],
        ),
        # A comma before "and" is a list, not an apposition ("Dr Dupré, hand surgeon").
        ("surgeon , and", ["surgeon"]),
        (
            "Dr. René Dupré, board-certified hand surgeon",
            ["Dr. René Dupré, board-certified hand surgeon"],
        ),
    ],
)
def test_split_personnel_paraphrase(text: str, people: list[str]) -> None:
    assert split_personnel(text) == people


def test_duration_offsets_survive_letters_that_lengthen_when_lowered() -> None:
    """ "İ".lower() is two characters; the unit hint's offset must still point into the text."""
    assert find_duration("İ" * 150 + " takes between 2 and 4 hours") == MinuteRange(120, 240)
