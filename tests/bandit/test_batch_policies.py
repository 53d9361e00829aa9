"""Block paths (``choose_many``, ``update_many``, the ``*_many`` feature maps) against the
scalar paths: the same numbers must give the same choices, propensities and states, bit for
bit (the simulator's load mode serves whole rounds through them)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from bandit.base import CandidateBlock, ChoiceDraws, Choices, Moment, Policy, Task, choice_rng
from bandit.explore import ExplorationFloor
from bandit.features import (
    features_v1,
    features_v1_many,
    features_v2,
    features_v2_many,
    features_v3,
    features_v3_many,
)
from bandit.linear import RESYNC_EVERY
from bandit.policies.baselines import OraclePolicy, RandomPolicy
from bandit.policies.egreedy import EpsilonGreedyV1, EpsilonGreedyV2


def _every_kind_of_candidate() -> CandidateBlock:
    """Every hour, weekday, priority and overdue flag, with ages on both sides of 30."""
    moments, tasks = [], []
    ages = [0.0, 0.1, 7.3, 29.999, 30.0, 45.5]
    for hour, day in itertools.product(range(24), range(7)):
        moments.append(Moment(hour, day))
        tasks.append(
            [
                Task(f"t{p}{o}{a}", p, o, a)
                for p, o, a in itertools.product(range(1, 5), (False, True), ages)
            ]
        )
    return CandidateBlock.of(moments, tasks)


@pytest.mark.parametrize(
    ("many", "one"),
    [
        (features_v1_many, features_v1),
        (features_v2_many, features_v2),
        (features_v3_many, features_v3),
    ],
)
def test_block_feature_maps_equal_the_scalar_maps(many: Any, one: Any) -> None:
    block = _every_kind_of_candidate()
    x = many(block)
    assert x.shape[:2] == (block.size, block.k)
    for i, j in itertools.product(range(block.size), range(block.k)):
        assert np.array_equal(x[i, j], one(block.moment(i), block.task(i, j)))


def _round(rng: np.random.Generator, n: int, k: int, round_: int) -> CandidateBlock:
    moments = [Moment(int(rng.integers(24)), int(rng.integers(7))) for _ in range(n)]
    tasks = [
        [
            Task(f"u{i}-r{round_}-c{j}", int(rng.integers(1, 5)), bool(rng.random() < 0.3),
                 float(rng.random() * 40.0))
            for j in range(k)
        ]
        for i in range(n)
    ]  # fmt: skip
    if k > 1:  # a tie: two identical candidates, the first must win
        tasks[0][1] = Task(tasks[0][1].tip_id, *_features(tasks[0][0]))
    return CandidateBlock.of(moments, tasks)


def _features(task: Task) -> tuple[int, bool, float]:
    return task.priority, task.is_overdue, task.task_age_days


def _generators(seed: int, round_: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, round_, i]) for i in range(n)]


def _draws_as_choose_takes_them(
    seed: int, round_: int, n: int, k: int, *, uniform_first: bool = True
) -> ChoiceDraws:
    """Each user's ``rng.random()`` then ``rng.integers(K)`` (ε-greedy; only the index for
    ``random``) from the generator that ``_generators`` gives ``choose``, and a seed for the
    looping default."""
    uniform, index = [], []
    for g in _generators(seed, round_, n):
        uniform.append(g.random() if uniform_first else 0.5)
        index.append(int(g.integers(k)))
    seeds = np.random.default_rng([seed, round_]).integers(0, 2**31 - 1, size=n)
    return ChoiceDraws(np.array(uniform), np.array(index, dtype=np.int64), seeds)


def _assert_same_choices(many: Choices, one: Choices) -> None:
    assert np.array_equal(many.index, one.index)
    assert np.array_equal(many.propensity, one.propensity)  # exact, not approximately
    assert np.array_equal(many.explored, one.explored)
    assert np.array_equal(many.score, one.score)


def _play(
    policy: Policy, n: int, k: int, rounds: int, scalar_rng: Any, *, uniform_first: bool = True
) -> None:
    """Both paths side by side over ``rounds`` rounds; states compared after each."""
    world = np.random.default_rng(11)
    batch_users = [policy.new_user() for _ in range(n)]
    scalar_users = [policy.new_user() for _ in range(n)]
    for r in range(rounds):
        block = _round(world, n, k, r)
        draws = _draws_as_choose_takes_them(3, r, n, k, uniform_first=uniform_first)
        many = policy.choose_many(batch_users, None, block, draws)
        rngs = scalar_rng(r, draws)
        one = Choices.of(
            [
                policy.choose(user, None, block.moment(i), block.tasks(i), rngs[i])
                for i, user in enumerate(scalar_users)
            ]
        )
        _assert_same_choices(many, one)
        assert np.all(many.propensity > 0.0)
        rewards = world.choice([-1.0, 0.1, 0.3, 0.6, 1.0], size=n)
        policy.update_many(batch_users, None, block, many.index, rewards)
        for i, user in enumerate(scalar_users):
            moment, task = block.moment(i), block.task(i, int(one.index[i]))
            policy.update(user, None, moment, task, float(rewards[i]))
        for batch_user, scalar_user in zip(batch_users, scalar_users, strict=True):
            assert policy.encode_user(batch_user) == policy.encode_user(scalar_user)


def _as_choose_draws(r: int, draws: ChoiceDraws) -> list[np.random.Generator]:
    return _generators(3, r, len(draws.seed))


def _from_seeds(r: int, draws: ChoiceDraws) -> list[np.random.Generator]:
    return [choice_rng(int(s)) for s in draws.seed]


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_egreedy_v1_block_equals_scalar(epsilon: float, k: int) -> None:
    # More than RESYNC_EVERY rounds: the block path re-syncs A⁻¹ when the scalar one does.
    _play(EpsilonGreedyV1(epsilon=epsilon), 5, k, 2 * RESYNC_EVERY + 3, _as_choose_draws)


@pytest.mark.parametrize("k", [1, 8])
def test_egreedy_v2_block_equals_scalar(k: int) -> None:
    # ε decays with each user's pulls; c = 5 keeps it above zero and exploring often.
    _play(EpsilonGreedyV2(c=5.0), 4, k, RESYNC_EVERY + 5, _as_choose_draws)


@pytest.mark.parametrize("k", [1, 8])
def test_random_block_equals_scalar(k: int) -> None:
    _play(RandomPolicy(), 4, k, 20, _as_choose_draws, uniform_first=False)


def test_policies_without_a_block_path_loop_over_choose_with_the_seeds() -> None:
    _play(OraclePolicy(lambda m, t: float(t.priority)), 3, 4, 5, _from_seeds)
    _play(ExplorationFloor(EpsilonGreedyV1(), 0.2), 3, 4, 5, _from_seeds)


def test_a_round_mixes_exploring_and_greedy_users() -> None:
    """Guard for the comparisons above: with ε = 0.5 both branches occur in one block."""
    policy = EpsilonGreedyV1(epsilon=0.5)
    block = _round(np.random.default_rng(0), 40, 8, 0)
    draws = _draws_as_choose_takes_them(3, 0, 40, 8)
    explored = policy.choose_many([policy.new_user() for _ in range(40)], None, block, draws)
    assert 0 < int(explored.explored.sum()) < 40
