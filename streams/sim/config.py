"""What one simulator run plays: its configuration, run id, personas and users.

The configuration is checked here once (bad usage raises :class:`SimUsageError`, which the
CLI turns into exit code 2) and stored whole as ``sim_runs.config``, with the scenario's
drift (``drift_at``, ``drift``) and feedback delay (``delay``, ``delay_lost``, ``round_s``,
``reward_wait_s``, ``default_reward``) when it has them (docs/simulation.md, "Drift and
late feedback").
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bandit.policies.baselines import RandomPolicy
from bandit.registry import DEFAULT_POLICY, KNOWN_TYPES_NAME, ORACLE_NAME
from judges.delay import FeedbackDelay, parse_delay
from judges.drift import DRIFT_MAPPINGS, DRIFTS_WITH_DESCRIPTIONS, Drift
from judges.llm import LLMJudge
from judges.personas import Persona, PersonaFileError, load_personas
from judges.registry import DEFAULT_JUDGE, UnknownJudgeError, judge_class
from judges.world import World
from streams.sim.delivery import Delivery

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
    # A uniform slice of the in-process policy's choices (bandit.explore.ExplorationFloor);
    # through the worker, the worker's TIPSTREAM_EXPLORATION_FLOOR decides (recorded here as
    # this process's setting).
    exploration_floor: float = 0.0
    concurrency: int = 32  # users played at once
    rate: float | None = None  # load mode: Kafka messages per second
    duration: float | None = None  # load mode: seconds
    max_in_flight: int = 1000  # unacknowledged sends at most
    fallback: str = "none"  # the LLM judge's: none (a failure fails the run) or rule
    # Drift: from round ``drift_at`` on, every persona judges with the ``drift`` mapping's
    # preferences (judges.drift); None: no drift.
    drift_at: int | None = None
    drift: str = "rotate"
    # Late feedback (judges.delay, streams.sim.delivery): the delay in stream seconds, the
    # share that never arrives, the stream time of one round, and the worker's expiry
    # (TIPSTREAM_REWARD_WAIT_S, TIPSTREAM_DEFAULT_REWARD) that the learner mirrors.
    delay: str = "none"
    delay_lost: float = 0.0
    round_s: float = 3600.0
    reward_wait_s: float = 86_400.0
    default_reward: float | None = None

    def feedback_delay(self) -> FeedbackDelay:
        try:
            return parse_delay(self.delay, lost=self.delay_lost)
        except ValueError as err:
            raise SimUsageError(f"--delay: {err}") from None

    def make_delivery(self) -> Delivery | None:
        """The run's late feedback, or None when every reward comes at once."""
        delay = self.feedback_delay()
        if delay.instant:
            return None
        return Delivery(
            delay,
            round_s=self.round_s,
            reward_wait_s=self.reward_wait_s,
            default_reward=self.default_reward,
            late_arrivals=self.via == "worker",  # the worker is sent late feedback too
        )

    def make_drift(self, personas: Sequence[Persona]) -> Drift | None:
        if self.drift_at is None:
            return None
        return Drift.of(personas, self.drift, at_round=self.drift_at)

    def make_world(self, personas: Sequence[Persona]) -> World:
        """The run's world: its seed and its drift."""
        return World(self.seed, drift=self.make_drift(personas))

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
        if not 0.0 <= self.exploration_floor < 1.0:
            raise SimUsageError("--exploration-floor must be in [0, 1)")
        if self.exploration_floor and self.policy in KNOWS_THE_JUDGE:
            raise SimUsageError(
                f"--exploration-floor applies to a learning policy, not {self.policy}"
            )
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
        self._validate_drift(judge.knows_expectations, judge.two_phase)
        self._validate_delay(judge.two_phase)

    def _validate_drift(self, knows_expectations: bool, two_phase: bool) -> None:
        if self.drift_at is None:
            return
        if self.drift not in DRIFT_MAPPINGS:
            raise SimUsageError(
                f"--drift must be {' or '.join(DRIFT_MAPPINGS)}, not {self.drift!r}"
            )
        if not 0 <= self.drift_at < self.rounds:
            raise SimUsageError("--drift-at must be a round of the run: 0 <= ROUND < --rounds")
        if two_phase or self.rate is not None:
            raise SimUsageError("--drift-at goes with the closed loop (not load or external)")
        if self.drift not in DRIFTS_WITH_DESCRIPTIONS and not knows_expectations:
            raise SimUsageError(f"--drift {self.drift} changes no description: use --judge rule")

    def _validate_delay(self, two_phase: bool) -> None:
        delay = self.feedback_delay()
        if not self.round_s > 0:
            raise SimUsageError("--round-s must be > 0")
        if not self.reward_wait_s > 0:
            raise SimUsageError("--reward-wait-s must be > 0")
        if delay.instant:
            return
        if two_phase or self.rate is not None:
            raise SimUsageError("--delay goes with the closed loop (not load or external)")

    def world_key(self, personas: Sequence[Persona]) -> dict[str, Any]:
        """What makes two runs face the same world (compared before pairing two runs)."""
        key: dict[str, Any] = {
            "seed": self.seed,
            "judge": self.judge,
            "personas": [asdict(p) for p in personas],
        }
        if self.drift_at is not None:  # a drifting world is another world (steady: no key)
            key["drift"] = {"at_round": self.drift_at, "mapping": self.drift}
        return key

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
