"""The pooledmix family's gaussian prior (``prior="gaussian"``): one population prior
N(μ, Σ) learned by online EM from moments stored in each user's record. The pool is
exactly-once: the same bits from the records in any order, a user removed exactly, the same
after a codec round trip; ``update_many`` is each user learning alone; the user's model is
the closed-form posterior mean; the prior learns the population's mean and correlations."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.base import Moment, Task
from bandit.features import features_v3
from bandit.policies.pooled_mix import MixUser, PooledMix
from bandit.pool import Contribution, PoolStats
from bandit.population import MOMENTS, gaussian_prior
from tests.bandit.test_pooled_mix_many import _block, _warm

RIDGE_BYTES = 511


def _gaussian(**kwargs: float) -> PooledMix:
    return PooledMix("pooledmix-v3", prior="gaussian", **kwargs)


def _same(one: Contribution | None, two: Contribution | None) -> bool:
    if one is None or two is None:
        return one is two
    return (
        np.array_equal(one.weights, two.weights)
        and np.array_equal(one.stats, two.stats)
        and one.pulls == two.pulls
    )


def _pool_of(pol: PooledMix, records: list[bytes]) -> PoolStats:
    pool = pol.new_shared()
    for record in records:
        pool.replace(None, pol.pool_contribution(pol.decode_user(record)))
    return pool


def test_pool_from_records_is_the_same_bits_in_any_order_and_a_user_leaves_exactly() -> None:
    pol = _gaussian()
    users, shared = _warm(pol, np.random.default_rng(1), 9, 4)
    records = [pol.encode_user(u) for u in users]
    forward = _pool_of(pol, records)
    backward = _pool_of(pol, records[::-1])
    shuffled = _pool_of(pol, [records[i] for i in np.random.default_rng(2).permutation(9)])
    assert forward == backward == shuffled == shared  # the live pool is the records' sum
    assert forward.users == 9
    # A user leaves: subtracting its contribution leaves exactly the pool of the others.
    forward.replace(pol.pool_contribution(pol.decode_user(records[4])), None)
    assert forward == _pool_of(pol, records[:4] + records[5:])


def test_codec_round_trip_record_size_and_legacy_records() -> None:
    pol = _gaussian()
    fresh = pol.new_user()
    assert pol.encode_user(fresh) == fresh.ridge.encode()  # no moments before a reward
    assert pol.pool_contribution(pol.decode_user(pol.encode_user(fresh))) is None
    users, _ = _warm(pol, np.random.default_rng(3), 2, 3)
    record = pol.encode_user(users[0])
    assert len(record) == RIDGE_BYTES + 4 * MOMENTS == 591  # 40 bytes less than the types'
    back = pol.decode_user(record)
    assert back.moments is not None
    assert users[0].moments is not None
    np.testing.assert_array_equal(back.moments, users[0].moments)
    assert _same(pol.pool_contribution(back), pol.pool_contribution(users[0]))
    assert pol.encode_user(back) == record
    # A record of the types prior, or the ridge alone: moments against the hyperprior, the
    # same every time.
    types = PooledMix("pooledmix-v3", prior="types")
    old = types.new_user()
    types.update(old, types.new_shared(), Moment(9, 1), Task("t", 2, True, 1.0), -0.4)
    for legacy in (types.encode_user(old), old.ridge.encode()):
        one, two = pol.decode_user(legacy), pol.decode_user(legacy)
        assert one.moments is not None
        assert two.moments is not None
        np.testing.assert_array_equal(one.moments, two.moments)
        assert _same(pol.pool_contribution(one), pol.pool_contribution(two))
    with pytest.raises(ValueError, match="bytes"):
        pol.decode_user(record[:-1])
    nan = record[:RIDGE_BYTES] + np.full(MOMENTS, np.nan, dtype="<f4").tobytes()
    with pytest.raises(ValueError, match="finite"):
        pol.decode_user(nan)
    with pytest.raises(ValueError, match="prior"):
        PooledMix("pooledmix-v3", prior="flat")


def test_user_model_is_the_posterior_mean_under_the_other_users_prior() -> None:
    pol = _gaussian()
    users, shared = _warm(pol, np.random.default_rng(4), 5, 6)
    user = users[2]
    own = pol.pool_contribution(user)
    assert own is not None
    others = shared.stats - own.weights[:, None] * own.stats[None, :]
    mu, cov = gaussian_prior(others, pol.mean0, pol.cov0, pol.prior_users)
    shrink = pol.sigma2 * np.linalg.inv(cov[0])
    gram = user.ridge.a - np.diag(user.ridge.lam)  # Σ x xᵀ of the user's six rewards
    want = np.linalg.solve(shrink + gram, shrink @ mu[0] + user.ridge.b)
    np.testing.assert_allclose(pol.theta(user, shared), want, atol=1e-12)
    # The stored moments are the posterior's under the prior of the user's latest reward.
    assert user.moments is not None
    assert float(user.moments[1]) != pytest.approx(float(pol.mean0[1]), abs=1e-6)


def test_the_prior_learns_the_population_mean_and_its_correlations() -> None:
    # Two kinds of users: priority slope +0.4 with morning +0.3, or −0.4 with morning −0.1:
    # the population mean is (0, 0.1) on those two and their covariance is positive.
    pol = _gaussian()
    rng = np.random.default_rng(6)
    truth = [np.array([-0.6, s, 0.0, mo, 0.0]) for s, mo in ((0.4, 0.3), (-0.4, -0.1))]
    users: list[MixUser] = [pol.new_user() for _ in range(60)]
    shared = pol.new_shared()
    for _ in range(30):
        block = _block(rng, 60)
        for i, user in enumerate(users):
            task = block.task(i, int(rng.integers(3)))
            x = features_v3(block.moment(i), task)
            reward = float(x @ truth[i % 2] + rng.normal(0.0, 0.3))
            pol.update(user, shared, block.moment(i), task, reward)
    mu, cov = pol.population(shared)
    assert mu[1] == pytest.approx(0.0, abs=0.06)
    assert mu[3] == pytest.approx(0.1, abs=0.06)
    assert cov[1, 3] > 0.01  # learned from the users (the hyperprior is diagonal), if slowly
    # A new user who dislikes high priority in the morning is steered away from it faster.
    fresh = pol.new_user()
    pol.update(fresh, shared, Moment(7, 2), Task("hi", 4, False, 1.0), -0.9)
    assert pol.theta(fresh, shared)[1] < mu[1]


def test_ucb_scores_add_the_posterior_width_and_propensities_stay_exact() -> None:
    pol = _gaussian(ucb=0.3)
    users, shared = _warm(pol, np.random.default_rng(7), 4, 5)
    user = users[1]
    block = _block(np.random.default_rng(8), 1)
    tasks = [block.task(0, j) for j in range(3)]
    m, v = pol.posterior(user, shared)
    x = np.stack([features_v3(block.moment(0), t) for t in tasks])
    want = x @ m + 0.3 * np.sqrt(np.einsum("ij,jk,ik->i", x, v, x))
    np.testing.assert_allclose(pol.scores(user, shared, block.moment(0), tasks), want, atol=1e-12)
    np.testing.assert_allclose(m, pol.theta(user, shared), atol=0)
    p = pol.probabilities(user, shared, block.moment(0), tasks)
    c = pol.choose(user, shared, block.moment(0), tasks, np.random.default_rng(9))
    assert c.propensity == p[c.index]
    assert int(np.argmax(p)) == int(np.argmax(want))
    with pytest.raises(ValueError, match="ucb"):
        PooledMix("pooledmix-v1", ucb=0.3)
    with pytest.raises(ValueError, match="ucb"):
        _gaussian(ucb=-0.1)
