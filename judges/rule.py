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

``RuleJudge.judge_many`` judges a block of users at once (load mode) from drawn uniforms:
the action from ``u`` as above, the dwell ``low + floor(v (high - low + 1))`` from a second
uniform ``v``. Its engagements, bands and rewards are looked up in tables that the scalar
functions fill for every (persona, priority, overdue, hour), so there is one formula.

>>> p = Persona("p", "d", 0.9, 0.9, True, False)
>>> engagement(p, Moment(8, 0), Task("t", 4, True, 3.0))
0.8
>>> round(expected_reward(p, Moment(8, 0), Task("t", 4, True, 3.0)), 6)
0.276
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bandit.base import CandidateBlock, FloatArray, IntArray, Moment, Task
from bandit.reward import FOCUSED_MS, REFLEX_MS, SLOW_MS, infer_reward, reward_for_done
from judges.base import ACTIONS, JudgeDraws, Judgment, Judgments, SyncJudge
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
    "dwell_range",
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


def _done_below(e: float) -> float:
    """A uniform below this is a done (P(done) = 0.55 e)."""
    return DONE_SHARE * e


def draw_action(e: float, rng: np.random.Generator) -> str:
    """One uniform draw u: done if u < 0.55 e, snooze if u < e, else dismiss."""
    u = float(rng.random())
    if u < _done_below(e):
        return "done"
    if u < e:
        return "snooze"
    return "dismiss"


def dwell_range(action: str, e: float) -> tuple[int, int]:
    """Inclusive dwell range (ms) of ``action`` at engagement e.

    >>> dwell_range("snooze", 0.3), dwell_range("done", 0.8)
    ((3000, 20000), (15000, 90000))
    """
    if action == "done":
        return done_dwell_range(e)
    if action == "snooze":
        return SNOOZE_MS
    if action == "dismiss":
        return DISMISS_MS
    raise ValueError(f"unknown action {action!r}")


def draw_dwell(action: str, e: float, rng: np.random.Generator) -> int:
    """Dwell in ms for ``action``, uniform over its inclusive range (one draw)."""
    low, high = dwell_range(action, e)
    return int(rng.integers(low, high, endpoint=True))


@dataclass(frozen=True, slots=True)
class _Tables:
    """The rule judge's numbers for each (persona, priority − 1, overdue, hour): the
    engagement, its done threshold and expected reward, and per action (``ACTIONS`` order)
    the dwell range and the reward; the personas are a block's users' own."""

    engagement: FloatArray
    done_below: FloatArray
    expected: FloatArray
    low: IntArray  # ... × action
    high: IntArray
    reward: FloatArray
    persona_index: IntArray  # (n,) each user's row


@functools.lru_cache(maxsize=16)
def _tables(personas: tuple[Persona, ...]) -> _Tables:
    distinct = list(dict.fromkeys(personas))
    cases = [
        [
            [
                [engagement(persona, Moment(hour, 0), Task("", priority, overdue, 0.0))
                 for hour in range(24)]
                for overdue in (False, True)
            ]
            for priority in range(1, 5)
        ]
        for persona in distinct
    ]  # fmt: skip
    e = np.array(cases, dtype=np.float64)
    flat = e.ravel().tolist()
    shape = (*e.shape, len(ACTIONS))
    ranges = [dwell_range(action, v) for v in flat for action in ACTIONS]
    return _Tables(
        engagement=e,
        done_below=np.array([_done_below(v) for v in flat]).reshape(e.shape),
        expected=np.array([expected_reward_from_engagement(v) for v in flat]).reshape(e.shape),
        low=np.array([low for low, _ in ranges], dtype=np.int64).reshape(shape),
        high=np.array([high for _, high in ranges], dtype=np.int64).reshape(shape),
        # Every done band lies inside one reward band, so its low end's reward is the band's.
        reward=np.array([reward_of(action, low) for (low, _), action in
                         zip(ranges, ACTIONS * len(flat), strict=True)]).reshape(shape),
        persona_index=np.array([distinct.index(p) for p in personas], dtype=np.int64),
    )  # fmt: skip


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

    def judge_many(
        self,
        personas: Sequence[Persona],
        block: CandidateBlock,
        chosen: IntArray,
        draws: JudgeDraws,
    ) -> Judgments:
        """User i's chosen tip judged with ``u = draws.action_u[i]`` and the dwell
        ``low + floor(draws.dwell_u[i] (high - low + 1))``: what ``judge_sync`` gives when
        its generator returns that u and that dwell.

        >>> p = Persona("p", "d", 0.9, 0.9, True, False)
        >>> block = CandidateBlock.of([Moment(8, 0)], [[Task("t", 4, True, 3.0)]])
        >>> draws = JudgeDraws(np.array([0.1]), np.array([0.5]), np.array([0]))
        >>> j = RuleJudge().judge_many([p], block, np.array([0]), draws)
        >>> ACTIONS[j.action[0]], int(j.dwell_ms[0]), float(j.reward[0])
        ('done', 52500, 1.0)
        """
        t = _tables(tuple(personas))
        rows = np.arange(block.size)
        key = (
            t.persona_index,
            block.priority[rows, chosen] - 1,
            block.overdue[rows, chosen].astype(np.int64),
            block.hour,
        )
        # done (0) below the done threshold, snooze (1) below e, else dismiss (2)
        action = (draws.action_u >= t.done_below[key]).astype(np.int64)
        action += draws.action_u >= t.engagement[key]
        low, high = t.low[(*key, action)], t.high[(*key, action)]
        dwell = low + np.floor(draws.dwell_u * (high - low + 1)).astype(np.int64)
        return Judgments(
            action=action,
            dwell_ms=np.minimum(dwell, high),
            reward=t.reward[(*key, action)],
            expected_reward=t.expected[key],
        )

    def expected_rewards(
        self, persona: Persona, moment: Moment, tasks: Sequence[Task]
    ) -> list[float]:
        return [expected_reward(persona, moment, t) for t in tasks]
