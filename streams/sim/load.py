"""Load mode: open loop at a target rate of Kafka messages per second.

A show and its feedback are two messages; the policy plays in-process, the judge must answer
without waiting (:class:`~judges.base.SyncJudge`), and in-flight sends are bounded, so a
broker slower than the rate shows as ``behind_messages`` instead of as a growing queue.

The simulator must produce faster than the broker takes, so a round is played for all users
at once: ``Policy.choose_many`` and ``update_many``, ``SyncJudge.judge_many``, and events
encoded straight to bytes (``RunEvents.shown_value``). Any policy plays, but only egreedy-v1,
egreedy-v2 and random have vectorised block paths (without an exploration floor); the others
loop over their ``choose`` and ``update`` per user, which is slower but the same policy. A
policy that pools across users chooses a round's tips before it learns that round's rewards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bandit.base import CandidateBlock, ChoiceDraws
from judges.base import ACTIONS, JudgeDraws, SyncJudge
from judges.registry import judge_class, make_judge
from judges.world import World
from schemas.events import DecodeError, decode_feedback, decode_shown
from streams.settings import Settings
from streams.sim.choosers import InProcessChooser
from streams.sim.config import (
    SimConfig,
    SimUsageError,
    SimUser,
    new_run_id,
    resolve_personas,
)
from streams.sim.events import RunEvents, now_ms
from streams.sim.publisher import Message, Publisher
from streams.sim.run import guarded, run_lifecycle

__all__ = ["LoadResult", "LoadStream", "produce_at_rate", "run_load"]


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
    """The run's draws in load mode: each user's own seeded stream, drawn in blocks of rounds.

    The closed loop asks the World for a fresh generator per (user, round, purpose), which
    costs more than everything else in a judgment; load mode measures throughput, not
    policies, so each user draws its moments and candidates (with the World's distributions
    and settings), its choices' and its judgments' numbers for ``BLOCK`` rounds at once, and
    :meth:`round` serves them a round of all users at a time.
    """

    BLOCK = 256
    __slots__ = ("_block", "_next", "_tip_prefixes", "k", "rngs", "users")

    def __init__(self, world: World, users: Sequence[SimUser]) -> None:
        self.users = users
        self.k = world.config.candidates
        self.rngs = [world.policy_rng(user.persona, user.index, 0) for user in users]
        self._tip_prefixes = [f"{user.persona.name}-{user.index}-r" for user in users]
        self._block: list[np.ndarray] = []
        self._next = self.BLOCK

    def _draw(self, rng: np.random.Generator, world: World) -> tuple[np.ndarray, ...]:
        """One user's numbers for ``BLOCK`` rounds: hour, day, priority, overdue, age,
        then the choice's (uniform, index, seed) and the judgment's (action, dwell, seed)."""
        config, size, k = world.config, self.BLOCK, self.k
        moments_and_candidates = (
            rng.integers(0, 24, size=size),
            rng.integers(0, 7, size=size),
            rng.integers(1, 5, size=(size, k)),
            rng.random(size=(size, k)) < config.overdue_probability,
            rng.random(size=(size, k)) * config.max_task_age_days,
        )
        choice, judgment = ChoiceDraws.draw(rng, size, k), JudgeDraws.draw(rng, size)
        return (
            *moments_and_candidates,
            choice.uniform,
            choice.index,
            choice.seed,
            judgment.action_u,
            judgment.dwell_u,
            judgment.seed,
        )

    def round(self, world: World, round_: int) -> tuple[CandidateBlock, ChoiceDraws, JudgeDraws]:
        """Round ``round_`` of every user (row i is ``users[i]``)."""
        if self._next >= self.BLOCK:
            per_user = [self._draw(rng, world) for rng in self.rngs]
            # round-major: part[r] is round r of every user
            self._block = [np.stack(part, axis=1) for part in zip(*per_user, strict=True)]
            self._next = 0
        r = self._next
        self._next += 1
        hour, day, priority, overdue, age, *draws = (part[r] for part in self._block)
        suffixes = [f"{round_}-c{j}" for j in range(self.k)]
        block = CandidateBlock(
            hour=hour,
            day=day,
            priority=priority,
            overdue=overdue,
            age=age,
            tip_ids=[[prefix + suffix for suffix in suffixes] for prefix in self._tip_prefixes],
        )
        return block, ChoiceDraws(*draws[:3]), JudgeDraws(*draws[3:])


def _load_events(  # noqa: PLR0917
    events: RunEvents,
    world: World,
    users: Sequence[SimUser],
    chooser: InProcessChooser,
    judge: SyncJudge,
    tally: list[float] | None = None,
) -> Iterator[list[Message]]:
    """Endless judgments, round-robin over users: [show, feedback] as (topic, key, value).

    A round is chosen, judged and learned for all users at once (``choose_many``,
    ``judge_many``, ``learn_many``); each judgment is encoded when it is taken, so that its
    timestamps are those of its sending. The first round's events are checked against the
    event models (ids, policy name), which the fast encoding does not validate.
    """
    stream = LoadStream(world, users)
    groups = chooser.policy_groups(users)
    personas = [user.persona for user in users]
    keys = [user.user_id.encode() for user in users]
    round_ = 0
    while True:
        block, choice_draws, judge_draws = stream.round(world, round_)
        picked = chooser.choose_many(groups, users, block, choice_draws)
        judged = judge.judge_many(personas, block, picked.index, judge_draws)
        chosen = picked.index.tolist()
        rewards = judged.reward.tolist()
        chooser.learn_many(groups, users, block, picked.index, judged.reward)
        columns = zip(
            users,
            keys,
            block.hour.tolist(),
            block.day.tolist(),
            block.tip_ids,
            block.priority.tolist(),
            block.overdue.tolist(),
            block.age.tolist(),
            chosen,
            picked.propensity.tolist(),
            judged.action.tolist(),
            judged.dwell_ms.tolist(),
            rewards,
            strict=True,
        )
        for user, key, hour, day, tip_ids, priorities, overdue, ages, j, p, a, dwell, r in columns:
            if tally is not None:  # [judgments, reward sum]: constant memory
                tally[0] += 1
                tally[1] += r
            served_at = now_ms()
            shown = events.shown_value(
                user_id=user.user_id, round_=round_, policy=chooser.name, hour=hour, day=day,
                tip_ids=tip_ids, priorities=priorities, overdue=overdue, ages=ages, chosen=j,
                propensity=p, served_at_ms=served_at,
            )  # fmt: skip
            feedback = events.feedback_value(
                user_id=user.user_id, round_=round_, tip_id=tip_ids[j], action=ACTIONS[a],
                dwell_ms=dwell, served_at_ms=served_at,
            )  # fmt: skip
            if round_ == 0:
                _check_first(shown, feedback)
            yield [(events.topic_shown, key, shown), (events.topic_feedback, key, feedback)]
        round_ += 1


def _check_first(shown: bytes, feedback: bytes) -> None:
    """Refuse a run whose events the worker would dead-letter (a persona name too long for
    an id, a policy name with control characters): the models validate the first round."""
    for decoded in (decode_shown(shown), decode_feedback(feedback)):
        if isinstance(decoded, DecodeError):
            raise SimUsageError(f"load mode's events would be invalid: {decoded.detail}")


async def produce_at_rate(
    publisher: Publisher,
    events: Iterator[Sequence[Message]],
    *,
    rate: float,
    duration: float,
    on_sent: Callable[[int], None] | None = None,
    capture: list[Message] | None = None,
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
        burst: list[Message] = []
        while sent + len(burst) < due and len(burst) < 512:
            burst += next(events)
        if capture is not None:
            capture += burst
        # As record batches per partition: aiokafka's per-message send was most of the
        # cost of a load run (streams.record_batches).
        await publisher.send_many(burst)
        sent += len(burst)
        if on_sent is not None:
            on_sent(len(burst))
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
    capture: list[Message] | None = None,
    publisher_probe: Callable[[Publisher], None] | None = None,
) -> LoadResult:
    """Open-loop load at ``config.rate`` messages/s for ``config.duration`` seconds."""
    config.validate()
    if config.rate is None or config.duration is None:
        raise SimUsageError("load mode needs --rate and --duration")
    if not issubclass(judge_class(config.judge), SyncJudge):
        raise SimUsageError("load mode uses the rule judge")
    if config.via != "inprocess":
        raise SimUsageError("load mode plays the policy in-process")
    personas = resolve_personas(config.personas_path)
    run_id = run_id or new_run_id()
    judge = make_judge(config.judge, llm_model=settings.llm_model)
    assert isinstance(judge, SyncJudge)
    chooser = InProcessChooser.for_run(config, personas)
    rate, duration = config.rate, config.duration
    async with run_lifecycle(
        settings,
        config,
        personas,
        judge,
        run_id=run_id,
        record=record,
        progress_total=int(rate * duration),
        quiet=quiet,
        label=f"{run_id} load",
    ) as ctx:
        users = ctx.new_users()
        for user in users:
            user.state = chooser.new_user_state(user.persona)
        if publisher_probe is not None:
            publisher_probe(ctx.publisher)
        tally = [0.0, 0.0]
        events = _load_events(ctx.events, ctx.world, users, chooser, judge, tally)

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

        document = await guarded(ctx, body, events=lambda r: int(r["messages"]) // 2)
        return LoadResult(**document)
