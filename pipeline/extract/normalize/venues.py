"""Where a procedure is done, as venues of the vocabulary (SPEC "Setting venues").

:func:`find_venues` scans the Setting text once with one compiled pattern whose alternatives are
ordered by precedence, so the longer, more specific phrase wins where phrases overlap:

* ambulatory_surgical_center: "ambulatory/outpatient/same-day surgery (surgical) center",
  "surgery center", "surgicenter", "ASC" - and *not* also outpatient_clinic or hospital;
* hospital: "hospital" (not "hospitalization"), "inpatient", "outpatient department", and
  British hospital wording ("in theatre", "on the ward", "the X-ray department", "day surgery
  unit", "delivery suite"),
  "operating room", "surgical suite", "endoscopy unit/suite", "catheterization lab", "cath lab",
  "labor and delivery", "ICU", "intensive care unit", "radiology department", "medical center";
* outpatient_clinic: "clinic" of any kind, "outpatient setting/facility/center", "urgent care",
  "infusion/dialysis/wound care/... center", "endoscopy center";
* physician_office: "doctor's / physician's / provider's / specialist's office", "medical
  office", "office setting", "office-based", "in the office", "in-office";
* imaging_center: "imaging center/facility", "radiology center/clinic", "MRI/X-ray center";
* emergency_department: "emergency room/department", "ER", "ED", "A&E";
* home: "at home", "home setting", "in the patient's home", "home-based" - but not "go home",
  "return home", "discharged home", "recover at home".

A negated mention ("does not require a hospital stay", "no need for a hospital", "rather than
in a hospital") adds nothing. Venues come in order of first mention, without repeats.
"""

from __future__ import annotations

import re

from pipeline.models import Venue

# --- data -------------------------------------------------------------------------------------

_ASC = (
    r"(?:ambulatory|outpatient|same[\s-]day|day)\s+(?:surgery|surgical)"
    r"\s+(?:centers?|centres?|facilit(?:y|ies)|settings?|suites?|clinics?)"
    r"|(?:surgery|surgical)\s+(?:centers?|centres?)|surgi-?cent(?:er|re)s?|(?-i:ASCs?)"
)
_HOSPITAL = (
    r"hospitals?|inpatient|outpatient\s+departments?"
    r"|operating\s+(?:rooms?|theat(?:er|re)s?|suites?)|surgical\s+suites?|(?-i:OR)\s+suites?"
    r"|endoscopy\s+(?:units?|suites?|departments?|labs?)|cath(?:eteri[sz]ation)?\s+lab\w*"
    r"|labor\s+and\s+delivery|intensive\s+care(?:\s+units?)?|(?-i:N?ICUs?)"
    r"|(?:interventional\s+)?radiology\s+(?:departments?|suites?)|medical\s+centers?"
    r"|trauma\s+centers?|electrophysiology\s+lab\w*|recovery\s+room|(?:at\s+the\s+)?bedside"
    # British hospital wording: "in theatre", "on the ward", "the X-ray department".
    r"|(?:in|into|to)\s+(?:the\s+)?(?:operating\s+)?theat(?:re|er)s?|(?:on|in)\s+(?:the\s+)?ward"
    r"|(?:labou?r|maternity|children['’]s|surgical|medical)\s+wards?|delivery\s+suites?"
    r"|(?:maternity|x-?ray|radiology|imaging|urology|cardiology|outpatients?|endoscopy)"
    r"\s+(?:departments?|units?)|in\s+outpatients|day\s+(?:surgery|case)\s+units?"
)
_IMAGING = (
    r"(?:diagnostic\s+)?imaging\s+(?:centers?|centres?|facilit(?:y|ies)|clinics?|suites?)"
    r"|(?:radiology|mri|x-?ray|ct|ultrasound|mammography)\s+(?:centers?|centres?|clinics?"
    r"|facilit(?:y|ies))"
)
_CLINIC = (
    r"clinics?|outpatient\s+(?:settings?|facilit(?:y|ies)|centers?|centres?)"
    r"|urgent\s+care(?:\s+(?:centers?|facilit(?:y|ies)))?"
    r"|(?:infusion|dialysis|wound\s+care|pain|sleep|health|cancer|fertility|allergy|vein"
    r"|endoscopy|specialty|community\s+health|diagnostic|vascular|oncology)\s+(?:centers?|centres?)"
    r"|minor\s+injur(?:y|ies)\s+units?|walk[\s-]in\s+(?:centers?|centres?|clinics?)"
)
_OFFICE_OWNER = (
    r"(?:doctor|physician|provider|specialist|surgeon|clinician|dentist|practitioner"
    r"|pediatrician|[a-z]+ologist|dermatologist|gp|family\s+doctor)"
)
_OFFICE = (
    rf"{_OFFICE_OWNER}(?:['’]s|s['’]|s)?\s+offices?|(?:medical|private|clinic)\s+offices?"
    r"|office[\s-](?:settings?|based|visits?)|in[\s-](?:the\s+|an\s+|your\s+)?office\b"
    r"|outpatient\s+offices?|(?:our|your|my)\s+(?:[\w’'-]+\s+){0,3}?(?:office|practice)\b"
    r"|(?:gp|doctor['’]?s?|family\s+doctor['’]?s?)\s+(?:surgery|surgeries|practices?)\b"
)
_EMERGENCY = (
    r"emergency\s+(?:rooms?|departments?|dept\.?|settings?|units?|care\s+centers?)"
    r"|(?-i:ER|ED)|(?-i:A\s?&\s?E)|accident\s+(?:and|&)\s+emergency"
)
_HOME = (
    r"at\s+home|home\s+settings?|home[\s-]based|at-home|in-home|in\s+(?:the\s+)?(?:patient['’]s"
    r"|your|their|his|her)\s+(?:own\s+)?home|home\s+health(?:\s+care)?"
    r"|comfort\s+of\s+(?:your|their|his|her)\s+(?:own\s+)?home"
)
#: Mentions of home that are not where the procedure is done (they are consumed first).
_NOT_HOME = (
    r"(?:go(?:es)?|going|went|return(?:s|ed|ing)?|sent|discharged|released|head(?:s|ing)?"
    r"|recover(?:y|s|ing)?|rest(?:s|ing)?|heal(?:s|ing)?|care|continue[sd]?|instructions)"
    r"(?:\s+\w+){0,2}?\s+(?:at\s+)?home(?:\s+(?:setting|care))?"
)
_ANY_VENUE = rf"(?:{_ASC}|{_HOSPITAL}|{_IMAGING}|{_CLINIC}|{_OFFICE}|{_EMERGENCY}|{_HOME})"
_NEGATED_TAIL = rf"\s+(?:[\w'’]+\s+){{0,5}}?(?:{_ANY_VENUE})\b"
_NEGATED = (
    r"(?:no|not|without|never|nor|avoids?|avoiding|instead\s+of|rather\s+than"
    rf"|outside(?:\s+of)?){_NEGATED_TAIL}"
)

_PATTERN = re.compile(
    rf"""
      (?P<negated_contraction>n['’]t{_NEGATED_TAIL})
    | (?<!\w)(?=\w)  # everything else starts a word: fail fast inside words
    (?:
      (?P<negated>{_NEGATED})
    | (?P<not_home>{_NOT_HOME})
    | (?P<ambulatory_surgical_center>{_ASC})
    | (?P<imaging_center>{_IMAGING})
    | (?P<emergency_department>{_EMERGENCY})
    | (?P<physician_office>{_OFFICE})
    | (?P<hospital>{_HOSPITAL})
    | (?P<outpatient_clinic>{_CLINIC})
    | (?P<home>{_HOME})
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)

_VENUE_BY_GROUP: dict[str, Venue] = {venue.value: venue for venue in Venue}


# --- logic ------------------------------------------------------------------------------------


def find_venues(text: str) -> list[Venue]:
    """The venues ``text`` names, in order of first mention, without repeats."""
    found: list[Venue] = []
    for match in _PATTERN.finditer(text):
        venue = _VENUE_BY_GROUP.get(match.lastgroup or "")
        if venue is not None and venue not in found:
            found.append(venue)
    return found
