"""Per-policy value estimates on a log and the recommendation of which policy to promote.

Every target is replayed over the log (``bandit.ope.replay``); its value is estimated by IPS,
SNIPS and DR (``bandit.ope.estimators``, DR with ``bandit.ope.reward_model``), each with a
percentile bootstrap 95% interval over rows. The recommendation compares each target with
what the logging policy earned on the same rows (paired: DR term minus logged reward,
bootstrapped together), see ``recommend``. Pure: the rows come in, no database, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.base import FloatArray
from bandit.ope.estimators import Estimate, doubly_robust, ips, snips
from bandit.ope.logged import EvaluationInputError, Log, LoggedRow
from bandit.ope.replay import replay
from bandit.ope.reward_model import reward_model
from bandit.registry import ORACLE_NAME
from bandit.stats import mean_ci95

__all__ = ["Evaluation", "PolicyEstimate", "estimate_policy", "evaluate_log", "recommend"]


@dataclass(frozen=True, slots=True)
class PolicyEstimate:
    """One target policy's estimated value on the logged rows."""

    policy: str
    ips: Estimate
    snips: Estimate | None  # None when the target never agrees with the log
    dr: Estimate
    dr_minus_logged: Estimate  # paired: DR term − logged reward, per row
    true_value: float | None  # simulation with the rule judge: Σ_k π_k E[r_k], averaged
    agreement: float  # mean π of the logged tip (how much of the log the target "sees")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every target's estimates on one log, the logging policy's own figures and the
    recommendation."""

    source: str
    rows: int
    skipped: dict[str, int]
    logging_policy: str
    logged: Estimate  # the on-policy mean reward with its t interval
    logged_true_value: float | None
    policies: list[PolicyEstimate]
    recommendation: dict[str, Any]


def _boot_mean(terms: FloatArray, rng: np.random.Generator, n_boot: int) -> Estimate:
    """Mean with a percentile bootstrap interval over rows (as in bandit.ope.estimators)."""
    ones = np.ones_like(terms)
    return ips(ones, terms, ones, rng, n_boot=n_boot)


def estimate_policy(
    name: str,
    rows: Sequence[LoggedRow],
    rhat: Sequence[FloatArray],
    rng: np.random.Generator,
    *,
    epsilon: float = 0.1,
    n_boot: int = 1000,
) -> PolicyEstimate:
    """IPS, SNIPS and DR estimates of the named target on ``rows``, with the paired
    difference DR term − logged reward and (rule judge) the target's true value."""
    probs = replay(name, rows, epsilon=epsilon)
    idx = np.array([r.index for r in rows], dtype=np.int64)
    prop = np.array([r.propensity for r in rows])
    reward = np.array([r.reward for r in rows])
    pi_a = np.array([p[i] for p, i in zip(probs, idx, strict=True)])
    est_ips = ips(prop, reward, pi_a, rng, n_boot=n_boot)
    est_snips = snips(prop, reward, pi_a, rng, n_boot=n_boot) if pi_a.sum() > 0 else None
    est_dr = doubly_robust(prop, reward, idx, probs, rhat, rng, n_boot=n_boot)
    terms = np.array(
        [
            float(p @ rh) + pi_a[i] / prop[i] * (reward[i] - rh[idx[i]])
            for i, (p, rh) in enumerate(zip(probs, rhat, strict=True))
        ]
    )
    diff = _boot_mean(terms - reward, rng, n_boot)
    true_value = None
    if rows and all(r.expected is not None for r in rows):
        true_value = float(
            np.mean([float(p @ np.asarray(r.expected)) for p, r in zip(probs, rows, strict=True)])
        )
    return PolicyEstimate(
        policy=name,
        ips=est_ips,
        snips=est_snips,
        dr=est_dr,
        dr_minus_logged=diff,
        true_value=true_value,
        agreement=float(pi_a.mean()),
    )


def recommend(
    logging_policy: str, logged: Estimate, estimates: Sequence[PolicyEstimate]
) -> dict[str, Any]:
    """Which policy to promote, and how sure.

    - ``strong``: the best target's DR 95% lower bound is above the logging policy's 95%
      upper bound (the two intervals do not overlap);
    - ``moderate``: the paired interval of (DR − logged reward) on the same rows is above 0;
    - otherwise ``none``: not enough evidence, keep the logging policy.
    The best target is the one with the highest DR lower bound among those that are neither
    the logging policy nor the oracle (which cannot serve).
    """
    others = [e for e in estimates if e.policy not in (logging_policy, ORACLE_NAME)]
    if not others:
        return {"promote": None, "confidence": "none", "text": "no other policy to compare"}
    best = max(others, key=lambda e: (e.dr.low, e.dr.value))
    dr, diff = best.dr, best.dr_minus_logged
    figures = (
        f"{best.policy}: DR {dr.value:.3f} [{dr.low:.3f}, {dr.high:.3f}] vs {logging_policy} "
        f"on-policy {logged.value:.3f} [{logged.low:.3f}, {logged.high:.3f}]; paired DR − logged "
        f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    )
    if dr.low > logged.high:
        confidence, verdict = "strong", f"promote {best.policy} (intervals do not overlap)"
    elif diff.low > 0.0:
        confidence, verdict = "moderate", f"promote {best.policy} (paired interval above 0)"
    else:
        return {
            "promote": None,
            "best": best.policy,
            "confidence": "none",
            "text": f"not enough evidence to promote anything; keep {logging_policy}. {figures}",
        }
    return {
        "promote": best.policy,
        "best": best.policy,
        "confidence": confidence,
        "text": f"{verdict}. {figures}",
    }


def evaluate_log(
    log: Log,
    policies: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Estimate every named policy on ``log`` (pure: no database)."""
    rows = log.rows
    if len(rows) < 2:
        raise EvaluationInputError(
            f"{log.source}: {len(rows)} usable logged rows (need at least 2)"
            + (f"; skipped {log.skipped}" if log.skipped else "")
        )
    rng = np.random.default_rng(seed)
    rhat = reward_model(rows)
    estimates = [
        estimate_policy(name, rows, rhat, rng, epsilon=log.epsilon, n_boot=n_boot)
        for name in policies
    ]
    rewards = np.array([r.reward for r in rows])
    ci = mean_ci95(rewards)
    logged = Estimate(ci.mean, ci.low, ci.high, ci.n)
    counts = Counter(r.policy for r in rows)
    logging_policy = counts.most_common(1)[0][0] if len(counts) == 1 else "mixed"
    logged_true = None
    if all(r.expected is not None for r in rows):
        logged_true = float(np.mean([r.expected[r.index] for r in rows if r.expected]))
    return Evaluation(
        source=log.source,
        rows=len(rows),
        skipped=log.skipped,
        logging_policy=logging_policy,
        logged=logged,
        logged_true_value=logged_true,
        policies=estimates,
        recommendation=recommend(logging_policy, logged, estimates),
    )
