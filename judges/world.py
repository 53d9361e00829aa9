"""The simulated world: moments, candidates and random streams, all fixed by one seed.

Every stream comes from ``np.random.SeedSequence(seed, spawn_key=key)`` with a stable
integer key: (purpose, persona-name hash, user index, round[, tip-id hash]). Names are
hashed with BLAKE2b (stable across processes and Python versions; never ``hash()``).
So two policies run with the same seed meet the same moments and candidates, and the
judge draws the same numbers for the same (user, round, chosen tip): common random
numbers. Streams are independent of each other and of the order in which they are asked.

Moments are uniform over the 24 hours and 7 weekdays for every persona (the standard
benchmark; personas' activity patterns act through the judge, not through when they are
served). Candidates follow docs/simulation.md: priority uniform in 1-4, overdue with
probability 0.3, task age uniform in [0, 20) days, each drawn independently.

>>> from judges.personas import load_personas
>>> world, p = World(seed=7), load_personas()[0]
>>> world.moment(p, 0, 0) == World(seed=7).moment(p, 0, 0)
True
>>> [t.tip_id for t in world.candidates(p, 3, 1)][:2]
['deadline-driven-3-r1-c0', 'deadline-driven-3-r1-c1']
>>> world.user_id(p, 3)
'sim-deadline-driven-3'

A world may drift (:class:`~judges.drift.Drift`): from a given round on, the judge reads
other preferences for each persona (:meth:`World.persona_at`). Identities, moments,
candidates and every stream stay as they were, so a drifting run meets the very same draws
as a steady one. The delivery stream (:meth:`World.delivery_rng`) fixes when each feedback
arrives (:mod:`judges.delay`).

>>> from judges.drift import Drift
>>> drifting = World(seed=7, drift=Drift.of(load_personas(), "rotate", at_round=5))
>>> drifting.persona_at(p, 4) is p, drifting.persona_at(p, 5) == p
(True, False)
>>> drifting.candidates(p, 3, 6) == world.candidates(p, 3, 6)
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bandit.base import Moment, Task
from judges.drift import Drift
from judges.personas import Persona

__all__ = ["World", "WorldConfig", "stable_hash"]

_MOMENT, _CANDIDATES, _JUDGE, _POLICY, _DELIVERY = 1, 2, 3, 4, 5


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process.

    >>> stable_hash("deadline-driven") == stable_hash("deadline-driven")
    True
    """
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Candidate settings; the defaults are the standard benchmark."""

    candidates: int = 8
    overdue_probability: float = 0.3
    max_task_age_days: float = 20.0

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError("candidates must be at least 1")
        if not 0.0 <= self.overdue_probability <= 1.0:
            raise ValueError("overdue_probability must be in [0, 1]")
        if not self.max_task_age_days >= 0.0:
            raise ValueError("max_task_age_days must be >= 0")


class World:
    """Deterministic draws for (persona, user, round), derived from ``seed``."""

    __slots__ = ("config", "drift", "seed")

    def __init__(
        self, seed: int, config: WorldConfig = WorldConfig(), drift: Drift | None = None
    ) -> None:
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.seed = seed
        self.config = config
        self.drift = drift

    def persona_at(self, persona: Persona, round_: int) -> Persona:
        """The preferences the judge reads for ``persona`` in ``round_`` (the drift's)."""
        return persona if self.drift is None else self.drift.persona_at(persona, round_)

    def _rng(self, *key: int) -> np.random.Generator:
        if any(k < 0 for k in key):
            raise ValueError("user index and round must be >= 0")
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def moment(self, persona: Persona, user_index: int, round_: int) -> Moment:
        """Uniform hour (0-23) and weekday (0-6, Monday = 0)."""
        rng = self._rng(_MOMENT, stable_hash(persona.name), user_index, round_)
        hour = int(rng.integers(0, 24))
        day = int(rng.integers(0, 7))
        return Moment(hour_of_day=hour, day_of_week=day)

    def candidates(self, persona: Persona, user_index: int, round_: int) -> list[Task]:
        """``config.candidates`` tasks with ids ``{persona}-{user}-r{round}-c{i}``."""
        rng = self._rng(_CANDIDATES, stable_hash(persona.name), user_index, round_)
        n = self.config.candidates
        priorities = rng.integers(1, 5, size=n)
        overdue = rng.random(size=n) < self.config.overdue_probability
        ages = rng.random(size=n) * self.config.max_task_age_days
        return [
            Task(
                tip_id=f"{persona.name}-{user_index}-r{round_}-c{i}",
                priority=int(priorities[i]),
                is_overdue=bool(overdue[i]),
                task_age_days=float(ages[i]),
            )
            for i in range(n)
        ]

    def judge_rng(
        self, persona: Persona, user_index: int, round_: int, tip_id: str
    ) -> np.random.Generator:
        """The judge's stream for the chosen tip of this (user, round)."""
        return self._rng(_JUDGE, stable_hash(persona.name), user_index, round_, stable_hash(tip_id))

    def policy_rng(self, persona: Persona, user_index: int, round_: int) -> np.random.Generator:
        """The policy's stream for this (user, round), the same for every policy."""
        return self._rng(_POLICY, stable_hash(persona.name), user_index, round_)

    def delivery_rng(self, persona: Persona, user_index: int, round_: int) -> np.random.Generator:
        """When this (user, round)'s feedback arrives, the same for every policy."""
        return self._rng(_DELIVERY, stable_hash(persona.name), user_index, round_)

    def user_id(self, persona: Persona, user_index: int) -> str:
        """``sim-{persona}-{user_index}``."""
        return f"sim-{persona.name}-{user_index}"
