"""The help bot (R-ENG-3): answers a participant's recurring question from the
account's FAQ by text similarity.

Scoring (documented so organizers can predict it): both texts are lower-cased,
accents and punctuation removed; the score of a FAQ entry is the best, over its
question variants, of rapidfuzz's ``token_set_ratio`` (0-100: word overlap that
ignores order and duplicates), and an entry answers when its score reaches
:data:`ANSWER_THRESHOLD`. Otherwise the question goes to the moderators.
rapidfuzz is a maintained C++ library: fast and exact where our own scoring
would be slower and less tested.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

from rapidfuzz import fuzz

ANSWER_THRESHOLD = 70.0
MAX_FAQ_ENTRIES = 500
MAX_VARIANTS = 20


@dataclass(frozen=True)
class FaqEntry:
    id: int
    variants: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Match:
    entry: FaqEntry
    score: float


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    kept = "".join(ch if ch.isalnum() else " " for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(kept.split())


def best_answer(question: str, faq: Sequence[FaqEntry], threshold: float = ANSWER_THRESHOLD) -> Match | None:
    asked = normalise(question)
    if not asked:
        return None
    best: Match | None = None
    for entry in faq[:MAX_FAQ_ENTRIES]:
        for variant in entry.variants[:MAX_VARIANTS]:
            score = float(fuzz.token_set_ratio(asked, normalise(variant)))
            if best is None or score > best.score:
                best = Match(entry, score)
    return best if best is not None and best.score >= threshold else None
