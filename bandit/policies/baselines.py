"""Reference policies: ``random`` (uniform) and ``oracle`` (knows the expected reward).

Their user state is a ``Tally`` (pulls and reward sum), so /stats still has numbers.

>>> from bandit.base import Moment, Task
>>> tasks = [Task("a", 1, False, 0.0), Task("b", 4, True, 3.0)]
>>> pol = RandomPolicy()
>>> pol.probabilities(pol.new_user(), None, Moment(9, 0), tasks).tolist()
[0.5, 0.5]
>>> oracle = OraclePolicy(lambda m, t: float(t.priority))
>>> c = oracle.choose(oracle.new_user(), None, Moment(9, 0), tasks, np.random.default_rng(0))
>>> c.index, c.propensity, c.explored
(1, 1.0, False)

``random`` also serves a block of users at once (``choose_many``): user i takes the drawn
index ``draws.index[i]``, the number its ``choose`` takes from ``rng.integers(K)``.
"""

from __future__ import annotations

import struct
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from bandit.explore import first_argmax, one_hot

__all__ = ["OraclePolicy", "RandomPolicy", "Tally"]

TALLY_VERSION = 1
_TALLY = struct.Struct("<BQd")


@dataclass(slots=True)
class Tally:
    """Trivial user state: how many rewards were seen and their sum."""

    pulls: int = 0
    reward_sum: float = 0.0

    def add(self, reward: float) -> None:
        self.pulls += 1
        self.reward_sum += reward

    def encode(self) -> bytes:
        return _TALLY.pack(TALLY_VERSION, self.pulls, self.reward_sum)

    @classmethod
    def decode(cls, data: bytes) -> Tally:
        if len(data) != _TALLY.size:
            raise ValueError(f"tally state is {len(data)} bytes, expected {_TALLY.size}")
        version, pulls, reward_sum = _TALLY.unpack(data)
        if version != TALLY_VERSION:
            raise ValueError(f"tally state version {version}, expected {TALLY_VERSION}")
        return cls(pulls=pulls, reward_sum=reward_sum)


class _TallyPolicy(Policy):
    """Shared plumbing for policies whose user state is a ``Tally``.

    The tally only feeds /stats: these policies decide from the moment and the candidates
    alone, so subclasses implement ``_probabilities`` and ``_choose`` over those (never
    called with an empty candidate list).
    """

    __slots__ = ()

    def probabilities(
        self, user: Tally, shared: None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        if not tasks:
            raise ValueError("no candidates to choose from")
        return self._probabilities(moment, tasks)

    def choose(
        self,
        user: Tally,
        shared: None,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Choice:
        if not tasks:
            raise ValueError("no candidates to choose from")
        return self._choose(moment, tasks, rng)

    @abstractmethod
    def _probabilities(self, moment: Moment, tasks: Sequence[Task]) -> FloatArray: ...

    @abstractmethod
    def _choose(self, moment: Moment, tasks: Sequence[Task], rng: np.random.Generator) -> Choice:
        """Pick one task; the propensity equals ``_probabilities(...)[index]``."""

    def new_user(self) -> Tally:
        return Tally()

    def update(self, user: Tally, shared: None, moment: Moment, task: Task, reward: float) -> None:
        user.add(reward)

    def update_many(
        self,
        users: Sequence[Tally],
        shared: None,
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        """Each user's tally adds its reward (the candidates do not matter).

        >>> users = [Tally(), Tally(pulls=1, reward_sum=1.0)]
        >>> block = CandidateBlock.of([Moment(9, 0)] * 2, [[Task("a", 1, False, 0.0)]] * 2)
        >>> RandomPolicy().update_many(users, None, block, np.zeros(2, int), np.array([0.5, 0.5]))
        >>> [(u.pulls, u.reward_sum) for u in users]
        [(1, 0.5), (2, 1.5)]
        """
        for user, reward in zip(users, rewards.tolist(), strict=True):
            user.add(reward)

    def encode_user(self, user: Tally) -> bytes:
        return user.encode()

    def decode_user(self, data: bytes) -> Tally:
        return Tally.decode(data)


class RandomPolicy(_TallyPolicy):
    """Uniform over the candidates; propensity 1/K, always "explored"."""

    __slots__ = ()
    name = "random"

    def _probabilities(self, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        return np.full(len(tasks), 1.0 / len(tasks), dtype=np.float64)

    def _choose(self, moment: Moment, tasks: Sequence[Task], rng: np.random.Generator) -> Choice:
        k = len(tasks)
        return Choice(index=int(rng.integers(k)), propensity=1.0 / k, explored=True, score=0.0)

    def choose_many(
        self, users: Sequence[Tally], shared: None, block: CandidateBlock, draws: ChoiceDraws
    ) -> Choices:
        """User i takes ``draws.index[i]``, with propensity 1/K.

        >>> block = CandidateBlock.of([Moment(9, 0)], [[Task("a", 1, False, 0.0)] * 4])
        >>> draws = ChoiceDraws(np.array([0.3]), np.array([2]), np.array([7]))
        >>> c = RandomPolicy().choose_many([Tally()], None, block, draws)
        >>> c.index.tolist(), c.propensity.tolist(), c.explored.tolist()
        ([2], [0.25], [True])
        """
        n, k = block.size, block.k
        return Choices(
            index=draws.index.copy(),
            propensity=np.full(n, 1.0 / k, dtype=np.float64),
            explored=np.ones(n, dtype=np.bool_),
            score=np.zeros(n, dtype=np.float64),
        )


class OraclePolicy(_TallyPolicy):
    """Argmax of a known expected reward (first max); only meaningful in simulation."""

    __slots__ = ("expected_reward",)
    name = "oracle"

    def __init__(self, expected_reward: Callable[[Moment, Task], float]) -> None:
        self.expected_reward = expected_reward

    def _scores(self, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        return np.array([self.expected_reward(moment, t) for t in tasks], dtype=np.float64)

    def _probabilities(self, moment: Moment, tasks: Sequence[Task]) -> FloatArray:
        return one_hot(first_argmax(self._scores(moment, tasks)), len(tasks))

    def _choose(self, moment: Moment, tasks: Sequence[Task], rng: np.random.Generator) -> Choice:
        scores = self._scores(moment, tasks)
        i = first_argmax(scores)
        return Choice(index=i, propensity=1.0, explored=False, score=float(scores[i]))
