"""The pooledmix family: exact propensities, the type choice, the ridge algebra, the state
codec (pooledmix-v1); centred features, the per-feature prior and the identification of a
user's type (pooledmix-v3); pooledmix-v2's retirement. Propensities and codecs of every
preset also: tests/bandit/test_policies.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bandit.base import FloatArray, Moment, Task
from bandit.features import features_v2, features_v3
from bandit.policies.pooled_mix import V3_USER_LAMBDA, PooledMix, centred_grid, default_prototypes
from bandit.registry import (
    POLICY_NAMES,
    RETIRED_POLICIES,
    RetiredPolicyError,
    UnknownPolicyError,
    make_policy,
)
from judges.personas import load_personas
from judges.world import World
from tests.bandit.test_policies import reward_of, world


def _stream(n: int, seed: int = 0) -> list[tuple[Moment, list[Task], int]]:
    world, persona = World(seed), load_personas()[0]
    rng = np.random.default_rng(seed)
    return [(world.moment(persona, 0, r), world.candidates(persona, 0, r), int(rng.integers(8)))
            for r in range(n)]  # fmt: skip


def test_registered_and_propensities_are_exact() -> None:
    pol = make_policy("pooledmix-v1")
    assert isinstance(pol, PooledMix)
    assert pol.name == "pooledmix-v1"
    user, shared = pol.new_user(), pol.new_shared()
    for r, (moment, tasks, k) in enumerate(_stream(40)):
        p = pol.probabilities(user, shared, moment, tasks)
        assert p.sum() == pytest.approx(1.0)
        assert p.min() > 0.0
        c = pol.choose(user, shared, moment, tasks, np.random.default_rng(r))
        assert c.propensity == pytest.approx(p[c.index], abs=1e-15)
        pol.update(user, shared, moment, tasks[k], 0.3 if tasks[k].priority == 1 else -0.7)


def test_user_is_shrunk_towards_the_type_that_explains_its_rewards() -> None:
    protos = default_prototypes()
    pol = PooledMix("pooledmix-v1", lam_pool=1e6)  # types stay at their prior means
    target = 4  # priority −0.6, overdue +0.3
    user, shared = pol.new_user(), pol.new_shared()
    xs, ys = [], []
    for moment, tasks, k in _stream(30, seed=3):
        x = features_v2(moment, tasks[k])
        y = float(x @ protos[target])
        xs.append(x)
        ys.append(y)
        pol.update(user, shared, moment, tasks[k], y)
    thetas = pol.type_thetas(shared)
    post = pol.type_posterior(user.ridge, thetas)
    assert int(np.argmax(post)) == target
    # θ_u is the ridge solution shrunk towards the chosen type's θ (closed form).
    xm, ym = np.array(xs), np.array(ys)
    lam = pol.lam_user * np.eye(5)
    want = np.linalg.solve(lam + xm.T @ xm, lam @ thetas[target] + xm.T @ ym)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-9)


def test_types_hold_each_users_data_weighted_by_its_latest_posterior() -> None:
    # Soft EM over users: type m's statistics are λ_pool I + Σ_u w_um Σ x xᵀ, with w_u the
    # user's mean posterior (as k/256), whatever the order of the users.
    pol = PooledMix("pooledmix-v1")
    users, shared = [pol.new_user() for _ in range(3)], pol.new_shared()
    data: list[list[FloatArray]] = [[], [], []]
    for step, (moment, tasks, k) in enumerate(_stream(30, seed=5)):
        u = step % 3
        pol.update(users[u], shared, moment, tasks[k], -1.0 if tasks[k].is_overdue else 0.1)
        data[u].append(features_v2(moment, tasks[k]))
    grams = np.zeros((len(pol.prototypes), 5, 5))
    for user, xs in zip(users, data, strict=True):
        assert 255 <= int(user.weights.sum()) <= 256 + len(pol.prototypes)
        gram = sum(np.outer(x, x) for x in xs)
        grams += (user.weights / 256.0)[:, None, None] * gram
    np.testing.assert_allclose(shared.gram / 2.0**28, grams, atol=1e-5)
    rebuilt = pol.new_shared()
    for user in reversed(users):
        rebuilt.replace(None, pol.pool_contribution(user))
    assert rebuilt == shared  # derived state: rebuilt from the users, bit for bit


def test_codec_round_trip_and_bad_input() -> None:
    pol = PooledMix("pooledmix-v1")
    user, shared = pol.new_user(), pol.new_shared()
    for moment, tasks, k in _stream(10):
        pol.update(user, shared, moment, tasks[k], 0.6)
    back = pol.decode_user(pol.encode_user(user))
    np.testing.assert_array_equal(back.ridge.a, user.ridge.a)
    np.testing.assert_array_equal(back.posterior, user.posterior)
    with pytest.raises(ValueError, match="bytes"):
        pol.decode_user(pol.encode_user(user)[:-1])
    too_heavy = user.ridge.encode() + np.full(6, 0.3, dtype="<f8").tobytes()
    with pytest.raises(ValueError, match="distribution"):
        pol.decode_user(too_heavy)
    negative = user.ridge.encode() + np.array([1.5, -0.5, 0, 0, 0, 0], dtype="<f8").tobytes()
    with pytest.raises(ValueError, match="distribution"):
        pol.decode_user(negative)
    # A record from before the posterior was stored: uniform, the same every time.
    legacy = pol.decode_user(user.ridge.encode())
    assert legacy.weights.tolist() == [43] * 6
    with pytest.raises(ValueError, match="prototypes"):
        PooledMix("pooledmix-v1", prototypes=np.zeros((2, 3)))


def test_registered_with_the_gaussian_prior_and_per_feature_lambda() -> None:
    pol = make_policy("pooledmix-v3")
    assert isinstance(pol, PooledMix)
    assert pol.name == "pooledmix-v3"
    assert (pol.prior, pol.ucb, pol.new_shared().types) == ("gaussian", 0.3, 1)
    np.testing.assert_allclose(pol.mean0, [-0.65, 0.0, 0.0, 0.0, 0.0], atol=1e-12)  # the centre
    np.testing.assert_allclose(np.diag(pol.cov0), 0.3 / np.array(V3_USER_LAMBDA))
    types = PooledMix("pooledmix-v3", prior="types")  # the mixture it replaced (6 Dec)
    assert centred_grid().shape == (15, 5)
    assert (types.new_shared().types, types.ucb) == (15, 0.0)
    assert pol.new_user().ridge.lam.tolist() == list(V3_USER_LAMBDA)
    with pytest.raises(ValueError, match="lam_user"):
        PooledMix("pooledmix-v3", lam_user=np.array([1.0, 0.0, 1.0, 1.0, 1.0]))


def test_pooledmix_v2_is_retired_in_favour_of_v3() -> None:
    with pytest.raises(RetiredPolicyError, match="'pooledmix-v2' is retired; use 'pooledmix-v3'"):
        make_policy("pooledmix-v2")
    assert issubclass(RetiredPolicyError, UnknownPolicyError)
    assert "pooledmix-v2" not in POLICY_NAMES
    assert RETIRED_POLICIES == {"pooledmix-v2": "pooledmix-v3"}
    with pytest.raises(ValueError, match="unknown pooledmix preset 'pooledmix-v2'"):
        PooledMix("pooledmix-v2")


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
        (PooledMix("pooledmix-v1", lam_pool=1e6), features_v2, (4.0,) * 5),
        (PooledMix("pooledmix-v3", prior="types", lam_pool=1e6), features_v3, V3_USER_LAMBDA),
    ],
    ids=["pooledmix-v1", "pooledmix-v3"],
)
def test_user_model_is_ridge_shrunk_towards_its_type_with_per_feature_lambda(
    pol: PooledMix, fmap: Callable[[Moment, Task], FloatArray], lam_diag: tuple[float, ...]
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
    best = int(np.argmax(pol.type_posterior(user.ridge, thetas)))
    xm, ym = np.array(xs), np.array(ys)
    lam = np.diag(lam_diag)
    want = np.linalg.solve(lam + xm.T @ xm, lam @ thetas[best] + xm.T @ ym)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-9)


def test_a_user_who_dislikes_priority_is_switched_to_low_priority_tips_quickly() -> None:
    # Noise-free rewards from the low-priority type's own line: after a handful of
    # priority-4 shows the user's type, and so the greedy tip, flip to priority 1.
    pol = PooledMix("pooledmix-v3", prior="types", lam_pool=1e6)
    low = centred_grid()[13]  # priority slope −0.5, overdue 0
    user, shared = pol.new_user(), pol.new_shared()
    moment = Moment(12, 2)
    tasks = [Task("p1", 1, False, 1.0), Task("p4", 4, False, 1.0)]
    assert pol.probabilities(user, shared, moment, tasks).argmax() == 1  # type 0 likes p4
    for _ in range(3):
        pol.update(user, shared, moment, tasks[1], float(features_v3(moment, tasks[1]) @ low))
    assert int(np.argmax(pol.type_posterior(user.ridge, pol.type_thetas(shared)))) == 13
    assert pol.probabilities(user, shared, moment, tasks).argmax() == 0
