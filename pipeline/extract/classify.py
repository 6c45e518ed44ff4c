"""What a heading means: the section of the record it opens, decided in tiers.

1. **Phrase** (fast, exact): the normalized heading matches a whole phrase of the vocabulary
   ("how long does it take", "related codes").
2. **Cue**: the heading's words are stemmed with the Snowball English stemmer and matched
   against weighted cue words and short cue phrases ("staff involved" 3 for personnel, "after"
   2 for recovery, "what happen" 2.5 for steps). A cue phrase may skip stop words between its
   words ("how done" matches "how is it done"); the longest cue at each position counts once.
   A word no cue knows is corrected to the nearest cue word when they are close (rapidfuzz
   ratio of at least :data:`FUZZY_CUTOFF`, words of seven letters or more, same first letter),
   so "Reccovery" and "Alternatves" still count. A heading may also fit a *frame*, a sentence shape
   of the vocabulary ("how the line is placed" is the steps, "who places the line" the
   personnel). The section with the highest total wins when it reaches the
   vocabulary's threshold; when the runner-up is within the margin the verdict is
   *ambiguous* and the caller settles it with what the section's content looks like.
3. What is left is decided by the page (``pipeline.extract.sections``): a heading made only of
   the procedure's own name is about the procedure (summary), one made only of "Surgery" /
   "The operation" is the steps, a kicker line above a heading lends its words, and a heading
   that still names nothing goes to ``other_sections``.

A site repeats its headings on every page, so verdicts are memoized per normalized heading;
the procedure's own name, which changes per page, is subtracted afterwards
(:meth:`Verdict.without`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from rapidfuzz import fuzz, process

from pipeline.extract.vocabulary import Vocabulary, heading_key, stems, words

#: Least rapidfuzz ratio (0-100) for a misspelt word to count as a cue word.
FUZZY_CUTOFF = 88
_FUZZY_MIN_LENGTH = 7
#: A cue made only of the procedure's own name counts this much (the descriptor of G0121 says
#: "high risk"; "Risks are low" is still the risks).
TITLE_CUE_FACTOR = 0.5


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue found in a heading: the section it points to, its weight, the stems it spans."""

    section: str
    weight: float
    stems: tuple[str, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one heading names."""

    key: str
    section: str | None
    tier: str  # "phrase", "cue" or "none"
    cues: tuple[Cue, ...] = ()
    content: tuple[str, ...] = ()  # stems of the words that are not stop words
    ambiguous: bool = False
    runner_up: str | None = None
    score: float = 0.0  # total weight of the winning section's cues

    def without(self, title_stems: frozenset[str], vocab: Vocabulary) -> Verdict:
        """The verdict with cues made only of the procedure's own name weighed down."""
        if self.tier == "phrase" or not title_stems:
            return self
        if not any(c.stems and set(c.stems) <= title_stems for c in self.cues):
            return self
        weighed = tuple(
            replace(c, weight=c.weight * TITLE_CUE_FACTOR)
            if c.stems and set(c.stems) <= title_stems
            else c
            for c in self.cues
        )
        return _decide(self.key, weighed, self.content, vocab)

    def leftover(self, title_stems: frozenset[str]) -> tuple[str, ...]:
        """Content stems of the heading that are neither cues nor the procedure's name."""
        cued = {s for c in self.cues for s in c.stems}
        return tuple(s for s in self.content if s not in cued and s not in title_stems)


#: "In the OR": the operating room, which lower case would make the stop word "or".
_OPERATING_ROOM = re.compile(r"\bOR\b")


def classify(text: str, vocab: Vocabulary) -> Verdict:
    """The verdict for a heading as written on the page (memoized per normalized heading)."""
    if "OR" in text and not text.isupper():
        text = _OPERATING_ROOM.sub("operating room", text)
    return classify_key(heading_key(text), vocab)


@lru_cache(maxsize=16384)
def classify_key(key: str, vocab: Vocabulary) -> Verdict:
    """The verdict for a normalized heading (see :func:`heading_key`)."""
    section = vocab.section_of(key)
    if section is not None:
        return Verdict(key, section, "phrase")
    tokens = words(key)
    if not tokens:
        return Verdict(key, None, "none")
    seq = _corrected(list(stems(tokens)), tokens, vocab)
    found = _match(seq, vocab) + tuple(
        Cue(section, weight, (), 0)
        for pattern, section, weight in vocab.frames
        if pattern.search(key)
    )
    content = tuple(s for s in seq if s not in vocab.stopwords)
    return _decide(key, found, content, vocab)


def _corrected(seq: list[str], tokens: list[str], vocab: Vocabulary) -> tuple[str, ...]:
    """Stems with misspelt words replaced by the stem of the nearest cue word."""
    known = vocab.cue_first
    for i, stem in enumerate(seq):
        if stem in known or stem in vocab.stopwords or len(tokens[i]) < _FUZZY_MIN_LENGTH:
            continue
        best = process.extractOne(
            tokens[i], vocab.cue_words, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF
        )
        if best is not None and best[0][0] == tokens[i][0]:
            seq[i] = stems([best[0]])[0]
    return tuple(seq)


def _match(seq: tuple[str, ...], vocab: Vocabulary) -> tuple[Cue, ...]:
    """Every cue in the stem sequence, longest first at each position, each word once."""
    found: list[Cue] = []
    i = 0
    while i < len(seq):
        best: tuple[int, tuple[str, ...]] | None = None
        for cue in vocab.cues_by_first.get(seq[i], ()):
            end = _span(seq, i, cue, vocab.stopwords)
            if end is not None and (best is None or (len(cue), end) > (len(best[1]), best[0])):
                best = (end, cue)
        if best is None:
            i += 1
            continue
        end, cue = best
        for section, weight in vocab.cues[cue]:
            found.append(Cue(section, weight, cue, i))
        i = end
    return tuple(found)


def _span(
    seq: tuple[str, ...], start: int, cue: tuple[str, ...], stopwords: frozenset[str]
) -> int | None:
    """End of ``cue`` matched at ``start``, stop words allowed between its words; or None."""
    j = start
    for k, stem in enumerate(cue):
        if k:
            while j < len(seq) and seq[j] != stem and seq[j] in stopwords:
                j += 1
        if j >= len(seq) or seq[j] != stem:
            return None
        j += 1
    return j


def _decide(
    key: str, found: tuple[Cue, ...], content: tuple[str, ...], vocab: Vocabulary
) -> Verdict:
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for cue in found:
        totals[cue.section] = totals.get(cue.section, 0.0) + cue.weight
        first.setdefault(cue.section, cue.position)
    ranked = sorted(totals, key=lambda s: (-totals[s], first[s]))
    if not ranked or totals[ranked[0]] < vocab.threshold:
        return Verdict(key, None, "none", found, content)
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    close = runner is not None and totals[best] - totals[runner] <= vocab.margin
    return Verdict(key, best, "cue", found, content, close, runner, totals[best])
