"""Kinds of anesthesia a page says are used: general, regional, local, sedation.

:func:`find_anesthesia` scans each text once with one compiled pattern that yields mentions,
negations and clause breaks. Rules (the record's ``anesthesia`` field):

* general: "general anesthesia/anaesthesia/anesthetic", "under general", "put to sleep",
  "asleep under anesthesia", "fully/completely asleep", "Anesthesia: general";
* regional: "regional anesthesia/block", "spinal anesthesia/anesthetic/block", "epidural" (not
  "epidural space/steroid/injection/hematoma/abscess"), "nerve block", "plexus block",
  "caudal block", "neuraxial", "Bier block";
* local: "local anesthesia/anesthetic", "under local", "numbing injection/spray/drops/gel/cream/
  medicine/medication", "numb the area", "lidocaine" (and other "-caine" anesthetics),
  "topical anesthetic", "anesthetic drops/cream/spray/gel";
* sedation: "sedation" (moderate, conscious, IV, light, deep, minimal), "sedative", "sedated",
  "twilight", "monitored anesthesia care";
* kinds sharing one noun count each: "spinal or general anesthesia" (regional, general),
  "local and/or general anesthetic";
* a bare "anesthesia", "anesthesiologist" or "anesthetic" adds nothing.

A mention is dropped when a negation ("no", "not", "without", "never", "avoids", "instead of",
"rather than", "no need for") comes before it in the same clause - clauses end at ".", ";",
":", ",", "but", "and", "because", "so", "which", "while" ... - or when the mention is followed by
"is not (usually) needed" style words ("Sedation is not usually needed"). "with or without
sedation" is not a negation. Risk and hypothetical mentions ("reaction to local anesthetic",
"risks of general anesthesia") are dropped too. Kinds come in order of first mention, no repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.extract.normalize.numbers import fold
from pipeline.extract.normalize.text import aligned_lower
from pipeline.models import AnesthesiaKind

# --- data -------------------------------------------------------------------------------------

_AN = r"an(?:a)?esthe"  # anesthe / anaesthe
_GENERAL = (
    rf"general\s+{_AN}(?:sia|tics?)|under\s+general\b|put\s+(?:you\s+|the\s+patient\s+)?to\s+sleep"
    rf"|(?:put|placed)\s+(?:\w+\s+){{0,2}}?to\s+sleep"
    rf"|asleep\s+(?:\w+\s+){{0,2}}?under\s+(?:general\s+)?{_AN}\w*|(?:fully|completely|totally)\s+asleep"
    rf"|{_AN}(?:sia|tic)\s*(?:/\s*sedation\s*)?[:\-–]\s*(?:typically\s+|usually\s+)?general\b"
)
_REGIONAL = (
    rf"regional\s+(?:{_AN}\w*|blocks?)|spinal\s+(?:{_AN}\w*|blocks?)"
    r"|epidural(?!\s+(?:space|steroids?|injections?|hematomas?|haematomas?|abscess\w*"
    r"|blood\s+patch|fat|veins?|lipomatosis|spinal\s+cord))"
    r"|(?:peripheral\s+)?nerve\s+blocks?|plexus\s+blocks?|caudal\s+blocks?|bier\s+blocks?"
    r"|neuraxial\s+(?:{_AN}\w*|blocks?)?|interscalene\s+blocks?"
    rf"|{_AN}(?:sia|tic)\s*(?:/\s*sedation\s*)?[:\-–]\s*(?:typically\s+|usually\s+)?(?:regional|spinal)\b"
    r"|spinal\s+injection|numb(?:s|ed)?\s+(?:\w+\s+){0,3}?from\s+the\s+(?:waist|chest|hips?)\s+down"
    r"|an?\s+spinal(?=\s+(?:is|was|will|may|can|could|would|might)\b)"
)
_LOCAL = (
    rf"local(?:ly)?\s+{_AN}\w*|under\s+local\b|local\s+numbing"
    r"|numbing\s+(?:(?:eye|ear|nose|throat|skin|nasal|topical)\s+)?(?:injections?|shots?|sprays?|drops|gels?|creams?|medicines?|medications?|agents?"
    r"|solutions?|ointments?|jelly|patch(?:es)?)"
    r"|numbs?\s+(?:the|your)\s+(?:\w+\s+)?(?:area|skin|site|eyes?|throat|nose|region|spot|gums?"
    r"|mouth|lips?|tooth|teeth|cervix|urethra|nostrils?)"  # a numbed limb may be a nerve block
    r"|(?:lido|ligno|xylo|novo|bupiva|mepiva|ropiva|tetra|benzo|proxymeta|prilo|arti)caine"
    rf"|topical\s+{_AN}\w*|{_AN}tic\s+(?:eye\s+)?(?:drops|creams?|sprays?|gels?|ointments?)"
    r"|\bemla\b"
    r"|(?:skin|area|site|spot|eye|eyes|throat|nose|nostrils?|gums?|cervix|urethra|finger|toe|arm|hand"
    r"|back|scalp|lip|mouth)(?:\s+(?:over|around|near|at|on|of|in)\s+(?:the\s+|your\s+)?\w+)?"
    r"\s+(?:is|are|will\s+be|gets?|being)\s+(?:\w+\s+){0,2}?numbed"
    r"|numbed\s+(?:with|by|using|first)\b|numbing\b|(?:throat|nasal|mouth)\s+spray"
    r"|freez(?:e|es|ing)\s+(?:the|your)\s+(?:skin|area)"
    rf"|{_AN}(?:sia|tic)\s*(?:/\s*sedation\s*)?[:\-–]\s*(?:typically\s+|usually\s+)?local\b"
)
_SEDATION = (
    r"sedation|sedatives?|sedated|sedating|twilight(?:\s+sleep|\s+an\w*)?"
    r"|(?:medicines?|medications?|something|drugs?|tablets?|pills?)\s+(?:\w+\s+){0,8}?to\s+"
    r"(?:help\s+(?:you\s+|them\s+)?)?(?:relax|calm\s+you|feel\s+(?:calm|relaxed|sleepy|drowsy)"
    r"|make\s+you\s+(?:feel\s+)?(?:sleepy|drowsy|relaxed|calm))|relaxing\s+(?:medicine|medication)"
    rf"|monitored\s+{_AN}sia\s+care"
)
#: "spinal or general anesthesia", "local and/or general anesthetic": kinds sharing one noun.
_KIND_WORD = r"(?:general|regional|spinal|epidural|local|topical)"
_COORDINATED = (
    rf"{_KIND_WORD}(?:(?:\s*,\s*(?:(?:and/or|or|and)\s+)?|\s*/\s*|\s+(?:and/or|or|and)\s+)"
    rf"(?:an?\s+)?{_KIND_WORD})+"
    rf"\s+{_AN}(?:sia|tics?)\b"
)
_KIND_WORD_RE = re.compile(_KIND_WORD, re.IGNORECASE)
_KIND_OF_WORD: dict[str, AnesthesiaKind] = {
    "general": AnesthesiaKind.GENERAL,
    "regional": AnesthesiaKind.REGIONAL,
    "spinal": AnesthesiaKind.REGIONAL,
    "epidural": AnesthesiaKind.REGIONAL,
    "local": AnesthesiaKind.LOCAL,
    "topical": AnesthesiaKind.LOCAL,
}

_NEGATION = (
    r"(?:no|not|without|never|nor|none|avoids?|avoiding|avoided|unnecessary|unneeded"
    r"|instead\s+of|rather\s+than|in\s+place\s+of|no\s+need\s+for|eliminates?)\b"
)
#: Words that make a following mention a risk or a hypothetical, not a statement of use.
_RISK = (
    r"\b(?:reactions?|allerg(?:y|ies|ic)|risks?|complications?|side[\s-]+effects?|sensitivit\w*"
    r"|problems?|issues?|intoleran\w*|toxicity)\s+(?:to|of|from|with|associated\s+with)"
    r"(?:\s+(?:the|a|an|any))?\b"
)
_BREAK = (
    r"(?:but|however|although|though|whereas|while|and|because|since|so|which"
    r"|when|as|until|after|before|once|then|otherwise)\b"
)
#: After a mention: "... is not (usually) needed", "... isn't required", "... is rarely used",
#: or a label with no value ("Sedation: none", "Sedation - not needed").
_NEGATED_AFTER = re.compile(
    r"""\s*[:\-–]\s*(?:none|no|not|nil|n/a)\b
    |(?:\s+(?:is|are|was|were|will|would|be|been|being|may|might|must|can|could|should|does
    |do|did|usually|typically|generally|often|normally|also|itself|alone|anesthesia|anaesthesia
    |medication|medicine|really|always))*\s+
    (?:not|never|rarely|seldom|unnecessary|(?:is|are|was|were|does|do|did|would|could|should
    |wo|ca|need)n['’]t|cannot|can['’]t)\b""",
    re.IGNORECASE | re.VERBOSE,
)

_PATTERN = re.compile(
    rf"""
      (?P<punct>[.;:!?,()])
    | (?P<contraction>n['’]t\b)
    | (?<!\w)(?=\w)  # everything else starts a word: fail fast inside words
      (?:
        (?P<neutral>with\s+or\s+without\b|whether\s+or\s+not\b)
      | (?P<risk>{_RISK})
      | (?P<negation>{_NEGATION})
      | (?P<coordinated>{_COORDINATED})
      | (?P<general>(?:{_GENERAL})\b)
      | (?P<regional>(?:{_REGIONAL})\b)
      | (?P<local>(?:{_LOCAL})\b)
      | (?P<sedation>(?:{_SEDATION})\b)
      | (?P<label>{_AN}sia\s*/\s*sedation\b)
      | (?P<brk>{_BREAK})
      )
    """,
    re.IGNORECASE | re.VERBOSE,
)

#: Every mention holds one of these: texts without any are skipped before the full scan.
#: Case-sensitive over the lower-cased text: ten times faster than an IGNORECASE alternation.
_HINT = re.compile(
    r"general|local|esthe|sleep|block|epidural|numb|caine|sedat|twilight|emla|neuraxial|relax"
    r"|spinal|spray|freez|calm|drowsy"
)

_SENTENCE_ENDS = (".", "!", "?", ";")
_KIND_BY_GROUP: dict[str, AnesthesiaKind] = {kind.value: kind for kind in AnesthesiaKind}
#: How many words a negation reaches forward within its clause.
_NEGATION_REACH = 8
#: How many words "reaction to" / "risks of" reach forward.
_RISK_REACH = 3


# --- logic ------------------------------------------------------------------------------------


def _kinds_in(text: str, found: list[AnesthesiaKind]) -> None:
    """Scan only the sentences that hold a hint: most of a page never mentions anesthesia."""
    scanned_to = 0
    for hint in _HINT.finditer(aligned_lower(text)):  # offsets used on text
        if hint.start() < scanned_to:
            continue
        start = max(text.rfind(end, 0, hint.start()) for end in _SENTENCE_ENDS) + 1
        stops = [i for i in (text.find(end, hint.end()) for end in _SENTENCE_ENDS) if i >= 0]
        scanned_to = min(stops) + 1 if stops else len(text)
        _scan(text, max(start, 0), scanned_to, found)


def _scan(text: str, start: int, end: int, found: list[AnesthesiaKind]) -> None:
    negated_at = -1  # position of the clause's negation, -1 for none
    risk_at = -1
    for match in _PATTERN.finditer(text, start, end):
        group = match.lastgroup
        if group in ("brk", "punct"):
            negated_at = risk_at = -1
        elif group in ("negation", "contraction"):
            negated_at = match.end()
        elif group == "risk":
            risk_at = match.end()
        elif group in _KIND_BY_GROUP or group == "coordinated":
            start = match.start()
            if negated_at >= 0 and text.count(" ", negated_at, start) <= _NEGATION_REACH:
                continue
            if risk_at >= 0 and text.count(" ", risk_at, start) <= _RISK_REACH:
                continue
            if _NEGATED_AFTER.match(text, match.end()) is not None:
                continue
            if group == "coordinated":
                words = _KIND_WORD_RE.findall(match.group())
                kinds = [_KIND_OF_WORD[w] for w in map(fold, words) if w in _KIND_OF_WORD]
            else:
                kinds = [_KIND_BY_GROUP[group or ""]]
            for kind in kinds:
                if kind not in found:
                    found.append(kind)


def find_anesthesia(texts: Iterable[str]) -> list[AnesthesiaKind]:
    """The anesthesia kinds ``texts`` say are used, in order of first mention, no repeats."""
    found: list[AnesthesiaKind] = []
    # One scan of all texts: each ends a sentence, so no clause runs from one into the next.
    _kinds_in(" .\n".join(texts), found)
    return found
