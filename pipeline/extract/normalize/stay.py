"""The hospital stay after a procedure, in days (0 = home the same day).

:func:`find_hospital_stay` scans texts in order (Recovery items, then Setting, then patient
experience) and returns the first hospital-stay mention with the whole text it came from.
Each text is scanned once by one compiled pattern that yields tokens (sentence ends, stay
quantities, hospital context words, activity words, negations); a sentence then gives a stay when
one of its quantities is tied to hospital context. Rules (SPEC "Hospital stay"):

* "hospital stay of 3 to 7 days" 3/7, "2-3 days in the hospital" 2/3, "discharged within 2 to
  3 days" 2/3, "1 to 2 nights" 1/2, "admitted for a week" 7/7, "1-2 weeks in hospital" 7/14;
* "overnight", "one night" 1/1; "the next day" 1 (with context);
* "the same day", "go home right after", "outpatient ...; patients go home the same day" 0/0;
  "a day case", "day surgery" 0/0 on their own;
* "the same day or after one night", "the same day or stay overnight" 0/1: the quantities of one
  sentence are combined (lowest min, highest max; an unknown bound stays unknown);
* stays written in hours: under 12 hours is 0 days (same day), otherwise whole days rounded up
  ("23-hour observation", "24-hour stay" 1/1);
* "a few days in the hospital" is a mention with unknown bounds; "no hospital stay is needed",
  "does not require hospitalization" 0/0;
* "less than / up to N days" give min None, "at least / more than N days" max None; "within"
  before a range keeps the range.

A number of days counts only with hospital context in the same sentence (hospital, inpatient,
admitted/admission, stay, overnight, night(s), discharge(d), go/return home, hospitalization,
observation) and no activity word between the two ("go home in 2 days and return to work in
2 weeks" gives 2/2). "stay in bed", "after discharge", "vaginal discharge", "at home" and
"fasting overnight" are not hospital context.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.extract.normalize.numbers import NUMBER, VAGUE, fold, parse_number
from pipeline.extract.normalize.text import collapse

# --- data -------------------------------------------------------------------------------------

_UNIT = r"(?:days?|nights?|weeks?|wks?|months?|hours?|hrs?)(?![a-z])"
_SEP = r"\s*(?:-\s*)?(?:-|–|—|‐|‑|\bto\b|\bor\b|\band\b|\bthrough\b)\s*"
_LESS = (
    r"(?:less\s+than|under|up\s+to|no\s+(?:more|longer)\s+than|not\s+(?:more|longer)\s+than"
    r"|within|at\s+most|a\s+maximum\s+of|fewer\s+than|shorter\s+than)"
)
_MORE = r"(?:at\s+least|more\s+than|over|longer\s+than|a\s+minimum\s+of|in\s+excess\s+of)"
_HOME_VERB = (
    r"(?:go(?:es)?|going|went|return(?:s|ed|ing)?|sent|send|released?|leav(?:e|es|ing)"
    r"|head(?:s|ing)?|get(?:s|ting)?|discharged|allowed|let)"
)
#: What follows "stay" when it is not a hospital stay ("stay in bed", "stay hydrated").
_STAY_OTHER = (
    r"(?:in\s+bed|active|hydrated|off|away|home|at\s+home|with|upright|still|on\b|out|calm"
    r"|in\s+touch|seated|awake|lying|close|near|alert|in\s+the\s+recovery)"
)

_NEG_TARGET = rf"""\s+(?:[\w'’]+\s+){{0,4}}?
    (?:hospital\s+stay|hospitali[sz]\w*|admission|admitted|overnight(?:\s+stay)?
      |stay(?!\s+{_STAY_OTHER})(?:\s+in\s+(?:the\s+)?hospital)?(?:\s+overnight)?
      |inpatient|to\s+be\s+admitted)\b"""

_TOKENS = re.compile(
    rf"""
      (?P<end>[.!?](?=\s|$))
    | (?P<soft>;)
    | (?P<negc>n['’]t{_NEG_TARGET})
    | (?<!\w)(?=\w)  # everything else starts a word: fail fast inside words
      (?:
        (?P<blocked>
            after\s+(?:your\s+|the\s+)?discharg\w*
          | after\s+(?:you\s+)?(?:go|get|return|arrive)\w*\s+home
          | once\s+(?:you\s+are\s+|you're\s+)?home
          | (?:at|from)\s+home
          | stay(?:s|ing)?\s+{_STAY_OTHER}
          | (?:vaginal|nasal|wound|bloody|watery|clear|yellow|green|unusual|abnormal
              |foul[\s-]smelling|any|some|light|mild|heavy|pus|eye|ear|penile|nipple|increased)
            \s+discharge\w*
          | discharge\s+from\s+(?!(?:the\s+|our\s+)?(?:hospital|ward|unit|clinic|cent(?:er|re)
              |care|day|surgery|recovery))
          | [\w-]+-(?:ground|colou?red|tinged|stained|like)\s+discharge\w*
          | overnight\s+(?:fast\w*|sleep\s+study|polysomnograph\w*|oximetry)
          | fast\w*\s+(?:from\s+midnight|overnight)
          | (?:wear|worn|left\s+in\s+place|kept\s+in\s+place|leave\s+it\s+on)\s+overnight
        )
      | (?P<neg>(?:no|not|without|never|nor){_NEG_TARGET})
      | (?P<imm>(?:{_HOME_VERB}|be|drive|driven|take\s+you|taken)\s+(?:yourself\s+|straight\s+)?
          home\s+
          (?:right\s+after\w*|right\s+away|immediately|shortly\s+after\w*|soon\s+after\w*
            |straight\s+(?:away|after\w*)|the\s+same\s+(?:afternoon|evening|morning)
            |within\s+(?:an?\s+|one\s+|\w+\s+)?hours?
            |directly|afterwards?
            |after\s+(?:the|your)\s+(?:procedure|test|exam|examination|treatment|session|scan)
            |after\s+(?:a\s+)?(?:short\s+|brief\s+)?recovery
            |(?:as\s+soon\s+as|once|when)\s+(?:the\s+|your\s+)?(?:test|testing|procedure|exam
              |examination|treatment|session|scan|injection|it)\w*\s+(?:is|has)\s+
              (?:finished|over|done|complete[d]?|ended)
            |the\s+same\s+day|same\s+day|that\s+day|on\s+the\s+same\s+day))
      | (?P<daycase>(?:an?\s+)?day[\s-](?:procedure|surgery|case|patient|unit|stay|only)\b)
      | (?P<same>(?:the\s+)?same[\s-](?:day|afternoon|evening)\b
          |the\s+day\s+of\s+(?:the\s+|your\s+)?(?:surgery|procedure|treatment|operation|test
            |scan|appointment))
      | (?P<next>(?:the\s+)?(?:next|following)\s+(?:day|morning)\b
          |the\s+day\s+after\s+(?:the\s+|your\s+)?(?:surgery|procedure|operation)
          |the\s+day\s+after(?=\s*(?:[.,;)]|$)))
      | (?P<overnight>overnight\b)
      | (?P<q>
          (?:(?P<lt>{_LESS})\s+|(?P<gt>{_MORE})\s+)?(?:between\s+)?
          (?: (?:(?P<lov>{VAGUE})|(?P<lo>{NUMBER}))(?:[\s-]*(?P<lou>{_UNIT}))?{_SEP}
                (?P<hi>{NUMBER})[\s-]*(?P<hiu>{_UNIT})
            | (?P<one>{NUMBER})[\s-]*(?P<oneu>{_UNIT})
                (?:\s+or\s+(?P<two>{NUMBER})(?![\s-]*(?:{_UNIT}|{NUMBER})))?
            | (?P<vague>{VAGUE})\s+(?:more\s+)?(?P<vagueu>{_UNIT})
          )
          (?:(?P<more>\s*\+|\s+or\s+(?:more|longer))|(?P<less>\s+or\s+(?:less|fewer)))?
        )
      | (?P<ctx>(?:hospitals?\b|hospitali[sz]\w*|inpatient|admit(?:s|ted|ting)?\b|admission
          |stay(?:s|ed|ing)?\b|nights?\b|discharg\w*|observation|ward\b|{_HOME_VERB}\s+home\b))
      | (?P<act>(?:work|job|school|driv\w*|lift\w*|exercis\w*|shower\w*|bath\w*|swim\w*|sex\w*
          |intercourse|stitch\w*|sutures?|staples?|heal\w*|pain|sore\w*|swell\w*|bleed\w*
          |bruis\w*|avoid\w*|resum\w*|activit\w*|sports?|travel\w*|fly\w*|flights?|walk\w*
          |bandage\w*|dressings?|cast|brace|sling|medications?|antibiotics?|follow[\s-]?up
          |appointments?|visits?|results?|therapy|rehab\w*|removed|removal|call|contact|fever
          |symptoms?|seek)\b)
      )
    """,
    re.IGNORECASE | re.VERBOSE,
)

#: Every stay mention holds one of these (context words, "night", "home"): texts without any
#: are skipped before the full scan.
#: Case-sensitive over the lower-cased text (an IGNORECASE alternation is ten times slower).
_HINT = re.compile(
    r"hospital|inpatient|admi|stay|night|discharg|observation|ward|home|same|day[\s-]"
    r"(?:case|procedure|surgery|patient|unit|only)"
)

_HOURS_PER_UNIT: dict[str, float] = {"h": 1, "d": 24, "n": 24, "w": 168, "m": 720}
_ZERO: tuple[float | None, float | None] = (0.0, 0.0)
_ONE: tuple[float | None, float | None] = (24.0, 24.0)


# --- logic ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayRange:
    """A hospital stay: the text it was read from and its bounds in days (``None`` unknown)."""

    text: str
    min_days: int | None
    max_days: int | None


def _hours(number: str | None, unit: str) -> float | None:
    value = parse_number(number) if number is not None else None
    return None if value is None else value * _HOURS_PER_UNIT.get(fold(unit)[:1], 24)


def _days(hours: float | None) -> int | None:
    if hours is None or not math.isfinite(hours):
        return None
    return 0 if hours < 12 else math.ceil(hours / 24 - 1e-9)


def _quantity(match: re.Match[str]) -> tuple[float | None, float | None]:
    """(low, high) in hours of a ``q`` token."""
    group = match.group
    low: float | None
    high: float | None
    is_range = False
    if group("hiu") is not None:
        unit = group("hiu")
        high = _hours(group("hi"), unit)
        low = None if group("lov") is not None else _hours(group("lo"), group("lou") or unit)
        is_range = True
    elif group("oneu") is not None:
        unit = group("oneu")
        low = _hours(group("one"), unit)
        two = group("two")
        high = low if two is None or two.strip().lower() in ("a", "an") else _hours(two, unit)
        is_range = two is not None
    else:
        unit = group("vagueu")
        # "a few hours" is the same day; "a few days" is unknown.
        return _ZERO if fold(unit).startswith("h") else (None, None)
    if low is not None and high is not None and low > high:
        low, high = high, low
    lt = group("lt")
    within_range = is_range and lt is not None and lt.lower() == "within"
    if (lt is not None and not within_range) or group("less") is not None:
        bound = high if high is not None else low
        # "within an hour", "under 6 hours": still the same day.
        return (0.0 if bound is not None and bound < 12 else None), bound
    if group("gt") is not None or group("more") is not None:
        return (low if low is not None else high), None
    return low, high


def _self_contained(kind: str, match: re.Match[str]) -> bool:
    """Tokens that are stay mentions on their own, without other context."""
    if kind in ("neg", "negc", "imm", "overnight", "daycase"):
        return True
    return kind == "q" and any(
        fold(match.group(g) or "").startswith("n") for g in ("hiu", "oneu", "vagueu")
    )


Quantity = tuple[int, bool, tuple[float | None, float | None]]


def _tied(quantities: list[Quantity], contexts: list[int], acts: list[int]) -> list[Quantity]:
    """The quantities tied to hospital context (no activity word between the two)."""
    return [
        (position, True, value)
        for position, contained, value in quantities
        if contained
        or any(not any(min(position, c) < a < max(position, c) for a in acts) for c in contexts)
    ]


def _sentence_stay(
    quantities: list[Quantity], contexts: list[int], acts: list[int]
) -> tuple[int | None, int | None] | None:
    """Combine the quantities of one sentence that are tied to hospital context."""
    lows: list[float | None] = []
    highs: list[float | None] = []
    for _, _, (low, high) in _tied(quantities, contexts, acts):
        lows.append(low)
        highs.append(high)
    if not lows:
        return None
    known_lows = [x for x in lows if x is not None]
    known_highs = [x for x in highs if x is not None]
    low_days = _days(min(known_lows)) if len(known_lows) == len(lows) else None
    high_days = _days(max(known_highs)) if len(known_highs) == len(highs) else None
    if low_days is not None and high_days is not None and low_days > high_days:
        low_days, high_days = high_days, low_days
    return low_days, high_days


def _text_stay(text: str) -> tuple[int | None, int | None] | None:
    if _HINT.search(text.lower()) is None:
        return None
    quantities: list[Quantity] = []
    contexts: list[int] = []
    acts: list[int] = []
    for match in _TOKENS.finditer(text):
        kind = match.lastgroup
        if kind == "soft":
            # "; ": a clause of the same sentence. What is tied stays tied ("home the same
            # day; some stay one night" is 0/1); context does not reach across it.
            quantities, contexts, acts = _tied(quantities, contexts, acts), [], []
        elif kind == "end":
            if quantities:
                found = _sentence_stay(quantities, contexts, acts)
                if found is not None:
                    return found
            quantities, contexts, acts = [], [], []
        elif kind == "ctx":
            contexts.append(match.start())
        elif kind == "act":
            acts.append(match.start())
        elif kind is not None and kind != "blocked":
            contained = _self_contained(kind, match)
            if contained:
                contexts.append(match.start())
            if kind in ("neg", "negc", "imm", "same", "daycase"):
                value = _ZERO
            elif kind in ("next", "overnight"):
                value = _ONE
            else:
                value = _quantity(match)
            quantities.append((match.start(), contained, value))
    if quantities:
        return _sentence_stay(quantities, contexts, acts)
    return None


def find_hospital_stay(texts: Iterable[str]) -> DayRange | None:
    """The first hospital-stay mention of ``texts``, with the whole text it was found in."""
    for text in texts:
        found = _text_stay(text)
        if found is not None:
            return DayRange(collapse(text), found[0], found[1])
    return None
