"""The rule judge's block path against ``judge_sync``: the same uniforms, the same judgments."""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import numpy as np
import pytest

from bandit.base import CandidateBlock, Moment, Task
from judges.base import ACTIONS, JudgeDraws, Judgments, SyncJudge
from judges.personas import Persona, load_personas
from judges.rule import RuleJudge, engagement


class _Replay:
    """A generator that returns given uniforms the way ``judge_many`` reads them: ``u`` for
    ``random()`` and ``low + floor(v (high - low + 1))`` for ``integers(low, high)``."""

    def __init__(self, u: float, v: float) -> None:
        self.u, self.v = u, v

    def random(self) -> float:
        return self.u

    def integers(self, low: int, high: int, *, endpoint: bool) -> int:
        assert endpoint
        return low + math.floor(self.v * (high - low + 1))


def _personas() -> list[Persona]:
    both = Persona("both", "d", 0.7, 0.2, True, True)
    neither = Persona("neither", "d", 0.0, 1.0, False, False)
    return [*load_personas(), *load_personas("alternate"), both, neither]


def _every_case() -> tuple[list[Persona], CandidateBlock, np.ndarray]:
    """Every persona × hour × priority × overdue flag, as the chosen one of two candidates."""
    personas, moments, tasks = [], [], []
    for persona, hour, priority, overdue in itertools.product(
        _personas(), range(24), range(1, 5), (False, True)
    ):
        personas.append(persona)
        moments.append(Moment(hour, hour % 7))
        tasks.append([Task("other", 1, False, 0.0), Task("t", priority, overdue, 2.0)])
    return personas, CandidateBlock.of(moments, tasks), np.ones(len(personas), dtype=np.int64)


def _scalar(
    personas: list[Persona], block: CandidateBlock, chosen: np.ndarray, draws: JudgeDraws
) -> Judgments:
    judge = RuleJudge()
    return Judgments.of(
        [
            judge.judge_sync(
                p, block.moment(i), block.task(i, int(chosen[i])),
                cast(Any, _Replay(float(draws.action_u[i]), float(draws.dwell_u[i]))),
            )
            for i, p in enumerate(personas)
        ]
    )  # fmt: skip


def _assert_equal(many: Judgments, one: Judgments) -> None:
    assert np.array_equal(many.action, one.action)
    assert np.array_equal(many.dwell_ms, one.dwell_ms)
    assert np.array_equal(many.reward, one.reward)
    assert np.array_equal(many.expected_reward, one.expected_reward)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_judge_many_equals_judge_sync_for_the_same_uniforms(seed: int) -> None:
    personas, block, chosen = _every_case()
    draws = JudgeDraws.draw(np.random.default_rng(seed), len(personas))
    many = RuleJudge().judge_many(personas, block, chosen, draws)
    _assert_equal(many, _scalar(personas, block, chosen, draws))
    assert set(many.action.tolist()) == {0, 1, 2}


def test_uniforms_on_the_thresholds_and_the_ends_of_the_dwell_range() -> None:
    personas, block, chosen = _every_case()
    e = np.array([engagement(p, block.moment(i), block.task(i, 1)) for i, p in enumerate(personas)])
    below_one = np.nextafter(1.0, 0.0)
    for u, v in [(0.55 * e, 0.0), (e, below_one), (np.zeros_like(e), below_one)]:
        draws = JudgeDraws(u, np.full(len(e), v), np.zeros(len(e), dtype=np.int64))
        many = RuleJudge().judge_many(personas, block, chosen, draws)
        _assert_equal(many, _scalar(personas, block, chosen, draws))


def test_engagement_band_edges_give_their_band() -> None:
    """0.70 and 0.50 on paper land in the upper band (the scalar ``round(e, 12)``)."""
    personas, block, chosen = _every_case()
    draws = JudgeDraws(np.zeros(len(personas)), np.zeros(len(personas)), np.zeros(len(personas)))
    many = RuleJudge().judge_many(personas, block, chosen, draws)  # every one a done
    assert set(many.action.tolist()) == {ACTIONS.index("done")}
    e = [engagement(p, block.moment(i), block.task(i, 1)) for i, p in enumerate(personas)]
    lows = {15_000: 0.70, 120_000: 0.50}
    for e_i, dwell in zip(e, many.dwell_ms.tolist(), strict=True):
        assert (e_i >= lows[dwell]) if dwell in lows else e_i < 0.50
    assert {0.7, 0.5} <= set(e)  # the edges occur


def test_default_judge_many_loops_over_judge_sync_with_the_seeds() -> None:
    personas, block, chosen = _every_case()
    draws = JudgeDraws.draw(np.random.default_rng(5), len(personas))
    judge = RuleJudge()
    looped = SyncJudge.judge_many(judge, personas, block, chosen, draws)
    _assert_equal(
        looped,
        Judgments.of(
            [
                judge.judge_sync(
                    p, block.moment(i), block.task(i, 1), np.random.default_rng(int(draws.seed[i]))
                )
                for i, p in enumerate(personas)
            ]
        ),
    )
