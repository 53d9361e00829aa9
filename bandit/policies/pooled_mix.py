"""``pooledmix-v1``: a per-user ridge shrunk towards the closest of several pooled models.

``pooled-v1`` shrinks every user towards one model pooled over everyone; when users differ
in kind (one persona likes high priority, another low) that single prior is wrong for some
of them, and 20 noisy rewards are too few to pull away from it. Here the shared state holds
M pooled ridge models ("types"), each started from its own prior mean (a small grid over
the priority and overdue coefficients, so the types can tell users apart from the start).

- A user's type: the one whose θ_m explains the user's rewards best, i.e. the smallest
  Σ (r − θ_m·x)² over the user's own data (``Ridge.sse``, O(d²) from sufficient statistics);
  ties go to the first. The user's model is θ_u = (λ_u I + A_u)⁻¹ (λ_u θ_type + b_u).
- Learning: the user's ridge, and every type's ridge with weight = the user's posterior
  probability of that type, softmax(−SSE_m / 2σ²) (soft online EM). O(M d²) per event.
- Exploration: ε-greedy with ε_t = max(ε_min, c / sqrt(t + 1)) per user, as pooled-v1;
  the greedy choice is deterministic given the state, so propensities are exact.

>>> from bandit.base import Moment, Task
>>> pol = PooledMixV1()
>>> shared, alice = pol.new_shared(), pol.new_user()
>>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, False, 9.0)]
>>> for _ in range(6):  # alice likes low priority
...     pol.update(alice, shared, Moment(12, 2), tasks[0], 1.0)
...     pol.update(alice, shared, Moment(12, 2), tasks[1], -1.0)
>>> pol.probabilities(alice, shared, Moment(12, 2), tasks).round(3).tolist()
[0.986, 0.014]
>>> pol.decode_shared(pol.encode_shared(shared))[2].pulls == shared[2].pulls
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from bandit.base import FloatArray, Moment, Task
from bandit.explore import EpsilonGreedyScores, decaying_epsilon, design, first_argmax
from bandit.features import V2_DIM, features_v2
from bandit.linear import Ridge, RidgeStack


def default_prototypes() -> FloatArray:
    """Prior means over features_v2 [1, priority, overdue, morning, evening]: an overall
    level of −0.5, priority slope +0.6 / 0 / −0.6, overdue +0.3 / −0.3 (six types)."""
    rows = [[-0.5, p, o, 0.0, 0.0] for p in (0.6, 0.0, -0.6) for o in (0.3, -0.3)]
    return np.array(rows, dtype=np.float64)


def _need(shared: RidgeStack | None) -> RidgeStack:
    if shared is None:
        raise ValueError("pooledmix-v1 needs its shared state (new_shared)")
    return shared


class PooledMixV1(EpsilonGreedyScores):
    """Per-user ridge shrunk towards the best-fitting of M pooled types; ε-greedy on top."""

    __slots__ = ("c", "epsilon_min", "fmap", "lam_pool", "lam_user", "prototypes", "sigma2")
    name: ClassVar[str] = "pooledmix-v1"

    def __init__(
        self,
        *,
        prototypes: FloatArray | None = None,
        lam_user: float | FloatArray = 4.0,
        lam_pool: float = 1.0,
        sigma2: float = 0.45,
        c: float = 0.1,
        epsilon_min: float = 0.02,
        fmap: Callable[[Moment, Task], FloatArray] = features_v2,
    ) -> None:
        protos = default_prototypes() if prototypes is None else np.asarray(prototypes, float)
        if protos.ndim != 2 or protos.shape[1] != V2_DIM or protos.shape[0] < 1:
            raise ValueError(f"prototypes must be an M × {V2_DIM} array")
        positive = bool(np.all(np.asarray(lam_user) > 0)) and lam_pool > 0 and sigma2 > 0
        if not (positive and c >= 0 and 0 <= epsilon_min <= 1):
            raise ValueError("need lam_user, lam_pool, sigma2 > 0, c ≥ 0, 0 ≤ epsilon_min ≤ 1")
        self.prototypes = protos
        self.fmap = fmap
        self.lam_user = lam_user
        self.lam_pool = lam_pool
        self.sigma2 = sigma2
        self.c = c
        self.epsilon_min = epsilon_min

    def new_user(self) -> Ridge:
        return Ridge.new(V2_DIM, self.lam_user)

    def new_shared(self) -> RidgeStack:
        return RidgeStack.new(len(self.prototypes), V2_DIM, self.lam_pool)

    def type_thetas(self, shared: RidgeStack | None) -> FloatArray:
        """M × d: each type's ridge solution shrunk towards its prior mean."""
        return _need(shared).thetas(self.prototypes)

    def type_posterior(self, user: Ridge, thetas: FloatArray) -> FloatArray:
        """softmax(−SSE_m / 2σ²) over the types, from the user's own data."""
        ll = -user.sse_many(thetas) / (2.0 * self.sigma2)
        w = np.exp(ll - ll.max())
        return np.asarray(w / w.sum(), dtype=np.float64)

    def theta(self, user: Ridge, shared: RidgeStack | None) -> FloatArray:
        thetas = self.type_thetas(shared)
        best = first_argmax(self.type_posterior(user, thetas))
        return user.theta(prior=thetas[best])

    def epsilon_for(self, user: Ridge) -> float:
        return decaying_epsilon(self.c, self.epsilon_min, user.pulls)

    def scores(
        self, user: Ridge, shared: RidgeStack | None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        return design(self.fmap, moment, tasks) @ self.theta(user, shared)

    def update(
        self, user: Ridge, shared: RidgeStack | None, moment: Moment, task: Task, reward: float
    ) -> None:
        types = _need(shared)
        x = self.fmap(moment, task)
        weights = self.type_posterior(user, self.type_thetas(types))
        types.update(x, reward, np.where(weights > 1e-9, weights, 0.0))
        user.update(x, reward)

    def encode_user(self, user: Ridge) -> bytes:
        return user.encode()

    def decode_user(self, data: bytes) -> Ridge:
        return Ridge.decode(data, dim=V2_DIM)

    def encode_shared(self, shared: RidgeStack) -> bytes:
        return shared.encode()

    def decode_shared(self, data: bytes) -> RidgeStack:
        return RidgeStack.decode(data, m=len(self.prototypes), dim=V2_DIM)
