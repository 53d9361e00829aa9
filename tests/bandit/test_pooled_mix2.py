"""pooledmix-v2: the grid of types and the per-coordinate prior (propensities and codecs:
tests/bandit/test_policies.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.features import features_v2
from bandit.pooled_mix2 import PooledMixV2, grid_prototypes
from bandit.registry import make_policy
from tests.bandit.test_policies import reward_of, world


def test_registered_with_fifteen_types_and_split_prior() -> None:
    pol = make_policy("pooledmix-v2")
    assert isinstance(pol, PooledMixV2)
    assert grid_prototypes().shape == (15, 5)
    assert len(pol.new_shared()) == 15
    assert pol.new_user().lam.tolist() == [4.0, 8.0, 8.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="lam_task"):
        PooledMixV2(lam_task=0.0)


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
