"""Recovery after drift (pure): a run's mean reward per round, and how long it takes to get
back to its level before the drift.

Definitions (docs/simulation.md, "Drift and late feedback"), for a run whose personas drift
at round D, with a window of W rounds and a tolerance fraction f:

- m_r, the **mean reward of round r**: the mean over the round's judgments of the chosen
  tip's exact expected reward (the rule judge's, under the preferences of that round). It
  judges what the policy chose, not the judge's dice, like gap_closed. o_r and q_r are the
  same means of the candidates' maximum (the oracle) and of their mean (random).
- the **pre-drift level** L = the mean of m_r over rounds [D − W, D); its **scale**
  G = the mean of o_r − q_r over the same rounds (the oracle-random gap); the **tolerance**
  τ = f · G.
- the **rolling mean** ρ_r = the mean of m over the W rounds [r, r + W).
- **rounds to recover** k* = the least k ≥ 0 with ρ_{D+k} ≥ L − τ, over the k for which the
  window lies inside the run; None (censored: not recovered within the run) when there is
  none. A policy the drift does not hurt scores 0.

>>> stats = [{"round": r, "expected_reward": e, "random_expected": 0.0,
...           "oracle_expected": 1.0} for r, e in enumerate([.5, .5, 0, .25, .5, .5, .5])]
>>> rec = recovery(stats, drift_at=2, window=2, tolerance=0.1)
>>> rec.rounds_to_recover, rec.before, rec.first_window
(2, 0.5, 0.125)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Recovery", "RoundMeans", "recovery", "round_means"]


@dataclass(frozen=True, slots=True)
class RoundMeans:
    """Per round: the chosen tips' mean expected reward, the oracle's and random's."""

    expected: list[float]
    oracle: list[float]
    random: list[float]


def round_means(stats: Sequence[Mapping[str, Any]]) -> RoundMeans:
    """m_r, o_r and q_r of every round 0..max (a run's per-judgment stats, rule judge)."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for s in stats:
        if s["expected_reward"] is None:
            raise ValueError("recovery needs the rule judge's expected rewards")
        acc = sums[int(s["round"])]
        acc[0] += s["expected_reward"]
        acc[1] += s["oracle_expected"]
        acc[2] += s["random_expected"]
        acc[3] += 1
    rounds = range(max(sums) + 1) if sums else range(0)
    if any(r not in sums for r in rounds):
        raise ValueError("every round needs at least one judgment")
    return RoundMeans(
        expected=[sums[r][0] / sums[r][3] for r in rounds],
        oracle=[sums[r][1] / sums[r][3] for r in rounds],
        random=[sums[r][2] / sums[r][3] for r in rounds],
    )


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclass(frozen=True, slots=True)
class Recovery:
    """One run's figures around its drift (see the module docstring)."""

    drift_at: int
    window: int
    before: float  # L: mean reward over the W rounds before the drift
    tolerance: float  # τ = f · G, in reward units
    first_window: float  # ρ_D: the W rounds from the drift on
    last_window: float  # the run's last W rounds
    rounds_to_recover: int | None  # k*; None: not within the run
    censored_at: int  # the largest k the run could show


def recovery(
    stats: Sequence[Mapping[str, Any]], *, drift_at: int, window: int, tolerance: float
) -> Recovery:
    """k* and the levels around the drift at ``drift_at`` (``tolerance``: the fraction f)."""
    means = round_means(stats)
    m = means.expected
    rounds = len(m)
    if window < 1:
        raise ValueError("the window must be at least one round")
    if drift_at - window < 0 or drift_at + window > rounds:
        raise ValueError(
            f"need {window} rounds before the drift at {drift_at} and {window} after it "
            f"(the run has {rounds})"
        )
    before_rounds = range(drift_at - window, drift_at)
    level = _mean([m[r] for r in before_rounds])
    scale = _mean([means.oracle[r] - means.random[r] for r in before_rounds])
    tau = tolerance * scale
    last_k = rounds - window - drift_at
    recovered = None
    for k in range(last_k + 1):
        start = drift_at + k
        if _mean(m[start : start + window]) >= level - tau:
            recovered = k
            break
    return Recovery(
        drift_at=drift_at,
        window=window,
        before=level,
        tolerance=tau,
        first_window=_mean(m[drift_at : drift_at + window]),
        last_window=_mean(m[rounds - window :]),
        rounds_to_recover=recovered,
        censored_at=last_k,
    )
