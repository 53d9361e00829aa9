"""The judge API: how a persona reacts to one tip at one moment.

A judge returns a :class:`Judgment`: the action, the dwell time, the reward under the
production rule (``bandit.reward.infer_reward``) and, where the judge knows it, the exact
expected reward of that tip. Randomness comes in as a numpy ``Generator`` (from
``World.judge_rng``), so that two policies facing the same world get the same draws.

What a simulator run may do with a judge it reads from the judge's capabilities
(``knows_expectations``, ``two_phase``, :class:`SyncJudge`), never from its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bandit.base import Moment, Task
from judges.personas import Persona

__all__ = ["ACTIONS", "Judge", "Judgment", "SyncJudge"]

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
    """How a persona reacts to a tip; ``name`` is its wire name (``judges.registry``)."""

    name: ClassVar[str]
    # Its judgments carry the exact expected reward, and ``expected_rewards`` answers for
    # every candidate (what the oracle, the random baseline and the gap closed need).
    knows_expectations: ClassVar[bool] = False
    # It answers outside the loop, in a second phase (requests out, judgments in), so the
    # policy cannot learn between rounds and must play in-process.
    two_phase: ClassVar[bool] = False

    @abstractmethod
    async def judge(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        """Judge one tip shown to ``persona`` at ``moment``."""

    def expected_rewards(
        self, persona: Persona, moment: Moment, tasks: Sequence[Task]
    ) -> list[float] | None:
        """The exact expected reward of each task, when ``knows_expectations``."""
        return None

    def usage_problem(self) -> str | None:
        """Why a run cannot use this judge as configured (exit 2 before it starts), or None."""
        return None

    def usage_counters(self) -> dict[str, Any] | None:
        """What the judge spent, for the run's cost record (``sim_runs.llm_*``); None if free."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - a hook, nothing to release by default
        """Release what the judge holds (an HTTP client)."""


class SyncJudge(Judge):
    """A judge that never waits: ``judge_sync`` answers without the event loop (load mode)."""

    @abstractmethod
    def judge_sync(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        """The judgment of :meth:`judge`, without the event loop."""

    async def judge(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        return self.judge_sync(persona, moment, task, rng)
