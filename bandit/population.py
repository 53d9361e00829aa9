"""A population prior over users' models: N(μ, Σ) learned from the users' own posteriors,
as exact sums (empirical Bayes, by online EM). Pure math; ``PooledMix(prior="gaussian")`` is
its policy.

Each user stores its posterior moments (``MOMENTS`` float32: m and the upper triangle of
m mᵀ + V); the pool is the fixed-point sum of [m mᵀ + V, m, 1] over the users
(``moment_stats``, the layout of ``bandit.pool.Contribution.stats``), so it is a function of
the records alone and exactly-once, like every pool in ``bandit.pool``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bandit.base import FloatArray
from bandit.features import V2_DIM
from bandit.pool import STAT_SCALE, WEIGHT_SCALE, IntArray

__all__ = [
    "MOMENTS",
    "Float32Array",
    "gaussian_posterior",
    "gaussian_prior",
    "moment_stats",
    "pack_moments",
]

# The gaussian prior's per-user moments, as stored in the record: the posterior mean m (d),
# then the upper triangle of m mᵀ + V (row by row), float32.
_TRIU = np.triu_indices(V2_DIM)
MOMENTS = V2_DIM + len(_TRIU[0])  # 20 numbers, 80 bytes
Float32Array = npt.NDArray[np.float32]


def gaussian_prior(
    stats: IntArray, mean0: FloatArray, cov0: FloatArray, users0: float
) -> tuple[FloatArray, FloatArray]:
    """The population prior N(μ, Σ) from a gaussian pool's statistics, one per row of
    ``stats`` (n × (d·d + d + 1): Σ_u (m mᵀ + V), Σ_u m, Σ_u 1 over the users, in fixed
    point): the EM step with ``users0`` pseudo-users at the hyperprior N(mean0, cov0),
    μ = (κ μ₀ + Σ m) / (κ + n) and Σ = (κ Σ₀ + Σ_u [(m − μ)(m − μ)ᵀ + V]) / (κ + n).

    >>> mu, cov = gaussian_prior(np.zeros((1, 31), dtype=np.int64), np.ones(5), np.eye(5), 3.0)
    >>> mu.tolist(), bool(np.array_equal(cov[0], np.eye(5)))
    ([[1.0, 1.0, 1.0, 1.0, 1.0]], True)
    """
    d = len(mean0)
    flat = stats * (1.0 / float(STAT_SCALE * WEIGHT_SCALE))
    second = flat[:, : d * d].reshape(-1, d, d)
    first = flat[:, d * d : d * d + d]
    count = flat[:, -1]
    mu = (users0 * mean0[None, :] + first) / (users0 + count)[:, None]
    cross = first[:, :, None] * mu[:, None, :]
    scatter = (
        second
        - cross
        - cross.transpose(0, 2, 1)
        + count[:, None, None] * (mu[:, :, None] * mu[:, None, :])
    )
    cov = (users0 * cov0[None, :, :] + scatter) / (users0 + count)[:, None, None]
    return mu, 0.5 * (cov + cov.transpose(0, 2, 1))


def gaussian_posterior(
    gram: FloatArray, b: FloatArray, mu: FloatArray, cov: FloatArray, sigma2: float
) -> tuple[FloatArray, FloatArray]:
    """Each user's posterior N(m, V) of θ under the prior N(μ, Σ) and rewards r = θ·x + ε,
    ε ~ N(0, σ²), from its data statistics G = Σ x xᵀ and b = Σ r x (stacked, n × d × d and
    n × d): m = (σ² Σ⁻¹ + G)⁻¹ (σ² Σ⁻¹ μ + b), V = σ² (σ² Σ⁻¹ + G)⁻¹."""
    shrink = sigma2 * np.linalg.inv(cov)
    inv = np.linalg.inv(shrink + gram)
    m = (inv @ ((shrink @ mu[:, :, None])[:, :, 0] + b)[:, :, None])[:, :, 0]
    return np.asarray(m, dtype=np.float64), np.asarray(sigma2 * inv, dtype=np.float64)


def moment_stats(moments: Float32Array) -> IntArray:
    """Stored moments (n × ``MOMENTS``, float32) as pool statistics in fixed point, the
    layout of ``Contribution.stats``: [m mᵀ + V (d × d), m, 1]."""
    n, d = moments.shape[0], V2_DIM
    values = np.asarray(moments, dtype=np.float64)
    second = np.zeros((n, d, d), dtype=np.float64)
    second[:, _TRIU[0], _TRIU[1]] = values[:, d:]
    second[:, _TRIU[1], _TRIU[0]] = values[:, d:]
    flat = np.empty((n, d * d + d + 1), dtype=np.float64)
    flat[:, : d * d] = second.reshape(n, d * d)
    flat[:, d * d : d * d + d] = values[:, :d]
    flat[:, -1] = 1.0
    return np.rint(flat * STAT_SCALE).astype(np.int64)


def pack_moments(m: FloatArray, v: FloatArray) -> Float32Array:
    """m and the upper triangle of m mᵀ + V, float32 (n × ``MOMENTS``): what is stored."""
    second = m[:, :, None] * m[:, None, :] + v
    packed = np.concatenate([m, second[:, _TRIU[0], _TRIU[1]]], axis=1)
    return np.asarray(packed.astype(np.float32), dtype=np.float32)
