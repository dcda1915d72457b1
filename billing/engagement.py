"""The engagement score: a transparent 0-100 figure per participant.

::

    score = round_half_up( 60 × min(1, attention seconds / reference seconds)
                         + min(15, 5 × poll answers)
                         + min(10, 10 × questions asked)
                         + min( 5, 1 × chat messages)
                         + min(10, 10 × calls-to-action clicked) )

- *attention seconds*: time the player was playing in a visible tab, live and
  replay together (``billing/attention.py``);
- *reference seconds*: the live's real duration (start to end), or the
  scheduled duration when the live has not happened; at least 60 s;
- *poll answers*: polls answered (one per poll, changing an answer does not
  count twice); *questions*: questions asked in the room; *chat messages*:
  messages sent and not deleted by a moderator; *calls-to-action clicked*:
  distinct CTAs clicked (clicking one CTA again does not count).

So watching everything attentively is worth 60 points and taking part is
worth 40, in small capped steps: one cannot reach 100 by chatting alone, and
a silent, attentive viewer scores 60. The weights are :data:`WEIGHTS`; the
analytics page prints them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_REFERENCE_S = 60.0


@dataclass(frozen=True, slots=True)
class Weight:
    name: str
    per_unit: float
    cap: float


ATTENTION_POINTS = 60.0
WEIGHTS: tuple[Weight, ...] = (
    Weight("polls", 5.0, 15.0),
    Weight("questions", 10.0, 10.0),
    Weight("chat", 1.0, 5.0),
    Weight("cta_clicks", 10.0, 10.0),
)
assert ATTENTION_POINTS + sum(w.cap for w in WEIGHTS) == 100.0
_POLLS, _QUESTIONS, _CHAT, _CTA = WEIGHTS


def engagement_score(*, attention_s: float, reference_s: float, polls: int, questions: int, chat: int,
                     cta_clicks: int) -> int:
    """The score (integer 0-100) of one participant; see the module docstring for the formula.

    Counts must be ≥ 0 and times finite and ≥ 0, else :class:`ValueError`. (Called once per row of
    a participant file: written out rather than looped, for speed.)
    """
    if min(polls, questions, chat, cta_clicks) < 0 or not 0 <= attention_s < math.inf or not 0 <= reference_s < math.inf:
        raise ValueError("engagement inputs must be non-negative and finite")
    share = min(1.0, attention_s / max(reference_s, MIN_REFERENCE_S))
    points = (ATTENTION_POINTS * share + min(_POLLS.cap, _POLLS.per_unit * polls)
              + min(_QUESTIONS.cap, _QUESTIONS.per_unit * questions) + min(_CHAT.cap, _CHAT.per_unit * chat)
              + min(_CTA.cap, _CTA.per_unit * cta_clicks))
    return int(math.floor(points + 0.5))  # half up
