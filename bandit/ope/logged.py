"""The logged data off-policy evaluation works on: one row per logged show with its
propensity, reward and candidates, as read from a simulation run or from production."""

from __future__ import annotations

from dataclasses import dataclass, field

from bandit.base import Moment, Task

__all__ = ["EvaluationInputError", "Log", "LoggedRow"]


class EvaluationInputError(ValueError):
    """The log or the request cannot be evaluated (no usable rows, unknown policy, no
    expectations for the oracle, no such run): bad input, exit code 2 on the command line."""


@dataclass(frozen=True, slots=True)
class LoggedRow:
    """One logged show with its reward and candidates.

    Rows with the same ``batch`` were decided before any of them was learned from (one
    simulator round); production rows each have their own batch.
    """

    user_id: str
    batch: int
    moment: Moment
    tasks: tuple[Task, ...]
    index: int  # the shown tip's position in ``tasks``
    propensity: float
    reward: float
    policy: str
    expected: tuple[float, ...] | None = None  # the rule judge's exact expectation per task


@dataclass(slots=True)
class Log:
    """The rows to evaluate on, where they came from, and what was skipped."""

    source: str
    rows: list[LoggedRow]
    epsilon: float  # ε for egreedy-v1 when it is replayed
    skipped: dict[str, int] = field(default_factory=dict)
