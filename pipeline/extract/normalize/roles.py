"""Care-team members: split prose into people and give each a role (SPEC "Personnel roles").

:func:`classify_role` scans the text once with one compiled pattern whose named groups are the
roles; the first role in SPEC order among those found wins: anesthesia, surgeon, physician,
nurse, technologist, therapist, other. Specific phrases are alternatives of their own, tried
before the words inside them, so that:

* "nurse anesthetist (CRNA)", "anesthesia provider/team" -> anesthesia;
* any "...surgeon" ("neurosurgeon"), "obstetrician", "gynecologist", "ophthalmologist",
  "surgical team" -> surgeon;
* "physician", "doctor", "provider", "specialist", "-ologist" ("gastroenterologist",
  "radiologist"), "ENT", "pediatrician", "physician or advanced practice provider", and the
  British "GP", "consultant", "registrar" -> physician; but "physician assistant" and
  "physician associate" -> other, "nurse specialist" and "nurse consultant" -> nurse,
  "radiologic technologist" -> technologist, and "surgical nurses" -> nurse ("surgical" is not
  "surgeon"); a grade alone ("Anaesthetist: consultant") does not override the role it grades;
* "nurse", "nurse practitioner", "midwife", "RN" -> nurse;
* "technologist", "technician", "tech", "phlebotomist", "perfusionist", "sonographer",
  "radiographer" -> technologist;
* "physical/occupational/respiratory/speech therapist", "physio" -> therapist; a speech-language
  pathologist is not in SPEC's therapist list -> other;
* anything else ("medical assistant", "pharmacist", "nursing assistant", "psychologist") -> other.

:func:`split_personnel` splits a prose sentence at sentence ends, commas, semicolons, colons,
parentheses and the connectors "and", "and/or", "with", "by", "assisted by", "along with",
"as well as", "while", "who" (never at "or": "Orthopedic or neurosurgeon" is one person), keeps
the fragments that contain a role noun, and trims each to the noun phrase: it ends at its last
role noun and starts after the last determiner or verb before its first role noun ("The team
includes a cardiologist" -> "cardiologist"); leading fillers ("typically", "one or
more") are dropped. The page's capitalization is kept.
"""

from __future__ import annotations

import re

from pipeline.models import Role

# --- data -------------------------------------------------------------------------------------

_S = r"(?:s|es)?"  # plural ending
_ANESTHESIA = (
    r"an(?:a)?esthesiologists?|an(?:a)?esthetists?|(?-i:CRNAs?)"
    r"|an(?:a)?esthesia\s+(?:providers?|team|staff|care\s+team|professionals?|personnel"
    r"|specialists?|clinicians?|doctors?|physicians?|residents?|assistants?|technicians?"
    r"|techs?|nurses?|care\s+providers?|services?|department)"
    r"|monitored\s+an(?:a)?esthesia\s+care\s+providers?"
    r"|an(?:a)?esthe(?:tic|sia)\s+(?:practitioners?|associates?)"
)
_SURGEON = (
    r"\w*surgeons?|obstetricians?(?:[\s/-]+gyn\w*)?|\w*gyn(?:a)?ecologists?|ophthalmologists?"
    r"|(?-i:OB[\s/-]?GYNs?)|surg(?:ical|ery)\s+team|surgical\s+registrars?"
)
_OTHER_FIRST = (
    r"physician['’]?s?\s+assistants?|(?-i:PA(?:-C)?s?)|nurs(?:e|ing)['’]?s?\s+(?:assistants?|aides?)"
    r"|(?-i:CNAs?)|speech(?:[\s-]+(?:and[\s-]+)?language)?\s+pathologists?"
    r"|audiologists?|psychologists?|embryologists?|\w*technologists?"
    r"|registered\s+(?:\w+\s+){0,3}specialists?|(?:play|child[\s-]+life|certified\s+\w+)\s+specialists?"
    r"|(?:theatre|theater|operating\s+department|perioperative|surgical\s+care)\s+practitioners?"
    r"|physician\s+associates?"
)
_PHYSICIAN = (
    r"physicians?|doctors?|(?<!nurse\s)(?<!nurse-)practitioners?|providers?"
    r"|specialists?(?!\s+(?:\w+\s+)?(?:nurses?|technologists?|technicians?|therapists?"
    r"|physiotherapists?|midwi(?:fe|ves)|pharmacists?))"
    r"|\w+ologists?|(?-i:ENTs?|MDs?)|pediatricians?|paediatricians?|internists?|hospitalists?"
    r"|intensivists?|physiatrists?|psychiatrists?|podiatrists?|dentists?|clinicians?"
    r"|radiologists?|(?:attending|resident)s?(?=\s+(?:physician|doctor|surgeon))"
    r"|(?-i:GPs?)|allergists?"
)
#: A grade, not a job: "consultant", "registrar" are doctors unless the text names a role.
_GRADE = r"consultants?|registrars?"
_NURSE = (
    r"nurse[\s-]+practitioners?|nurse[\s-]+midwi(?:fe|ves)|midwi(?:fe|ves)|nurs(?:e|es|ing)"
    r"|(?-i:RNs?|LPNs?|LVNs?|APRNs?|NPs?)"
)
_TECHNOLOGIST = (
    r"\w*technologists?|technicians?|techs?|phlebotomists?|perfusionists?|sonographers?"
    r"|radiographers?|(?-i:EMTs?)"
)
_THERAPIST = r"\w*therapists?|physiotherapists?|physios?"
_OTHER = (
    r"assistants?|pharmacists?|aides?|dietitians?|dieticians?|nutritionists?|paramedics?"
    r"|counselors?|counsellors?|social\s+workers?|hygienists?|orderl(?:y|ies)|chaplains?"
    r"|physicists?|dosimetrists?|mohels?|doulas?|optometrists?|chiropractors?|staff|team"
)

#: Alternatives in the order they are tried at one position (specific phrases first); the group
#: name is the role it gives. ``other_first`` and ``tech_first`` pre-empt the broad "-ologist".
_CLASSIFY = re.compile(
    rf"""\b(?:
      (?P<anesthesia>{_ANESTHESIA})
    | (?P<technologist_first>\w*technologists?)
    | (?P<surgeon>{_SURGEON})
    | (?P<other_first>{_OTHER_FIRST})
    | (?P<nurse_first>nurse[\s-]+(?:practitioners?|specialists?|consultants?|endoscopists?))
    | (?P<physician>{_PHYSICIAN})
    | (?P<nurse>{_NURSE})
    | (?P<technologist>{_TECHNOLOGIST})
    | (?P<therapist>{_THERAPIST})
    | (?P<other>{_OTHER})
    | (?P<grade>{_GRADE})
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)

_ROLE_OF_GROUP: dict[str, Role] = {
    "anesthesia": Role.ANESTHESIA,
    "surgeon": Role.SURGEON,
    "physician": Role.PHYSICIAN,
    "nurse": Role.NURSE,
    "nurse_first": Role.NURSE,
    "technologist": Role.TECHNOLOGIST,
    "technologist_first": Role.TECHNOLOGIST,
    "therapist": Role.THERAPIST,
    "other": Role.OTHER,
    "other_first": Role.OTHER,
}
_PRIORITY: dict[Role, int] = {role: rank for rank, role in enumerate(Role)}

#: Where prose is cut into candidate people.
_SPLIT = re.compile(
    r"[.!?](?=\s|$)|[,;:()\[\]]"
    r"|\s+(?:assisted\s+by|along\s+with|as\s+well\s+as|and/or|and|with|by|while|who|whom)\s+",
    re.IGNORECASE,
)
#: A role noun: what makes a fragment a person (the ``text`` ends at the last one).
_ROLE_NOUN = re.compile(
    r"""\b(?:nurses?[\s-]+(?:(?!assist)\w+ists?|navigators?|coordinators?|educators?|specialists?
    |practitioners?|managers?|consultants?)|\w*surgeons?|\w+ologists?|physicians?|doctors?|nurses?|\w*technologists?
    |technicians?|\w*therapists?|an(?:a)?esthetists?|assistants?|pharmacists?|phlebotomists?
    |perfusionists?|sonographers?|radiographers?|providers?|specialists?|p(?:a)?ediatricians?
    |obstetricians?|practitioners?|midwi(?:fe|ves)|internists?|hospitalists?|intensivists?
    |psychiatrists?|podiatrists?|physiatrists?|dentists?|clinicians?|dietitians?|nutritionists?
    |paramedics?|hygienists?|physicists?|dosimetrists?|mohels?|doulas?|registrars?|consultants?
    |physios?|(?-i:CRNAs?|RNs?|ENTs?|LPNs?|EMTs?|NPs?|GPs?))\b""",
    re.IGNORECASE | re.VERBOSE,
)
#: Words after which a noun phrase starts: determiners, verbs and prepositions.
_BREAK = re.compile(
    r"""\b(?:a|an|the|this|that|these|those|your|their|his|her|its|our|each|every|any|some|all
    |several|multiple|other|one\s+or\s+more|two\s+or\s+more|one|two|three|is|are|was|were|be|been
    |being|will|would|may|might|can|could|should|must|typically|usually|often|generally
    |commonly|normally|also|then|performed|done|carried\s+out|conducted|led|includes?|including
    |involves?|involving|requires?|required|needs?|needed|consists?\s+of|such\s+as|like|of|for
    |from|to|in|at|on|performs?|does|do|gives?|given|administers?|administered|monitors?
    |monitored|helps?|assists?|supports?|present|available|there|team|staff)\b""",
    re.IGNORECASE | re.VERBOSE,
)
#: Fillers dropped only when they lead the fragment.
_LEADING = re.compile(
    r"""^(?:\s*\b(?:a|an|the|typically|usually|often|generally|commonly|normally|may|also|one\s+or
    \s+more|is\s+performed|is\s+done|performed|done|carried\s+out|e\.g\.|i\.e\.|including|such\s+as|or)\b
    [\s.]*)+""",
    re.IGNORECASE | re.VERBOSE,
)
#: "or" between two people ("an anesthesiologist or a nurse anesthetist", "a nurse or doctor");
#: split only when each side names a role ("orthopedic or neurosurgeon" is one person).
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
#: "physician or advanced practice provider" (SPEC): one role said two ways.
_ONE_OF_TWO = re.compile(r"(?:an?\s+|the\s+)?advanced\s+practice", re.IGNORECASE)
_TRIM = " \t\n\r\f\v-–—/&*•·\"'"
_MAX_NAME_WORDS = 12


# --- logic ------------------------------------------------------------------------------------


#: "Surgical team: ..." or "Physician (family doctor or gynecologist)": a leading label and a
#: parenthesis explain the person; the role comes from the rest when it names one.
_LABEL_PREFIX = re.compile(r"^[^:]{2,30}:\s+(?=\S)")
_PARENTHESIS = re.compile(r"\([^()]*\)")
#: A parenthesis of at most this many words may rename the person ("(ENT surgeon)").
_MAX_ASIDE_WORDS = 3
_RENAMING = frozenset({Role.ANESTHESIA, Role.SURGEON})


def classify_role(text: str) -> Role:
    """The role of one care-team member ("Surgical nurses" -> nurse); ``other`` by default."""
    core = _PARENTHESIS.sub(" ", _LABEL_PREFIX.sub("", text))
    if core != text:
        role = _classify(core, grades=False)  # "Anaesthetist: consultant or trainee"
        if role is not None:
            # "Otolaryngologist (ENT surgeon)": a short parenthesis naming a surgeon or an
            # anaesthetist is another name for the same person and counts in SPEC order; a
            # longer one ("nurse (supervised by a doctor)") names someone else, and a generic
            # word ("sonographer (ultrasound specialist)") does not outrank the noun.
            for aside in _PARENTHESIS.findall(text):
                if len(aside.split()) <= _MAX_ASIDE_WORDS:
                    named = _classify(aside[1:-1], grades=False)
                    if named in _RENAMING and _PRIORITY[named] < _PRIORITY[role]:
                        role = named
            return role
    return _classify(text) or Role.OTHER


def _classify(text: str, *, grades: bool = True) -> Role | None:
    """The first role in SPEC order the text names; else a grade alone is a physician (when
    ``grades``); else None."""
    best: Role | None = None
    best_rank = len(_PRIORITY)
    graded = False
    for match in _CLASSIFY.finditer(text):
        if match.lastgroup == "grade":
            graded = True
            continue
        role = _ROLE_OF_GROUP[match.lastgroup or "other"]
        rank = _PRIORITY[role]
        if rank < best_rank:
            best, best_rank = role, rank
            if rank == 0:
                break
    if best is None and graded and grades:
        return Role.PHYSICIAN
    return best


def _noun_phrase(fragment: str) -> str | None:
    nouns = list(_ROLE_NOUN.finditer(fragment))
    if not nouns:
        return None
    first, last = nouns[0], nouns[-1]
    start = 0
    for breaker in _BREAK.finditer(fragment, 0, first.start()):
        start = breaker.end()
    phrase = fragment[start : last.end()]
    phrase = _LEADING.sub("", phrase).strip(_TRIM)
    return phrase or None


#: Words that make a text a sentence rather than a name ("is done by", "performs").
_VERB = re.compile(
    r"\b(?:is|are|was|were|will|would|can|may|might|should|must|does|do|performs?|performed"
    r"|carries|carried|assists?|assisted|gives?|given|done|includes?|leads?|led|works?)\b",
    re.IGNORECASE,
)


#: A word that joins people into a list: a comma before it is not an apposition.
_LIST_WORD = re.compile(r"\b(?:and|or|with|plus)\b|&", re.IGNORECASE)


#: Function words left dangling at the end of a phrase ("surgeon, a").
_DANGLING = re.compile(r"(?:[\s,;]+(?:a|an|the|and|or|with))+$", re.IGNORECASE)


def split_personnel(text: str) -> list[str]:
    """One noun phrase per person a prose personnel text mentions, in order.

    A name with an apposition and no verb ("Dr. René Dupré, board-certified hand surgeon") is
    one person, kept whole.
    """
    if (
        "," in text
        and not _VERB.search(text)
        and not _LIST_WORD.search(text)
        and len(text.split()) <= _MAX_NAME_WORDS
    ):
        nouns = _ROLE_NOUN.findall(text)
        if len(nouns) == 1:
            whole = _DANGLING.sub("", text.strip(_TRIM)).strip(_TRIM)
            return [whole] if whole else []
    people: list[str] = []
    for fragment in _SPLIT.split(text):
        if not fragment:
            continue
        # "an anesthesiologist or a nurse anesthetist" is two people; "orthopedic or
        # neurosurgeon" is one: split at "or" only when every side names a role.
        sides = _OR.split(fragment)
        if (
            len(sides) > 1
            and all(_ROLE_NOUN.search(side) for side in sides)
            and not any(_ONE_OF_TWO.match(side) for side in sides[1:])
        ):
            candidates = sides
        else:
            candidates = [fragment]
        for candidate in candidates:
            phrase = _noun_phrase(candidate)
            if phrase is not None:
                people.append(phrase)
    return people
