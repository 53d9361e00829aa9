"""Off-policy value estimators over logged bandit data, with bootstrap 95% intervals.

Each logged row i has: the logging propensity p_i of the shown tip, its reward r_i, and the
target policy's probability π_i of that same tip (``Policy.probabilities`` on the logged
candidates, at the logged index). Then

- IPS:  mean(π_i / p_i · r_i), unbiased when p_i > 0 wherever π puts mass;
- SNIPS: Σ w_i r_i / Σ w_i with w_i = π_i / p_i, biased but lower variance;
- DR:   mean(Σ_k π_ik r̂_ik + w_i (r_i − r̂_i,a_i)), unbiased if either the propensities or
  the reward model r̂ are right.

DR needs, per row, the target's full probability vector over that row's K_i candidates and
the reward model's prediction per candidate. Rows may have different K: pass a sequence of
1-D arrays (ragged), or a 2-D array when every row has the same K. Use ``pad`` to build
a padded (n × K_max) array and a mask yourself if that is more convenient; padded cells must
hold probability 0 (they then contribute nothing).

Intervals are percentile bootstraps over rows (``n_boot`` resamples, rng passed in).

>>> rng = np.random.default_rng(0)
>>> est = ips(np.full(4, 0.5), np.array([1.0, 0.0, 1.0, 1.0]), np.full(4, 0.5), rng, n_boot=99)
>>> est.value
0.75
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.base import FloatArray

IntArray = npt.NDArray[np.int64]
ArrayLike = Sequence[float] | FloatArray
_MAX_CELLS = 4_000_000  # bootstrap index matrix is built in chunks of at most this size


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value estimate with its bootstrap 95% interval."""

    value: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _vec(x: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values")
    return a


def _weights(logged_propensity: ArrayLike, target_prob: ArrayLike) -> FloatArray:
    p = _vec(logged_propensity, "logged_propensity")
    pi = _vec(target_prob, "target_prob")
    if p.shape != pi.shape:
        raise ValueError("logged_propensity and target_prob differ in length")
    if np.any(p <= 0.0) or np.any(p > 1.0):
        raise ValueError("logged propensities must be in (0, 1]")
    if np.any(pi < 0.0) or np.any(pi > 1.0):
        raise ValueError("target probabilities must be in [0, 1]")
    return pi / p


def _weighted_rewards(
    logged_propensity: ArrayLike, reward: ArrayLike, target_prob: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(w, r): the importance weights π/p and the rewards, checked to be the same length."""
    w = _weights(logged_propensity, target_prob)
    r = _vec(reward, "reward")
    if r.shape != w.shape:
        raise ValueError("reward differs in length from the propensities")
    return w, r


def _bootstrap(
    stat: Callable[[IntArray], FloatArray],
    n: int,
    rng: np.random.Generator,
    n_boot: int,
) -> tuple[float, float]:
    """Percentile 95% interval of ``stat`` over row resamples (chunked to bound memory)."""
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2")
    out = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _MAX_CELLS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = stat(idx)
    low, high = np.quantile(out, [0.025, 0.975])
    return float(low), float(high)


def _mean_estimate(terms: FloatArray, rng: np.random.Generator, n_boot: int) -> Estimate:
    n = int(terms.size)
    if n == 0:
        raise ValueError("no logged rows")
    low, high = _bootstrap(lambda idx: terms[idx].mean(axis=1), n, rng, n_boot)
    return Estimate(float(terms.mean()), low, high, n)


def ips(
    logged_propensity: ArrayLike,
    reward: ArrayLike,
    target_prob: ArrayLike,
    rng: np.random.Generator,
    *,
    n_boot: int = 1000,
) -> Estimate:
    """Inverse propensity scoring: mean(π/p · r)."""
    w, r = _weighted_rewards(logged_propensity, reward, target_prob)
    return _mean_estimate(w * r, rng, n_boot)


def snips(
    logged_propensity: ArrayLike,
    reward: ArrayLike,
    target_prob: ArrayLike,
    rng: np.random.Generator,
    *,
    n_boot: int = 1000,
) -> Estimate:
    """Self-normalised IPS: Σ w r / Σ w. Raises ValueError if the target never agrees
    with the log (Σ w = 0)."""
    w, r = _weighted_rewards(logged_propensity, reward, target_prob)
    n = int(w.size)
    if n == 0:
        raise ValueError("no logged rows")
    if w.sum() <= 0.0:
        raise ValueError("the target policy gives probability 0 to every logged action")
    wr = w * r

    def stat(idx: IntArray) -> FloatArray:
        den = w[idx].sum(axis=1)
        num = wr[idx].sum(axis=1)
        # A resample with no overlap has no estimate; count it as the logged mean reward.
        safe = np.where(den > 0.0, den, 1.0)
        est = np.where(den > 0.0, num / safe, r[idx].mean(axis=1))
        return np.asarray(est, dtype=np.float64)

    low, high = _bootstrap(stat, n, rng, n_boot)
    return Estimate(float(wr.sum() / w.sum()), low, high, n)


def pad(rows: Sequence[ArrayLike] | FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Ragged rows → (n × K_max array padded with 0, mask of real cells).

    >>> values, mask = pad([[0.5, 0.5], [1.0]])
    >>> values.tolist(), mask.tolist()
    ([[0.5, 0.5], [1.0, 0.0]], [[True, True], [True, False]])
    """
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        arr = np.asarray(rows, dtype=np.float64)
        return arr, np.ones(arr.shape, dtype=np.bool_)
    lens = [len(r) for r in rows]
    k = max(lens, default=0)
    values = np.zeros((len(lens), k), dtype=np.float64)
    mask = np.zeros((len(lens), k), dtype=np.bool_)
    for i, row in enumerate(rows):
        values[i, : lens[i]] = np.asarray(row, dtype=np.float64)
        mask[i, : lens[i]] = True
    return values, mask


def doubly_robust(  # noqa: PLR0917 (five parallel arrays, then the rng)
    logged_propensity: ArrayLike,
    reward: ArrayLike,
    logged_index: Sequence[int] | IntArray,
    target_probs: Sequence[ArrayLike] | FloatArray,
    reward_hat: Sequence[ArrayLike] | FloatArray,
    rng: np.random.Generator,
    *,
    n_boot: int = 1000,
) -> Estimate:
    """Doubly robust value: direct-method term Σ_k π_k r̂_k plus an IPS correction on the
    logged action's residual. ``logged_index[i]`` is the shown tip's index in row i;
    ``target_probs[i]`` and ``reward_hat[i]`` have one entry per candidate of row i.
    """
    pi, mask = pad(target_probs)
    rhat, mask_hat = pad(reward_hat)
    if pi.shape != rhat.shape or not np.array_equal(mask, mask_hat):
        raise ValueError("target_probs and reward_hat must have the same shape per row")
    if not (np.all(np.isfinite(pi)) and np.all(np.isfinite(rhat))):
        raise ValueError("target_probs and reward_hat must be finite")
    n = pi.shape[0]
    a = np.asarray(logged_index, dtype=np.int64)
    if a.shape != (n,):
        raise ValueError("logged_index must have one entry per row")
    rows = np.arange(n)
    if np.any(a < 0) or np.any(a >= pi.shape[1]) or np.any(~mask[rows, a]):
        raise ValueError("a logged index points outside its row's candidates")
    sums = pi.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > 1e-6) or np.any(pi < 0.0):
        raise ValueError("each row of target_probs must be a probability vector")
    w = _weights(logged_propensity, pi[rows, a])
    r = _vec(reward, "reward")
    if r.shape != (n,):
        raise ValueError("reward must have one entry per row")
    terms = (pi * rhat).sum(axis=1) + w * (r - rhat[rows, a])
    return _mean_estimate(terms, rng, n_boot)
