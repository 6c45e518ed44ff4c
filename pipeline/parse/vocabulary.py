"""Load ``vocabulary.toml`` (heading synonyms, sub-labels, chrome markers) into compiled form."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pipeline.parse.blocks import Chrome

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.toml")

_CURLY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "®": "", "™": "", "\xa0": " "})
_LEAD = re.compile(
    r"^(?:#{1,6}\s*|\*\*|__|(?:section|part|step)?\s*(?:\d{1,2}|[ivx]{1,4}|[a-h])[.):]\s+|[•\-–*·]\s*)+",
    re.IGNORECASE,
)
_TRAIL = re.compile(r"[\s:?.!*_\-–—]+$")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=16384)
def heading_key(text: str) -> str:
    """A heading as it is matched: lower case, numbering, markdown and trailing colon gone."""
    text = text.translate(_CURLY).lower()
    text = _LEAD.sub("", text)
    text = _TRAIL.sub("", text)
    text = text.replace(" / ", "/").replace(" & ", " and ").strip("*_ ")
    return _SPACE.sub(" ", text)


def _alternation(groups: dict[str, list[str]]) -> re.Pattern[str]:
    """One regex whose named group says which entry of ``groups`` matched the whole text."""
    parts = [
        f"(?P<{name}>{'|'.join(f'(?:{p})' for p in patterns)})" for name, patterns in groups.items()
    ]
    return re.compile("|".join(parts))


@dataclass(frozen=True)
class Vocabulary:
    """Everything the sectioner matches against, compiled once."""

    sections: re.Pattern[str]
    sublabels: dict[str, re.Pattern[str]]
    not_found: re.Pattern[str]
    listing_min_links: int
    label_max_chars: int
    chrome_tags: tuple[str, ...]
    chrome: Chrome

    def section_of(self, key: str) -> str | None:
        """The section a normalized heading names, or None."""
        match = self.sections.fullmatch(key)
        return match.lastgroup if match else None

    def sublabel_of(self, section: str, key: str) -> str | None:
        """The slot a sub-label routes to inside ``section``, or None."""
        pattern = self.sublabels.get(section)
        if pattern is None:
            return None
        match = pattern.fullmatch(key)
        return match.lastgroup if match else None


def build_vocabulary(data: dict[str, Any]) -> Vocabulary:
    """Compile the parsed TOML document into a :class:`Vocabulary`."""
    page = data["page"]
    chrome = data["chrome"]
    return Vocabulary(
        sections=_alternation(data["sections"]),
        sublabels={name: _alternation(slots) for name, slots in data["sublabels"].items()},
        not_found=re.compile("|".join(f"(?:{p})" for p in page["not_found"]), re.IGNORECASE),
        listing_min_links=int(page["listing_min_links"]),
        label_max_chars=int(page["label_max_chars"]),
        chrome_tags=tuple(chrome["tags"]),
        chrome=Chrome(
            re.compile("|".join(chrome["class_or_id"]), re.IGNORECASE), frozenset(chrome["roles"])
        ),
    )


@cache
def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """The vocabulary in ``path`` (the bundled file by default), compiled and cached."""
    with path.open("rb") as handle:
        return build_vocabulary(tomllib.load(handle))
