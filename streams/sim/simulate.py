"""The simulator: synthetic personas played onto the production topics (SIMULATION.md).

Three ways to run:

* closed loop (``run_closed_loop``): for each user and round, draw the moment and the 8
  candidates from the :class:`~judges.world.World`, let the policy choose (the worker's
  ``POST /score/egreedy`` for the policy the worker serves, or the policy in-process), ask the
  judge how the persona reacts, publish ``TipShown`` + ``TipFeedback`` with ``source = sim``
  and the run id, and record the judgment in ``sim_events``;
* external judge (``run_external_requests`` / ``run_external_judgments``): phase 1 chooses
  and publishes the shows and writes judgment requests; phase 2 reads the judgments back;
* load (``run_load``): open loop at a target rate of Kafka messages per second (a show and
  its feedback are two messages), policy in-process, bounded in-flight sends.

Determinism (common random numbers): the World fixes users, moments, candidates, the
policy's draws (``policy_rng``) and the judge's draws (``judge_rng``, keyed by the chosen
tip). In-process policies play round by round in lockstep: every user chooses from the state
left by the previous round, then the updates are applied in user order, so even a policy that
pools state across users gives the same choices on every run. Through the worker each user's
rounds run in order and ``min_updates`` makes the worker wait until it has learned from that
user's earlier feedback, so the loop is deterministic there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import numpy as np
from aiokafka import AIOKafkaProducer

from bandit.base import Choice, Moment, Policy, Task
from bandit.registry import DEFAULT_POLICY, POLICY_NAMES
from bandit.reward import reward_milli
from judges.base import Judge, Judgment
from judges.personas import Persona, load_personas
from judges.world import World
from schemas.events import (
    Action,
    CandidateTip,
    Source,
    TipFeatures,
    TipFeedback,
    TipShown,
    encode,
    from_epoch_ms,
)
from streams.analysis.report import summarize
from streams.settings import Settings
from streams.sim.store import EventRow, SimStore, connect_pool

JudgeName = Literal["rule", "llm", "external"]
Via = Literal["worker", "inprocess"]

# Policies the worker's /score/egreedy can answer for (when it serves them).
IN_PROCESS_ONLY = frozenset({"random", "oracle"})
WORKER_POLICIES = frozenset(POLICY_NAMES) - IN_PROCESS_ONLY


class SimUsageError(ValueError):
    """Bad usage or bad input: the CLI exits with 2."""


class SimFailedError(RuntimeError):
    """The run died (broker, database, worker): the CLI exits with 1."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What one run plays; stored as ``sim_runs.config``."""

    policy: str = DEFAULT_POLICY
    judge: JudgeName = "rule"
    users: int = 1  # per persona
    rounds: int = 10
    seed: int = 0
    personas_path: str | None = None
    via: Via = "inprocess"
    epsilon: float = 0.1
    concurrency: int = 32  # users played at once
    rate: float | None = None  # load mode: Kafka messages per second
    duration: float | None = None  # load mode: seconds
    max_in_flight: int = 1000  # unacknowledged sends at most

    def validate(self) -> None:
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
        if self.policy == "oracle" and self.judge != "rule":
            raise SimUsageError("the oracle policy knows the rule judge only: use --judge rule")
        if self.via == "worker" and self.policy in IN_PROCESS_ONLY:
            raise SimUsageError(f"the worker does not serve {self.policy!r}: use --via inprocess")
        if self.via == "worker" and self.judge == "external":
            raise SimUsageError("the external judge plays policies in-process: use --via inprocess")
        if (self.rate is None) != (self.duration is None):
            raise SimUsageError("load mode needs both --rate and --duration")
        if self.rate is not None and not self.rate > 0:
            raise SimUsageError("--rate must be > 0")
        if self.duration is not None and not self.duration > 0:
            raise SimUsageError("--duration must be > 0")
        if self.max_in_flight < 2:
            raise SimUsageError("max in-flight sends must be at least 2")

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


def resolve_personas(path: str | None) -> list[Persona]:
    from judges.personas import PersonaFileError  # noqa: PLC0415

    try:
        return load_personas(path)
    except PersonaFileError as err:
        raise SimUsageError(str(err)) from None


# ----------------------------------------------------------------------------------------------
# Users
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SimUser:
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


# ----------------------------------------------------------------------------------------------
# Policies: in-process or through the worker
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Picked:
    index: int
    propensity: float
    explored: bool
    score: float
    probabilities: list[float] | None  # exact, when the policy is in-process


class InProcessChooser:
    """A bandit policy in this process: one user state per user, one shared state per run."""

    via: Via = "inprocess"

    def __init__(self, policy_name: str, epsilon: float, personas: Sequence[Persona]) -> None:
        self.name = policy_name
        self._per_persona: dict[str, Policy] = {}
        if policy_name == "oracle":
            from bandit.policies.baselines import OraclePolicy  # noqa: PLC0415
            from judges.rule import expected_reward  # noqa: PLC0415

            for persona in personas:
                self._per_persona[persona.name] = OraclePolicy(
                    _bind_expected(persona, expected_reward)
                )
            self._default: Policy = next(iter(self._per_persona.values()))
        else:
            self._default = make_policy(policy_name, epsilon)
        self.shared = self._default.new_shared()

    def policy(self, persona: Persona) -> Policy:
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
    ) -> Picked:
        policy = self.policy(user.persona)
        probabilities = (
            [float(p) for p in policy.probabilities(user.state, self.shared, moment, tasks)]
            if with_probabilities
            else None
        )
        choice: Choice = policy.choose(user.state, self.shared, moment, tasks, rng)
        return Picked(
            index=choice.index,
            propensity=float(choice.propensity),
            explored=bool(choice.explored),
            score=float(choice.score),
            probabilities=probabilities,
        )

    def learn(self, user: SimUser, moment: Moment, task: Task, reward: float) -> None:
        self.policy(user.persona).update(user.state, self.shared, moment, task, reward)


def _bind_expected(
    persona: Persona, expected: Callable[[Persona, Moment, Task], float]
) -> Callable[[Moment, Task], float]:
    return lambda moment, task: expected(persona, moment, task)


def make_policy(name: str, epsilon: float) -> Policy:
    from bandit.registry import make_policy as registry_make  # noqa: PLC0415

    try:
        return registry_make(name, epsilon=epsilon)
    except (KeyError, ValueError) as err:
        if name == "random":
            from bandit.policies.baselines import RandomPolicy  # noqa: PLC0415

            return RandomPolicy()
        raise SimUsageError(str(err).strip("\"'")) from None


class WorkerChooser:
    """The worker's ``POST /score/egreedy`` in the run's namespace."""

    via: Via = "worker"

    def __init__(
        self, settings: Settings, policy_name: str, run_id: str, session: aiohttp.ClientSession
    ) -> None:
        self.name = policy_name
        self.run_id = run_id
        self.url = f"http://{settings.web_host}:{settings.web_port}/score/egreedy"
        self.feedback_topic = settings.topic_feedback
        self.session = session
        self.shared = None

    def new_user_state(self, persona: Persona) -> Any:
        return None

    async def choose(
        self,
        user: SimUser,
        moment: Moment,
        tasks: Sequence[Task],
        rng: np.random.Generator,
    ) -> Picked:
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
            "seed": int(rng.integers(0, 2**31 - 1)),
            "min_updates": user.learned,
        }
        answer: dict[str, Any] = {}
        for attempt in range(3):
            try:
                async with self.session.post(self.url, json=body) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 504 and attempt < 2:
                        continue  # the worker had not learned yet; ask again
                    if response.status == 504:
                        raise SimFailedError(
                            f"worker answered 504 for {user.user_id}: {answer}. It did not "
                            "apply this user's last feedback in three tries: it may be behind "
                            f"on a backlog in {self.feedback_topic} (other runs' "
                            "traffic; its /healthz shows the lag); let it catch up, or use other "
                            "topics and app id"
                        )
                    if response.status != 200:
                        raise SimFailedError(
                            f"worker answered {response.status} for {user.user_id}: {answer}"
                        )
                    break
            except aiohttp.ClientError as err:
                if attempt == 2:
                    raise SimFailedError(f"worker at {self.url} unreachable: {err}") from err
                await asyncio.sleep(0.5)
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

    def learn(self, user: SimUser, moment: Moment, task: Task, reward: float) -> None:
        """The worker learns from the feedback we publish."""


# ----------------------------------------------------------------------------------------------
# Publishing: bounded in-flight sends
# ----------------------------------------------------------------------------------------------


def make_producer(settings: Settings, *, linger_ms: int = 5) -> AIOKafkaProducer:
    """The producer the simulator and the load bench use (default partitioner: murmur2)."""
    return AIOKafkaProducer(
        **settings.aiokafka_kwargs(),
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        acks=1,
        client_id="tipstream-sim",
    )


class Publisher:
    """Sends with at most ``max_in_flight`` unacknowledged messages; the first error is raised."""

    def __init__(self, producer: AIOKafkaProducer, max_in_flight: int = 1000) -> None:
        self.producer = producer
        self.max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.sent = 0
        self.acked = 0
        self._error: BaseException | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._error is not None:
            raise SimFailedError(f"Kafka send failed: {self._error!r}") from self._error
        await self._slots.acquire()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._idle.clear()
        try:
            future = await self.producer.send(topic, value=value, key=key)
        except BaseException:
            self._release()
            raise
        self.sent += 1
        future.add_done_callback(self._done)

    def _release(self) -> None:
        self.in_flight -= 1
        self._slots.release()
        if self.in_flight == 0:
            self._idle.set()

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._release()
        if future.cancelled():
            self._error = self._error or asyncio.CancelledError("send cancelled")
        elif future.exception() is not None:
            self._error = self._error or future.exception()
        else:
            self.acked += 1

    async def drain(self) -> None:
        """Wait until every send so far is acknowledged; raise the first failure."""
        await self.producer.flush()
        await self._idle.wait()
        if self._error is not None:
            raise SimFailedError(f"Kafka send failed: {self._error!r}") from self._error


# ----------------------------------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------------------------------


def event_ids(run_id: str, user_id: str, round_: int) -> tuple[str, str]:
    base = f"{run_id}/{user_id}/{round_}"
    return f"{base}/s", f"{base}/f"


def build_shown(
    *,
    run_id: str,
    user_id: str,
    round_: int,
    policy: str,
    moment: Moment,
    tasks: Sequence[Task],
    picked: Picked,
    served_at_ms: int,
) -> TipShown:
    task = tasks[picked.index]
    return TipShown(
        type="TipShown",
        schema_version=1,
        event_id=event_ids(run_id, user_id, round_)[0],
        tip_id=task.tip_id,
        user_id=user_id,
        served_at=from_epoch_ms(served_at_ms),
        policy=policy,
        propensity=picked.propensity,
        features=TipFeatures(
            hour_of_day=moment.hour_of_day,
            day_of_week=moment.day_of_week,
            priority=task.priority,
            is_overdue=task.is_overdue,
            task_age_days=task.task_age_days,
        ),
        candidate_count=len(tasks),
        candidates=[
            CandidateTip(
                tip_id=t.tip_id,
                priority=t.priority,
                is_overdue=t.is_overdue,
                task_age_days=t.task_age_days,
            )
            for t in tasks
        ],
        source=Source.SIM,
        run_id=run_id,
    )


def build_feedback(
    *,
    run_id: str,
    user_id: str,
    round_: int,
    tip_id: str,
    action: str,
    dwell_ms: int | None,
    served_at_ms: int,
) -> TipFeedback:
    return TipFeedback(
        type="TipFeedback",
        schema_version=1,
        event_id=event_ids(run_id, user_id, round_)[1],
        tip_id=tip_id,
        user_id=user_id,
        action=Action(action),
        dwell_ms=dwell_ms,
        occurred_at=from_epoch_ms(served_at_ms + (dwell_ms or 0)),
        source=Source.SIM,
        run_id=run_id,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def task_json(task: Task, expected: float | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "tip_id": task.tip_id,
        "priority": task.priority,
        "is_overdue": task.is_overdue,
        "task_age_days": task.task_age_days,
    }
    if expected is not None:
        document["expected_reward"] = expected
    return document


def features_json(
    *,
    user: SimUser,
    moment: Moment,
    tasks: Sequence[Task],
    picked: Picked,
    expected: Sequence[float] | None,
    via: str,
    fallback_reason: str | None = None,
) -> dict[str, Any]:
    """``sim_events.features``: the moment, the chosen task and every candidate.

    With the rule judge each candidate carries its exact expected reward, so the oracle, the
    random baseline and off-policy estimates need no extra run.
    """
    candidates = [
        task_json(t, expected[i] if expected is not None else None) for i, t in enumerate(tasks)
    ]
    if picked.probabilities is not None:
        for candidate, probability in zip(candidates, picked.probabilities, strict=True):
            candidate["probability"] = probability
    document: dict[str, Any] = {
        "user_index": user.index,
        "moment": {"hour_of_day": moment.hour_of_day, "day_of_week": moment.day_of_week},
        "chosen_index": picked.index,
        "chosen": candidates[picked.index],
        "candidates": candidates,
        "score": picked.score,
        "via": via,
    }
    if fallback_reason is not None:
        document["fallback_reason"] = fallback_reason
    return document


# ----------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------


class Progress:
    """A rich progress bar on a terminal, a quiet line every few seconds otherwise (stderr)."""

    def __init__(
        self, total: int | None, label: str, *, enabled: bool = True, every_s: float = 5.0
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = enabled
        self.every_s = every_s
        self._bar: Any = None
        self._task: Any = None
        self._last = time.monotonic()
        self._start = self._last

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress  # noqa: PLC0415

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self.every_s:
                self._last = now
                of = f"/{self.total}" if self.total else ""
                print(
                    f"{self.label}: {self.done}{of} after {now - self._start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# ----------------------------------------------------------------------------------------------
# Judges
# ----------------------------------------------------------------------------------------------


def make_judge(name: str, settings: Settings) -> Judge:
    if name == "rule":
        from judges.rule import RuleJudge  # noqa: PLC0415

        return RuleJudge()
    if name == "llm":
        from judges.llm import DEFAULT_MODEL, LLMJudge  # noqa: PLC0415

        return LLMJudge(model=os.environ.get("TIPSTREAM_LLM_MODEL", DEFAULT_MODEL))
    raise SimUsageError(f"judge {name!r} has no in-loop form")


def llm_counters(judge: Judge) -> dict[str, Any]:
    names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "calls")
    counters: dict[str, Any] = {n: int(getattr(judge, n, 0) or 0) for n in names}
    counters["fallbacks"] = dict(getattr(judge, "fallbacks", {}) or {})
    return counters


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunContext:
    """Everything one run shares."""

    settings: Settings
    config: SimConfig
    run_id: str
    personas: list[Persona]
    world: World
    publisher: Publisher
    store: SimStore | None
    progress: Progress
    stats: list[dict[str, Any]] = field(default_factory=list)  # one per judgment, for the summary


async def play_round(
    ctx: RunContext,
    chooser: InProcessChooser | WorkerChooser,
    judge: Judge,
    user: SimUser,
    round_: int,
    *,
    picked: Picked | None = None,
) -> tuple[Moment, Task, Judgment]:
    """One round of one user: choose (unless given), judge, publish, record."""
    world = ctx.world
    persona = user.persona
    moment = world.moment(persona, user.index, round_)
    tasks = world.candidates(persona, user.index, round_)
    if picked is None:
        rng = world.policy_rng(persona, user.index, round_)
        if isinstance(chooser, WorkerChooser):
            picked = await chooser.choose(user, moment, tasks, rng)
        else:
            picked = chooser.choose(user, moment, tasks, rng)
    task = tasks[picked.index]
    served_at = now_ms()
    judgment = await judge.judge(
        persona, moment, task, world.judge_rng(persona, user.index, round_, task.tip_id)
    )
    await publish_and_record(
        ctx, chooser.name, chooser.via, user, round_, moment, tasks, picked, judgment, served_at
    )
    return moment, task, judgment


async def publish_and_record(  # noqa: PLR0917 - one judgment's parts, all needed
    ctx: RunContext,
    policy_name: str,
    via: str,
    user: SimUser,
    round_: int,
    moment: Moment,
    tasks: Sequence[Task],
    picked: Picked,
    judgment: Judgment,
    served_at: int,
    *,
    publish_shown: bool = True,
) -> None:
    task = tasks[picked.index]
    settings = ctx.settings
    key = user.user_id.encode()
    if publish_shown:
        shown = build_shown(
            run_id=ctx.run_id,
            user_id=user.user_id,
            round_=round_,
            policy=policy_name,
            moment=moment,
            tasks=tasks,
            picked=picked,
            served_at_ms=served_at,
        )
        await ctx.publisher.send(settings.topic_shown, key, encode(shown))
    feedback = build_feedback(
        run_id=ctx.run_id,
        user_id=user.user_id,
        round_=round_,
        tip_id=task.tip_id,
        action=judgment.action,
        dwell_ms=judgment.dwell_ms,
        served_at_ms=served_at,
    )
    await ctx.publisher.send(settings.topic_feedback, key, encode(feedback))

    expected: list[float] | None = None
    if ctx.config.judge == "rule":
        from judges.rule import expected_reward  # noqa: PLC0415

        expected = [expected_reward(user.persona, moment, t) for t in tasks]
    chosen_expected = judgment.expected_reward if ctx.config.judge == "rule" else None
    if ctx.store is not None:
        await ctx.store.add(
            EventRow(
                run_id=ctx.run_id,
                event_id=feedback.event_id,
                round=round_,
                user_id=user.user_id,
                persona=user.persona.name,
                tip_id=task.tip_id,
                action=judgment.action,
                dwell_ms=judgment.dwell_ms,
                reward_milli=reward_milli(judgment.reward) if judgment.reward is not None else None,
                policy=policy_name,
                propensity=picked.propensity,
                explored=picked.explored,
                features=features_json(
                    user=user,
                    moment=moment,
                    tasks=tasks,
                    picked=picked,
                    expected=expected,
                    via=via,
                    fallback_reason=judgment.fallback_reason,
                ),
                expected_reward=chosen_expected,
                occurred_at=feedback.occurred_at,
            )
        )
    ctx.stats.append(
        {
            "persona": user.persona.name,
            "round": round_,
            "reward": judgment.reward,
            "expected_reward": chosen_expected,
            "random_expected": (sum(expected) / len(expected)) if expected else None,
            "oracle_expected": max(expected) if expected else None,
            "action": judgment.action,
        }
    )
    ctx.progress.advance()


async def _inprocess_lockstep(ctx: RunContext, chooser: InProcessChooser, judge: Judge) -> None:
    """Round by round: all users choose from last round's state, then learn in user order."""
    users = make_users(ctx.world, ctx.personas, ctx.config.users)
    for user in users:
        user.state = chooser.new_user_state(user.persona)
    limit = asyncio.Semaphore(ctx.config.concurrency)

    async def judged(user: SimUser, round_: int, picked: Picked) -> tuple[Moment, Task, Judgment]:
        async with limit:
            return await play_round(ctx, chooser, judge, user, round_, picked=picked)

    for round_ in range(ctx.config.rounds):
        picks = []
        for user in users:
            moment = ctx.world.moment(user.persona, user.index, round_)
            tasks = ctx.world.candidates(user.persona, user.index, round_)
            rng = ctx.world.policy_rng(user.persona, user.index, round_)
            picks.append(chooser.choose(user, moment, tasks, rng))
        results = await asyncio.gather(
            *(judged(u, round_, p) for u, p in zip(users, picks, strict=True))
        )
        for user, (moment, task, judgment) in zip(users, results, strict=True):
            if judgment.reward is not None:
                chooser.learn(user, moment, task, judgment.reward)
                user.learned += 1


async def _worker_per_user(ctx: RunContext, chooser: WorkerChooser, judge: Judge) -> None:
    """Each user's rounds in order (the worker learns between them); users concurrently."""
    users = make_users(ctx.world, ctx.personas, ctx.config.users)
    limit = asyncio.Semaphore(ctx.config.concurrency)

    async def one_user(user: SimUser) -> None:
        async with limit:
            for round_ in range(ctx.config.rounds):
                _, _, judgment = await play_round(ctx, chooser, judge, user, round_)
                if judgment.reward is not None:
                    user.learned += 1

    tasks = [asyncio.create_task(one_user(u)) for u in users]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _run_lifecycle(
    settings: Settings,
    config: SimConfig,
    personas: list[Persona],
    *,
    run_id: str,
    record: bool,
    progress_total: int | None,
    quiet: bool,
    label: str,
) -> Any:
    """Producer, store and the run row: running → finished / failed / cancelled."""
    from streams.worker.topics import TopicLayoutError, ensure_topics  # noqa: PLC0415

    try:
        await ensure_topics(settings)  # never let the producer auto-create a 1-partition topic
    except TopicLayoutError as err:
        raise SimFailedError(str(err)) from None
    pool = await connect_pool(settings.database_url) if record else None
    store = SimStore(pool, run_id) if pool is not None else None
    producer = make_producer(settings, linger_ms=5 if config.rate is None else 20)
    try:
        if store is not None:
            await store.create_run(config.as_json(personas))
        await producer.start()
        ctx = RunContext(
            settings=settings,
            config=config,
            run_id=run_id,
            personas=personas,
            world=World(config.seed),
            publisher=Publisher(producer, config.max_in_flight),
            store=store,
            progress=Progress(progress_total, label, enabled=not quiet),
        )
        with ctx.progress:
            yield ctx
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        if pool is not None:
            await pool.close()


async def _finish(
    ctx: RunContext,
    status: str,
    *,
    events: int | None = None,
    error: str | None = None,
    summary: Mapping[str, Any] | None = None,
    llm: Mapping[str, Any] | None = None,
) -> None:
    if ctx.store is None:
        return
    with contextlib.suppress(Exception):
        await ctx.store.flush()
    mean = summary.get("mean_reward") if summary else _mean_reward(ctx.stats)
    await ctx.store.finish_run(
        status,
        events=ctx.store.written if events is None else events,
        mean_reward=mean,
        error=error,
        stats=summary,
        llm=llm,
    )


def _mean_reward(stats: Sequence[Mapping[str, Any]]) -> float | None:
    rewards = [s["reward"] for s in stats if s["reward"] is not None]
    return sum(rewards) / len(rewards) if rewards else None


async def _guarded(
    ctx: RunContext,
    body: Callable[[], Awaitable[dict[str, Any]]],
    llm: Callable[[], dict[str, Any]] | None = None,
    events: Callable[[dict[str, Any]], int] | None = None,
) -> dict[str, Any]:
    """Run ``body``; record finished / failed / cancelled in ``sim_runs`` whatever happens."""
    try:
        summary = await body()
    except asyncio.CancelledError:
        await asyncio.shield(
            _finish(
                ctx, "cancelled", error="cancelled (SIGINT/SIGTERM)", llm=llm() if llm else None
            )
        )
        raise
    except BaseException as err:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                _finish(
                    ctx,
                    "failed",
                    error=f"{type(err).__name__}: {err}"[:2000],
                    llm=llm() if llm else None,
                )
            )
        raise
    await _finish(
        ctx,
        "finished",
        summary=summary,
        llm=llm() if llm else None,
        events=events(summary) if events else None,
    )
    return summary


async def run_closed_loop(
    settings: Settings,
    config: SimConfig,
    *,
    run_id: str | None = None,
    quiet: bool = False,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Play the closed loop; return the --json summary (also stored in ``sim_runs.stats``)."""
    config.validate()
    if config.judge == "external":
        raise SimUsageError("the external judge runs in two phases: use --requests-out")
    personas = resolve_personas(config.personas_path)
    the_run_id = run_id = run_id or new_run_id()
    chooser = (
        InProcessChooser(config.policy, config.epsilon, personas)
        if config.via == "inprocess"
        else None
    )
    judge = make_judge(config.judge, settings)
    total = len(personas) * config.users * config.rounds
    async with contextlib.AsyncExitStack() as stack:
        ctx = await stack.enter_async_context(
            _run_lifecycle(
                settings,
                config,
                personas,
                run_id=run_id,
                record=True,
                progress_total=total,
                quiet=quiet,
                label=f"{run_id} {config.policy}",
            )
        )

        async def body() -> dict[str, Any]:
            if chooser is None:
                http = session
                if http is None:
                    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
                    stack.push_async_callback(http.close)
                worker = WorkerChooser(settings, config.policy, the_run_id, http)
                await _worker_per_user(ctx, worker, judge)
            else:
                await _inprocess_lockstep(ctx, chooser, judge)
            await ctx.publisher.drain()
            if ctx.store is not None:
                await ctx.store.flush()  # inside the guard: a failed write fails the run
            summary = summarize(ctx.stats, run_id=the_run_id)
            return summary

        llm = (lambda: llm_counters(judge)) if config.judge == "llm" else None
        try:
            return await _guarded(ctx, body, llm)
        finally:
            close = getattr(judge, "aclose", None)
            if close is not None:
                await close()


# ----------------------------------------------------------------------------------------------
# External judge: two phases
# ----------------------------------------------------------------------------------------------


async def run_external_requests(
    settings: Settings,
    config: SimConfig,
    requests_out: str,
    *,
    run_id: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Phase 1: choose every (user, round) in-process, publish the shows, write requests.

    Without feedback a policy cannot learn between rounds, so phase 1 plays every round from
    the users' fresh state (each round is an independent draw of the same world). The run
    stays ``running`` with its pending requests in ``sim_requests`` until phase 2.
    """
    from judges.external import JudgmentRequest, write_requests  # noqa: PLC0415

    config.validate()
    if config.judge != "external":
        raise SimUsageError("--requests-out goes with --judge external")
    personas = resolve_personas(config.personas_path)
    run_id = run_id or new_run_id()
    chooser = InProcessChooser(config.policy, config.epsilon, personas)
    total = len(personas) * config.users * config.rounds
    async with _run_lifecycle(
        settings,
        config,
        personas,
        run_id=run_id,
        record=True,
        progress_total=total,
        quiet=quiet,
        label=f"{run_id} requests",
    ) as ctx:
        store = ctx.store
        assert store is not None

        async def body() -> dict[str, Any]:
            users = make_users(ctx.world, personas, config.users)
            pending: list[tuple[str, int, dict[str, Any]]] = []
            requests: list[JudgmentRequest] = []
            for user in users:
                user.state = chooser.new_user_state(user.persona)
                for round_ in range(config.rounds):
                    moment = ctx.world.moment(user.persona, user.index, round_)
                    tasks = ctx.world.candidates(user.persona, user.index, round_)
                    rng = ctx.world.policy_rng(user.persona, user.index, round_)
                    picked = chooser.choose(user, moment, tasks, rng)
                    served_at = now_ms()
                    shown = build_shown(
                        run_id=run_id,
                        user_id=user.user_id,
                        round_=round_,
                        policy=chooser.name,
                        moment=moment,
                        tasks=tasks,
                        picked=picked,
                        served_at_ms=served_at,
                    )
                    await ctx.publisher.send(
                        settings.topic_shown, user.user_id.encode(), encode(shown)
                    )
                    requests.append(
                        JudgmentRequest(
                            run_id=run_id,
                            user_id=user.user_id,
                            round=round_,
                            persona=user.persona.name,
                            moment=moment,
                            task=tasks[picked.index],
                        )
                    )
                    pending.append(
                        (
                            user.user_id,
                            round_,
                            {
                                "persona": user.persona.name,
                                "user_index": user.index,
                                "moment": asdict(moment),
                                "tasks": [asdict(t) for t in tasks],
                                "picked": asdict(picked),
                                "policy": chooser.name,
                                "served_at_ms": served_at,
                            },
                        )
                    )
                    ctx.progress.advance()
            await ctx.publisher.drain()
            with open(requests_out, "w", encoding="utf-8") as out:  # noqa: ASYNC230 - local, small
                write_requests(requests, out)
            await store.add_requests(pending)
            return {
                "run_id": run_id,
                "status": "running",
                "requests": len(pending),
                "requests_out": requests_out,
            }

        try:
            return await body()
        except asyncio.CancelledError:
            await asyncio.shield(_finish(ctx, "cancelled", error="cancelled (SIGINT/SIGTERM)"))
            raise
        except BaseException as err:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    _finish(ctx, "failed", error=f"{type(err).__name__}: {err}"[:2000])
                )
            raise


class JudgmentLinesError(SimUsageError):
    """Bad lines in a judgments file (each named by number): nothing was published."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


async def run_external_judgments(
    settings: Settings,
    judgments_in: str,
    run_id: str,
    *,
    quiet: bool = False,
) -> dict[str, Any]:
    """Phase 2: read the judgments, publish the feedback, record them; finish when none is left.

    Every bad line is reported by number and nothing is published while any line is bad.
    Requests without a judgment stay pending (reported): run phase 2 again with them, and the
    run finishes, with its summary, when the last one is in.
    """
    from judges.external import JudgmentRequest, read_judgments  # noqa: PLC0415
    from streams.sim.store import fetch_events, fetch_run  # noqa: PLC0415

    pool = await connect_pool(settings.database_url)
    try:
        run = await fetch_run(pool, run_id)
        if run is None:
            raise SimUsageError(f"no run {run_id!r} in sim_runs")
        raw_config = dict(run["config"])
        if raw_config.get("judge") != "external":
            raise SimUsageError(f"run {run_id} does not use the external judge")
        if run["status"] != "running":
            raise SimUsageError(f"run {run_id} is {run['status']}, not awaiting judgments")
        config = SimConfig(
            **{k: raw_config[k] for k in SimConfig.__dataclass_fields__ if k in raw_config}
        )
        personas = {p["name"]: Persona(**p) for p in raw_config["personas"]}
        store = SimStore(pool, run_id)
        pending = await store.pending_requests()
        expected: dict[Any, JudgmentRequest] = {}
        by_key: dict[Any, dict[str, Any]] = {}
        for (user_id, round_), payload in pending.items():
            picked = payload["picked"]
            task = Task(**payload["tasks"][picked["index"]])
            request = JudgmentRequest(
                run_id=run_id,
                user_id=user_id,
                round=round_,
                persona=payload["persona"],
                moment=Moment(**payload["moment"]),
                task=task,
            )
            expected[request.key] = request
            by_key[request.key] = payload
        try:
            with open(judgments_in, encoding="utf-8") as lines:  # noqa: ASYNC230
                accepted, errors = read_judgments(lines, expected)
        except OSError as err:
            raise SimUsageError(f"{judgments_in}: cannot read: {err}") from None
        bad = [e for e in errors if e.line is not None]
        missing = [e for e in errors if e.line is None]
        if bad:
            raise JudgmentLinesError(
                tuple(f"{judgments_in}: line {e.line}: {e.message}" for e in bad)
            )

        producer = make_producer(settings)
        await producer.start()
        try:
            world = World(config.seed)
            ctx = RunContext(
                settings=settings,
                config=config,
                run_id=run_id,
                personas=list(personas.values()),
                world=world,
                publisher=Publisher(producer, config.max_in_flight),
                store=store,
                progress=Progress(len(accepted), f"{run_id} judgments", enabled=not quiet),
            )
            with ctx.progress:
                for item in accepted:
                    payload = by_key[item.request.key]
                    persona = personas[payload["persona"]]
                    user = SimUser(persona, payload["user_index"], item.request.user_id)
                    tasks = [Task(**t) for t in payload["tasks"]]
                    await publish_and_record(
                        ctx,
                        payload["policy"],
                        "inprocess",
                        user,
                        item.request.round,
                        item.request.moment,
                        tasks,
                        Picked(**payload["picked"]),
                        item.judgment,
                        payload["served_at_ms"],
                        publish_shown=False,
                    )
                await ctx.publisher.drain()
                await store.flush()
        finally:
            await producer.stop()
        await store.delete_requests([(j.request.user_id, j.request.round) for j in accepted])
        left = len(pending) - len(accepted)
        result: dict[str, Any] = {
            "run_id": run_id,
            "accepted": len(accepted),
            "pending": left,
            "missing": [e.message for e in missing],
        }
        if left == 0:
            rows = await fetch_events(pool, run_id)
            from streams.analysis.report import stat_from_row  # noqa: PLC0415

            summary = summarize([stat_from_row(r) for r in rows], run_id=run_id)
            await store.finish_run(
                "finished", events=len(rows), mean_reward=summary["mean_reward"], stats=summary
            )
            result = {**summary, **result}
        else:
            await store.set_progress(
                int(
                    await pool.fetchval("SELECT count(*) FROM sim_events WHERE run_id = $1", run_id)
                )
            )
        return result
    finally:
        await pool.close()


# ----------------------------------------------------------------------------------------------
# Load mode
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadResult:
    run_id: str
    target_rate: float
    duration_s: float
    messages: int
    achieved_rate: float
    peak_in_flight: int
    max_in_flight: int
    behind_messages: int  # due by the deadline but not sent (the broker was slower)
    mean_reward: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LoadStream:
    """One user's draws in load mode: a single seeded stream, drawn in blocks of rounds.

    The closed loop asks the World for a fresh generator per (user, round, purpose), which
    costs more than everything else in a judgment; load mode measures throughput, not
    policies, so it draws moments and candidates (with the World's distributions and
    settings) for ``BLOCK`` rounds at once, and the policy's and the judge's numbers from the
    same generator, in order.
    """

    BLOCK = 256
    __slots__ = ("_block", "_next", "rng", "user")

    def __init__(self, world: World, user: SimUser) -> None:
        self.user = user
        self.rng = world.policy_rng(user.persona, user.index, 0)
        self._block: list[tuple[int, int, list[int], list[bool], list[float]]] = []
        self._next = 0

    def _refill(self, world: World) -> None:
        rng, config, size = self.rng, world.config, self.BLOCK
        n = config.candidates
        hours = rng.integers(0, 24, size=size).tolist()
        days = rng.integers(0, 7, size=size).tolist()
        priorities = rng.integers(1, 5, size=(size, n)).tolist()
        overdue = (rng.random(size=(size, n)) < config.overdue_probability).tolist()
        ages = (rng.random(size=(size, n)) * config.max_task_age_days).tolist()
        self._block = list(zip(hours, days, priorities, overdue, ages, strict=True))
        self._next = 0

    def draw(self, world: World, round_: int) -> tuple[Moment, list[Task]]:
        if self._next >= len(self._block):
            self._refill(world)
        hour, day, priorities, overdue, ages = self._block[self._next]
        self._next += 1
        prefix = f"{self.user.persona.name}-{self.user.index}-r{round_}-c"
        tasks = [Task(f"{prefix}{i}", priorities[i], overdue[i], ages[i]) for i in range(len(ages))]
        return Moment(hour_of_day=hour, day_of_week=day), tasks


def _load_events(  # noqa: PLR0917
    run_id: str,
    world: World,
    users: Sequence[SimUser],
    chooser: InProcessChooser,
    judge: Any,
    settings: Settings,
    tally: list[float] | None = None,
) -> Iterator[list[tuple[str, bytes, bytes]]]:
    """Endless judgments, round-robin over users: [show, feedback] as (topic, key, value)."""
    streams = [LoadStream(world, user) for user in users]
    round_ = 0
    while True:
        for stream in streams:
            user = stream.user
            moment, tasks = stream.draw(world, round_)
            picked = chooser.choose(user, moment, tasks, stream.rng, with_probabilities=False)
            task = tasks[picked.index]
            judgment = judge.judge_sync(user.persona, moment, task, stream.rng)
            chooser.learn(user, moment, task, judgment.reward)
            if tally is not None:  # [judgments, reward sum]: constant memory
                tally[0] += 1
                tally[1] += judgment.reward
            served_at = now_ms()
            key = user.user_id.encode()
            shown = build_shown(
                run_id=run_id,
                user_id=user.user_id,
                round_=round_,
                policy=chooser.name,
                moment=moment,
                tasks=tasks,
                picked=picked,
                served_at_ms=served_at,
            )
            feedback = build_feedback(
                run_id=run_id,
                user_id=user.user_id,
                round_=round_,
                tip_id=task.tip_id,
                action=judgment.action,
                dwell_ms=judgment.dwell_ms,
                served_at_ms=served_at,
            )
            yield [
                (settings.topic_shown, key, encode(shown)),
                (settings.topic_feedback, key, encode(feedback)),
            ]
        round_ += 1


async def produce_at_rate(
    publisher: Publisher,
    events: Iterator[Sequence[tuple[str, bytes, bytes]]],
    *,
    rate: float,
    duration: float,
    on_sent: Callable[[int], None] | None = None,
    capture: list[tuple[str, bytes, bytes]] | None = None,
) -> tuple[int, float, int]:
    """Open loop: message i is due at start + i / rate; returns (sent, elapsed_s, behind).

    ``events`` yields groups (a show and its feedback) that are sent whole. When the broker is
    slower than the rate, ``publisher.send`` waits for a free in-flight slot, so memory stays
    bounded and the shortfall shows as ``behind`` instead of as a growing queue.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + duration
    total_due = int(duration * rate)
    sent = 0
    while sent < total_due:
        now = loop.time()
        if now >= deadline:
            break
        due = min(int((now - start) * rate) + 1, total_due)
        if sent >= due:
            await asyncio.sleep(max(0.0, min((sent + 1) / rate - (now - start), 0.05)))
            continue
        burst = 0
        while sent < due and burst < 512:
            for topic, key, value in next(events):
                if capture is not None:
                    capture.append((topic, key, value))
                await publisher.send(topic, key, value)
                sent += 1
                burst += 1
        if on_sent is not None:
            on_sent(burst)
        await asyncio.sleep(0)  # let acknowledgements in between bursts
    behind = max(0, total_due - sent)
    await publisher.drain()
    elapsed = loop.time() - start
    return sent, elapsed, behind


async def run_load(
    settings: Settings,
    config: SimConfig,
    *,
    run_id: str | None = None,
    quiet: bool = False,
    record: bool = True,
    capture: list[tuple[str, bytes, bytes]] | None = None,
    publisher_probe: Callable[[Publisher], None] | None = None,
) -> LoadResult:
    """Open-loop load at ``config.rate`` messages/s for ``config.duration`` seconds."""
    config.validate()
    if config.rate is None or config.duration is None:
        raise SimUsageError("load mode needs --rate and --duration")
    if config.judge != "rule":
        raise SimUsageError("load mode uses the rule judge")
    if config.via != "inprocess":
        raise SimUsageError("load mode plays the policy in-process")
    personas = resolve_personas(config.personas_path)
    run_id = run_id or new_run_id()
    from judges.rule import RuleJudge  # noqa: PLC0415

    chooser = InProcessChooser(config.policy, config.epsilon, personas)
    rate, duration = config.rate, config.duration
    async with _run_lifecycle(
        settings,
        config,
        personas,
        run_id=run_id,
        record=record,
        progress_total=int(rate * duration),
        quiet=quiet,
        label=f"{run_id} load",
    ) as ctx:
        users = make_users(ctx.world, personas, config.users)
        for user in users:
            user.state = chooser.new_user_state(user.persona)
        if publisher_probe is not None:
            publisher_probe(ctx.publisher)
        tally = [0.0, 0.0]
        events = _load_events(run_id, ctx.world, users, chooser, RuleJudge(), settings, tally)

        async def body() -> dict[str, Any]:
            sent, elapsed, behind = await produce_at_rate(
                ctx.publisher,
                events,
                rate=rate,
                duration=duration,
                on_sent=ctx.progress.advance,
                capture=capture,
            )
            result = LoadResult(
                run_id=run_id,
                target_rate=rate,
                duration_s=elapsed,
                messages=sent,
                achieved_rate=sent / elapsed if elapsed > 0 else 0.0,
                peak_in_flight=ctx.publisher.peak_in_flight,
                max_in_flight=ctx.publisher.max_in_flight,
                behind_messages=behind,
                mean_reward=tally[1] / tally[0] if tally[0] else None,
            )
            return result.as_json()

        document = await _guarded(ctx, body, events=lambda r: int(r["messages"]) // 2)
        return LoadResult(**document)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
