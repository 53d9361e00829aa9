"""Who chooses the tip in a simulator run: the policy in this process, or the worker.

:class:`InProcessChooser` keeps one user state per simulated user and one shared state per
run; :class:`WorkerChooser` asks the worker's ``POST /score/egreedy`` in the run's
namespace, and the worker learns from the feedback the run publishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from bandit.base import (
    SEED_BOUND,
    CandidateBlock,
    Choice,
    ChoiceDraws,
    Choices,
    FloatArray,
    IntArray,
    Moment,
    Policy,
    Task,
    choice_rng,
)
from bandit.registry import KNOWN_TYPES_NAME, ORACLE_NAME, make_known_types, make_oracle
from bandit.registry import make_policy as registry_make_policy
from judges.drift import Drift
from judges.personas import Persona
from judges.rule import expected_reward
from streams.settings import Settings
from streams.sim.config import SimConfig, SimFailedError, SimUsageError, SimUser, Via

__all__ = [
    "Chooser",
    "InProcessChooser",
    "Lesson",
    "Picked",
    "WorkerChooser",
    "make_policy",
    "score_seed",
]

log = logging.getLogger(__name__)


Lesson = tuple[SimUser, Moment, Task, float]
"""A reward to learn: the user, the moment it was shown, the task it was shown, the reward."""


@dataclass(frozen=True, slots=True)
class Picked:
    """The chosen candidate and how it was chosen."""

    index: int
    propensity: float
    explored: bool
    score: float
    probabilities: list[float] | None  # exact, when the policy is in-process


def make_policy(name: str, epsilon: float, floor: float = 0.0) -> Policy:
    """The registry's policy; an unknown name is bad usage."""
    try:
        return registry_make_policy(name, epsilon=epsilon, floor=floor)
    except ValueError as err:
        raise SimUsageError(str(err).strip("\"'")) from None


def score_seed(rng: np.random.Generator) -> int:
    """The seed of one choice, drawn from the round's policy draws: the worker is sent it
    (``/score`` ``seed``), and the in-process policy draws from ``choice_rng`` of it, so that
    both ways explore with the very same numbers."""
    return int(rng.integers(0, SEED_BOUND))


def _bind_expected(
    persona: Persona, expected: Callable[[Persona, Moment, Task], float]
) -> Callable[[Moment, Task], float]:
    return lambda moment, task: expected(persona, moment, task)


class InProcessChooser:
    """A bandit policy in this process: one user state per user, one shared state per run.

    With a drift, the oracle knows each persona's preferences after the drift as well (it is
    the judge's expected reward of the round); the known-types ceiling keeps the persona set
    it was given.
    """

    via: Via = "inprocess"

    def __init__(
        self,
        policy_name: str,
        epsilon: float,
        personas: Sequence[Persona],
        drift: Drift | None = None,
        floor: float = 0.0,
    ) -> None:
        self.name = policy_name
        self.drift = drift
        self._per_persona: dict[str, Policy] = {}
        self._drifted: dict[str, Policy] = {}  # the oracle after the drift
        if policy_name == ORACLE_NAME:
            # The oracle knows the rule judge's expected rewards (SimConfig.validate).
            for persona in personas:
                self._per_persona[persona.name] = make_oracle(
                    _bind_expected(persona, expected_reward)
                )
                if drift is not None:
                    self._drifted[persona.name] = make_oracle(
                        _bind_expected(drift.persona_at(persona, drift.at_round), expected_reward)
                    )
            self._default: Policy = next(iter(self._per_persona.values()))
        elif policy_name == KNOWN_TYPES_NAME:
            # The ceiling knows every persona's expected rewards, not the user's persona.
            self._default = make_known_types(
                [_bind_expected(persona, expected_reward) for persona in personas]
            )
        else:
            self._default = make_policy(policy_name, epsilon, floor)
        self.shared = self._default.new_shared()

    @classmethod
    def for_run(cls, config: SimConfig, personas: Sequence[Persona]) -> InProcessChooser:
        """The chooser a run's configuration asks for (policy, ε, floor, drift)."""
        return cls(
            config.policy,
            config.epsilon,
            personas,
            config.make_drift(personas),
            floor=config.exploration_floor,
        )

    def policy(self, persona: Persona, round_: int = 0) -> Policy:
        """The policy that plays ``persona`` in ``round_``."""
        if self.drift is not None and round_ >= self.drift.at_round:
            drifted = self._drifted.get(persona.name)
            if drifted is not None:
                return drifted
        return self._per_persona.get(persona.name, self._default)

    def new_user_state(self, persona: Persona) -> Any:
        return self.policy(persona).new_user()

    def choose(
        self,
        user: SimUser,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
        *,
        with_probabilities: bool = True,
        round_: int = 0,
    ) -> Picked:
        policy = self.policy(user.persona, round_)
        probabilities = (
            [float(p) for p in policy.probabilities(user.state, self.shared, moment, tasks)]
            if with_probabilities
            else None
        )
        choice_draws = choice_rng(score_seed(rng))
        choice: Choice = policy.choose(user.state, self.shared, moment, tasks, choice_draws)
        return Picked(
            index=choice.index,
            propensity=float(choice.propensity),
            explored=bool(choice.explored),
            score=float(choice.score),
            probabilities=probabilities,
        )

    def learn_together(self, lessons: Sequence[Lesson], *, round_: int = 0) -> None:
        """Learn the rewards of a block (or of what arrived together) as the worker learns
        a batch (``streams.worker.learning``): in waves, the k-th reward of each user in
        wave k, and a wave as one ``Policy.update_many`` per policy, every user weighed
        against the shared state as it stood at the wave's start. ``round_`` is the round
        they are learned in (it picks the oracle after a drift)."""
        waves: list[list[Lesson]] = []
        seen: Counter[int] = Counter()
        for lesson in lessons:
            k = seen[id(lesson[0])]
            seen[id(lesson[0])] += 1
            if k == len(waves):
                waves.append([])
            waves[k].append(lesson)
        for wave in waves:
            groups: dict[int, tuple[Policy, list[Lesson]]] = {}
            for lesson in wave:
                policy = self.policy(lesson[0].persona, round_)
                groups.setdefault(id(policy), (policy, []))[1].append(lesson)
            for policy, members in groups.values():
                moments, tasks = [m for _, m, _, _ in members], [[t] for _, _, t, _ in members]
                block = CandidateBlock.of(moments, tasks)
                policy.update_many(
                    [user.state for user, *_ in members],
                    self.shared,
                    block,
                    np.zeros(len(members), dtype=np.int64),
                    np.array([reward for *_, reward in members], dtype=np.float64),
                )

    def policy_groups(self, users: Sequence[SimUser]) -> list[tuple[Policy, IntArray]]:
        """The users' positions grouped by the policy that plays them (before any drift):
        one group, unless the policy is one per persona (the oracle)."""
        groups: dict[int, tuple[Policy, list[int]]] = {}
        for i, user in enumerate(users):
            policy = self.policy(user.persona)
            groups.setdefault(id(policy), (policy, []))[1].append(i)
        return [(policy, np.array(rows, dtype=np.int64)) for policy, rows in groups.values()]

    def choose_many(
        self,
        groups: Sequence[tuple[Policy, IntArray]],
        users: Sequence[SimUser],
        block: CandidateBlock,
        draws: ChoiceDraws,
    ) -> Choices:
        """Every user's choice in ``block`` (``Policy.choose_many`` per group): a round of
        load mode. The block's choices are made before any of its rewards is learned."""
        if len(groups) == 1:  # every user, in order
            policy, _ = groups[0]
            return policy.choose_many([u.state for u in users], self.shared, block, draws)
        n = block.size
        out = Choices(
            index=np.empty(n, dtype=np.int64),
            propensity=np.empty(n, dtype=np.float64),
            explored=np.empty(n, dtype=np.bool_),
            score=np.empty(n, dtype=np.float64),
        )
        for policy, rows in groups:
            states = [users[i].state for i in rows.tolist()]
            part = policy.choose_many(states, self.shared, block.rows(rows), draws.rows(rows))
            out.index[rows], out.propensity[rows] = part.index, part.propensity
            out.explored[rows], out.score[rows] = part.explored, part.score
        return out

    def learn_many(
        self,
        groups: Sequence[tuple[Policy, IntArray]],
        users: Sequence[SimUser],
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        """Every user learns its reward for its chosen candidate (``Policy.update_many``)."""
        if len(groups) == 1:  # every user, in order
            policy, _ = groups[0]
            policy.update_many([u.state for u in users], self.shared, block, chosen, rewards)
            return
        for policy, rows in groups:
            states = [users[i].state for i in rows.tolist()]
            policy.update_many(states, self.shared, block.rows(rows), chosen[rows], rewards[rows])


class WorkerChooser:
    """The worker's ``POST /score/egreedy`` in the run's namespace."""

    via: Via = "worker"
    # The worker answers 503 while it starts or rebalances (or its database is down) and 504
    # when the user's state has not reached ``min_updates`` yet: both pass, so ask again,
    # with a bounded exponential backoff (about 30 s besides the worker's own 10 s waits).
    retry_statuses = frozenset({503, 504})
    attempts = 8
    first_backoff_s = 0.25
    max_backoff_s = 8.0
    # A block of users waiting on a busy worker retries together: one line per interval
    # tells what happened without a line per user per retry.
    retry_log_every_s = 5.0

    def __init__(
        self, settings: Settings, policy_name: str, run_id: str, session: aiohttp.ClientSession
    ) -> None:
        self.name = policy_name
        self.run_id = run_id
        self.url = f"http://{settings.web_host}:{settings.web_port}/score/egreedy"
        self.feedback_topic = settings.topic_feedback
        self.session = session
        self.shared = None
        self.retries: Counter[int] = Counter()  # worker answers retried, by status
        self._unlogged: Counter[int] = Counter()  # retries since the last log line
        self._logged_at = -float("inf")

    def new_user_state(self, persona: Persona) -> Any:
        return None

    async def choose(
        self,
        user: SimUser,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
        *,
        run_learned: int = 0,
    ) -> Picked:
        """The worker's choice once it has learned from the user's ``user.learned`` rewards
        and the run's ``run_learned``."""
        body = {
            "user_id": user.user_id,
            "candidates": [
                {
                    "tip_id": t.tip_id,
                    "features": {
                        "priority": t.priority,
                        "is_overdue": t.is_overdue,
                        "task_age_days": t.task_age_days,
                    },
                }
                for t in tasks
            ],
            "context": {"hour_of_day": moment.hour_of_day, "day_of_week": moment.day_of_week},
            "run_id": self.run_id,
            "seed": score_seed(rng),
            "min_updates": user.learned,
            "min_run_updates": run_learned,
        }
        answer = await self._score(user, body)
        if answer.get("policy") != self.name:
            raise SimFailedError(
                f"the worker serves {answer.get('policy')!r}, not {self.name!r}: "
                "start it with TIPSTREAM_POLICY or use --via inprocess"
            )
        ids = [t.tip_id for t in tasks]
        try:
            index = ids.index(answer["tip_id"])
        except ValueError:
            raise SimFailedError(f"worker chose {answer['tip_id']!r}, not a candidate") from None
        return Picked(
            index=index,
            propensity=float(answer["propensity"]),
            explored=bool(answer["explored"]),
            score=float(answer.get("score") or 0.0),
            probabilities=None,
        )

    async def _score(self, user: SimUser, body: dict[str, Any]) -> dict[str, Any]:
        """POST the request, retrying 503, 504 and connection errors with bounded backoff."""
        backoff = self.first_backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.session.post(self.url, json=body) as response:
                    answer: dict[str, Any] = await response.json(content_type=None)
                    status = response.status
            except aiohttp.ClientError as err:
                if attempt == self.attempts:
                    raise SimFailedError(f"worker at {self.url} unreachable: {err}") from err
                status, answer = 0, {"error": str(err)}
            if status == 200:
                return answer
            if status not in (0, *self.retry_statuses):
                raise SimFailedError(f"worker answered {status} for {user.user_id}: {answer}")
            if attempt == self.attempts:
                break
            self.retries[status] += 1
            self._log_retry(status, user, answer, backoff, attempt)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        if status == 504:
            raise SimFailedError(
                f"worker answered 504 for {user.user_id}: {answer}. It did not apply this "
                f"user's last feedback in {self.attempts} tries: it may be behind on a backlog in "
                f"{self.feedback_topic} (other runs' traffic; its /healthz shows the lag); let "
                "it catch up, or use other topics and app id"
            )
        raise SimFailedError(
            f"worker answered {status} for {user.user_id} {self.attempts} times: {answer}"
        )

    def _log_retry(
        self, status: int, user: SimUser, answer: dict[str, Any], backoff: float, attempt: int
    ) -> None:
        self._unlogged[status] += 1
        now = time.monotonic()
        if now - self._logged_at < self.retry_log_every_s:
            return
        counts = ", ".join(
            f"{n} × {s or 'no connection'}" for s, n in sorted(self._unlogged.items())
        )
        log.warning(
            "worker answered %s for %s (%s); retrying in %.2fs (attempt %d of %d); "
            "retries since the last such line: %s",
            status or "no connection", user.user_id, answer.get("error", answer),
            backoff, attempt, self.attempts - 1, counts,
            extra={"run_id": self.run_id, "user_id": user.user_id},
        )  # fmt: skip
        self._unlogged.clear()
        self._logged_at = now

    def learn_together(self, lessons: Sequence[Lesson], *, round_: int = 0) -> None:
        """The worker learns from the feedback we publish."""


Chooser = InProcessChooser | WorkerChooser
