"""``linucb-v1``: the policy before egreedy-v1, kept as it was.

Per-user ridge on the first five features of features_v1 (A = I, b = 0), deterministic
argmax of θ·x + α·sqrt(xᵀA⁻¹x) with α = 1 (first maximum). Propensity is 1 for the pick;
``explored`` says the bonus overturned the greedy argmax of θ·x.

>>> from bandit.base import Moment, Task
>>> pol = LinUCBV1()
>>> tasks = [Task("a", 1, False, 0.0), Task("b", 4, True, 30.0)]
>>> c = pol.choose(pol.new_user(), None, Moment(6, 0), tasks, np.random.default_rng(0))
>>> c.index, c.propensity, c.explored, round(c.score, 3)
(1, 1.0, True, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bandit.base import Choice, FloatArray, Moment, Policy, Task
from bandit.explore import design, first_argmax, one_hot
from bandit.features import features_v1
from bandit.linear import Ridge

LINUCB_V1_DIM = 5


def features_linucb_v1(moment: Moment, task: Task) -> FloatArray:
    """The first five features of features_v1 (hour sin/cos, overdue, age, priority)."""
    return features_v1(moment, task)[:LINUCB_V1_DIM]


class LinUCBV1(Policy):
    """LinUCB with d = 5 and α (default 1.0)."""

    __slots__ = ("alpha",)
    name = "linucb-v1"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def new_user(self) -> Ridge:
        return Ridge.new(LINUCB_V1_DIM)

    def _ucb(
        self, user: Ridge, moment: Moment, tasks: Sequence[Task]
    ) -> tuple[FloatArray, FloatArray]:
        xs = design(features_linucb_v1, moment, tasks)
        mean = xs @ user.theta()
        return mean, mean + self.alpha * user.widths(xs)

    def probabilities(
        self, user: Ridge, shared: None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        _, ucb = self._ucb(user, moment, tasks)
        return one_hot(first_argmax(ucb), len(tasks))

    def choose(
        self,
        user: Ridge,
        shared: None,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Choice:
        mean, ucb = self._ucb(user, moment, tasks)
        i = first_argmax(ucb)
        return Choice(
            index=i, propensity=1.0, explored=i != first_argmax(mean), score=float(ucb[i])
        )

    def update(self, user: Ridge, shared: None, moment: Moment, task: Task, reward: float) -> None:
        user.update(features_linucb_v1(moment, task), reward)

    def encode_user(self, user: Ridge) -> bytes:
        return user.encode()

    def decode_user(self, data: bytes) -> Ridge:
        return Ridge.decode(data, dim=LINUCB_V1_DIM)
