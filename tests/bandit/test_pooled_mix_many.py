"""``PooledMix.update_many``: distinct users learn at once, each against the types as they
stood at the call (the worker learns a batch's users this way). Each user must end exactly
as if it had learned alone against that pool, and the pool must stay the exact sum of the
users' contributions."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bandit.base import CandidateBlock, Moment, Task
from bandit.policies.pooled_mix import MixUser, PooledMix
from bandit.pool import PoolStats


def _block(rng: np.random.Generator, n: int) -> CandidateBlock:
    moments = [Moment(int(rng.integers(24)), int(rng.integers(7))) for _ in range(n)]
    tasks = [
        [
            Task(f"t{i}-{j}", int(rng.integers(1, 5)), bool(rng.random() < 0.3), 3.0)
            for j in range(3)
        ]
        for i in range(n)
    ]
    return CandidateBlock.of(moments, tasks)


def _warm(
    pol: PooledMix, rng: np.random.Generator, n: int, rounds: int
) -> tuple[list[MixUser], PoolStats]:
    """n users with some history (one reward each per round, learned in turn)."""
    users, shared = [pol.new_user() for _ in range(n)], pol.new_shared()
    for _ in range(rounds):
        block = _block(rng, n)
        chosen = rng.integers(0, 3, n)
        for i, user in enumerate(users):
            reward = float(rng.uniform(-1.0, 0.0))
            pol.update(user, shared, block.moment(i), block.task(i, int(chosen[i])), reward)
    return users, shared


def _rebuilt(pol: PooledMix, users: list[MixUser]) -> PoolStats:
    pool = pol.new_shared()
    for user in users:
        pool.replace(None, pol.pool_contribution(copy.deepcopy(user)))
    return pool


@pytest.mark.parametrize("preset", ["pooledmix-v1", "pooledmix-v3"])  # types; gaussian prior
@pytest.mark.parametrize("rounds", [0, 3, 70])  # 70: past a ridge re-sync (every 64 updates)
def test_each_user_learns_as_if_alone_against_the_pool_at_the_call(
    preset: str, rounds: int
) -> None:
    pol = PooledMix(preset)
    rng = np.random.default_rng(rounds)
    users, shared = _warm(pol, rng, 12, rounds)
    block = _block(rng, 12)
    chosen = rng.integers(0, 3, 12)
    rewards = rng.uniform(-1.0, 0.0, 12)
    alone = []
    for i, user in enumerate(users):
        one, pool = copy.deepcopy(user), copy.deepcopy(shared)
        pol.update(one, pool, block.moment(i), block.task(i, int(chosen[i])), float(rewards[i]))
        alone.append(pol.encode_user(one))
    pol.update_many(users, shared, block, chosen, rewards)
    assert [pol.encode_user(u) for u in users] == alone
    assert shared == _rebuilt(pol, users)


def test_the_pool_sees_every_reward_of_the_call() -> None:
    pol = PooledMix("pooledmix-v3")
    rng = np.random.default_rng(5)
    users, shared = _warm(pol, rng, 6, 2)
    pulls = int(shared.pulls.max())
    pol.update_many(users, shared, _block(rng, 6), rng.integers(0, 3, 6), rng.uniform(-1, 0, 6))
    assert int(shared.pulls.max()) == pulls + 6
    assert shared.users == 6


def test_a_user_twice_in_one_call_is_refused() -> None:
    pol = PooledMix("pooledmix-v3")
    user, shared = pol.new_user(), pol.new_shared()
    block = _block(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="distinct users"):
        pol.update_many([user, user], shared, block, np.array([0, 1]), np.array([-0.5, -0.5]))
    assert user.ridge.pulls == 0
    assert shared == pol.new_shared()
