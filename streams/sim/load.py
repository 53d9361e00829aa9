"""Load mode: open loop at a target rate of Kafka messages per second.

A show and its feedback are two messages; the policy plays in-process, the judge must answer
without waiting (:class:`~judges.base.SyncJudge`), and in-flight sends are bounded, so a
broker slower than the rate shows as ``behind_messages`` instead of as a growing queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bandit.base import Moment, Task
from judges.base import SyncJudge
from judges.registry import judge_class, make_judge
from judges.world import World
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
    events: RunEvents,
    world: World,
    users: Sequence[SimUser],
    chooser: InProcessChooser,
    judge: SyncJudge,
    tally: list[float] | None = None,
) -> Iterator[list[Message]]:
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
            shown = events.shown(user, round_, chooser.name, moment, tasks, picked, served_at)
            feedback = events.feedback(user, round_, task, judgment, served_at)
            yield [events.record(shown), events.record(feedback)]
        round_ += 1


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
