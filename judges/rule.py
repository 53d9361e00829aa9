"""The rule judge: the engagement model of docs/simulation.md, with exact expected rewards.

Engagement ``e`` of a persona for a tip (priority p, overdue flag, hour h):

- 0.35, plus ``(p_norm - 0.5) * prefers_high_priority * 0.4`` with ``p_norm = (p - 1) / 3``;
- if overdue, plus ``(prefers_overdue - 0.5) * 0.3``;
- activity (morning is 5 <= h < 10, evening 18 <= h < 22), read literally:
  +0.15 when the persona is active in the current period (morning-active in the morning,
  or evening-active in the evening); else -0.10 when the persona is active in some period
  and the hour is outside both morning and evening; else 0. So a morning-only persona in
  the evening gets 0, a persona active in both periods gets +0.15 in either and -0.10
  (once, not twice) outside both, and a persona active in neither never gets a bonus;
- clipped to [0.05, 0.90], then rounded to 12 decimals so that a value that is 0.70 or
  0.50 on paper lands in the band it belongs to despite floating-point noise.

Action: ``u`` uniform in [0, 1): done if ``u < 0.55 e``, snooze if ``u < e``, else dismiss.
Dwell (integer milliseconds, both ends included): done with e >= 0.70 in 15-90 s,
e >= 0.50 in 2-8 min, else 10-30 min; snooze 3-20 s; dismiss 1-5 s. Every done band lies
inside one band of the production reward rule, so ``r_done(e)`` is 1.0, 0.6 or 0.3 and
the expected reward is exactly ``0.55 e r_done(e) + 0.045 e - (1 - e)``.

Draw order (part of the common-random-numbers contract): first ``u``, then the dwell.

>>> p = Persona("p", "d", 0.9, 0.9, True, False)
>>> engagement(p, Moment(8, 0), Task("t", 4, True, 3.0))
0.8
>>> round(expected_reward(p, Moment(8, 0), Task("t", 4, True, 3.0)), 6)
0.276
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bandit.base import Moment, Task
from bandit.reward import FOCUSED_MS, REFLEX_MS, SLOW_MS, infer_reward, reward_for_done
from judges.base import Judgment, SyncJudge
from judges.personas import Persona

__all__ = [
    "BASE_ENGAGEMENT",
    "DISMISS_MS",
    "DONE_FAST_MS",
    "DONE_FOCUSED_MS",
    "DONE_SHARE",
    "DONE_SLOW_MS",
    "MAX_ENGAGEMENT",
    "MIN_ENGAGEMENT",
    "SNOOZE_MS",
    "RuleJudge",
    "activity_adjustment",
    "done_dwell_range",
    "done_reward",
    "draw_action",
    "draw_dwell",
    "engagement",
    "expected_reward",
    "expected_reward_from_engagement",
    "is_evening",
    "is_morning",
    "reward_of",
]

BASE_ENGAGEMENT = 0.35
MIN_ENGAGEMENT = 0.05
MAX_ENGAGEMENT = 0.90
DONE_SHARE = 0.55  # P(done) = 0.55 e, P(snooze) = 0.45 e, P(dismiss) = 1 - e

# Inclusive dwell ranges in milliseconds. Each done band starts where a band of the
# production reward rule starts (bandit.reward), so that every done lies inside one.
DONE_FAST_MS = (REFLEX_MS, 90_000)  # e >= 0.70
DONE_FOCUSED_MS = (FOCUSED_MS, 480_000)  # e >= 0.50
DONE_SLOW_MS = (SLOW_MS, 1_800_000)  # otherwise
SNOOZE_MS = (3_000, 20_000)
DISMISS_MS = (1_000, 5_000)


def reward_of(action: str, dwell_ms: int) -> float:
    """The production reward (``infer_reward``) of a learned action."""
    reward = infer_reward(action, dwell_ms)
    if reward is None:  # legacy actions are never produced by a judge
        raise ValueError(f"action {action!r} carries no reward")
    return reward


# The production rule's rewards of a snooze and a dismiss (they do not depend on the dwell).
_SNOOZE_REWARD = reward_of("snooze", SNOOZE_MS[0])
_DISMISS_REWARD = reward_of("dismiss", DISMISS_MS[0])


def is_morning(hour: int) -> bool:
    """5 <= h < 10."""
    return 5 <= hour < 10


def is_evening(hour: int) -> bool:
    """18 <= h < 22."""
    return 18 <= hour < 22


def activity_adjustment(persona: Persona, hour: int) -> float:
    """+0.15, -0.10 or 0 (see the module docstring for the cases).

    >>> both = Persona("b", "d", 0.0, 0.5, True, True)
    >>> [activity_adjustment(both, h) for h in (7, 19, 13)]
    [0.15, 0.15, -0.1]
    >>> morning = Persona("m", "d", 0.0, 0.5, True, False)
    >>> [activity_adjustment(morning, h) for h in (7, 19, 13)]
    [0.15, 0.0, -0.1]
    """
    morning, evening = is_morning(hour), is_evening(hour)
    if (persona.morning_active and morning) or (persona.evening_active and evening):
        return 0.15
    if (persona.morning_active or persona.evening_active) and not morning and not evening:
        return -0.10
    return 0.0


def engagement(persona: Persona, moment: Moment, task: Task) -> float:
    """Engagement e in [0.05, 0.90] of ``persona`` for ``task`` at ``moment``."""
    p_norm = (task.priority - 1) / 3
    e = BASE_ENGAGEMENT + (p_norm - 0.5) * persona.prefers_high_priority * 0.4
    if task.is_overdue:
        e += (persona.prefers_overdue - 0.5) * 0.3
    e += activity_adjustment(persona, moment.hour_of_day)
    return round(min(max(e, MIN_ENGAGEMENT), MAX_ENGAGEMENT), 12)


def done_dwell_range(e: float) -> tuple[int, int]:
    """Inclusive dwell range (ms) of a done at engagement e.

    >>> done_dwell_range(0.7), done_dwell_range(0.69), done_dwell_range(0.5)
    ((15000, 90000), (120000, 480000), (120000, 480000))
    """
    if e >= 0.70:
        return DONE_FAST_MS
    if e >= 0.50:
        return DONE_FOCUSED_MS
    return DONE_SLOW_MS


def done_reward(e: float) -> float:
    """r_done(e): 1.0, 0.6 or 0.3, the production reward of any dwell in e's band.

    >>> done_reward(0.7), done_reward(0.5), done_reward(0.49)
    (1.0, 0.6, 0.3)
    """
    return reward_for_done(done_dwell_range(e)[0])


def expected_reward_from_engagement(e: float) -> float:
    """0.55 e r_done(e) + 0.045 e - (1 - e)."""
    return (
        DONE_SHARE * e * done_reward(e)
        + (1 - DONE_SHARE) * _SNOOZE_REWARD * e
        + (1 - e) * _DISMISS_REWARD
    )


def expected_reward(persona: Persona, moment: Moment, task: Task) -> float:
    """Exact expected reward of showing ``task`` to ``persona`` at ``moment``."""
    return expected_reward_from_engagement(engagement(persona, moment, task))


def draw_action(e: float, rng: np.random.Generator) -> str:
    """One uniform draw u: done if u < 0.55 e, snooze if u < e, else dismiss."""
    u = float(rng.random())
    if u < DONE_SHARE * e:
        return "done"
    if u < e:
        return "snooze"
    return "dismiss"


def draw_dwell(action: str, e: float, rng: np.random.Generator) -> int:
    """Dwell in ms for ``action``, uniform over its inclusive range (one draw)."""
    if action == "done":
        low, high = done_dwell_range(e)
    elif action == "snooze":
        low, high = SNOOZE_MS
    elif action == "dismiss":
        low, high = DISMISS_MS
    else:
        raise ValueError(f"unknown action {action!r}")
    return int(rng.integers(low, high, endpoint=True))


class RuleJudge(SyncJudge):
    """Deterministic given the rng: draws u, then the dwell; fills ``expected_reward``.

    >>> import asyncio
    >>> p = Persona("p", "d", 0.9, 0.9, True, False)
    >>> j = asyncio.run(RuleJudge().judge(p, Moment(8, 0), Task("t", 4, True, 3.0),
    ...                                   np.random.default_rng(1)))
    >>> j.action in ("done", "snooze", "dismiss"), round(j.expected_reward or 0, 6)
    (True, 0.276)
    """

    name: ClassVar[str] = "rule"
    knows_expectations: ClassVar[bool] = True

    def judge_sync(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        """The same judgment without the event loop (the rule judge never waits)."""
        e = engagement(persona, moment, task)
        action = draw_action(e, rng)
        dwell_ms = draw_dwell(action, e, rng)
        return Judgment(
            action=action,
            dwell_ms=dwell_ms,
            reward=reward_of(action, dwell_ms),
            expected_reward=expected_reward_from_engagement(e),
        )

    def expected_rewards(
        self, persona: Persona, moment: Moment, tasks: Sequence[Task]
    ) -> list[float]:
        return [expected_reward(persona, moment, t) for t in tasks]
