"""Exploration rules with exact probabilities, shared by the policies.

ε-greedy: the greedy index gets 1 − ε + ε/K, every other index ε/K. A draw consumes one
``rng.random()`` and, only when it explores, one ``rng.integers(K)``; "explored" means the
uniform branch was taken (it may land on the greedy index).

>>> epsilon_greedy_probabilities(2, 4, 0.2).tolist()
[0.05, 0.05, 0.8500000000000001, 0.05]
>>> softmax_probabilities(np.array([0.0, 0.0]), 1.0).tolist()
[0.5, 0.5]

``epsilon_greedy_many`` makes n such choices at once from drawn numbers (``ChoiceDraws``:
the uniform that ``rng.random()`` gives and the index that ``rng.integers(K)`` gives), with
the same greedy index, propensities and scores as the scalar draw of those numbers.

An exploration floor mixes any policy with a uniform slice of share f, so every candidate
is shown with probability at least f/K (what off-policy evaluation needs):

>>> from bandit.policies.baselines import RandomPolicy
>>> floored = ExplorationFloor(RandomPolicy(), 0.1)
>>> floored.name, floored.probabilities(None, None, Moment(9, 1), [Task("a", 1, False, 0.0)] * 4)
('random', array([0.25, 0.25, 0.25, 0.25]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit.base import (
    CandidateBlock,
    Choice,
    ChoiceDraws,
    Choices,
    FloatArray,
    IntArray,
    Moment,
    Policy,
    Task,
)

__all__ = [
    "EpsilonGreedyScores",
    "ExplorationFloor",
    "decaying_epsilon",
    "design",
    "draw_from",
    "epsilon_greedy_draw",
    "epsilon_greedy_many",
    "epsilon_greedy_probabilities",
    "first_argmax",
    "one_hot",
    "softmax_probabilities",
]


def design(
    fmap: Callable[[Moment, Task], FloatArray], moment: Moment, tasks: Sequence[Task]
) -> FloatArray:
    """The K×d matrix of candidate feature vectors."""
    if not tasks:
        raise ValueError("no candidates to choose from")
    return np.stack([fmap(moment, t) for t in tasks])


def first_argmax(scores: FloatArray) -> int:
    """Index of the first maximum (deterministic tie-break)."""
    return int(np.argmax(scores))


def epsilon_greedy_probabilities(greedy: int, k: int, epsilon: float) -> FloatArray:
    p = np.full(k, epsilon / k, dtype=np.float64)
    p[greedy] += 1.0 - epsilon
    return p


def epsilon_greedy_draw(
    greedy: int, k: int, epsilon: float, rng: np.random.Generator
) -> tuple[int, bool]:
    """(index, explored): with probability ε a uniform index, else ``greedy``."""
    if rng.random() < epsilon:
        return int(rng.integers(k)), True
    return greedy, False


def epsilon_greedy_many(scores: FloatArray, epsilon: FloatArray, draws: ChoiceDraws) -> Choices:
    """n ε-greedy choices over the rows of an n × K score array, ε one per row.

    Row i explores when ``draws.uniform[i] < epsilon[i]`` and then picks ``draws.index[i]``;
    else it picks the first maximum. Propensities are those of
    ``epsilon_greedy_probabilities`` (ε/K, plus 1 − ε on the greedy index).

    >>> draws = ChoiceDraws(np.array([0.5, 0.01]), np.array([0, 0]), np.array([0, 0]))
    >>> c = epsilon_greedy_many(np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([0.1, 0.1]), draws)
    >>> c.index.tolist(), c.propensity.tolist(), c.explored.tolist()
    ([1, 0], [0.9500000000000001, 0.05], [False, True])
    """
    n, k = scores.shape
    rows = np.arange(n)
    greedy = np.argmax(scores, axis=1)  # the first maximum, as first_argmax
    explored = draws.uniform < epsilon
    index = np.where(explored, draws.index, greedy)
    base = epsilon / k
    propensity = np.where(index == greedy, base + (1.0 - epsilon), base)
    return Choices(index=index, propensity=propensity, explored=explored, score=scores[rows, index])


def one_hot(index: int, k: int) -> FloatArray:
    p = np.zeros(k, dtype=np.float64)
    p[index] = 1.0
    return p


def softmax_probabilities(scores: FloatArray, temperature: float) -> FloatArray:
    """Boltzmann probabilities exp(s/τ) / Σ exp(s/τ), computed stably."""
    z = (scores - np.max(scores)) / temperature
    w = np.exp(z)
    return np.asarray(w / w.sum(), dtype=np.float64)


def draw_from(p: FloatArray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw with one ``rng.random()``; never returns a zero-probability index."""
    u = rng.random()
    c = np.cumsum(p)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    i = min(i, len(p) - 1)
    while p[i] <= 0.0:  # only reachable through rounding at the very end of the CDF
        i -= 1
    return i


def decaying_epsilon(c: float, epsilon_min: float, pulls: int) -> float:
    """ε_t = max(ε_min, c / sqrt(t + 1)) for a user with t pulls, capped at 1."""
    return min(1.0, max(epsilon_min, c / math.sqrt(pulls + 1)))


class ExplorationFloor(Policy):
    """``policy`` with a uniform slice of share ``floor``: p = (1 − f)·p_policy + f/K.

    It keeps the policy's name, state and learning (only the choice changes), so a worker or
    a run can raise the floor without touching stored state; the propensity logged is that of
    the mixture. One ``rng.random()`` decides the slice; inside it one ``rng.integers(K)``
    picks, and the choice is logged as explored (its score is the policy's score of that
    task where the policy scores tasks, else 0.0 as for ``random``); outside it the policy
    draws as usual.
    """

    __slots__ = ("floor", "name", "policy")

    def __init__(self, policy: Policy, floor: float) -> None:
        if not 0.0 < floor <= 1.0:
            raise ValueError(f"an exploration floor must be in (0, 1], not {floor}")
        self.policy = policy
        self.floor = floor
        self.name = policy.name

    def new_user(self) -> Any:
        return self.policy.new_user()

    def new_shared(self) -> Any | None:
        return self.policy.new_shared()

    def probabilities(
        self, user: Any, shared: Any | None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        inner = self.policy.probabilities(user, shared, moment, tasks)
        return np.asarray((1.0 - self.floor) * inner + self.floor / len(tasks), dtype=np.float64)

    def choose(
        self,
        user: Any,
        shared: Any | None,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Choice:
        uniform = self.floor / len(tasks)
        if rng.random() < self.floor:
            index = int(rng.integers(len(tasks)))
            p = self.probabilities(user, shared, moment, tasks)
            score = 0.0
            if isinstance(self.policy, EpsilonGreedyScores):
                score = float(self.policy.scores(user, shared, moment, tasks)[index])
            return Choice(index=index, propensity=float(p[index]), explored=True, score=score)
        # Outside the slice the policy's own propensity is that of its index: no second pass.
        inner = self.policy.choose(user, shared, moment, tasks, rng)
        return Choice(
            index=inner.index,
            propensity=(1.0 - self.floor) * inner.propensity + uniform,
            explored=inner.explored,
            score=inner.score,
        )

    def update(
        self, user: Any, shared: Any | None, moment: Moment, task: Task, reward: float
    ) -> None:
        self.policy.update(user, shared, moment, task, reward)

    def update_many(
        self,
        users: Sequence[Any],
        shared: Any | None,
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        self.policy.update_many(users, shared, block, chosen, rewards)

    def encode_user(self, user: Any) -> bytes:
        return self.policy.encode_user(user)

    def decode_user(self, data: bytes) -> Any:
        return self.policy.decode_user(data)

    def pool_contribution(self, user: Any) -> Any | None:
        return self.policy.pool_contribution(user)


class EpsilonGreedyScores(Policy):
    """ε-greedy over a subclass's ``scores``: the greedy index is the first maximum, so the
    choice is deterministic given the state and every propensity is exact."""

    __slots__ = ()

    def scores(self, user: Any, shared: Any, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        raise NotImplementedError

    def epsilon_for(self, user: Any) -> float:
        raise NotImplementedError

    def scores_many(self, users: Sequence[Any], shared: Any, block: CandidateBlock) -> FloatArray:
        """``scores`` of every user of the block (n × K), or NotImplementedError when the
        policy has no vectorised scores (``choose_many`` then calls ``choose`` per user)."""
        raise NotImplementedError

    def choose_many(
        self, users: Sequence[Any], shared: Any, block: CandidateBlock, draws: ChoiceDraws
    ) -> Choices:
        """Vectorised ``choose``: user i draws ``draws.uniform[i]`` and ``draws.index[i]``
        (what ``choose`` consumes from its generator, in that order).

        >>> from bandit.policies.egreedy import EpsilonGreedyV1
        >>> pol = EpsilonGreedyV1(epsilon=0.0)
        >>> block = CandidateBlock.of([Moment(9, 2)], [[Task("a", 1, False, 2.0)] * 3])
        >>> draws = ChoiceDraws.draw(np.random.default_rng(0), 1, 3)
        >>> pol.choose_many([pol.new_user()], None, block, draws).propensity.tolist()
        [1.0]
        """
        try:
            scores = self.scores_many(users, shared, block)
        except NotImplementedError:
            return super().choose_many(users, shared, block, draws)
        epsilon = np.array([self.epsilon_for(user) for user in users], dtype=np.float64)
        return epsilon_greedy_many(scores, epsilon, draws)

    def probabilities(
        self, user: Any, shared: Any, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        greedy = first_argmax(self.scores(user, shared, moment, tasks))
        return epsilon_greedy_probabilities(greedy, len(tasks), self.epsilon_for(user))

    def choose(
        self,
        user: Any,
        shared: Any,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Choice:
        scores = self.scores(user, shared, moment, tasks)
        greedy, k, eps = first_argmax(scores), len(tasks), self.epsilon_for(user)
        index, explored = epsilon_greedy_draw(greedy, k, eps, rng)
        p = epsilon_greedy_probabilities(greedy, k, eps)[index]
        return Choice(
            index=index, propensity=float(p), explored=explored, score=float(scores[index])
        )
