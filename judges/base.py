"""The judge API: how a persona reacts to one tip at one moment.

A judge returns a :class:`Judgment`: the action, the dwell time, the reward under the
production rule (``bandit.reward.infer_reward``) and, where the judge knows it, the exact
expected reward of that tip. Randomness comes in as a numpy ``Generator`` (from
``World.judge_rng``), so that two policies facing the same world get the same draws.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bandit.base import Moment, Task
from judges.personas import Persona

ACTIONS: tuple[str, ...] = ("done", "snooze", "dismiss")


@dataclass(frozen=True, slots=True)
class Judgment:
    """One reaction.

    ``expected_reward`` is None when the judge cannot know it (LLM, external).
    ``fallback_reason`` is set when the LLM judge handed this judgment to the rule judge.

    >>> Judgment("snooze", 4_000, 0.1, None)
    Judgment(action='snooze', dwell_ms=4000, reward=0.1, expected_reward=None, fallback_reason=None)
    """

    action: str
    dwell_ms: int
    reward: float
    expected_reward: float | None
    fallback_reason: str | None = None


class Judge(ABC):
    """How a persona reacts to a tip; ``name`` is ``rule``, ``llm`` or ``external``."""

    name: ClassVar[str]

    @abstractmethod
    async def judge(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        """Judge one tip shown to ``persona`` at ``moment``."""
