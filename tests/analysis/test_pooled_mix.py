"""pooledmix-v1: exact propensities, the type choice, the ridge algebra, the state codec."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.base import Moment, Task
from bandit.features import features_v2
from bandit.policies.pooled_mix import PooledMixV1, default_prototypes
from bandit.registry import make_policy
from judges.personas import load_personas
from judges.world import World


def _stream(n: int, seed: int = 0) -> list[tuple[Moment, list[Task], int]]:
    world, persona = World(seed), load_personas()[0]
    rng = np.random.default_rng(seed)
    return [(world.moment(persona, 0, r), world.candidates(persona, 0, r), int(rng.integers(8)))
            for r in range(n)]  # fmt: skip


def test_registered_and_propensities_are_exact() -> None:
    pol = make_policy("pooledmix-v1")
    assert isinstance(pol, PooledMixV1)
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
    pol = PooledMixV1(lam_pool=1e6)  # types stay at their prior means
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
    post = pol.type_posterior(user, thetas)
    assert int(np.argmax(post)) == target
    # θ_u is the ridge solution shrunk towards the chosen type's θ (closed form).
    xm, ym = np.array(xs), np.array(ys)
    lam = pol.lam_user * np.eye(5)
    want = np.linalg.solve(lam + xm.T @ xm, lam @ thetas[target] + xm.T @ ym)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-9)


def test_types_learn_with_the_posterior_as_weight() -> None:
    pol = PooledMixV1()
    user, shared = pol.new_user(), pol.new_shared()
    grams = [np.eye(5) * pol.lam_pool for _ in shared]
    for moment, tasks, k in _stream(25, seed=5):
        x = features_v2(moment, tasks[k])
        w = pol.type_posterior(user, pol.type_thetas(shared))
        for m, wi in enumerate(w):
            if wi > 1e-9:
                grams[m] += wi * np.outer(x, x)
        pol.update(user, shared, moment, tasks[k], -1.0 if tasks[k].is_overdue else 0.1)
    for ridge, g in zip(shared, grams, strict=True):
        np.testing.assert_allclose(ridge.a, g, atol=1e-9)
        np.testing.assert_allclose(ridge.a_inv @ ridge.a, np.eye(5), atol=1e-8)


def test_codec_round_trip_and_bad_input() -> None:
    pol = PooledMixV1()
    user, shared = pol.new_user(), pol.new_shared()
    for moment, tasks, k in _stream(10):
        pol.update(user, shared, moment, tasks[k], 0.6)
    back = pol.decode_shared(pol.encode_shared(shared))
    assert len(back) == len(shared)
    for a, b in zip(back, shared, strict=True):
        np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(pol.decode_user(pol.encode_user(user)).a, user.a)
    with pytest.raises(ValueError, match="bytes"):
        pol.decode_shared(pol.encode_shared(shared)[:-1])
    with pytest.raises(ValueError, match="prototypes"):
        PooledMixV1(prototypes=np.zeros((2, 3)))
