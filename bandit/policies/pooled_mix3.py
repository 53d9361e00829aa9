"""``pooledmix-v3``: ``pooledmix-v1``'s mixture of pooled types on centred features, with a
prior precision per feature set from how much users differ in each coefficient.

Fitting each standard persona's expected reward with features_v2 shows why v2 learns slowly:
a user's intercept (the reward of a priority-1 task) and priority slope move together
(low-priority-first: −0.32 and −0.46; deadline-driven: −0.95 and +0.50), so one isotropic
prior shrinks both the wrong way. On ``features_v3`` (priority and overdue centred) the
intercept is the level at an average task, which varies little between users (sd ≈ 0.07),
while the priority slope varies a lot (sd ≈ 0.33). The user's prior precision is then set as
σ² / var(coefficient across users), roughly: λ = 30 on the level, 3 on the priority slope,
25 on overdue, 20 on each hour band, so a new user's rewards move its priority slope first.
The types are a 5 × 3 grid in the centred coordinates (level −0.65, priority slope ±0.5 /
±0.25 / 0 × overdue ±0.15 / 0); the type posterior uses σ² = 0.3. Everything else is v1:
the user shrinks towards its best-fitting type, each type learns from every event weighted
by the user's posterior, ε_t = max(ε_min, c / sqrt(t + 1)), exact propensities, O(M d²)
per event (M = 15, d = 5).

Measured with ``tipstream compare --policies pooledmix-v3`` (LEARNING.md): cold start
(50 users × 20 rounds) gap_closed over world seeds 0–5 in the in-memory replay
0.505–0.558 on the standard personas (v2: 0.493–0.523) and 0.449–0.495 on
judges/personas/alternate.json (v2: 0.434–0.480).

>>> from bandit.base import Moment, Task
>>> pol = PooledMixV3()
>>> shared, alice = pol.new_shared(), pol.new_user()
>>> alice.lam.tolist()
[30.0, 3.0, 25.0, 20.0, 20.0]
>>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, False, 9.0)]
>>> pol.probabilities(alice, shared, Moment(12, 2), tasks).round(3).tolist()  # type 0
[0.05, 0.95]
>>> for _ in range(3):  # alice likes low priority
...     pol.update(alice, shared, Moment(12, 2), tasks[0], -0.2)
...     pol.update(alice, shared, Moment(12, 2), tasks[1], -0.8)
>>> pol.probabilities(alice, shared, Moment(12, 2), tasks).round(3).tolist()
[0.981, 0.019]
>>> len(pol.decode_shared(pol.encode_shared(shared)))
15
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bandit.base import FloatArray
from bandit.features import features_v3
from bandit.policies.pooled_mix import PooledMixV1

# Prior precision per features_v3 column: level, priority, overdue, morning, evening.
V3_USER_LAMBDA = (30.0, 3.0, 25.0, 20.0, 20.0)


def centred_grid() -> FloatArray:
    """Prior means over features_v3: level −0.65, priority slope +0.5 / +0.25 / 0 / −0.25 /
    −0.5 × overdue slope +0.15 / 0 / −0.15 (15 types, the first the most common persona
    kind: important and overdue tasks first)."""
    rows = [
        [-0.65, p, o, 0.0, 0.0] for p in (0.5, 0.25, 0.0, -0.25, -0.5) for o in (0.15, 0.0, -0.15)
    ]
    return np.array(rows, dtype=np.float64)


class PooledMixV3(PooledMixV1):
    """``pooledmix-v1`` on centred features with a per-feature prior precision."""

    __slots__ = ()
    name: ClassVar[str] = "pooledmix-v3"

    def __init__(
        self,
        *,
        prototypes: FloatArray | None = None,
        lam_user: float | FloatArray | tuple[float, ...] = V3_USER_LAMBDA,
        lam_pool: float = 1.0,
        sigma2: float = 0.3,
        c: float = 0.1,
        epsilon_min: float = 0.02,
    ) -> None:
        super().__init__(
            prototypes=centred_grid() if prototypes is None else prototypes,
            lam_user=np.array(lam_user, dtype=np.float64),
            lam_pool=lam_pool,
            sigma2=sigma2,
            c=c,
            epsilon_min=epsilon_min,
            fmap=features_v3,
        )
