"""What one simulator run plays: its configuration, run id, personas and users.

The configuration is checked here once (bad usage raises :class:`SimUsageError`, which the
CLI turns into exit code 2) and stored whole as ``sim_runs.config``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bandit.policies.baselines import RandomPolicy
from bandit.registry import DEFAULT_POLICY, KNOWN_TYPES_NAME, ORACLE_NAME
from judges.llm import LLMJudge
from judges.personas import Persona, PersonaFileError, load_personas
from judges.registry import DEFAULT_JUDGE, UnknownJudgeError, judge_class
from judges.world import World

__all__ = [
    "FALLBACKS",
    "IN_PROCESS_ONLY",
    "SimConfig",
    "SimFailedError",
    "SimUsageError",
    "SimUser",
    "Via",
    "make_users",
    "new_run_id",
    "resolve_personas",
]

Via = Literal["worker", "inprocess"]
# What the LLM judge does with a judgment it cannot give: fail the run, or ask the rule judge.
FALLBACKS: tuple[str, ...] = ("none", "rule")

# Policies the worker's /score/egreedy never serves: they play in this process only.
IN_PROCESS_ONLY = frozenset({RandomPolicy.name, ORACLE_NAME, KNOWN_TYPES_NAME})
# References that are told the rule judge's expected rewards (the user's, or every type's).
KNOWS_THE_JUDGE = frozenset({ORACLE_NAME, KNOWN_TYPES_NAME})


class SimUsageError(ValueError):
    """Bad usage or bad input: the CLI exits with 2."""


class SimFailedError(RuntimeError):
    """The run died (broker, database, worker): the CLI exits with 1."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What one run plays; stored as ``sim_runs.config``."""

    policy: str = DEFAULT_POLICY
    judge: str = DEFAULT_JUDGE  # a name in judges.registry
    users: int = 1  # per persona
    rounds: int = 10
    seed: int = 0
    personas_path: str | None = None  # a shipped set's name or a file; None: standard
    via: Via = "inprocess"
    epsilon: float = 0.1
    concurrency: int = 32  # users played at once
    rate: float | None = None  # load mode: Kafka messages per second
    duration: float | None = None  # load mode: seconds
    max_in_flight: int = 1000  # unacknowledged sends at most
    fallback: str = "none"  # the LLM judge's: none (a failure fails the run) or rule

    def validate(self) -> None:
        try:
            judge = judge_class(self.judge)
        except UnknownJudgeError as err:
            raise SimUsageError(str(err)) from None
        if self.users < 1:
            raise SimUsageError("--users must be at least 1")
        if self.rounds < 1:
            raise SimUsageError("--rounds must be at least 1")
        if self.seed < 0:
            raise SimUsageError("--seed must be >= 0")
        if self.concurrency < 1:
            raise SimUsageError("--concurrency must be at least 1")
        if not 0.0 <= self.epsilon <= 1.0:
            raise SimUsageError("--epsilon must be in [0, 1]")
        if self.policy in KNOWS_THE_JUDGE and not judge.knows_expectations:
            raise SimUsageError(
                f"the {self.policy} policy knows the rule judge only: use --judge rule"
            )
        if self.via == "worker" and self.policy in IN_PROCESS_ONLY:
            raise SimUsageError(f"the worker does not serve {self.policy!r}: use --via inprocess")
        if self.via == "worker" and judge.two_phase:
            raise SimUsageError("the external judge plays policies in-process: use --via inprocess")
        if (self.rate is None) != (self.duration is None):
            raise SimUsageError("load mode needs both --rate and --duration")
        if self.rate is not None and not self.rate > 0:
            raise SimUsageError("--rate must be > 0")
        if self.duration is not None and not self.duration > 0:
            raise SimUsageError("--duration must be > 0")
        if self.max_in_flight < 2:
            raise SimUsageError("max in-flight sends must be at least 2")
        if self.fallback not in FALLBACKS:
            raise SimUsageError(f"--fallback must be none or rule, not {self.fallback!r}")
        if self.fallback != "none" and self.judge != LLMJudge.name:
            raise SimUsageError("--fallback goes with --judge llm")

    def world_key(self, personas: Sequence[Persona]) -> dict[str, Any]:
        """What makes two runs face the same world (compared before pairing two runs)."""
        return {
            "seed": self.seed,
            "judge": self.judge,
            "personas": [asdict(p) for p in personas],
        }

    def as_json(self, personas: Sequence[Persona]) -> dict[str, Any]:
        document = asdict(self)
        document["personas"] = [asdict(p) for p in personas]
        document["persona_names"] = [p.name for p in personas]
        document["world"] = self.world_key(personas)
        return document


def new_run_id() -> str:
    return f"sim-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def resolve_personas(spec: str | None) -> list[Persona]:
    """The personas of a shipped set's name (standard, alternate) or of a file."""
    try:
        return load_personas(spec)
    except PersonaFileError as err:
        raise SimUsageError(str(err)) from None


@dataclass(slots=True)
class SimUser:
    """One simulated user: a persona's ``index``-th, with its in-process policy state."""

    persona: Persona
    index: int  # user index within the persona
    user_id: str
    state: Any = None  # in-process policy state
    learned: int = 0  # feedbacks with a learnable reward so far (min_updates for the worker)


def make_users(world: World, personas: Sequence[Persona], users: int) -> list[SimUser]:
    return [
        SimUser(persona=p, index=i, user_id=world.user_id(p, i))
        for p in personas
        for i in range(users)
    ]
