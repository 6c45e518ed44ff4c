"""The validated record: one procedure page.

These Pydantic models are the validation boundary of the pipeline. Everything inside the parser
is plain Python; a page becomes a :class:`Procedure` only if every rule here holds. The JSON
Schema written to ``schemas/procedure.schema.json`` is generated from these models
(``pipeline schema``) and a test keeps the file and the models in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class CodeSystem(StrEnum):
    CPT = "CPT"
    HCPCS = "HCPCS"
    ICD10PCS = "ICD-10-PCS"
    ICD10CM = "ICD-10-CM"


class Venue(StrEnum):
    HOSPITAL = "hospital"
    AMBULATORY_SURGICAL_CENTER = "ambulatory_surgical_center"
    OUTPATIENT_CLINIC = "outpatient_clinic"
    PHYSICIAN_OFFICE = "physician_office"
    IMAGING_CENTER = "imaging_center"
    EMERGENCY_DEPARTMENT = "emergency_department"
    HOME = "home"


class Role(StrEnum):
    ANESTHESIA = "anesthesia"
    SURGEON = "surgeon"
    PHYSICIAN = "physician"
    NURSE = "nurse"
    TECHNOLOGIST = "technologist"
    THERAPIST = "therapist"
    OTHER = "other"


class AnesthesiaKind(StrEnum):
    GENERAL = "general"
    REGIONAL = "regional"
    LOCAL = "local"
    SEDATION = "sedation"


#: The published format of a code in each system (upper case, as printed on the page).
CODE_PATTERNS: dict[CodeSystem, re.Pattern[str]] = {
    # 5 digits (Category I), or 4 digits + F (Category II), T (Category III), U (PLA), M.
    CodeSystem.CPT: re.compile(r"\d{4}[0-9FTUM]"),
    # Level II: a letter and four digits.
    CodeSystem.HCPCS: re.compile(r"[A-Z]\d{4}"),
    # Seven characters of 0-9 and A-Z without I and O.
    CodeSystem.ICD10PCS: re.compile(r"[0-9A-HJ-NP-Z]{7}"),
    # Letter, digit, alphanumeric, then optionally a dot and 1-4 more characters.
    CodeSystem.ICD10CM: re.compile(r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?"),
}


def code_fits(code: str, system: CodeSystem) -> bool:
    """True when ``code`` has the published format of ``system``."""
    return CODE_PATTERNS[system].fullmatch(code) is not None


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
"""A non-empty string with no surrounding white space."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Duration(_Model):
    """How long the procedure takes; bounds in whole minutes, null when the page is vague."""

    text: Text
    min_minutes: Annotated[int, Field(ge=0)] | None = None
    max_minutes: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if (
            self.min_minutes is not None
            and self.max_minutes is not None
            and self.min_minutes > self.max_minutes
        ):
            raise ValueError(f"min_minutes {self.min_minutes} > max_minutes {self.max_minutes}")
        return self


class HospitalStay(_Model):
    """The hospital stay after the procedure, in days (0 = home the same day)."""

    text: Text
    min_days: Annotated[int, Field(ge=0)] | None = None
    max_days: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if (
            self.min_days is not None
            and self.max_days is not None
            and self.min_days > self.max_days
        ):
            raise ValueError(f"min_days {self.min_days} > max_days {self.max_days}")
        return self


class Setting(_Model):
    """Where the procedure is done, as the page says it and as venues of the vocabulary."""

    text: Text
    venues: list[Venue] = Field(default_factory=list)


class Person(_Model):
    """One member of the care team and the role of the vocabulary it falls under."""

    text: Text
    role: Role


class PatientExperience(_Model):
    """What the patient feels during and after the procedure, and any other remarks."""

    during: list[Text] = Field(default_factory=list)
    after: list[Text] = Field(default_factory=list)
    notes: list[Text] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.during or self.after or self.notes)


class SimilarCode(_Model):
    """A code the page itself lists as similar or related."""

    code: Text
    code_system: CodeSystem
    title: str | None = None

    @model_validator(mode="after")
    def _code_fits(self) -> Self:
        if not code_fits(self.code, self.code_system):
            raise ValueError(f"similar code {self.code!r} is not a valid {self.code_system} code")
        return self


class OtherSection(_Model):
    """A section of the page whose heading names no field of the record, kept as written."""

    heading: Text
    text: str = ""


#: The list sections of a record, in page order of the reference site.
LIST_SECTIONS: tuple[str, ...] = (
    "indications",
    "preparation",
    "steps",
    "risks",
    "benefits",
    "recovery",
    "alternatives",
)


class Procedure(_Model):
    """One validated procedure page."""

    source: Text
    code: Text
    code_system: CodeSystem
    title: Text
    summary: Text | None = None
    purpose: Text | None = None
    indications: list[Text] = Field(default_factory=list)
    preparation: list[Text] = Field(default_factory=list)
    steps: list[Text] = Field(default_factory=list)
    risks: list[Text] = Field(default_factory=list)
    benefits: list[Text] = Field(default_factory=list)
    recovery: list[Text] = Field(default_factory=list)
    alternatives: list[Text] = Field(default_factory=list)
    duration: Duration | None = None
    setting: Setting | None = None
    personnel: list[Person] = Field(default_factory=list)
    hospital_stay: HospitalStay | None = None
    patient_experience: PatientExperience = Field(default_factory=PatientExperience)
    similar_codes: list[SimilarCode] = Field(default_factory=list)
    anesthesia: list[AnesthesiaKind] = Field(default_factory=list)
    other_sections: list[OtherSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.code != self.code.upper():
            raise ValueError(f"code {self.code!r} must be upper case")
        if not code_fits(self.code, self.code_system):
            raise ValueError(f"code {self.code!r} is not a valid {self.code_system} code")
        if not self.has_content():
            raise ValueError("the page has a title but no content section")
        if len(set(self.anesthesia)) != len(self.anesthesia):
            raise ValueError("anesthesia kinds repeat")
        return self

    def has_content(self) -> bool:
        """True when the page says anything beyond its code and title.

        A code page that only lists related codes, or whose sections all went to
        ``other_sections``, still has content: it is a record, not a reject.
        """
        return bool(
            self.summary
            or self.purpose
            or any(getattr(self, name) for name in LIST_SECTIONS)
            or self.duration
            or self.setting
            or self.personnel
            or not self.patient_experience.is_empty()
            or self.similar_codes
            or self.other_sections
        )


@dataclass(frozen=True, slots=True)
class ExtractionReport:
    """What extracting one page saw beyond its record, so that no loss is silent.

    ``headings`` counts the section headings of the page's content, ``unclassified`` those
    whose section went to ``other_sections``; ``chrome_blocks`` and ``chrome_chars`` count the
    containers (and their text) dropped as page chrome; ``tiers`` says, per filled field, which
    tier of the extractor decided it (``phrase``, ``cue``, ``content``, ``intro``, ``label``).
    """

    headings: int = 0
    unclassified: int = 0
    chrome_blocks: int = 0
    chrome_chars: int = 0
    tiers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self) -> tuple[Callable[..., ExtractionReport], tuple[object, ...]]:
        # A read-only mapping does not pickle; the report crosses process boundaries (the build
        # stage's workers), so it travels as a dict and is made read-only again.
        return (
            _report,
            (self.headings, self.unclassified, self.chrome_blocks, self.chrome_chars,
             dict(self.tiers)),
        )  # fmt: skip


def _report(
    headings: int, unclassified: int, chrome_blocks: int, chrome_chars: int, tiers: dict[str, str]
) -> ExtractionReport:
    return ExtractionReport(
        headings, unclassified, chrome_blocks, chrome_chars, MappingProxyType(tiers)
    )
