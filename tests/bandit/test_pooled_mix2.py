"""pooledmix-v2: exact propensities (empirical frequencies), per-coordinate prior, codec."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.features import features_v2
from bandit.pooled_mix2 import PooledMixV2, grid_prototypes
from bandit.registry import make_policy
from tests.bandit.test_policies import reward_of, trained, world


def test_registered_with_fifteen_types_and_split_prior() -> None:
    pol = make_policy("pooledmix-v2")
    assert isinstance(pol, PooledMixV2)
    assert grid_prototypes().shape == (15, 5)
    assert len(pol.new_shared()) == 15
    assert pol.new_user().lam.tolist() == [4.0, 8.0, 8.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="lam_task"):
        PooledMixV2(lam_task=0.0)


@pytest.mark.parametrize("rounds", [0, 3, 40])
def test_propensities_match_empirical_frequencies(rounds: int) -> None:
    pol = PooledMixV2(c=0.8)  # large ε so every index is drawn often enough to check
    user, shared = trained(pol, rounds, seed=rounds)
    moment, tasks = world(np.random.default_rng(100 + rounds), k=5)
    p = pol.probabilities(user, shared, moment, tasks)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    n = 5_000
    rng = np.random.default_rng(12345)  # seeded: the outcome is fixed, the test cannot flake
    counts = np.zeros(5)
    for _ in range(n):
        c = pol.choose(user, shared, moment, tasks, rng)
        assert c.propensity == pytest.approx(p[c.index], abs=1e-15)
        counts[c.index] += 1
    sd = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sd + 1e-12), (counts / n, p)


def test_user_model_is_ridge_shrunk_with_per_coordinate_lambda() -> None:
    pol = PooledMixV2(lam_pool=1e6)  # types stay at their prior means
    user, shared = pol.new_user(), pol.new_shared()
    rng = np.random.default_rng(7)
    xs, ys = [], []
    for _ in range(25):
        moment, tasks = world(rng)
        task = tasks[int(rng.integers(len(tasks)))]
        xs.append(features_v2(moment, task))
        ys.append(reward_of(moment, task))
        pol.update(user, shared, moment, task, ys[-1])
    thetas = pol.type_thetas(shared)
    best = int(np.argmax(pol.type_posterior(user, thetas)))
    xm, ym = np.array(xs), np.array(ys)
    lam = np.diag([4.0, 8.0, 8.0, 4.0, 4.0])
    want = np.linalg.solve(lam + xm.T @ xm, lam @ thetas[best] + xm.T @ ym)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-9)


def test_codec_round_trip_keeps_the_prior_and_the_choice() -> None:
    pol = PooledMixV2()
    user, shared = trained(pol, 30, seed=4)
    user2 = pol.decode_user(pol.encode_user(user))
    shared2 = pol.decode_shared(pol.encode_shared(shared))
    np.testing.assert_array_equal(user2.lam, user.lam)
    assert pol.encode_shared(shared2) == pol.encode_shared(shared)
    moment, tasks = world(np.random.default_rng(9))
    np.testing.assert_array_equal(
        pol.probabilities(user2, shared2, moment, tasks),
        pol.probabilities(user, shared, moment, tasks),
    )
    with pytest.raises(ValueError, match="bytes"):
        pol.decode_shared(pol.encode_shared(shared)[:-1])
