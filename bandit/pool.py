"""What pooled policies share across users: exact sums of each user's own statistics.

A pooled prior is a ridge fit on *every* user's data. Kept as a running float sum updated
by each event, it depends on the order of events (floating-point addition is not
associative) and on each event being added exactly once, and neither holds across the
partitions and restarts of a stream: partitions are processed in any order, and a crash
between two writes can leave the sum and a user's record disagreeing.

So the pool is *derived* state: ``PoolStats`` is the sum, over users, of each user's
``Contribution`` — the user's own sufficient statistics (Σ x xᵀ, Σ r x, Σ r², pulls) times
the user's weight on each of the pool's M types (pooled-v1 has one type of weight 1). Both
are stored in fixed point as int64, so sums are exact: the same users give the same bits in
any order, a user's old contribution is subtracted exactly when it changes (``replace``),
and the worker can rebuild the pool from the users' records after a restart or a rebalance
and get the very same numbers. A contribution is a function of the user's state alone, so
the pool is exactly-once whenever the user records are.

Fixed point: statistics are scaled by 2²⁰ and weights by 2⁸ (a weight is k/256), so a term
is an int64 multiple of 2⁻²⁸. With features and rewards bounded by 1 in absolute value
(every map and reward here), the sums stay exact up to 3·10¹⁰ events per type, about nine
years of ten million feedbacks a day; a user's statistics are rounded to 10⁻⁶.

>>> from bandit.linear import Ridge
>>> alice, bob = Ridge.new(2), Ridge.new(2)
>>> alice.update(np.array([1.0, 0.0]), 1.0)
>>> bob.update(np.array([1.0, 1.0]), -1.0)
>>> one, two = PoolStats.new(1, 2), PoolStats.new(1, 2)
>>> for r in (alice, bob):
...     one.replace(None, Contribution.of(r, ONE_TYPE))
>>> for r in (bob, alice):  # another order: the same bits
...     two.replace(None, Contribution.of(r, ONE_TYPE))
>>> one == two, one.users, one.pulls.tolist()
(True, 2, [2])
>>> one.replace(Contribution.of(bob, ONE_TYPE), None)  # bob leaves: exactly alice remains
>>> one.thetas(1.0, np.zeros((1, 2))).round(3).tolist()
[[0.5, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bandit.base import FloatArray
from bandit.linear import Ridge, RidgeRows

__all__ = [
    "ONE_TYPE",
    "STAT_SCALE",
    "WEIGHT_SCALE",
    "Contribution",
    "IntArray",
    "Pool",
    "PoolDelta",
    "PoolStats",
    "data_stats",
    "quantize_weights",
    "solve_types",
]

IntArray = npt.NDArray[np.int64]

STAT_SCALE = 1 << 20  # a user's statistics, in units of 2⁻²⁰
WEIGHT_SCALE = 1 << 8  # a type weight, in units of 1/256
ONE_TYPE: IntArray = np.array([WEIGHT_SCALE], dtype=np.int64)  # a pool with one type


def quantize_weights(weights: FloatArray) -> IntArray:
    """Posterior weights (summing to 1) in units of 1/256; weights below 1/512 become 0."""
    return np.asarray(np.rint(np.asarray(weights) * WEIGHT_SCALE), dtype=np.int64)


def data_stats(rows: RidgeRows) -> IntArray:
    """Each stacked ridge's data statistics [Σ x xᵀ (its A without Λ), Σ r x, Σ r²] in fixed
    point, as the rows of an n × (d·d + d + 1) array (``Contribution.stats``)."""
    gram = rows.gram()
    n, d = gram.shape[0], gram.shape[-1]
    flat = np.empty((n, d * d + d + 1), dtype=np.float64)
    flat[:, : d * d] = gram.reshape(n, d * d)
    flat[:, d * d : d * d + d] = rows.b
    flat[:, -1] = rows.reward_sq_sum
    flat *= STAT_SCALE
    return np.rint(flat).astype(np.int64)


def solve_types(stats: IntArray, dim: int, lam: float, priors: FloatArray) -> FloatArray:
    """Each type's ridge solution (λI + G_m)⁻¹ (λ prior_m + Σ r x) from pool statistics of
    shape (..., M, d·d + d + 1), as a (..., M, d) array: one pool, or a stack of them."""
    scale = 1.0 / float(STAT_SCALE * WEIGHT_SCALE)
    a = stats[..., : dim * dim].reshape(*stats.shape[:-1], dim, dim) * scale
    diag = np.arange(dim)
    a[..., diag, diag] += lam
    rhs = (
        lam * np.asarray(priors, dtype=np.float64) + stats[..., dim * dim : dim * dim + dim] * scale
    )
    return np.asarray(np.linalg.solve(a, rhs[..., None])[..., 0], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One user's share of a pool: its statistics in fixed point, and its type weights.

    ``stats`` is the flat vector [Σ x xᵀ (d × d, row-major), Σ r x (d), Σ r²]: one numpy
    product adds it to every type of a pool at once.
    """

    weights: IntArray  # M, in units of 1/WEIGHT_SCALE
    stats: IntArray  # d·d + d + 1
    pulls: int

    @classmethod
    def of(cls, user: Ridge, weights: IntArray) -> Contribution:
        """The user's data statistics (its A without the prior Λ) with these weights."""
        return cls(weights=weights, stats=data_stats(RidgeRows.of([user]))[0], pulls=user.pulls)

    def delta(self, sign: int) -> PoolDelta:
        """What adding (sign 1) or removing (sign −1) this contribution does to a pool."""
        w = sign * self.weights
        pulls = sign * (self.weights > 0) * self.pulls
        return PoolDelta(np.multiply.outer(w, self.stats), pulls, sign)


@dataclass(frozen=True, slots=True)
class PoolDelta:
    """A change to a pool's arrays, computed once and applied to every sum that holds the
    user (the worker keeps a partition's part and the whole: ``streams.worker.pools``)."""

    stats: IntArray  # M × (d·d + d + 1)
    pulls: IntArray  # M
    users: int

    @classmethod
    def between(cls, old: Contribution | None, new: Contribution | None) -> PoolDelta | None:
        if old is None:
            return new.delta(1) if new is not None else None
        if new is None:
            return old.delta(-1)
        out, gone = new.delta(1), old.delta(-1)
        return cls(out.stats + gone.stats, out.pulls + gone.pulls, 0)

    @classmethod
    def summed(
        cls,
        olds: Sequence[Contribution | None],
        news: Sequence[Contribution | None],
        like: PoolStats,
    ) -> PoolDelta:
        """Σ ``between(old, new)`` over users, in one product per side: what replacing each
        user's ``old`` by its ``new`` does to a pool shaped ``like`` (exact, as ever).

        >>> from bandit.linear import Ridge
        >>> alice, bob = Ridge.new(2), Ridge.new(2)
        >>> before = [None, Contribution.of(bob, ONE_TYPE)]
        >>> alice.update(np.array([1.0, 0.0]), 1.0)
        >>> bob.update(np.array([1.0, 1.0]), -1.0)
        >>> after = [Contribution.of(r, ONE_TYPE) for r in (alice, bob)]
        >>> one, two = PoolStats.new(1, 2), PoolStats.new(1, 2)
        >>> for old, new in zip(before, after):
        ...     one.replace(old, new)
        >>> two.apply(PoolDelta.summed(before, after, two))
        >>> one == two, two.users
        (True, 1)
        """
        out_stats, out_pulls, out_users = _summed(news, like)
        gone_stats, gone_pulls, gone_users = _summed(olds, like)
        return cls(out_stats - gone_stats, out_pulls - gone_pulls, out_users - gone_users)


def _summed(
    contributions: Sequence[Contribution | None], like: PoolStats
) -> tuple[IntArray, IntArray, int]:
    """Σ weights ⊗ stats, the pulls per type, and how many contributions there are."""
    present = [c for c in contributions if c is not None]
    if not present:
        return np.zeros_like(like.stats), np.zeros_like(like.pulls), 0
    weights = np.stack([c.weights for c in present])
    pulls = np.array([c.pulls for c in present], dtype=np.int64)
    stats = weights.T @ np.stack([c.stats for c in present])
    return stats, ((weights > 0) * pulls[:, None]).sum(axis=0), len(present)


@dataclass(slots=True, eq=False)
class PoolStats:
    """Σ over users of weight × statistics, per type, exact int64.

    ``stats`` holds, per type (row), the flat [Σ x xᵀ, Σ r x, Σ r²] of ``Contribution``;
    ``gram`` (M × d × d, units of 2⁻²⁸) is a view of it; ``solve_types`` reads the rest.
    """

    stats: IntArray  # M × (d·d + d + 1)
    pulls: IntArray  # M: Σ pulls of the users with a non-zero weight on the type
    dim: int
    users: int = 0  # how many contributions are in the sum

    @classmethod
    def new(cls, m: int, dim: int) -> PoolStats:
        if m < 1 or dim < 1:
            raise ValueError("a pool needs at least one type and one dimension")
        return cls(
            stats=np.zeros((m, dim * dim + dim + 1), dtype=np.int64),
            pulls=np.zeros(m, dtype=np.int64),
            dim=dim,
        )

    @property
    def gram(self) -> IntArray:
        d = self.dim
        return self.stats[:, : d * d].reshape(-1, d, d)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoolStats):
            return NotImplemented
        return (
            self.users == other.users
            and self.dim == other.dim
            and np.array_equal(self.stats, other.stats)
            and np.array_equal(self.pulls, other.pulls)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def types(self) -> int:
        return int(self.stats.shape[0])

    def replace(self, old: Contribution | None, new: Contribution | None) -> None:
        """Swap a user's contribution: subtract ``old`` (if any), add ``new`` (if any)."""
        delta = PoolDelta.between(old, new)
        if delta is not None:
            self.apply(delta)

    def apply(self, delta: PoolDelta) -> None:
        self.stats += delta.stats
        self.pulls += delta.pulls
        self.users += delta.users

    def merge(self, other: PoolStats, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` subtract) another pool of the same shape, exactly."""
        self.stats += sign * other.stats
        self.pulls += sign * other.pulls
        self.users += sign * other.users

    def thetas(self, lam: float, priors: FloatArray) -> FloatArray:
        """Each type's ridge solution (``solve_types``) as an M × d array."""
        return solve_types(self.stats, self.dim, lam, priors)

    @property
    def whole(self) -> PoolStats:
        return self


class Pool(Protocol):
    """What a pooled policy needs of its shared state: a ``PoolStats``, or the worker's view
    of one partition's part of a pool that sums several (``replace`` and ``apply`` update
    both; ``whole`` is the sum that is learned against)."""

    @property
    def whole(self) -> PoolStats: ...

    def replace(self, old: Contribution | None, new: Contribution | None) -> None: ...

    def apply(self, delta: PoolDelta) -> None: ...

    def thetas(self, lam: float, priors: FloatArray) -> FloatArray: ...
