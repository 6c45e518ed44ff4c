"""How long a procedure takes, in whole minutes.

:func:`find_duration` reads the *first* duration phrase of a text (the Duration section) with one
scan of one compiled pattern. Rules (SPEC "Durations"):

* ranges: "3 to 6 hours", "3-6 hours", "3–6 hours", "3 — 6 hrs", "between 2 and 4 hours",
  "one to two hours", "an hour or two"; mixed units "30 minutes to 1 hour" (30/60),
  "45 minutes to 1.5 hours" (45/90); a page that writes the bounds reversed is swapped;
* compounds add up: "1 hour and 30 minutes", "1 hour 30 minutes", "an hour and a half" (90/90);
* a single value gives min = max: "about 20 minutes", "1 hour", "an hour-long procedure",
  "a 30-minute procedure", "half an hour" (30), "a quarter of an hour" (15), "three quarters of
  an hour" (45), "90 min", "2 hrs", "2h", "1.5 hours";
* upper bounds ("less than", "under", "up to", "no more than", "within", "... or less") give
  min ``None``; lower bounds ("at least", "more than", "over", "... or more", "2+ hours") give
  max ``None``;
* vague phrases ("several hours", "a few minutes", "a couple of hours", "minutes to hours",
  "overnight", "all day") give ``MinuteRange(None, None)``; "a few minutes to an hour" gives
  (None, 60) and "30 minutes to several hours" (30, None);
* "within" before a range keeps the range ("within 2 to 3 hours" 120/180); "over" after
  "given"/"spread"/"performed" spreads rather than bounds ("given over 3 days" 4320/4320);
* units: seconds (rounded, at least 1 minute when above 0), minutes, hours, days, weeks,
  months (30 days); non-integer minutes round half up.

Not durations, and skipped: a hyphenated adjective that does not describe the procedure
("24-hour urine collection"; "a 30-minute procedure/session/test" does), frequencies ("every 4
hours", "twice a day"), time offsets and ages ("2 hours before the procedure", "3 days prior to",
"6 months old") and "fasting overnight".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipeline.extract.normalize.numbers import (
    NUMBER,
    NUMBER_WORDS,
    VAGUE,
    alternation,
    fold,
    parse_number,
)
from pipeline.extract.normalize.text import aligned_lower

# --- data -------------------------------------------------------------------------------------

#: The words a phrase can start with (bounds, "between", "half", vague words, plural units).
_FIRST_WORDS = alternation(
    (
        *NUMBER_WORDS,
        *("less", "under", "up", "no", "not", "within", "at", "maximum", "fewer", "shorter"),
        *("below", "as", "just", "more", "over", "longer", "upwards", "minimum", "in"),
        *("won", "wouldn", "shouldn", "doesn"),
        *("greater", "between", "half", "several", "few", "couple", "many", "multiple", "some"),
        "quarter",
        *("seconds", "minutes", "hours", "days", "weeks", "months", "overnight", "all"),
    )
)
_UNITS = r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|h|days?|weeks?|wks?|months?)(?![a-z])"
_HALF = (
    r"(?:half\s+an?|a\s+half|one\s+half|half|(?:three|3)[\s-]+quarters?\s+of\s+an?"
    r"|(?:a|one)?\s*quarter\s+of\s+an?)"
)
_SEP = r"\s*(?:-\s*)?(?:-|–|—|‐|‑|\bto\b|\bor\b|\bthrough\b|\bthru\b|\buntil\b|\btill\b)\s*"
_LESS = (
    r"(?:less\s+than|under|up\s+to|no\s+(?:more|longer)\s+than|not\s+(?:more|longer)\s+than"
    r"|within|at\s+most|a\s+maximum\s+of|maximum\s+of|fewer\s+than|shorter\s+than|below"
    r"|just\s+under"
    # "should not take more than an hour", "won't take longer than half an hour"
    r"|(?:not|won['’]t|wouldn['’]t|shouldn['’]t|doesn['’]t)\s+(?:usually\s+|normally\s+)?"
    r"(?:take|last|be)\s+(?:any\s+)?(?:more|longer)\s+than)"
)
_MORE = (
    r"(?:at\s+least|more\s+than|over|longer\s+than|upwards\s+of|a\s+minimum\s+of"
    r"|minimum\s+of|in\s+excess\s+of|greater\s+than|just\s+over|as\s+little\s+as)"
)
_MORE_AFTER = r"(?:\s*\+|\s+or\s+(?:more|longer|greater)|\s+and\s+(?:up|over|longer)|\s+plus)"
_LESS_AFTER = r"(?:\s+or\s+(?:less|fewer|shorter|under)|\s+at\s+(?:the\s+)?most|\s+max(?:imum)?)"
#: Nouns that make "a 30-minute X" a statement about the procedure's length.
_ADJ_NOUNS = (
    r"(?:procedures?|sessions?|surgery|surgeries|operations?|exams?|examinations?|tests?|testing"
    r"|treatments?|appointments?|visits?|infusions?|scans?|study|studies|process|course"
    r"|therapy|monitoring|recording|sitting)"
)


def _measure(p: str, hyphen: bool) -> str:
    """One length: "half an hour", "1.5 hours", "an hour and a half", "1 hour 30 minutes"."""
    gap = r"[\s-]*" if hyphen else r"\s*"
    return (
        rf"(?:(?P<{p}_hq>{_HALF})[\s-]+(?P<{p}_hu>{_UNITS})"
        rf"|(?P<{p}_q>{NUMBER})(?P<{p}_plus>\s?\+)?{gap}(?:full\s+|whole\s+)?(?P<{p}_u>{_UNITS})"
        rf"(?P<{p}_h>\s+and\s+a\s+half)?"
        rf"(?:\s*,?\s*(?:and\s+)?(?P<{p}_q2>{NUMBER})\s*(?P<{p}_u2>{_UNITS}))?)"
    )


_PATTERN = re.compile(
    rf"""
    (?<!\w)(?=[\d½¼¾⅓⅔]|(?:{_FIRST_WORDS})\b)  # fail fast where no phrase can start
    (?:(?P<lt>{_LESS})\s+|(?P<gt>{_MORE})\s+)?
    (?:
        between\s+(?:{_measure("ba", False)}|(?P<baq>{NUMBER}))
            \s*(?:and|-|–|—|to)\s*{_measure("bb", True)}
      | (?:{_measure("ra", False)}|(?P<raq>{NUMBER})|(?P<rav>{VAGUE})\s+(?P<ravu>{_UNITS}))
            {_SEP}(?:{_measure("rb", True)}|(?P<rbv>{VAGUE})\s+(?P<rbvu>{_UNITS}))
      | (?P<oq>{NUMBER})\s*(?P<ou>{_UNITS})\s+(?:or|to)\s+(?P<oq2>{NUMBER})
            (?![\s-]*(?:{_UNITS}|{NUMBER}))
      | (?P<vr>(?:seconds|minutes|hours|days|weeks|months){_SEP}
            (?:minutes|hours|days|weeks|months))\b
      | (?P<jq>{NUMBER})-(?P<ju>{_UNITS})
            (?=-long|\s+(?:[\w/]+\s+){{0,2}}?{_ADJ_NOUNS}\b)
      | {_measure("s", False)}
      | (?P<v>{VAGUE})\s+(?:more\s+|other\s+)?(?P<vu>{_UNITS})
      | (?P<night>overnight|all\s+night|all\s+day)\b
    )
    (?:(?P<more>{_MORE_AFTER})|(?P<less>{_LESS_AFTER}))?
    """,
    re.IGNORECASE | re.VERBOSE,
)

#: Every phrase holds a unit; the phrase cannot start further than this before its first unit.
#: Case-sensitive over the lower-cased text (an IGNORECASE alternation is ten times slower).
_UNIT_HINT = re.compile(r"sec|min|hour|hr|h\b|day|week|wk|month|night")
_LONGEST_LEAD = 80

#: A word just before the phrase that makes it a frequency ("every 4 hours", "twice a day").
_FREQUENCY_BEFORE = re.compile(r"\b(?:every|each|per|once|twice|thrice|times)\s*$", re.IGNORECASE)
#: "fasting overnight" is not how long the procedure takes.
_FAST_BEFORE = re.compile(r"\bfast(?:ing|ed)?\s*$", re.IGNORECASE)
#: "given over 3 days": after these words "over" spreads, it does not bound.
_SPREAD_BEFORE = re.compile(
    r"\b(?:given|spread|administered|delivered|infused|performed|done|completed|conducted"
    r"|repeated|divided|split|out|place|occurs?|happens?|taken|staged)\s*$",
    re.IGNORECASE,
)
#: Text just after the phrase that makes it an offset or an age, not a length.
_OFFSET_AFTER = re.compile(
    r"\s*(?:before|prior\s+to|beforehand|ahead\s+of|in\s+advance|earlier|ago|later|old\b"
    r"|of\s+age|of\s+life|postpartum|gestation|pregnan)",
    re.IGNORECASE,
)

#: Minutes per unit, by the unit word's first letters ("mo" before "m"); seconds otherwise.
_MINUTES_PER_UNIT: tuple[tuple[str, float], ...] = (
    ("mo", 43200),
    ("m", 1),
    ("h", 60),
    ("d", 1440),
    ("w", 10080),
)
_MINUTES_PER_SECOND = 1 / 60
#: Groups that only take part in a match when it is a range.
_RANGE_GROUPS = ("rb_u", "rb_hu", "rbv", "bb_u", "bb_hu", "oq", "vr")


# --- logic ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinuteRange:
    """Bounds in whole minutes; ``None`` for an open or unknown bound."""

    min_minutes: int | None
    max_minutes: int | None


def _unit(word: str) -> float:
    word = fold(word)
    for prefix, minutes in _MINUTES_PER_UNIT:
        if word.startswith(prefix):
            return minutes
    return _MINUTES_PER_SECOND


def _value(match: re.Match[str], p: str) -> float | None:
    """The length of the measure with group prefix ``p``, in (fractional) minutes."""
    half_unit = match.group(f"{p}_hu")
    if half_unit is not None:
        fraction = fold(match.group(f"{p}_hq"))
        share = (
            0.5 if "half" in fraction else 0.75 if "three" in fraction or "3" in fraction else 0.25
        )
        return share * _unit(half_unit)
    token, unit = match.group(f"{p}_q", f"{p}_u")
    if token is None or unit is None:
        return None
    number = parse_number(token)
    if number is None:
        return None
    per = _unit(unit)
    value = number * per
    if match.group(f"{p}_h") is not None:
        value += 0.5 * per
    token2, unit2 = match.group(f"{p}_q2", f"{p}_u2")
    if token2 is not None and unit2 is not None:
        number2 = parse_number(token2)
        per2 = _unit(unit2)
        if number2 is not None and per2 < per:  # "1 hour 30 minutes", not "2 hours a day"
            value += number2 * per2
    return value


def _minutes(value: float | None) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    whole = math.floor(value + 0.5)
    return 1 if whole == 0 and value > 0 else int(whole)


def _range(match: re.Match[str]) -> tuple[float | None, float | None]:
    """(low, high) of a matched phrase, before the bound words apply."""
    group = match.group
    if group("v") is not None or group("vr") is not None or group("night") is not None:
        return None, None
    if group("jq") is not None:
        number = parse_number(group("jq"))
        value = None if number is None else number * _unit(group("ju"))
        return value, value
    if group("oq") is not None:  # "an hour or two"
        per = _unit(group("ou"))
        low = parse_number(group("oq"))
        high = None if fold(group("oq2").strip()) in ("a", "an") else parse_number(group("oq2"))
        low_value = None if low is None else low * per
        return low_value, (low_value if high is None else high * per)
    if group("rbv") is not None:  # "30 minutes to several hours"
        return _range_low(match, "ra", "raq", group("rbvu")), None
    for first, bare, second in (("ba", "baq", "bb"), ("ra", "raq", "rb")):
        if group(f"{second}_u") is not None or group(f"{second}_hu") is not None:
            # The unit of "3 to 6 hours" is the second one's.
            unit = group(f"{second}_u") or group(f"{second}_hu")
            return _range_low(match, first, bare, unit), _value(match, second)
    value = _value(match, "s")
    return value, value


def _range_low(match: re.Match[str], first: str, bare: str, unit: str) -> float | None:
    """The low end of a range: its own measure, a bare number in ``unit``, or vague."""
    if match.group("rav") is not None and first == "ra":
        return None
    token = match.group(bare)
    if token is None:
        return _value(match, first)
    number = parse_number(token)
    return None if number is None else number * _unit(unit)


def _is_range(match: re.Match[str]) -> bool:
    return any(match.group(g) is not None for g in _RANGE_GROUPS)


def _accept(text: str, match: re.Match[str]) -> bool:
    before = max(0, match.start() - 16)
    if _FREQUENCY_BEFORE.search(text, before, match.start()):
        return False
    if match.group("night") is not None and _FAST_BEFORE.search(text, before, match.start()):
        return False
    return _OFFSET_AFTER.match(text, match.end()) is None


def _spread(text: str, match: re.Match[str]) -> bool:
    """True for "given over 3 days": "over" spreads the treatment, it is not a lower bound."""
    gt = match.group("gt")
    if gt is None or fold(gt) != "over":
        return False
    return _SPREAD_BEFORE.search(text, max(0, match.start() - 16), match.start()) is not None


def find_duration(text: str) -> MinuteRange | None:
    """The first duration phrase of ``text`` as whole minutes; ``None`` when there is none."""
    hint = _UNIT_HINT.search(aligned_lower(text))  # its offset is used on ``text``
    if hint is None:
        return None
    for match in _PATTERN.finditer(text, max(0, hint.start() - _LONGEST_LEAD)):
        if not _accept(text, match):
            continue
        low, high = _range(match)
        if low is not None and high is not None and low > high:
            low, high = high, low
        lt = match.group("lt")
        if lt is not None and fold(lt) == "within" and _is_range(match):
            lt = None  # "within 2 to 3 hours" is the range
        if lt is not None or match.group("less") is not None:
            low, high = None, (high if high is not None else low)
        elif (match.group("gt") is not None and not _spread(text, match)) or match.group(
            "more"
        ) is not None:
            low, high = (low if low is not None else high), None
        elif any(match.group(f"{p}_plus") for p in ("s", "rb", "bb")):
            high = None
        return MinuteRange(_minutes(low), _minutes(high))
    return None
