"""pooledmix-v3: centred features, the per-feature prior (with v2's), the mixture's
identification of a user's type (propensities and codecs: tests/bandit/test_policies.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bandit.base import FloatArray, Moment, Task
from bandit.features import features_v2, features_v3
from bandit.policies.pooled_mix import PooledMixV1
from bandit.policies.pooled_mix2 import PooledMixV2
from bandit.policies.pooled_mix3 import V3_USER_LAMBDA, PooledMixV3, centred_grid
from bandit.registry import make_policy
from tests.bandit.test_policies import reward_of, world


def test_registered_with_fifteen_centred_types_and_per_feature_prior() -> None:
    pol = make_policy("pooledmix-v3")
    assert isinstance(pol, PooledMixV3)
    assert centred_grid().shape == (15, 5)
    assert len(pol.new_shared()) == 15
    assert pol.new_user().lam.tolist() == list(V3_USER_LAMBDA)
    with pytest.raises(ValueError, match="lam_user"):
        PooledMixV3(lam_user=np.array([1.0, 0.0, 1.0, 1.0, 1.0]))


def test_features_v3_is_features_v2_with_the_task_columns_centred() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        moment, tasks = world(rng)
        for task in tasks:
            shift = features_v2(moment, task) - features_v3(moment, task)
            np.testing.assert_allclose(shift, [0.0, 0.5, 0.3, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    ("pol", "fmap", "lam_diag"),
    [
        (PooledMixV2(lam_pool=1e6), features_v2, (4.0, 8.0, 8.0, 4.0, 4.0)),
        (PooledMixV3(lam_pool=1e6), features_v3, V3_USER_LAMBDA),
    ],
    ids=["pooledmix-v2", "pooledmix-v3"],
)
def test_user_model_is_ridge_shrunk_towards_its_type_with_per_feature_lambda(
    pol: PooledMixV1, fmap: Callable[[Moment, Task], FloatArray], lam_diag: tuple[float, ...]
) -> None:
    # lam_pool = 1e6: the types stay at their prior means.
    user, shared = pol.new_user(), pol.new_shared()
    rng = np.random.default_rng(7)
    xs, ys = [], []
    for _ in range(25):
        moment, tasks = world(rng)
        task = tasks[int(rng.integers(len(tasks)))]
        xs.append(fmap(moment, task))
        ys.append(reward_of(moment, task))
        pol.update(user, shared, moment, task, ys[-1])
    thetas = pol.type_thetas(shared)
    best = int(np.argmax(pol.type_posterior(user, thetas)))
    xm, ym = np.array(xs), np.array(ys)
    lam = np.diag(lam_diag)
    want = np.linalg.solve(lam + xm.T @ xm, lam @ thetas[best] + xm.T @ ym)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-9)


def test_a_user_who_dislikes_priority_is_switched_to_low_priority_tips_quickly() -> None:
    # Noise-free rewards from the low-priority type's own line: after a handful of
    # priority-4 shows the user's type, and so the greedy tip, flip to priority 1.
    pol = PooledMixV3(lam_pool=1e6)
    low = centred_grid()[13]  # priority slope −0.5, overdue 0
    user, shared = pol.new_user(), pol.new_shared()
    moment = Moment(12, 2)
    tasks = [Task("p1", 1, False, 1.0), Task("p4", 4, False, 1.0)]
    assert pol.probabilities(user, shared, moment, tasks).argmax() == 1  # type 0 likes p4
    for _ in range(3):
        pol.update(user, shared, moment, tasks[1], float(features_v3(moment, tasks[1]) @ low))
    assert int(np.argmax(pol.type_posterior(user, pol.type_thetas(shared)))) == 13
    assert pol.probabilities(user, shared, moment, tasks).argmax() == 0
