"""``pooled-v1``: per-user ridge shrunk towards a ridge model pooled across users.

The shared state is a ridge fit on every user's data, kept as the exact sum of each user's
own statistics (``bandit.pool``): θ_pool = (λ_pool I + Σ_u G_u)⁻¹ Σ_u b_u. A user's model
shrinks towards it instead of towards zero:
θ_u = (λ_u I + A_u)⁻¹ (λ_u θ_pool + b_u), with (λ_u I + A_u)⁻¹ kept by Sherman–Morrison,
so a new user starts at the pooled model and moves away as its own evidence comes in.
An update touches both states (O(d²) each): the user's ridge, and the pool, where the user's
old contribution is swapped for its new one. Exploration is ε-greedy with a per-user
decaying ε_t = max(ε_min, c / sqrt(t + 1)), so propensities are exact.

>>> from bandit.base import Moment, Task
>>> pol = PooledV1()
>>> shared, alice, bob = pol.new_shared(), pol.new_user(), pol.new_user()
>>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, True, 9.0)]
>>> for _ in range(5):
...     pol.update(alice, shared, Moment(9, 2), tasks[1], 1.0)
>>> c = pol.choose(bob, shared, Moment(9, 2), tasks, np.random.default_rng(0))
>>> c.index, c.explored  # bob has no data yet: the pooled model already prefers "b"
(1, False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bandit.base import FloatArray, Moment, Task
from bandit.explore import EpsilonGreedyScores, decaying_epsilon, design
from bandit.features import V2_DIM, features_v2
from bandit.linear import Ridge
from bandit.pool import ONE_TYPE, Contribution, Pool, PoolStats

__all__ = ["PooledV1"]


def _need(shared: Pool | None) -> Pool:
    if shared is None:
        raise ValueError("pooled-v1 needs its shared state (new_shared)")
    return shared


class PooledV1(EpsilonGreedyScores):
    """Hierarchical ridge: user model shrunk towards a pooled model, ε-greedy on top."""

    __slots__ = ("c", "dim", "epsilon_min", "fmap", "lam_pool", "lam_user")
    name = "pooled-v1"

    def __init__(
        self,
        *,
        lam_user: float | FloatArray = 4.0,
        lam_pool: float = 1.0,
        c: float = 0.1,
        epsilon_min: float = 0.02,
        fmap: Callable[[Moment, Task], FloatArray] = features_v2,
        dim: int = V2_DIM,
    ) -> None:
        if not (
            np.all(np.asarray(lam_user) > 0.0)
            and lam_pool > 0.0
            and c >= 0.0
            and 0.0 <= epsilon_min <= 1.0
        ):
            raise ValueError("need lam_user, lam_pool > 0, c ≥ 0 and 0 ≤ epsilon_min ≤ 1")
        self.lam_user = lam_user
        self.lam_pool = lam_pool
        self.c = c
        self.epsilon_min = epsilon_min
        self.fmap = fmap
        self.dim = dim

    def new_user(self) -> Ridge:
        return Ridge.new(self.dim, self.lam_user)

    def new_shared(self) -> PoolStats:
        return PoolStats.new(1, self.dim)

    def pool_contribution(self, user: Ridge) -> Contribution | None:
        return Contribution.of(user, ONE_TYPE) if user.pulls else None

    def epsilon_for(self, user: Ridge) -> float:
        return decaying_epsilon(self.c, self.epsilon_min, user.pulls)

    def theta(self, user: Ridge, shared: Pool | None) -> FloatArray:
        """The user's model: shrunk towards the pooled θ (needs the shared state)."""
        pooled = _need(shared).thetas(self.lam_pool, np.zeros((1, self.dim)))[0]
        return user.theta(prior=pooled)

    def scores(
        self, user: Ridge, shared: Pool | None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        return design(self.fmap, moment, tasks) @ self.theta(user, shared)

    def update(
        self, user: Ridge, shared: Pool | None, moment: Moment, task: Task, reward: float
    ) -> None:
        pool = _need(shared)
        old = self.pool_contribution(user)
        user.update(self.fmap(moment, task), reward)
        pool.replace(old, self.pool_contribution(user))

    def encode_user(self, user: Ridge) -> bytes:
        return user.encode()

    def decode_user(self, data: bytes) -> Ridge:
        return Ridge.decode(data, dim=self.dim)
