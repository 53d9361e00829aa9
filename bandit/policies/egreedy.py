"""ε-greedy over a per-user ridge regression.

``egreedy-v1`` is the former production policy, kept exactly (docs/simulation.md): features_v1
(7-d, no intercept), A = I, b = 0, constant ε; greedy ties go to the first maximum.

>>> import numpy as np
>>> from bandit.base import Moment, Task
>>> pol = EpsilonGreedyV1(epsilon=0.1)
>>> user = pol.new_user()
>>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, True, 9.0)]
>>> pol.update(user, None, Moment(9, 2), tasks[1], 1.0)
>>> pol.probabilities(user, None, Moment(9, 2), tasks).round(3).tolist()
[0.05, 0.95]
>>> c = pol.choose(user, None, Moment(9, 2), tasks, np.random.default_rng(1))
>>> c.index, round(c.propensity, 3), c.explored
(1, 0.95, False)

Both presets also serve a block of users at once (``choose_many``, ``update_many``) with
their vectorised feature maps, leaving every user's ridge exactly as the scalar path would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bandit.base import CandidateBlock, FloatArray, IntArray, Moment, Task
from bandit.explore import EpsilonGreedyScores, decaying_epsilon, design
from bandit.features import (
    V1_DIM,
    V2_DIM,
    BlockFeatures,
    features_v1,
    features_v1_many,
    features_v2,
    features_v2_many,
)
from bandit.linear import Ridge, thetas, update_each

__all__ = ["EpsilonGreedyV1", "EpsilonGreedyV2", "LinearEpsilonGreedy"]


class LinearEpsilonGreedy(EpsilonGreedyScores):
    """Per-user ridge (A = λI, b = 0) with ε-greedy exploration; subclasses fix the details.

    ``fmap_many``, the feature map of a whole block (n × K × d, equal to ``fmap``'s rows),
    gives the vectorised ``choose_many`` and ``update_many``; without it they loop.
    """

    __slots__ = ("dim", "fmap", "fmap_many", "lam")
    name = "egreedy-base"

    def __init__(
        self,
        fmap: Callable[[Moment, Task], FloatArray],
        dim: int,
        lam: float = 1.0,
        fmap_many: BlockFeatures | None = None,
    ) -> None:
        self.fmap = fmap
        self.fmap_many = fmap_many
        self.dim = dim
        self.lam = lam

    def new_user(self) -> Ridge:
        return Ridge.new(self.dim, self.lam)

    def scores(
        self, user: Ridge, shared: None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        return design(self.fmap, moment, tasks) @ user.theta()

    def scores_many(
        self, users: Sequence[Ridge], shared: None, block: CandidateBlock
    ) -> FloatArray:
        if self.fmap_many is None:
            raise NotImplementedError
        scores = self.fmap_many(block) @ thetas(users)[:, :, None]
        return np.asarray(scores[:, :, 0], dtype=np.float64)

    def update(self, user: Ridge, shared: None, moment: Moment, task: Task, reward: float) -> None:
        user.update(self.fmap(moment, task), reward)

    def update_many(
        self,
        users: Sequence[Ridge],
        shared: None,
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        """``update`` of each user with its chosen candidate's features, at once.

        >>> pol = EpsilonGreedyV1()
        >>> one, many = pol.new_user(), [pol.new_user()]
        >>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, True, 9.0)]
        >>> pol.update(one, None, Moment(9, 2), tasks[1], 1.0)
        >>> block = CandidateBlock.of([Moment(9, 2)], [tasks])
        >>> pol.update_many(many, None, block, np.array([1]), np.array([1.0]))
        >>> one.encode() == many[0].encode()
        True
        """
        if self.fmap_many is None:
            super().update_many(users, shared, block, chosen, rewards)
            return
        xs = self.fmap_many(block)[np.arange(block.size), chosen]
        update_each(users, xs, rewards)

    def encode_user(self, user: Ridge) -> bytes:
        return user.encode()

    def decode_user(self, data: bytes) -> Ridge:
        return Ridge.decode(data, dim=self.dim)


class EpsilonGreedyV1(LinearEpsilonGreedy):
    """The former production policy: features_v1, no intercept, constant ε (default 0.1)."""

    __slots__ = ("epsilon",)
    name = "egreedy-v1"

    def __init__(self, epsilon: float = 0.1) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        super().__init__(features_v1, V1_DIM, 1.0, features_v1_many)
        self.epsilon = epsilon

    def epsilon_for(self, user: Ridge) -> float:
        return self.epsilon


class EpsilonGreedyV2(LinearEpsilonGreedy):
    """Per-user ridge on features_v2 (with an intercept, see there) and a per-user
    decaying ε_t = max(ε_min, c / sqrt(t + 1)), t = the user's pulls (c = 0.1 tuned).

    >>> pol = EpsilonGreedyV2()
    >>> [round(pol.epsilon_for(Ridge.new(V2_DIM)), 3), pol.epsilon_min]
    [0.1, 0.02]
    """

    __slots__ = ("c", "epsilon_min")
    name = "egreedy-v2"

    def __init__(self, c: float = 0.1, epsilon_min: float = 0.02, lam: float = 1.0) -> None:
        if not (0.0 <= epsilon_min <= 1.0 and c >= 0.0):
            raise ValueError("need 0 ≤ epsilon_min ≤ 1 and c ≥ 0")
        super().__init__(features_v2, V2_DIM, lam, features_v2_many)
        self.c = c
        self.epsilon_min = epsilon_min

    def epsilon_for(self, user: Ridge) -> float:
        return decaying_epsilon(self.c, self.epsilon_min, user.pulls)
