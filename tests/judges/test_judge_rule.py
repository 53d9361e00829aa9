"""The rule judge: engagement as docs/simulation.md writes it, and the exact expected reward."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction
from itertools import product

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.base import Moment, Task
from bandit.reward import infer_reward
from judges.personas import ALTERNATE_PERSONAS, Persona, load_personas
from judges.rule import (
    DISMISS_MS,
    DONE_FAST_MS,
    DONE_FOCUSED_MS,
    DONE_SLOW_MS,
    SNOOZE_MS,
    RuleJudge,
    activity_adjustment,
    done_dwell_range,
    engagement,
    expected_reward,
)

STANDARD = {p.name: p for p in load_personas()}
ALL_PERSONAS = [*load_personas(), *load_personas(ALTERNATE_PERSONAS)]


def persona(
    hp: float = 0.0, od: float = 0.5, morning: bool = False, evening: bool = False
) -> Persona:
    return Persona("x", "d", hp, od, morning, evening)


def task(priority: int = 1, overdue: bool = False) -> Task:
    return Task("t", priority, overdue, 1.0)


@pytest.mark.parametrize(
    ("name", "priority", "overdue", "hour", "e"),
    [
        # 0.35 + (1 - 0.5)·0.9·0.4 + (0.9 - 0.5)·0.3 + 0.15
        ("deadline-driven", 4, True, 8, 0.80),
        ("deadline-driven", 1, False, 13, 0.35 - 0.18 - 0.10),
        ("deadline-driven", 1, False, 19, 0.35 - 0.18),  # morning persona in the evening: 0
        ("evening-relaxed", 4, False, 20, 0.35 + 0.04 + 0.15),
        ("evening-relaxed", 1, True, 3, 0.35 - 0.04 - 0.03 - 0.10),
        ("low-priority-first", 1, False, 12, 0.35 + 0.16),
        ("low-priority-first", 4, True, 8, 0.35 - 0.16),  # no activity pattern: never a bonus
        ("consistent-responder", 3, True, 22, 0.35 + (2 / 3 - 0.5) * 0.2 + 0.03),
        ("overdue-ignorer", 4, True, 9, 0.35 + 0.12 - 0.15 + 0.15),
        ("overdue-ignorer", 1, True, 10, 0.05),  # 10 h is not morning: -0.02 clipped
    ],
)
def test_engagement_by_hand(name: str, priority: int, overdue: bool, hour: int, e: float) -> None:
    got = engagement(STANDARD[name], Moment(hour, 0), task(priority, overdue))
    assert got == pytest.approx(e, abs=1e-12)


def test_engagement_is_clipped() -> None:
    low = persona(hp=-1.0, od=0.0, evening=True)  # 0.35 - 0.2 - 0.15 - 0.10 < 0.05
    assert engagement(low, Moment(12, 0), task(4, True)) == 0.05
    # Valid personas reach at most 0.85; the upper clip guards hand-built ones.
    assert engagement(persona(hp=1.0, od=1.0, morning=True), Moment(7, 0), task(4, True)) == 0.85
    assert engagement(persona(hp=3.0), Moment(7, 0), task(4)) == 0.90


def test_engagement_on_a_band_edge_lands_in_the_band_it_belongs_to() -> None:
    # 0.35 + 0.2 + 0.15 is 0.7000000000000001 in floats, 0.70 on paper.
    e = engagement(persona(hp=1.0, morning=True), Moment(6, 0), task(4))
    assert e == 0.70
    assert done_dwell_range(e) == DONE_FAST_MS
    # 0.35 + 0.15 with hp = 0.75 at priority 4.
    e = engagement(persona(hp=0.75), Moment(0, 0), task(4))
    assert e == 0.50
    assert done_dwell_range(e) == DONE_FOCUSED_MS


def exact_engagement(
    hp: Fraction,
    od: Fraction,
    morning: bool,
    evening: bool,
    priority: int,
    overdue: bool,
    hour: int,
) -> Fraction:
    """docs/simulation.md's engagement in exact rational arithmetic."""
    e = Fraction(35, 100) + (Fraction(priority - 1, 3) - Fraction(1, 2)) * hp * Fraction(4, 10)
    if overdue:
        e += (od - Fraction(1, 2)) * Fraction(3, 10)
    is_m, is_e = 5 <= hour < 10, 18 <= hour < 22
    if (morning and is_m) or (evening and is_e):
        e += Fraction(15, 100)
    elif (morning or evening) and not is_m and not is_e:
        e -= Fraction(10, 100)
    return min(max(e, Fraction(5, 100)), Fraction(90, 100))


def test_float_bands_equal_exact_bands_on_a_grid() -> None:
    """Rounding keeps float noise from moving an on-paper 0.50 or 0.70 across a band edge."""

    def exact_band(e: Fraction) -> tuple[int, int]:
        return (
            DONE_FAST_MS
            if e >= Fraction(7, 10)
            else DONE_FOCUSED_MS
            if e >= Fraction(1, 2)
            else DONE_SLOW_MS
        )

    edges = 0
    for hp10, od10, morning, evening in product(
        range(-10, 11), range(11), (False, True), (False, True)
    ):
        hp, od = Fraction(hp10, 10), Fraction(od10, 10)
        p = persona(hp10 / 10, od10 / 10, morning, evening)
        for priority, overdue, hour in product(range(1, 5), (False, True), (0, 6, 12, 19)):
            exact = exact_engagement(hp, od, morning, evening, priority, overdue, hour)
            e = engagement(p, Moment(hour, 0), task(priority, overdue))
            assert e == pytest.approx(float(exact), abs=1e-12)
            assert done_dwell_range(e) == exact_band(exact)
            edges += exact in (Fraction(1, 2), Fraction(7, 10))
    assert edges > 100  # the grid does exercise the edges


def test_activity_cases_over_every_hour() -> None:
    neither, morning = persona(), persona(morning=True)
    evening, both = persona(evening=True), persona(morning=True, evening=True)
    for hour in range(24):
        is_m, is_e = 5 <= hour < 10, 18 <= hour < 22
        outside = not is_m and not is_e
        assert activity_adjustment(neither, hour) == 0.0
        assert activity_adjustment(morning, hour) == (0.15 if is_m else -0.10 if outside else 0.0)
        assert activity_adjustment(evening, hour) == (0.15 if is_e else -0.10 if outside else 0.0)
        assert activity_adjustment(both, hour) == (-0.10 if outside else 0.15)


def band_reward(low: int, high: int) -> float:
    """The one reward the production rule gives every dwell in [low, high] (enumerated)."""
    rewards = {infer_reward("done", d) for d in range(low, high + 1)}
    assert len(rewards) == 1, (low, high, rewards)
    (reward,) = rewards
    assert reward is not None
    return reward


def test_bands_sit_inside_one_production_reward_band_each() -> None:
    assert band_reward(*DONE_FAST_MS) == 1.0
    assert band_reward(*DONE_FOCUSED_MS) == 0.6
    assert band_reward(*DONE_SLOW_MS) == 0.3
    assert {infer_reward("snooze", d) for d in range(SNOOZE_MS[0], SNOOZE_MS[1] + 1)} == {0.1}
    assert {infer_reward("dismiss", d) for d in range(DISMISS_MS[0], DISMISS_MS[1] + 1)} == {-1.0}


def test_expected_reward_formula_is_exact_by_enumeration() -> None:
    """Σ P(action)·reward over the actions and dwell bands equals the closed form, everywhere."""
    band = {r: band_reward(*r) for r in (DONE_FAST_MS, DONE_FOCUSED_MS, DONE_SLOW_MS)}
    checked = 0
    for p, priority, overdue, hour in product(ALL_PERSONAS, range(1, 5), (False, True), range(24)):
        moment, t = Moment(hour, 3), task(priority, overdue)
        e = engagement(p, moment, t)
        by_enumeration = 0.55 * e * band[done_dwell_range(e)] + 0.45 * e * 0.1 + (1 - e) * -1.0
        assert expected_reward(p, moment, t) == pytest.approx(by_enumeration, abs=1e-12)
        checked += 1
    assert checked == 10 * 4 * 2 * 24


@pytest.mark.parametrize(
    ("p", "moment", "t"),
    [
        (STANDARD["deadline-driven"], Moment(8, 0), task(4, True)),  # e = 0.80, fast band
        (STANDARD["low-priority-first"], Moment(12, 0), task(1)),  # e = 0.51, focused band
        (STANDARD["overdue-ignorer"], Moment(14, 0), task(1, True)),  # e = 0.05 (clipped)
        (STANDARD["evening-relaxed"], Moment(20, 0), task(2)),  # slow band
    ],
)
def test_sampled_mean_matches_expected_reward(p: Persona, moment: Moment, t: Task) -> None:
    """Monte Carlo with a fixed seed (deterministic) and a 5-sigma tolerance."""
    judge, rng, n = RuleJudge(), np.random.default_rng(20261127), 40_000
    e = engagement(p, moment, t)
    rewards = np.empty(n)
    counts = {"done": 0, "snooze": 0, "dismiss": 0}
    low, high = done_dwell_range(e)
    for i in range(n):
        j = judge.judge_sync(p, moment, t, rng)
        rewards[i] = j.reward
        counts[j.action] += 1
        assert j.reward == infer_reward(j.action, j.dwell_ms)
        if j.action == "done":
            assert low <= j.dwell_ms <= high
    exact = expected_reward(p, moment, t)
    assert abs(rewards.mean() - exact) < 5 * max(rewards.std(), 0.05) / math.sqrt(n)
    for action, prob in (("done", 0.55 * e), ("snooze", 0.45 * e), ("dismiss", 1 - e)):
        sigma = math.sqrt(prob * (1 - prob) / n)
        assert abs(counts[action] / n - prob) < 5 * sigma + 1e-9


def test_dwell_ranges_per_action() -> None:
    judge, rng = RuleJudge(), np.random.default_rng(1)
    p, moment = STANDARD["consistent-responder"], Moment(12, 2)
    seen: dict[str, tuple[int, int]] = {}
    for _ in range(3000):
        j = judge.judge_sync(p, moment, task(2), rng)
        lo, hi = seen.get(j.action, (10**12, -1))
        seen[j.action] = (min(lo, j.dwell_ms), max(hi, j.dwell_ms))
        assert isinstance(j.dwell_ms, int)
    assert SNOOZE_MS[0] <= seen["snooze"][0] <= seen["snooze"][1] <= SNOOZE_MS[1]
    assert DISMISS_MS[0] <= seen["dismiss"][0] <= seen["dismiss"][1] <= DISMISS_MS[1]
    assert DONE_SLOW_MS[0] <= seen["done"][0] <= seen["done"][1] <= DONE_SLOW_MS[1]


def test_same_rng_same_judgment_and_async_equals_sync() -> None:
    p, moment, t = STANDARD["deadline-driven"], Moment(7, 4), task(3, True)
    a = RuleJudge().judge_sync(p, moment, t, np.random.default_rng(9))
    b = asyncio.run(RuleJudge().judge(p, moment, t, np.random.default_rng(9)))
    assert a == b
    assert a.expected_reward == expected_reward(p, moment, t)
    assert a.fallback_reason is None


def test_draw_order_is_u_then_dwell() -> None:
    """Part of the common-random-numbers contract: the first draw decides the action."""
    p, moment, t = STANDARD["deadline-driven"], Moment(8, 0), task(4, True)  # e = 0.80
    for seed in range(50):
        u = np.random.default_rng(seed).random()
        j = RuleJudge().judge_sync(p, moment, t, np.random.default_rng(seed))
        assert j.action == ("done" if u < 0.44 else "snooze" if u < 0.80 else "dismiss")


@given(
    hp=st.floats(-1, 1),
    od=st.floats(0, 1),
    morning=st.booleans(),
    evening=st.booleans(),
    priority=st.integers(1, 4),
    overdue=st.booleans(),
    hour=st.integers(0, 23),
)
def test_engagement_and_expectation_stay_in_range(
    hp: float, od: float, morning: bool, evening: bool, priority: int, overdue: bool, hour: int
) -> None:
    p, moment, t = persona(hp, od, morning, evening), Moment(hour, 0), task(priority, overdue)
    e = engagement(p, moment, t)
    assert 0.05 <= e <= 0.90
    assert -1.0 <= expected_reward(p, moment, t) <= 1.0


def test_oracle_prefers_what_the_persona_likes() -> None:
    p, moment = STANDARD["deadline-driven"], Moment(8, 0)
    assert expected_reward(p, moment, task(4, True)) > expected_reward(p, moment, task(1, False))
    q = STANDARD["low-priority-first"]
    assert expected_reward(q, moment, task(1)) > expected_reward(q, moment, task(4))
