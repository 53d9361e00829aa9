"""Policies: exact propensities, v1 kept exactly, pooled formula, codecs, registry."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.base import Moment, Policy, Task
from bandit.features import features_v1, features_v2
from bandit.policies.baselines import OraclePolicy, RandomPolicy
from bandit.policies.egreedy import EpsilonGreedyV1, EpsilonGreedyV2
from bandit.policies.linucb import LinUCBV1
from bandit.policies.pooled import PooledV1
from bandit.policies.pooled_mix import PooledMix
from bandit.registry import POLICY_NAMES, UnknownPolicyError, make_oracle, make_policy


def world(rng: np.random.Generator, k: int = 8) -> tuple[Moment, list[Task]]:
    """One round as in docs/simulation.md: uniform moment, K candidate tasks."""
    moment = Moment(int(rng.integers(24)), int(rng.integers(7)))
    tasks = [
        Task(f"t{i}", int(rng.integers(1, 5)), bool(rng.random() < 0.3), float(rng.uniform(0, 20)))
        for i in range(k)
    ]
    return moment, tasks


def reward_of(moment: Moment, task: Task) -> float:
    """A deterministic, not-all-negative reward so learned models have preferences."""
    return 0.4 * (task.priority - 2.5) - 0.5 * task.is_overdue + 0.1 * (moment.hour_of_day < 12)


def trained(policy: Policy, rounds: int, seed: int) -> tuple[object, object]:
    rng = np.random.default_rng(seed)
    user, shared = policy.new_user(), policy.new_shared()
    for _ in range(rounds):
        moment, tasks = world(rng)
        c = policy.choose(user, shared, moment, tasks, rng)
        policy.update(user, shared, moment, tasks[c.index], reward_of(moment, tasks[c.index]))
    return user, shared


ALL: list[Callable[[], Policy]] = [
    RandomPolicy,
    EpsilonGreedyV1,
    lambda: EpsilonGreedyV1(epsilon=0.5),
    LinUCBV1,
    EpsilonGreedyV2,
    PooledV1,
    lambda: PooledMix("pooledmix-v1", c=0.8),  # the mixtures: a large ε so every index is drawn
    lambda: PooledMix("pooledmix-v3", c=0.8),  # often
    lambda: PooledMix("pooledmix-v3", c=0.8, prior="gaussian"),
    lambda: OraclePolicy(reward_of),
]


@pytest.mark.parametrize("factory", ALL)
@pytest.mark.parametrize("rounds", [0, 3, 40])
def test_propensities_match_empirical_frequencies(
    factory: Callable[[], Policy], rounds: int
) -> None:
    policy = factory()
    user, shared = trained(policy, rounds, seed=rounds)
    moment, tasks = world(np.random.default_rng(100 + rounds), k=5)
    p = policy.probabilities(user, shared, moment, tasks)
    assert p.shape == (5,)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    n = 5_000
    rng = np.random.default_rng(12345)  # seeded: the outcome is fixed, the test cannot flake
    counts = np.zeros(5)
    for _ in range(n):
        c = policy.choose(user, shared, moment, tasks, rng)
        assert c.propensity == pytest.approx(p[c.index], abs=1e-15)
        counts[c.index] += 1
    sd = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sd + 1e-12), (counts / n, p)


def literal_egreedy_v1(seed: int, rounds: int, epsilon: float) -> list[int]:
    """docs/simulation.md, written out again independently of bandit/: A = I₇, b = 0,
    θ = A⁻¹b, features_v1, ε-greedy, update A += x xᵀ, b += r x."""

    def x_of(m: Moment, t: Task) -> np.ndarray:
        h, d = m.hour_of_day, m.day_of_week
        return np.array(
            [
                math.sin(2 * math.pi * h / 24),
                math.cos(2 * math.pi * h / 24),
                float(t.is_overdue),
                min(t.task_age_days, 30) / 30,
                (t.priority - 1) / 3,
                math.sin(2 * math.pi * d / 7),
                math.cos(2 * math.pi * d / 7),
            ]
        )

    a, b = np.eye(7), np.zeros(7)
    world_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    picks = []
    for _ in range(rounds):
        m, tasks = world(world_rng)
        theta = np.linalg.solve(a, b)
        if rng.random() < epsilon:
            i = int(rng.integers(len(tasks)))
        else:
            i = int(np.argmax([theta @ x_of(m, t) for t in tasks]))
        x = x_of(m, tasks[i])
        a += np.outer(x, x)
        b += reward_of(m, tasks[i]) * x
        picks.append(i)
    return picks


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), epsilon=st.sampled_from([0.0, 0.1, 0.3]))
def test_egreedy_v1_matches_the_spec_literally(seed: int, epsilon: float) -> None:
    rounds = 150  # crosses the A⁻¹ re-sync boundary twice
    policy = EpsilonGreedyV1(epsilon=epsilon)
    user = policy.new_user()
    world_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    picks = []
    for _ in range(rounds):
        m, tasks = world(world_rng)
        c = policy.choose(user, None, m, tasks, rng)
        policy.update(user, None, m, tasks[c.index], reward_of(m, tasks[c.index]))
        picks.append(c.index)
    assert picks == literal_egreedy_v1(seed, rounds, epsilon)


def test_egreedy_v1_probabilities_and_choice_fields() -> None:
    policy = EpsilonGreedyV1(epsilon=0.2)
    user, _ = trained(policy, 30, seed=1)
    m, tasks = world(np.random.default_rng(9), k=4)
    p = policy.probabilities(user, None, m, tasks)
    greedy = int(np.argmax(p))
    expected = np.full(4, 0.05)
    expected[greedy] += 0.8
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-15)
    theta = np.linalg.solve(user.a, user.b)
    seen_explored = seen_greedy = False
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = policy.choose(user, None, m, tasks, rng)
        assert c.score == pytest.approx(float(theta @ features_v1(m, tasks[c.index])), abs=1e-9)
        if not c.explored:
            assert c.index == greedy
            seen_greedy = True
        else:
            seen_explored = True
    assert seen_explored
    assert seen_greedy


def test_first_max_breaks_ties() -> None:
    policy = EpsilonGreedyV1(epsilon=0.0)
    m = Moment(3, 3)
    same = [Task(f"t{i}", 2, False, 5.0) for i in range(4)]
    c = policy.choose(policy.new_user(), None, m, same, np.random.default_rng(0))
    assert (c.index, c.propensity, c.explored) == (0, 1.0, False)


def test_linucb_v1_matches_formula() -> None:
    policy = LinUCBV1(alpha=1.0)
    user, _ = trained(policy, 25, seed=4)
    m, tasks = world(np.random.default_rng(8))
    a_inv = np.linalg.inv(user.a)
    theta = a_inv @ user.b
    xs = [features_v1(m, t)[:5] for t in tasks]
    ucb = [theta @ x + math.sqrt(x @ a_inv @ x) for x in xs]
    c = policy.choose(user, None, m, tasks, np.random.default_rng(0))
    assert c.index == int(np.argmax(ucb))
    assert c.propensity == 1.0
    assert c.score == pytest.approx(max(ucb), abs=1e-9)
    assert user.dim == 5


def test_pooled_user_model_is_the_shrunk_ridge() -> None:
    policy = PooledV1(lam_user=3.0, lam_pool=1.0)
    rng = np.random.default_rng(11)
    shared, users = policy.new_shared(), [policy.new_user() for _ in range(3)]
    data: list[list[tuple[np.ndarray, float]]] = [[], [], []]
    for step in range(90):
        u = step % 3
        m, tasks = world(rng)
        t = tasks[int(rng.integers(8))]
        r = reward_of(m, t) + (0.5 if u == 0 else 0.0)
        policy.update(users[u], shared, m, t, r)
        data[u].append((features_v2(m, t), r))
    every = [row for rows in data for row in rows]
    xs_all = np.array([x for x, _ in every])
    rs_all = np.array([r for _, r in every])
    d = xs_all.shape[1]
    theta_pool = np.linalg.solve(np.eye(d) + xs_all.T @ xs_all, xs_all.T @ rs_all)
    xs = np.array([x for x, _ in data[0]])
    rs = np.array([r for _, r in data[0]])
    expected = np.linalg.solve(3.0 * np.eye(d) + xs.T @ xs, 3.0 * theta_pool + xs.T @ rs)
    # The pool holds the users' statistics rounded to 2⁻²⁰ (bandit.pool): equal to ~1e-7.
    np.testing.assert_allclose(policy.theta(users[0], shared), expected, rtol=1e-6, atol=1e-7)
    # a brand-new user starts at the pooled model
    fresh = policy.new_user()
    np.testing.assert_allclose(policy.theta(fresh, shared), theta_pool, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_registry_and_codecs_round_trip(name: str) -> None:
    policy = make_policy(name)
    assert policy.name == name
    user, shared = trained(policy, 70, seed=2)
    again = policy.decode_user(policy.encode_user(user))
    assert policy.encode_user(again) == policy.encode_user(user)
    m, tasks = world(np.random.default_rng(5))
    shared2 = policy.new_shared()
    if shared2 is not None:
        # The pool is derived state: rebuilt from the decoded user, it is the same, bit for bit.
        shared2.replace(None, policy.pool_contribution(again))
        assert shared2 == shared
    else:
        assert policy.pool_contribution(again) is None
    np.testing.assert_array_equal(
        policy.probabilities(again, shared2, m, tasks),
        policy.probabilities(user, shared, m, tasks),
    )
    with pytest.raises(ValueError, match="bytes"):
        policy.decode_user(policy.encode_user(user)[:-3])
    with pytest.raises(ValueError, match="version"):
        policy.decode_user(b"\xff" + policy.encode_user(user)[1:])


def test_codec_rejects_other_policys_state() -> None:
    v1, lin = EpsilonGreedyV1(), LinUCBV1()
    with pytest.raises(ValueError, match="dimension"):
        lin.decode_user(v1.encode_user(v1.new_user()))


def test_registry_unknown_name_lists_known() -> None:
    with pytest.raises(UnknownPolicyError, match="egreedy-v1") as info:
        make_policy("egreedy-v9")
    assert isinstance(info.value, ValueError)
    assert "oracle" not in POLICY_NAMES
    assert make_oracle(reward_of).name == "oracle"


def test_decaying_epsilon_is_exact_per_user() -> None:
    policy = EpsilonGreedyV2(c=0.3, epsilon_min=0.02)
    user = policy.new_user()
    m, tasks = world(np.random.default_rng(0))
    for t in range(400):
        eps = max(0.02, 0.3 / math.sqrt(t + 1))
        p = policy.probabilities(user, None, m, tasks)
        assert p.min() == pytest.approx(eps / 8, abs=1e-15)
        policy.update(user, None, m, tasks[t % 8], reward_of(m, tasks[t % 8]))


def test_empty_candidates_rejected() -> None:
    for name in POLICY_NAMES:
        policy = make_policy(name)
        with pytest.raises(ValueError, match="no candidates"):
            policy.choose(
                policy.new_user(), policy.new_shared(), Moment(1, 1), [], np.random.default_rng(0)
            )


@pytest.mark.parametrize("name", ["egreedy-v1", "pooledmix-v3", "linucb-v1"])
def test_exploration_floor_is_an_exact_uniform_slice(name: str) -> None:
    """p = (1 − f)·p_policy + f/K exactly; draws follow it; state and learning are the policy's."""
    floor = 0.2
    plain, floored = make_policy(name), make_policy(name, floor=floor)
    assert floored.name == plain.name
    user, shared = trained(plain, 30, seed=3)
    rng = np.random.default_rng(11)
    moment, tasks = world(rng, k=5)
    inner = plain.probabilities(user, shared, moment, tasks)
    p = floored.probabilities(user, shared, moment, tasks)
    np.testing.assert_allclose(p, (1 - floor) * inner + floor / 5, rtol=0, atol=1e-15)
    assert p.min() >= floor / 5 - 1e-15
    before = floored.encode_user(user)
    counts = np.zeros(5)
    n = 20_000
    for _ in range(n):
        choice = floored.choose(user, shared, moment, tasks, rng)
        assert choice.propensity == pytest.approx(p[choice.index], abs=1e-12)
        counts[choice.index] += 1
    assert floored.encode_user(user) == before  # choosing never changes state
    # Every frequency within 5 standard errors of its probability.
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)
    # Learning is the policy's: the same rewards give the same bytes.
    a, b = plain.new_user(), floored.new_user()
    sa, sb = plain.new_shared(), floored.new_shared()
    for task in tasks:
        plain.update(a, sa, moment, task, 0.5)
        floored.update(b, sb, moment, task, 0.5)
    assert plain.encode_user(a) == floored.encode_user(b)


def test_exploration_floor_refuses_a_share_outside_0_1() -> None:
    with pytest.raises(ValueError, match="exploration floor"):
        make_policy("egreedy-v1", floor=1.5)
    assert isinstance(make_policy("egreedy-v1", floor=0.0), EpsilonGreedyV1)
