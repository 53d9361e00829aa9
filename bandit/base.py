"""The small types every policy shares: what is served, what was chosen, and the Policy API.

Pure code: no Kafka, no database, no clock. Randomness comes in as a numpy ``Generator`` so
that callers decide between OS entropy (production) and a seed (simulation).

State has two parts. ``UserState`` belongs to one user (one per user and policy, kept in the
worker's changelogged table). ``SharedState`` is what a policy pools across users (a prior,
``bandit.pool``): the exact sum of each user's ``pool_contribution``, so it is derived from
the users' states and never stored on its own; a policy that pools nothing returns None from
``new_shared``. Both are mutated in place by ``update`` in O(d²).

A block of users can also be served at once (the simulator's load mode): a
:class:`CandidateBlock` holds one round's moments and candidates for n users as arrays, a
:class:`ChoiceDraws` the random numbers of their n choices, and ``choose_many`` and
``update_many`` answer for all of them. By default they call ``choose`` and ``update`` for
each user in turn; a policy may override them with vectorised code that leaves every state
exactly as the loop would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "SEED_BOUND",
    "BoolArray",
    "CandidateBlock",
    "Choice",
    "ChoiceDraws",
    "Choices",
    "FloatArray",
    "IntArray",
    "Moment",
    "Policy",
    "Task",
    "choice_rng",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
SEED_BOUND = 2**31 - 1  # seeds of ``choice_rng`` are drawn in [0, SEED_BOUND)


def choice_rng(seed: int) -> np.random.Generator:
    """The generator one seeded choice draws from: the worker's ``/score`` with a ``seed``
    and the simulator's in-process policies build it the same way, so both explore alike."""
    return np.random.default_rng(seed)


@dataclass(frozen=True, slots=True)
class Moment:
    """When a tip is served: the user's local hour (0–23) and weekday (Monday = 0)."""

    hour_of_day: int
    day_of_week: int


@dataclass(frozen=True, slots=True)
class Task:
    """One candidate tip."""

    tip_id: str
    priority: int  # 1–4
    is_overdue: bool
    task_age_days: float


@dataclass(frozen=True, slots=True)
class Choice:
    """The policy's pick: index into the candidates, and the probability it had."""

    index: int
    propensity: float
    explored: bool
    score: float


@dataclass(frozen=True, slots=True)
class CandidateBlock:
    """One round for n users with K candidates each, as arrays (row i is user i).

    >>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, True, 9.0)]
    >>> block = CandidateBlock.of([Moment(9, 2)], [tasks])
    >>> block.size, block.k, block.task(0, 1)
    (1, 2, Task(tip_id='b', priority=4, is_overdue=True, task_age_days=9.0))
    """

    hour: IntArray  # (n,)
    day: IntArray  # (n,)
    priority: IntArray  # (n, K)
    overdue: BoolArray  # (n, K)
    age: FloatArray  # (n, K) task_age_days
    tip_ids: Sequence[Sequence[str]]  # n × K

    @classmethod
    def of(cls, moments: Sequence[Moment], tasks: Sequence[Sequence[Task]]) -> CandidateBlock:
        """The block of per-user moments and equally long candidate lists."""
        return cls(
            hour=np.array([m.hour_of_day for m in moments], dtype=np.int64),
            day=np.array([m.day_of_week for m in moments], dtype=np.int64),
            priority=np.array([[t.priority for t in ts] for ts in tasks], dtype=np.int64),
            overdue=np.array([[t.is_overdue for t in ts] for ts in tasks], dtype=np.bool_),
            age=np.array([[t.task_age_days for t in ts] for ts in tasks], dtype=np.float64),
            tip_ids=[[t.tip_id for t in ts] for ts in tasks],
        )

    @property
    def size(self) -> int:
        return int(self.priority.shape[0])

    @property
    def k(self) -> int:
        return int(self.priority.shape[1])

    def moment(self, i: int) -> Moment:
        return Moment(hour_of_day=int(self.hour[i]), day_of_week=int(self.day[i]))

    def task(self, i: int, j: int) -> Task:
        return Task(
            tip_id=self.tip_ids[i][j],
            priority=int(self.priority[i, j]),
            is_overdue=bool(self.overdue[i, j]),
            task_age_days=float(self.age[i, j]),
        )

    def tasks(self, i: int) -> list[Task]:
        return [self.task(i, j) for j in range(self.k)]

    def rows(self, users: IntArray) -> CandidateBlock:
        """The block of some of its users, in the order of ``users``."""
        return CandidateBlock(
            hour=self.hour[users],
            day=self.day[users],
            priority=self.priority[users],
            overdue=self.overdue[users],
            age=self.age[users],
            tip_ids=[self.tip_ids[i] for i in users.tolist()],
        )


@dataclass(frozen=True, slots=True)
class ChoiceDraws:
    """The random numbers of n choices, drawn up front.

    ``uniform[i]`` and ``index[i]`` are what an ε-greedy choice consumes through ``choose``
    (``rng.random()``, then ``rng.integers(K)`` when it explores) and ``index[i]`` what a
    uniform one does; a policy without a vectorised path draws from ``choice_rng(seed[i])``.
    """

    uniform: FloatArray  # (n,) in [0, 1)
    index: IntArray  # (n,) uniform in [0, K)
    seed: IntArray  # (n,) in [0, SEED_BOUND)

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, k: int) -> ChoiceDraws:
        """n choices among k candidates: the uniforms, then the indices, then the seeds."""
        uniform = rng.random(n)
        index = rng.integers(k, size=n, dtype=np.int64)
        return cls(uniform, index, rng.integers(0, SEED_BOUND, size=n, dtype=np.int64))

    def rows(self, users: IntArray) -> ChoiceDraws:
        """The draws of some of the users, in the order of ``users``."""
        return ChoiceDraws(self.uniform[users], self.index[users], self.seed[users])


@dataclass(frozen=True, slots=True)
class Choices:
    """n choices as arrays: what ``Choice`` holds for each user of a block."""

    index: IntArray
    propensity: FloatArray
    explored: BoolArray
    score: FloatArray

    @classmethod
    def of(cls, choices: Sequence[Choice]) -> Choices:
        return cls(
            index=np.array([c.index for c in choices], dtype=np.int64),
            propensity=np.array([c.propensity for c in choices], dtype=np.float64),
            explored=np.array([c.explored for c in choices], dtype=np.bool_),
            score=np.array([c.score for c in choices], dtype=np.float64),
        )


class Policy(ABC):
    """A contextual bandit policy over a list of candidate tasks.

    Subclasses set ``name`` (the wire name, e.g. ``egreedy-v1``; a family with presets sets
    it per instance) and implement the methods.
    ``probabilities`` must be exact: ``choose`` picks index i with probability
    ``probabilities(...)[i]``, and that number is the propensity that is logged.
    """

    name: str

    @abstractmethod
    def new_user(self) -> Any:
        """Fresh per-user state."""

    def new_shared(self) -> Any | None:
        """Fresh pooled state, or None for a policy that pools nothing."""
        return None

    @abstractmethod
    def probabilities(
        self, user: Any, shared: Any | None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        """Exact probability of choosing each task (sums to 1)."""

    @abstractmethod
    def choose(
        self,
        user: Any,
        shared: Any | None,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Choice:
        """Pick one task; the propensity equals ``probabilities(...)[index]``."""

    @abstractmethod
    def update(
        self, user: Any, shared: Any | None, moment: Moment, task: Task, reward: float
    ) -> None:
        """Learn from one reward for the chosen task (in place, O(d²))."""

    @abstractmethod
    def encode_user(self, user: Any) -> bytes: ...

    @abstractmethod
    def decode_user(self, data: bytes) -> Any: ...

    def choose_many(
        self, users: Sequence[Any], shared: Any | None, block: CandidateBlock, draws: ChoiceDraws
    ) -> Choices:
        """``choose`` for each user of the block in turn, user i from ``choice_rng(seed[i])``.

        >>> from bandit.policies.baselines import OraclePolicy
        >>> oracle = OraclePolicy(lambda m, t: float(t.priority))
        >>> tasks = [Task("a", 1, False, 0.0), Task("b", 4, True, 1.0)]
        >>> block = CandidateBlock.of([Moment(9, 0)], [tasks])
        >>> draws = ChoiceDraws.draw(np.random.default_rng(0), 1, 2)
        >>> oracle.choose_many([oracle.new_user()], None, block, draws).index.tolist()
        [1]
        """
        return Choices.of(
            [
                self.choose(user, shared, block.moment(i), block.tasks(i), choice_rng(int(seed)))
                for i, (user, seed) in enumerate(zip(users, draws.seed, strict=True))
            ]
        )

    def update_many(
        self,
        users: Sequence[Any],
        shared: Any | None,
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        """``update`` for each user in turn, with the reward of its chosen candidate.

        >>> from bandit.policies.baselines import OraclePolicy
        >>> oracle = OraclePolicy(lambda m, t: 0.0)
        >>> users = [oracle.new_user()]
        >>> block = CandidateBlock.of([Moment(9, 0)], [[Task("a", 1, False, 0.0)]])
        >>> oracle.update_many(users, None, block, np.array([0]), np.array([0.5]))
        >>> users[0].pulls, users[0].reward_sum
        (1, 0.5)
        """
        for i, (user, j, reward) in enumerate(zip(users, chosen, rewards, strict=True)):
            self.update(user, shared, block.moment(i), block.task(i, int(j)), float(reward))

    def pool_contribution(self, user: Any) -> Any | None:
        """What this user adds to the shared state (a ``bandit.pool.Contribution``), or None
        when it adds nothing (no data yet, or a policy that pools nothing). The shared state
        is the sum of these over users, which is how the worker rebuilds it."""
        return None
