"""Load ``vocabulary.toml`` (section phrases and cues, sub-labels, chrome markers), validated.

The file is data kept apart from the logic; this module checks it when it loads, with a
Pydantic model whose section keys are the same names the record uses: an unknown section or
slot, an empty list, a weight that is not positive or a pattern that does not compile raises
:class:`VocabularyError` (a configuration error) instead of silently matching nothing. Then it
compiles everything once: one alternation regex for the phrase tier, the cue table keyed by
Snowball stems for the cue tier (:mod:`pipeline.extract.classify`), and the chrome matchers the
walk uses (:mod:`pipeline.extract.blocks`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import Stemmer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import VocabularyError
from pipeline.extract.blocks import Chrome

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.toml")

#: Sections a heading can name: the record's sections, then the ones that feed no field.
RECORD_SECTIONS: tuple[str, ...] = (
    "summary", "purpose", "indications", "preparation", "steps", "duration", "setting",
    "personnel", "risks", "benefits", "recovery", "alternatives", "patient_experience",
    "similar_codes",
)  # fmt: skip
SectionKey = Literal[
    "summary", "purpose", "indications", "preparation", "steps", "duration", "setting",
    "personnel", "risks", "benefits", "recovery", "alternatives", "patient_experience",
    "similar_codes", "name", "anesthesia_info", "condition", "other", "ignore", "navigation",
]  # fmt: skip
#: Slots a sub-label may route items to, per section (default: items).
SLOTS: dict[str, frozenset[str]] = {
    "steps": frozenset({"steps", "skip", "items"}),
    "patient_experience": frozenset({"during", "after", "notes"}),
}
_DEFAULT_SLOTS = frozenset({"items", "skip"})


_CURLY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "®": "", "™": "", "\xa0": " "})
_LEAD = re.compile(
    r"^(?:#{1,6}\s*|\*\*|__|q\s*[:.)]\s*|(?:section|part|step|chapter)?\s*(?:\d{1,2}|[ivx]{1,4}|[a-h])[.):]\s+"
    r"|[•\-–*·▸►▪■◆✓✔➤→]\s*)+",
    re.IGNORECASE,
)
_TRAIL = re.compile(r"(?:\s*(?:\[\s*edit\s*\]|¶|#|§))+\s*$|[\s:?.!*_\-–—]+$")
_EDIT = re.compile(r"^\s*\[\s*edit\s*\]\s*|\s*\[\s*edit\s*\]\s*$|\s*[¶§]\s*$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_STEMMER = Stemmer.Stemmer("english")
_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=16384)
def heading_key(text: str) -> str:
    """A heading as it is matched: lower case, numbering, markdown and trailing colon gone."""
    text = text.translate(_CURLY).lower()
    text = _EDIT.sub("", text)
    text = _LEAD.sub("", text)
    text = _TRAIL.sub("", text)
    text = text.replace(" / ", "/").replace(" & ", " and ").strip("*_ ")
    return _SPACE.sub(" ", text)


def words(text: str) -> list[str]:
    """The words of a (normalized) text: letters and digits, apostrophes and hyphens split."""
    return _WORD.findall(text.replace("'", " "))


#: Irregular forms the stemmer leaves apart ("does" -> "doe"): mapped before stemming.
_IRREGULAR = {"does": "do", "did": "do", "doing": "do", "done": "do", "goes": "go", "went": "go",
              "gone": "go", "isn": "is", "aren": "are", "won": "will", "can't": "can"}  # fmt: skip


def stems(tokens: list[str]) -> tuple[str, ...]:
    """Snowball (English) stems of ``tokens``, irregular verb forms mapped first."""
    return tuple(_STEMMER.stemWords([_IRREGULAR.get(t, t) for t in tokens]))


# --- the file's model ------------------------------------------------------------------------

Pattern = Annotated[str, Field(min_length=1)]


#: A back-reference ("\\1", "(?P=name)"): its number changes once patterns are combined.
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")


def _compiles(patterns: list[str]) -> list[str]:
    """Each pattern compiles as it will be used: wrapped and joined with the others. So
    global flags ("(?i)..."), named groups and back-references are refused here."""
    for pattern in patterns:
        try:
            compiled = re.compile(f"(?:{pattern})")
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from exc
        if compiled.groupindex or _BACKREF.search(pattern):
            raise ValueError(
                f"pattern {pattern!r} has a named group or a back-reference; use (?:...) groups"
            )
    return patterns


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SectionWords(_Strict):
    """The phrases (tier 1) and weighted cues (tier 2) of one section."""

    phrases: list[Pattern] = Field(default_factory=list)
    cues: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    frames: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    @field_validator("phrases")
    @classmethod
    def _phrases_compile(cls, value: list[str]) -> list[str]:
        return _compiles(value)

    @field_validator("frames")
    @classmethod
    def _frames_compile(cls, value: dict[str, float]) -> dict[str, float]:
        _compiles(list(value))
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> SectionWords:
        if not self.phrases and not self.cues and not self.frames:
            raise ValueError("a section needs phrases, cues or frames")
        for cue in self.cues:
            if not words(cue.lower()):
                raise ValueError(f"cue {cue!r} has no word")
        return self


class ClassifySettings(_Strict):
    threshold: Annotated[float, Field(gt=0)]
    margin: Annotated[float, Field(ge=0)]
    stopwords: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    event_words: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class PageSettings(_Strict):
    label_max_chars: Annotated[int, Field(gt=0)]
    not_found: list[Pattern] = Field(min_length=1)
    listing_min_links: Annotated[int, Field(gt=0)]

    @field_validator("not_found")
    @classmethod
    def _not_found_compile(cls, value: list[str]) -> list[str]:
        return _compiles(value)


class ChromeSettings(_Strict):
    tags: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$")]] = Field(min_length=1)
    class_tokens: list[Pattern] = Field(min_length=1)
    keep: list[Pattern] = Field(min_length=1)
    roles: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)

    @field_validator("class_tokens", "keep")
    @classmethod
    def _tokens_compile(cls, value: list[str]) -> list[str]:
        return _compiles(value)


class VocabularyFile(_Strict):
    """The whole ``vocabulary.toml``."""

    classify: ClassifySettings
    sections: dict[SectionKey, SectionWords] = Field(min_length=1)
    sublabels: dict[SectionKey, dict[str, list[Pattern]]] = Field(default_factory=dict)
    page: PageSettings
    chrome: ChromeSettings

    @model_validator(mode="after")
    def _check(self) -> VocabularyFile:
        missing = [k for k in RECORD_SECTIONS if k not in self.sections]
        if missing:
            raise ValueError(f"sections without words: {', '.join(missing)}")
        for section, slots in self.sublabels.items():
            allowed = SLOTS.get(section, _DEFAULT_SLOTS)
            for slot, patterns in slots.items():
                if slot not in allowed:
                    raise ValueError(
                        f"sublabels.{section}: unknown slot {slot!r} (allowed: "
                        f"{', '.join(sorted(allowed))})"
                    )
                if not patterns:
                    raise ValueError(f"sublabels.{section}.{slot} is empty")
                _compiles(patterns)
        return self


# --- compiled --------------------------------------------------------------------------------


def _alternation(groups: dict[str, list[str]]) -> re.Pattern[str]:
    """One regex whose named group says which entry of ``groups`` matched the whole text."""
    parts = [
        f"(?P<{name}>{'|'.join(f'(?:{p})' for p in patterns)})"
        for name, patterns in groups.items()
        if patterns
    ]
    return re.compile("|".join(parts))


#: A cue: its stem sequence -> [(section, weight)].
CueTable = dict[tuple[str, ...], list[tuple[str, float]]]


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Everything the extractor matches against, compiled once (hashed by identity)."""

    sections: re.Pattern[str]
    frames: tuple[tuple[re.Pattern[str], str, float], ...]
    cues: CueTable
    cues_by_first: dict[str, tuple[tuple[str, ...], ...]]
    cue_first: frozenset[str]
    cue_words: tuple[str, ...]
    threshold: float
    margin: float
    stopwords: frozenset[str]
    event_words: frozenset[str]
    sublabels: dict[str, re.Pattern[str]]
    not_found: re.Pattern[str]
    listing_min_links: int
    label_max_chars: int
    chrome_tags: tuple[str, ...]
    chrome: Chrome

    def section_of(self, key: str) -> str | None:
        """The section a normalized heading names in the phrase tier, or None."""
        match = self.sections.fullmatch(key)
        return match.lastgroup if match else None

    def sublabel_of(self, section: str, key: str) -> str | None:
        """The slot a sub-label routes to inside ``section``, or None."""
        pattern = self.sublabels.get(section)
        if pattern is None:
            return None
        match = pattern.fullmatch(key)
        return match.lastgroup if match else None


def _cue_table(sections: dict[str, SectionWords]) -> tuple[CueTable, tuple[str, ...]]:
    """Cues keyed by their stem sequence, and the one-word cues as written (for fuzzy match)."""
    table: CueTable = {}
    single: set[str] = set()
    for name, section in sections.items():
        for cue, weight in section.cues.items():
            tokens = words(cue.lower())
            key = stems(tokens)
            entries = table.setdefault(key, [])
            if any(existing == name for existing, _ in entries):
                raise VocabularyError(f"cue {cue!r} of {name} repeats another of its cues")
            entries.append((name, float(weight)))
            if len(tokens) == 1:
                single.add(tokens[0])
    return table, tuple(sorted(single))


def _token_pattern(patterns: list[str]) -> re.Pattern[str]:
    """One regex that finds a WHOLE white-space separated token matching any of ``patterns``."""
    alternation = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(rf"(?:^|(?<=\s))(?:{alternation})(?=\s|$)", re.IGNORECASE)


def build_vocabulary(data: dict[str, Any]) -> Vocabulary:
    """Validate the parsed TOML document and compile it into a :class:`Vocabulary`."""
    try:
        model = VocabularyFile.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise VocabularyError(
            f"vocabulary is invalid at {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from exc
    cues, cue_words = _cue_table({str(k): v for k, v in model.sections.items()})
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for cue in cues:
        by_first.setdefault(cue[0], []).append(cue)
    chrome = model.chrome
    return Vocabulary(
        sections=_alternation({k: v.phrases for k, v in model.sections.items()}),
        frames=tuple(
            (re.compile(pattern), name, float(weight))
            for name, section in model.sections.items()
            for pattern, weight in section.frames.items()
        ),
        cues=cues,
        cues_by_first={k: tuple(v) for k, v in by_first.items()},
        cue_first=frozenset(by_first),
        cue_words=cue_words,
        threshold=model.classify.threshold,
        margin=model.classify.margin,
        stopwords=frozenset(stems(list(model.classify.stopwords))),
        event_words=frozenset(stems([w.lower() for w in model.classify.event_words])),
        sublabels={name: _alternation(slots) for name, slots in model.sublabels.items()},
        not_found=re.compile("|".join(f"(?:{p})" for p in model.page.not_found), re.IGNORECASE),
        listing_min_links=model.page.listing_min_links,
        label_max_chars=model.page.label_max_chars,
        chrome_tags=tuple(chrome.tags),
        chrome=Chrome(
            _token_pattern(chrome.class_tokens),
            _token_pattern(chrome.keep),
            frozenset(chrome.roles),
        ),
    )


@cache
def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """The vocabulary in ``path`` (the bundled file by default), validated, compiled, cached."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VocabularyError(f"cannot read the vocabulary {path}: {exc}") from exc
    return build_vocabulary(data)
