"""``known-types``: the cold-start ceiling. It knows the persona set, not the user's persona.

A reference, never a serving policy: it is given each type's expected reward function (the
rule judge's personas) and keeps, per user, the log-likelihood of the user's rewards under
each type, Σ −(r − μ_k(x))² / 2σ². It is Bayes-greedy: it shows the tip with the highest
expected reward under the posterior over types, Σ_k p_k μ_k(task). It never explores, so
its propensities are one-hot.

A learner that is not told the types must find them and the user's type from rewards; this
one only has to find the user's type. So over a short run no such learner can be expected to
beat it, and ``tipstream compare`` reports cold start against it as well as against the
oracle (which is told the user's type).

>>> from bandit.base import Moment, Task
>>> likes_high = lambda m, t: 0.2 * t.priority - 0.6
>>> likes_low = lambda m, t: 0.3 - 0.2 * t.priority
>>> pol = KnownTypes([likes_high, likes_low])
>>> user, tasks = pol.new_user(), [Task("low", 1, False, 1.0), Task("high", 4, False, 1.0)]
>>> pol.choose(user, None, Moment(9, 1), tasks, None).index  # even prior: high wins on average
1
>>> pol.update(user, None, Moment(9, 1), tasks[1], -0.6)  # a likes-low user's reward
>>> pol.posterior(user).round(3).tolist(), pol.choose(user, None, Moment(9, 1), tasks, None).index
([0.332, 0.668], 0)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.base import Choice, FloatArray, Moment, Policy, Task
from bandit.explore import first_argmax, one_hot

__all__ = ["KNOWN_TYPES_NAME", "KnownTypes", "TypeBelief"]

KNOWN_TYPES_NAME = "known-types"
_HEADER = struct.Struct("<BHQ")  # version, types, pulls


@dataclass(slots=True)
class TypeBelief:
    """The user's log-likelihood under each type, and its pulls."""

    log_likelihood: FloatArray
    pulls: int = 0


class KnownTypes(Policy):
    """Bayes-greedy over a known set of types (reference only)."""

    __slots__ = ("expected", "sigma2")
    name = KNOWN_TYPES_NAME

    def __init__(
        self, expected: Sequence[Callable[[Moment, Task], float]], *, sigma2: float = 0.45
    ) -> None:
        if not expected or sigma2 <= 0:
            raise ValueError("known-types needs at least one type and sigma2 > 0")
        self.expected = list(expected)
        self.sigma2 = sigma2

    def new_user(self) -> TypeBelief:
        return TypeBelief(np.zeros(len(self.expected), dtype=np.float64))

    def posterior(self, user: TypeBelief) -> FloatArray:
        ll = user.log_likelihood
        w = np.exp(ll - ll.max())
        return np.asarray(w / w.sum(), dtype=np.float64)

    def _means(self, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        """K × n: each type's expected reward of each task."""
        return np.array([[f(moment, t) for t in tasks] for f in self.expected], dtype=np.float64)

    def _scores(self, user: TypeBelief, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        if not tasks:
            raise ValueError("no candidates to choose from")
        return np.asarray(self.posterior(user) @ self._means(moment, tasks), dtype=np.float64)

    def probabilities(
        self, user: TypeBelief, shared: None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        return one_hot(first_argmax(self._scores(user, moment, tasks)), len(tasks))

    def choose(
        self,
        user: TypeBelief,
        shared: None,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator | None,
    ) -> Choice:
        scores = self._scores(user, moment, tasks)
        i = first_argmax(scores)
        return Choice(index=i, propensity=1.0, explored=False, score=float(scores[i]))

    def update(
        self, user: TypeBelief, shared: None, moment: Moment, task: Task, reward: float
    ) -> None:
        means = np.array([f(moment, task) for f in self.expected], dtype=np.float64)
        user.log_likelihood -= (reward - means) ** 2 / (2.0 * self.sigma2)
        user.pulls += 1

    def encode_user(self, user: TypeBelief) -> bytes:
        head = _HEADER.pack(1, len(user.log_likelihood), user.pulls)
        return head + user.log_likelihood.astype("<f8").tobytes()

    def decode_user(self, data: bytes) -> TypeBelief:
        version, types, pulls = _HEADER.unpack_from(data)
        if version != 1 or types != len(self.expected):
            raise ValueError(f"known-types state version {version} with {types} types")
        if len(data) != _HEADER.size + 8 * types:
            raise ValueError(f"known-types state of {len(data)} bytes")
        ll = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
        return TypeBelief(ll, pulls)
