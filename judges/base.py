"""The judge API: how a persona reacts to one tip at one moment.

A judge returns a :class:`Judgment`: the action, the dwell time, the reward under the
production rule (``bandit.reward.infer_reward``) and, where the judge knows it, the exact
expected reward of that tip. Randomness comes in as a numpy ``Generator`` (from
``World.judge_rng``), so that two policies facing the same world get the same draws.

What a simulator run may do with a judge it reads from the judge's capabilities
(``knows_expectations``, ``two_phase``, :class:`SyncJudge`), never from its name.

A :class:`SyncJudge` also judges a block of users at once (``judge_many``, the simulator's
load mode): one chosen tip per user of a :class:`~bandit.base.CandidateBlock`, with the
random numbers drawn up front (:class:`JudgeDraws`), answered as arrays (:class:`Judgments`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bandit.base import SEED_BOUND, CandidateBlock, FloatArray, IntArray, Moment, Task
from judges.personas import Persona

__all__ = ["ACTIONS", "Judge", "JudgeDraws", "Judgment", "Judgments", "SyncJudge"]

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


@dataclass(frozen=True, slots=True)
class JudgeDraws:
    """The random numbers of n judgments, drawn up front: a uniform for the action and one
    for the dwell (the rule judge's), or ``seed[i]`` for a judge that draws on its own."""

    action_u: FloatArray  # (n,) in [0, 1)
    dwell_u: FloatArray  # (n,) in [0, 1)
    seed: IntArray  # (n,) in [0, SEED_BOUND)

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> JudgeDraws:
        """The action uniforms, then the dwell uniforms, then the seeds."""
        action_u, dwell_u = rng.random(n), rng.random(n)
        return cls(action_u, dwell_u, rng.integers(0, SEED_BOUND, size=n, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class Judgments:
    """n judgments as arrays: what ``Judgment`` holds for each user of a block (the action
    as an index into ``ACTIONS``; expected rewards are NaN where the judge cannot know)."""

    action: IntArray
    dwell_ms: IntArray
    reward: FloatArray
    expected_reward: FloatArray

    @classmethod
    def of(cls, judgments: Sequence[Judgment]) -> Judgments:
        return cls(
            action=np.array([ACTIONS.index(j.action) for j in judgments], dtype=np.int64),
            dwell_ms=np.array([j.dwell_ms for j in judgments], dtype=np.int64),
            reward=np.array([j.reward for j in judgments], dtype=np.float64),
            expected_reward=np.array(
                [np.nan if j.expected_reward is None else j.expected_reward for j in judgments],
                dtype=np.float64,
            ),
        )


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

    def judge_many(
        self,
        personas: Sequence[Persona],
        block: CandidateBlock,
        chosen: IntArray,
        draws: JudgeDraws,
    ) -> Judgments:
        """``judge_sync`` of each user's chosen candidate, user i drawing from a generator
        seeded with ``draws.seed[i]``; a judge may override it with vectorised code."""
        return Judgments.of(
            [
                self.judge_sync(
                    persona,
                    block.moment(i),
                    block.task(i, int(j)),
                    np.random.default_rng(int(seed)),
                )
                for i, (persona, j, seed) in enumerate(
                    zip(personas, chosen, draws.seed, strict=True)
                )
            ]
        )
