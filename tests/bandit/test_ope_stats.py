"""OPE estimators on synthetic logs with a known true value; small statistics helpers."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.ope.estimators import doubly_robust, ips, pad, snips
from bandit.stats import gap_closed, mean_ci95, paired_difference, t_975


def synthetic_log(seed: int, n: int) -> dict[str, object]:
    """Logged with a non-uniform policy over variable K; target = a different policy.

    True value of the target = Σ_k π_k μ_k averaged over rows (μ known exactly).
    """
    rng = np.random.default_rng(seed)
    ks = rng.integers(2, 7, size=n)
    mus = [rng.uniform(-1, 1, k) for k in ks]
    logging = [np.exp(rng.normal(size=k)) for k in ks]
    logging = [0.5 * p / p.sum() + 0.5 / len(p) for p in logging]  # weights ≤ 2K: light tails
    target = [np.exp(2 * mu) / np.exp(2 * mu).sum() for mu in mus]
    actions = np.array([rng.choice(len(p), p=p) for p in logging])
    rewards = np.array([mu[a] + rng.normal(0, 0.5) for mu, a in zip(mus, actions, strict=True)])
    prop = np.array([p[a] for p, a in zip(logging, actions, strict=True)])
    tprob = np.array([p[a] for p, a in zip(target, actions, strict=True)])
    true = float(np.mean([p @ mu for p, mu in zip(target, mus, strict=True)]))
    return {
        "prop": prop,
        "reward": rewards,
        "tprob": tprob,
        "actions": actions,
        "target": target,
        "mus": mus,
        "true": true,
    }


def test_intervals_cover_the_true_value() -> None:
    """Nominal 95% intervals: over 100 independent logs each estimator must cover the truth
    at least 85% of the time (4.5 binomial SDs below 95%), and DR (biased reward model)
    must be tighter than IPS on average."""
    rng = np.random.default_rng(42)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    width = {"ips": 0.0, "dr": 0.0}
    trials = 100
    for seed in range(trials):
        log = synthetic_log(seed, 500)
        true = log["true"]
        assert isinstance(true, float)
        noisy_model = [mu + 0.3 for mu in log["mus"]]  # type: ignore[attr-defined]
        ests = {
            "ips": ips(log["prop"], log["reward"], log["tprob"], rng, n_boot=200),  # type: ignore[arg-type]
            "snips": snips(log["prop"], log["reward"], log["tprob"], rng, n_boot=200),  # type: ignore[arg-type]
            "dr": doubly_robust(
                log["prop"],
                log["reward"],
                log["actions"],
                log["target"],
                noisy_model,
                rng,  # type: ignore[arg-type]
                n_boot=200,
            ),
        }
        for name, est in ests.items():
            assert est.low <= est.value <= est.high
            assert est.n == 500
            hits[name] += est.contains(true)
        width["ips"] += ests["ips"].high - ests["ips"].low
        width["dr"] += ests["dr"].high - ests["dr"].low
    for name, h in hits.items():
        assert h >= 0.85 * trials, (name, h)
    assert width["dr"] < width["ips"]


def test_ips_is_unbiased_over_many_logs() -> None:
    ips_err, naive_err = [], []
    rng = np.random.default_rng(0)
    for seed in range(400):
        log = synthetic_log(1000 + seed, 200)
        est = ips(log["prop"], log["reward"], log["tprob"], rng, n_boot=2).value  # type: ignore[arg-type]
        ips_err.append(est - log["true"])  # type: ignore[operator]
        naive_err.append(float(np.mean(log["reward"])) - log["true"])  # type: ignore[arg-type, operator]
    ips_bias, naive_bias = mean_ci95(ips_err), mean_ci95(naive_err)
    se = (ips_bias.high - ips_bias.low) / (2 * 1.96)
    assert abs(ips_bias.mean) < 4 * se, ips_bias  # unbiased: within noise of zero
    assert abs(naive_bias.mean) > 10 * se, naive_bias  # while the plain logged mean is not


def test_dr_with_perfect_model_and_ips_on_policy() -> None:
    log = synthetic_log(9, 500)
    rng = np.random.default_rng(1)
    # a perfect reward model: DR's direct term is exactly the truth, plus zero-mean noise
    dr = doubly_robust(
        log["prop"],
        log["reward"],
        log["actions"],
        log["target"],
        log["mus"],
        rng,
        n_boot=200,  # type: ignore[arg-type]
    )
    assert dr.value == pytest.approx(log["true"], abs=0.05)
    # target == logging policy: IPS is the plain mean reward
    same = ips(log["prop"], log["reward"], log["prop"], rng, n_boot=50)  # type: ignore[arg-type]
    assert same.value == pytest.approx(float(np.mean(log["reward"])))  # type: ignore[arg-overload]


def test_estimators_reject_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="propensities"):
        ips([0.0, 0.5], [1.0, 1.0], [1.0, 1.0], rng)
    with pytest.raises(ValueError, match="length"):
        ips([0.5, 0.5], [1.0], [1.0, 1.0], rng)
    with pytest.raises(ValueError, match="probability 0"):
        snips([0.5], [1.0], [0.0], rng)
    with pytest.raises(ValueError, match="outside"):
        doubly_robust([0.5], [1.0], [2], [[0.5, 0.5]], [[0.0, 0.0]], rng)
    with pytest.raises(ValueError, match="probability vector"):
        doubly_robust([0.5], [1.0], [0], [[0.5, 0.6]], [[0.0, 0.0]], rng)


def test_pad_accepts_ragged_and_rectangular() -> None:
    values, mask = pad([np.array([0.2, 0.8]), np.array([1.0]), np.array([0.1, 0.1, 0.8])])
    assert values.shape == (3, 3)
    assert mask.sum() == 6
    rect, rmask = pad(np.full((2, 4), 0.25))
    assert rect.shape == (2, 4)
    assert rmask.all()


def test_mean_ci_matches_t_formula() -> None:
    x = np.array([0.3, -1.0, 1.0, 0.1, 0.6])
    iv = mean_ci95(x)
    half = 2.776445105 * x.std(ddof=1) / np.sqrt(5)
    assert (iv.low, iv.high) == pytest.approx((x.mean() - half, x.mean() + half))
    big = mean_ci95(np.random.default_rng(0).normal(size=10_000))
    assert big.high - big.low == pytest.approx(2 * 1.96 / 100, rel=0.05)
    assert mean_ci95([2.0]).low == 2.0
    empty = mean_ci95([])  # no values: flagged by n = 0, figures NaN
    assert empty.n == 0
    assert np.isnan([empty.mean, empty.low, empty.high]).all()


def test_t_quantile_is_continuous_at_the_table_edge() -> None:
    assert t_975(30) > t_975(31) > t_975(60) > t_975(10_000) > 1.96
    assert t_975(31) == pytest.approx(2.039513446, abs=1e-5)
    assert t_975(60) == pytest.approx(2.000297822, abs=1e-5)


def test_paired_difference_and_gap_closed() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    iv = paired_difference(a - 0.5, a)  # mean of a − (a − 0.5)
    assert iv.mean == pytest.approx(0.5)
    assert iv.low == pytest.approx(0.5)  # constant differences: zero-width interval
    with pytest.raises(ValueError, match="same length"):
        paired_difference(a, a[:3])
    assert gap_closed(0.0, -1.0, 1.0) == 0.5
    assert gap_closed(-1.0, -1.0, 1.0) == 0.0
    assert gap_closed(0.0, 1.0, 1.0) is None  # no gap: undefined
