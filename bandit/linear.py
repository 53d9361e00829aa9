"""Ridge regression state with an incrementally maintained inverse (Sherman–Morrison).

``Ridge`` holds A = Λ + Σ x xᵀ, b = Σ r x and A⁻¹, so that an update and a score are
O(d²). Λ = diag(λ) is the prior precision: λI for plain ridge, or one λ per feature (shrink
some coordinates harder than others). θ = A⁻¹ b is computed on demand (one mat-vec), or,
with a prior mean m (the pooled policy), θ = A⁻¹ (Λ m + b): the ridge solution that shrinks
towards m instead of zero.

Sherman–Morrison is stable for these positive-definite rank-one updates, but rounding error
still accumulates linearly in the number of updates, so every ``RESYNC_EVERY`` updates A⁻¹
is recomputed from A with ``np.linalg.solve`` (O(d³) once per 64 updates, i.e. O(d²·d/64)
amortised, negligible for d ≤ 20). A and b are exact sums, so they are the ground truth.

>>> r = Ridge.new(2)
>>> r.update(np.array([1.0, 0.0]), 1.0)
>>> r.update(np.array([1.0, 1.0]), -1.0)
>>> [round(float(v), 4) for v in r.theta()]
[0.2, -0.6]
>>> r.pulls, r.reward_sum
(2, 0.0)

``thetas`` and ``update_each`` do the same for many users' ridges at once (the simulator's
load mode): stacked, with the very same floating-point operations per user (numpy's
stacked matmul and solve call the same BLAS and LAPACK routines per matrix), so each ridge
ends exactly as its own ``theta`` and ``update`` would leave it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.base import FloatArray

__all__ = [
    "CODEC_VERSION",
    "RESYNC_EVERY",
    "Ridge",
    "RidgeRows",
    "sse_each",
    "thetas",
    "update_each",
]

RESYNC_EVERY = 64
# Blank ridges by (dim, λ), copied by ``Ridge.new``; a bound, in case λ comes from data.
_BLANK: dict[tuple[int, object], tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = {}
_BLANK_KINDS = 64

CODEC_VERSION = 1
# version, dim, pulls, updates since the last re-sync, Σr, Σr²; then λ, A, A⁻¹, b.
_HEADER = struct.Struct("<BHQIdd")


@dataclass(slots=True)
class Ridge:
    """Ridge regression sufficient statistics plus the inverse of A (mutated in place)."""

    lam: FloatArray  # diagonal of the prior precision Λ
    a: FloatArray  # Λ + Σ x xᵀ
    a_inv: FloatArray  # A⁻¹, kept by Sherman–Morrison, re-synced from A periodically
    b: FloatArray  # Σ r x
    pulls: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    since_sync: int = 0

    @classmethod
    def new(cls, dim: int, lam: float | FloatArray = 1.0) -> Ridge:
        """A = Λ (λ a scalar, or one positive value per feature), b = 0."""
        key = (dim, lam if isinstance(lam, float | int) else np.asarray(lam).tobytes())
        blank = _BLANK.get(key)
        if blank is None:
            lam_v = np.broadcast_to(np.asarray(lam, dtype=np.float64), (dim,)).copy()
            if dim < 1 or not np.all(lam_v > 0.0):
                raise ValueError("dim must be ≥ 1 and every λ > 0")
            blank = (lam_v, np.diag(lam_v), np.diag(1.0 / lam_v), np.zeros(dim, dtype=np.float64))
            if len(_BLANK) < _BLANK_KINDS:
                _BLANK[key] = blank
        lam_v, a, a_inv, b = blank
        # Copies of a cached blank: every new user of a policy starts alike, and building
        # the diagonals each time cost a new user 17 µs at d = 5 (6 Dec 2026).
        return cls(lam=lam_v.copy(), a=a.copy(), a_inv=a_inv.copy(), b=b.copy())

    @property
    def dim(self) -> int:
        return int(self.b.shape[0])

    def theta(self, prior: FloatArray | None = None) -> FloatArray:
        """A⁻¹ b, or A⁻¹ (Λ·prior + b) when shrinking towards a prior mean."""
        if prior is None:
            return self.a_inv @ self.b
        return self.a_inv @ (self.lam * prior + self.b)

    def widths(self, xs: FloatArray) -> FloatArray:
        """sqrt(xᵀ A⁻¹ x) for each row x of ``xs`` (the LinUCB bonus per unit of α)."""
        q = np.einsum("ij,jk,ik->i", xs, self.a_inv, xs)
        return np.asarray(np.sqrt(np.maximum(q, 0.0)), dtype=np.float64)

    def update(self, x: FloatArray, reward: float, weight: float = 1.0) -> None:
        """A += w x xᵀ, b += w r x, and A⁻¹ by Sherman–Morrison (O(d²)); w ≥ 0."""
        self.a += weight * np.outer(x, x)
        self.b += (weight * reward) * x
        self.pulls += 1
        self.reward_sum += reward
        self.reward_sq_sum += reward * reward
        self.since_sync += 1
        if self.since_sync >= RESYNC_EVERY:
            self.resync()
            return
        ax = self.a_inv @ x
        self.a_inv -= (weight / (1.0 + weight * float(x @ ax))) * np.outer(ax, ax)

    def sse(self, theta: FloatArray) -> float:
        """Σ (r − θ·x)² over the data seen (unit weights), from the sufficient statistics
        (a model's fit on this data, e.g. to compare candidate priors)."""
        return float(self.sse_many(theta[None, :])[0])

    def sse_many(self, thetas: FloatArray) -> FloatArray:
        """``sse`` for every row of an M × d array of models at once."""
        return np.asarray(sse_each(RidgeRows.of([self]), thetas[None])[0], dtype=np.float64)

    def resync(self) -> None:
        """Recompute A⁻¹ from A (O(d³)), discarding accumulated rounding error."""
        self.a_inv = _inverses(self.a[None, :, :])[0]
        self.since_sync = 0

    # -- codec -------------------------------------------------------------------------

    def encode(self) -> bytes:
        """Version byte, header, then λ, A, A⁻¹, b as little-endian float64 (exact)."""
        head = _HEADER.pack(
            CODEC_VERSION,
            self.dim,
            self.pulls,
            self.since_sync,
            self.reward_sum,
            self.reward_sq_sum,
        )
        body = np.concatenate([self.lam, self.a.ravel(), self.a_inv.ravel(), self.b])
        return head + body.astype("<f8").tobytes()

    @classmethod
    def decode(cls, data: bytes, *, dim: int | None = None) -> Ridge:
        """Inverse of ``encode``; ValueError on a wrong version, dimension or length."""
        if len(data) < _HEADER.size:
            raise ValueError(f"ridge state too short: {len(data)} bytes")
        version, d, pulls, since_sync, reward_sum, reward_sq_sum = _HEADER.unpack_from(data)
        if version != CODEC_VERSION:
            raise ValueError(f"ridge state version {version}, expected {CODEC_VERSION}")
        if dim is not None and d != dim:
            raise ValueError(f"ridge state has dimension {d}, expected {dim}")
        expected = _HEADER.size + 8 * (2 * d * d + 2 * d)
        if d < 1 or len(data) != expected:
            raise ValueError(f"ridge state of dimension {d} is {len(data)} bytes, not {expected}")
        # One copy, owned by the ridge; its parts are views of it (no copy each).
        flat = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
        finite = math.isfinite(reward_sum) and math.isfinite(reward_sq_sum)
        if not (finite and np.isfinite(flat).all() and (flat[:d] > 0.0).all()):
            raise ValueError("ridge state holds non-finite numbers or a λ ≤ 0")
        dd = d * d
        return cls(
            lam=flat[:d],
            a=flat[d : d + dd].reshape(d, d),
            a_inv=flat[d + dd : d + 2 * dd].reshape(d, d),
            b=flat[d + 2 * dd :],
            pulls=pulls,
            reward_sum=reward_sum,
            reward_sq_sum=reward_sq_sum,
            since_sync=since_sync,
        )


def _inverses(a: FloatArray) -> FloatArray:
    """The symmetrised inverse of each of a stack of matrices (``Ridge.resync``)."""
    inv = np.linalg.solve(a, np.broadcast_to(np.eye(a.shape[-1], dtype=np.float64), a.shape))
    return np.asarray(0.5 * (inv + inv.transpose(0, 2, 1)), dtype=np.float64)


def thetas(ridges: Sequence[Ridge]) -> FloatArray:
    """``theta()`` of each ridge (no prior), as the rows of an n × d array.

    >>> r = Ridge.new(2)
    >>> r.update(np.array([1.0, 0.0]), 1.0)
    >>> np.array_equal(thetas([r, Ridge.new(2)]), np.stack([r.theta(), np.zeros(2)]))
    True
    """
    a_inv = np.stack([r.a_inv for r in ridges])
    b = np.stack([r.b for r in ridges])
    return np.asarray((a_inv @ b[:, :, None])[:, :, 0], dtype=np.float64)


@dataclass(slots=True)
class RidgeRows:
    """Many ridges of one dimension stacked once: the operations over a batch's users
    (``sse_each``, ``update_each``, ``bandit.pool.data_stats``) share the stacks, since at
    d = 5 stacking the per-user arrays costs more than the arithmetic on them.

    ``update_each`` keeps them current: after it, they are the updated ridges'.
    """

    a: FloatArray  # n × d × d
    a_inv: FloatArray  # n × d × d
    b: FloatArray  # n × d
    lam: FloatArray  # n × d
    reward_sq_sum: FloatArray  # n

    @classmethod
    def of(cls, ridges: Sequence[Ridge]) -> RidgeRows:
        return cls(
            a=np.stack([r.a for r in ridges]),
            a_inv=np.stack([r.a_inv for r in ridges]),
            b=np.stack([r.b for r in ridges]),
            lam=np.stack([r.lam for r in ridges]),
            reward_sq_sum=np.array([r.reward_sq_sum for r in ridges], dtype=np.float64),
        )

    def gram(self) -> FloatArray:
        """Σ x xᵀ of each ridge: its A without the prior Λ."""
        gram = self.a.copy()
        diag = np.arange(gram.shape[-1])
        gram[:, diag, diag] -= self.lam
        return gram


def sse_each(rows: RidgeRows, thetas: FloatArray) -> FloatArray:
    """``sse_many(thetas[i])`` of each stacked ridge: thetas is n × M × d, the result n × M.

    >>> r = Ridge.new(2)
    >>> r.update(np.array([1.0, 0.0]), 1.0)
    >>> sse_each(RidgeRows.of([r]), np.array([[[1.0, 0.0], [0.0, 0.0]]])).tolist()
    [[0.0, 1.0]]
    """
    quad = ((thetas @ rows.gram()) * thetas).sum(axis=2)
    fit = (thetas @ rows.b[:, :, None])[:, :, 0]
    return np.asarray(rows.reward_sq_sum[:, None] - 2.0 * fit + quad, dtype=np.float64)


def update_each(
    ridges: Sequence[Ridge], xs: FloatArray, rewards: FloatArray, rows: RidgeRows | None = None
) -> None:
    """``ridges[i].update(xs[i], rewards[i])`` for every i (unit weights), at once; ``rows``,
    if given, are the ridges' stacks (``RidgeRows.of(ridges)``), updated in place.

    Each ridge gets arrays of its own (copies of its rows), so a state kept long after (the
    worker's hot cache) never holds the stacks of the other ridges alive.

    >>> one, many = Ridge.new(2), [Ridge.new(2)]
    >>> one.update(np.array([1.0, 2.0]), 0.5)
    >>> update_each(many, np.array([[1.0, 2.0]]), np.array([0.5]))
    >>> one.encode() == many[0].encode()
    True
    """
    rows = RidgeRows.of(ridges) if rows is None else rows
    a, a_inv, b = rows.a, rows.a_inv, rows.b
    # Ridge.update's operations with w = 1, whose products with 1.0 are exact.
    a += xs[:, :, None] * xs[:, None, :]
    b += rewards[:, None] * xs
    ax = a_inv @ xs[:, :, None]
    x_ax = (xs[:, None, :] @ ax)[:, 0, 0]
    a_inv -= (1.0 / (1.0 + x_ax))[:, None, None] * (ax * ax.transpose(0, 2, 1))
    since = np.array([r.since_sync for r in ridges]) + 1
    due = np.flatnonzero(since >= RESYNC_EVERY)
    if due.size:
        a_inv[due] = _inverses(a[due])
        since[due] = 0
    for i, (ridge, reward, since_sync) in enumerate(
        zip(ridges, rewards.tolist(), since.tolist(), strict=True)
    ):
        ridge.a, ridge.a_inv, ridge.b = a[i].copy(), a_inv[i].copy(), b[i].copy()
        ridge.pulls += 1
        ridge.reward_sum += reward
        ridge.reward_sq_sum += reward * reward
        ridge.since_sync = since_sync
        rows.reward_sq_sum[i] = ridge.reward_sq_sum
