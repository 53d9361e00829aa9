"""The small types every policy shares: what is served, what was chosen, and the Policy API.

Pure code: no Kafka, no database, no clock. Randomness comes in as a numpy ``Generator`` so
that callers decide between OS entropy (production) and a seed (simulation).

State has two parts. ``UserState`` belongs to one user (one per user and policy, kept in the
worker's changelogged table). ``SharedState`` is what a policy pools across users (a prior,
``bandit.pool``): the exact sum of each user's ``pool_contribution``, so it is derived from
the users' states and never stored on its own; a policy that pools nothing returns None from
``new_shared``. Both are mutated in place by ``update`` in O(d²).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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

    def pool_contribution(self, user: Any) -> Any | None:
        """What this user adds to the shared state (a ``bandit.pool.Contribution``), or None
        when it adds nothing (no data yet, or a policy that pools nothing). The shared state
        is the sum of these over users, which is how the worker rebuilds it."""
        return None
