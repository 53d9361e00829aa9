"""Drift and delay as parts of the world: the judge's expectations switch exactly at the drift
round, nothing else in the world moves, and delays are drawn from their own stream."""

from __future__ import annotations

import numpy as np
import pytest

from judges.delay import FeedbackDelay, parse_delay
from judges.drift import Drift, drifted_preferences
from judges.personas import load_personas
from judges.rule import RuleJudge, expected_reward
from judges.world import World

PERSONAS = load_personas()


@pytest.mark.parametrize("mapping", ["rotate", "invert"])
def test_the_judge_reads_the_new_preferences_from_the_drift_round_on(mapping: str) -> None:
    drift_at = 4
    steady = World(3)
    drifting = World(3, drift=Drift.of(PERSONAS, mapping, at_round=drift_at))
    after = drifted_preferences(PERSONAS, mapping)
    judge = RuleJudge()
    changed = 0
    for persona in PERSONAS:
        for round_ in range(8):
            moment = steady.moment(persona, 1, round_)
            tasks = steady.candidates(persona, 1, round_)
            # the world's own draws never move with the drift
            assert drifting.moment(persona, 1, round_) == moment
            assert drifting.candidates(persona, 1, round_) == tasks
            judged_as = drifting.persona_at(persona, round_)
            expected = judge.expected_rewards(judged_as, moment, tasks)
            want = after[persona.name] if round_ >= drift_at else persona
            assert expected == [expected_reward(want, moment, t) for t in tasks]
            assert judged_as.name == persona.name
            if round_ >= drift_at:
                changed += expected != judge.expected_rewards(persona, moment, tasks)
            else:
                assert judged_as is persona
    assert changed > 0  # the drift changes what the judge expects


def test_rotate_hands_each_persona_the_next_ones_preferences() -> None:
    after = drifted_preferences(PERSONAS, "rotate")
    for i, persona in enumerate(PERSONAS):
        other = PERSONAS[(i + 1) % len(PERSONAS)]
        moved = after[persona.name]
        assert (moved.prefers_high_priority, moved.prefers_overdue) == (
            other.prefers_high_priority,
            other.prefers_overdue,
        )
        assert (moved.morning_active, moved.evening_active, moved.description) == (
            other.morning_active,
            other.evening_active,
            other.description,
        )
    # the set of preferences is the same: a known-types policy still knows every type
    key = lambda p: (p.prefers_high_priority, p.prefers_overdue, p.morning_active, p.evening_active)  # noqa: E731
    assert sorted(map(key, after.values())) == sorted(map(key, PERSONAS))
    lone = PERSONAS[:1]
    assert drifted_preferences(lone, "rotate")[lone[0].name] == lone[0]


def test_invert_turns_preferences_around_and_twice_is_the_identity() -> None:
    once = drifted_preferences(PERSONAS, "invert")
    twice = drifted_preferences(list(once.values()), "invert")
    for persona in PERSONAS:
        flipped = once[persona.name]
        assert flipped.prefers_high_priority == -persona.prefers_high_priority
        assert flipped.prefers_overdue == pytest.approx(1 - persona.prefers_overdue)
        assert (flipped.morning_active, flipped.evening_active) == (
            persona.evening_active,
            persona.morning_active,
        )
        assert twice[persona.name] == persona


def test_a_drift_needs_a_round_and_a_known_mapping() -> None:
    with pytest.raises(ValueError, match="unknown drift"):
        Drift.of(PERSONAS, "swap", at_round=1)
    with pytest.raises(ValueError, match=">= 0"):
        Drift.of(PERSONAS, "rotate", at_round=-1)


def test_delays_come_from_their_own_stream_the_same_for_every_policy() -> None:
    world, persona = World(5), PERSONAS[2]
    delay = parse_delay("exp:1800", lost=0.2)
    draws = [delay.draw(world.delivery_rng(persona, 0, r)) for r in range(200)]
    again = [delay.draw(World(5).delivery_rng(persona, 0, r)) for r in range(200)]
    assert draws == again
    lost = sum(d is None for d in draws)
    assert 20 <= lost <= 60  # about 20% of 200
    arrived = [d for d in draws if d is not None]
    assert 1000 < float(np.mean(arrived)) < 2700  # mean 1800 s
    # the delivery stream is none of the others
    assert world.delivery_rng(persona, 0, 0).random() != world.policy_rng(persona, 0, 0).random()


def test_delay_specs() -> None:
    assert parse_delay("uniform:60-7200").mean_s == 3630
    assert parse_delay("fixed:90").draw_s(np.random.default_rng(1)) == 90
    rng = np.random.default_rng(2)
    assert all(60 <= parse_delay("uniform:60-120").draw_s(rng) <= 120 for _ in range(100))
    for bad in ("uniform:5-1", "exp:0", "fixed:-3", "fixed:x", "later"):
        with pytest.raises(ValueError, match="delay"):
            parse_delay(bad)
    with pytest.raises(ValueError, match="lost"):
        FeedbackDelay("none", lost=1.5)
    assert parse_delay("none", lost=0.1).instant is False
