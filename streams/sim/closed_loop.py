"""The closed loop: synthetic personas played onto the production topics (docs/simulation.md).

For each user and round, draw the moment and the 8 candidates from the
:class:`~judges.world.World`, let the policy choose (the worker's ``POST /score/egreedy``
for the policy the worker serves, or the policy in-process), ask the judge how the persona
reacts, publish ``TipShown`` + ``TipFeedback`` with ``source = sim`` and the run id, and
record the judgment in ``sim_events``.

Determinism (common random numbers): the World fixes users, moments, candidates, the
policy's draws (``policy_rng``) and the judge's draws (``judge_rng``, keyed by the chosen
tip).

One schedule for both ways of choosing, so that through the worker and in-process are the
same computation: rounds in order; in each round the users go in blocks of
``--concurrency``. A block's users all choose from the state left by the blocks before it,
then are judged and published together, then learned from (in-process: in user order).
Through the worker, each score asks it to wait until it has learned from every feedback the
run has published so far (``min_run_updates``) and from the user's own (``min_updates``).
With ``--concurrency 1`` every choice sees every earlier reward, and both ways give the same
choices, rewards and final state, byte for byte; with larger blocks the updates inside a
block differ: in-process learns them one at a time, the worker a batch's together, each
user against the pooled types as they stood at the batch's start (``streams.worker.learning``).

Drift and late feedback (docs/simulation.md): the judge reads the persona the world's drift
gives for the round (``World.persona_at``); with a delay, the learner takes each reward only
when it arrives in stream time (:class:`~streams.sim.delivery.Delivery`), before the choices
of the first block it has arrived by. Through the worker the run is then played on Kafka in
that stream time (:mod:`streams.sim.stream_clock`): shows stamped with their round's time,
each feedback held back and published with its arrival time before that block, clock records
that move every partition of the run to the block's time (so overdue shows expire), and the
barrier counting what the worker then has learned: the arrived rewards and, with a default
reward, the expired shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from bandit.base import Moment, Task
from judges.base import Judgment
from judges.registry import judge_class, make_judge
from schemas.events import TipFeedback, rfc3339
from streams.analysis.summary import summarize
from streams.settings import Settings
from streams.sim.choosers import Chooser, InProcessChooser, Lesson, Picked, WorkerChooser
from streams.sim.config import (
    SimConfig,
    SimUsageError,
    SimUser,
    new_run_id,
    resolve_personas,
)
from streams.sim.delivery import APPLIED, LATE
from streams.sim.events import now_ms
from streams.sim.run import RunContext, guarded, publish_and_record, run_lifecycle
from streams.sim.stream_clock import STREAM_EPOCH_MS, StreamClock, check_fresh_topics

__all__ = ["play_round", "play_schedule", "run_closed_loop", "run_summary"]


async def play_round(
    ctx: RunContext,
    chooser: Chooser,
    user: SimUser,
    round_: int,
    picked: Picked,
) -> tuple[Moment, Task, Judgment, TipFeedback]:
    """One round of one user, its choice made: judge, publish the show, record. The
    feedback is left to the caller: it publishes a block's feedback together, or in the
    run's stream time (``ctx.clock``, where the show is stamped with the round's time) holds
    it back until it arrives."""
    world = ctx.world
    persona = user.persona
    moment = world.moment(persona, user.index, round_)
    tasks = world.candidates(persona, user.index, round_)
    task = tasks[picked.index]
    served_at = now_ms() if ctx.clock is None else ctx.clock.served_at(round_)
    judged_as = world.persona_at(persona, round_)
    judgment = await ctx.judge.judge(
        judged_as, moment, task, world.judge_rng(persona, user.index, round_, task.tip_id)
    )
    feedback = await publish_and_record(
        ctx, chooser.name, chooser.via, user, round_, moment, tasks, picked, judgment, served_at,
        judged_as=judged_as, in_stream_time=ctx.clock is not None, publish_feedback=False,
    )  # fmt: skip
    return moment, task, judgment, feedback


async def play_schedule(ctx: RunContext, chooser: Chooser) -> None:
    """Every round, in blocks of ``concurrency`` users: choose, judge and publish, learn."""
    users = ctx.new_users()
    for user in users:
        user.state = chooser.new_user_state(user.persona)
    size = max(1, ctx.config.concurrency)
    run_learned = 0  # rewards of the run published and learned from so far
    delivery = ctx.delivery
    clock = ctx.clock
    if delivery is not None and isinstance(chooser, WorkerChooser):
        partitions = ctx.settings.partitions
        clock = ctx.clock = StreamClock(
            ctx.events, users, partitions=partitions, round_ms=delivery.round_ms
        )
    for round_ in range(ctx.config.rounds):
        for start in range(0, len(users), size):
            block = users[start : start + size]
            if delivery is not None:
                # What has arrived by now: published first (through the worker), then
                # learned and counted, own rewards and expiries alike, as the worker counts.
                arrived: list[Lesson] = []
                for arrival in delivery.due(round_):
                    arrived_user, moment, task, feedback = arrival.item
                    if clock is not None and arrival.kind in {APPLIED, LATE}:
                        stamp = clock.record_time(arrival.at_ms)
                        await ctx.publisher.send(*ctx.events.record(feedback), timestamp_ms=stamp)
                    if arrival.kind == LATE:
                        continue  # its show has expired: the worker stores it, learns nothing
                    arrived.append((arrived_user, moment, task, arrival.reward))
                    arrived_user.learned += 1
                    run_learned += 1
                chooser.learn_together(arrived, round_=round_)
                for message, stamp in clock.ticks(round_) if clock is not None else ():
                    await ctx.publisher.send(*message, timestamp_ms=stamp)
            picks = await asyncio.gather(
                *(_pick(ctx, chooser, user, round_, run_learned) for user in block)
            )
            results = await asyncio.gather(
                *(play_round(ctx, chooser, u, round_, p) for u, p in zip(block, picks, strict=True))
            )
            if clock is None:
                # The block's feedback at once, as closed record batches (``send_many``), so
                # that it goes out in one produce request and a worker learns the block in
                # one batch, as in-process does.
                await ctx.publisher.send_many([ctx.events.record(f) for *_, f in results])
            lessons: list[Lesson] = []
            for user, (moment, task, judgment, feedback) in zip(block, results, strict=True):
                if judgment.reward is None:
                    continue
                if delivery is not None:
                    rng = ctx.world.delivery_rng(user.persona, user.index, round_)
                    item = (user, moment, task, feedback)
                    reward, dwell_ms = judgment.reward, judgment.dwell_ms
                    delivery.post(item, round_, reward, dwell_ms=dwell_ms, rng=rng)
                    continue
                lessons.append((user, moment, task, judgment.reward))
                user.learned += 1
                run_learned += 1
            chooser.learn_together(lessons, round_=round_)  # as the worker learns a batch


def run_summary(ctx: RunContext) -> dict[str, Any]:
    """The ``--json`` summary; with late feedback, what became of it (``feedback``)."""
    summary = summarize(ctx.stats, run_id=ctx.run_id)
    if ctx.delivery is not None:
        summary["feedback"] = ctx.delivery.summary()
        if ctx.clock is not None:
            summary["feedback"]["stream_epoch"] = rfc3339(STREAM_EPOCH_MS)
    return summary


async def _pick(
    ctx: RunContext, chooser: Chooser, user: SimUser, round_: int, run_learned: int
) -> Picked:
    moment = ctx.world.moment(user.persona, user.index, round_)
    tasks = ctx.world.candidates(user.persona, user.index, round_)
    rng = ctx.world.policy_rng(user.persona, user.index, round_)
    if isinstance(chooser, WorkerChooser):
        return await chooser.choose(user, moment, tasks, rng, run_learned=run_learned)
    return chooser.choose(user, moment, tasks, rng, round_=round_)


def _check_worker_expiry(settings: Settings, config: SimConfig) -> None:
    """Through the worker, its own settings expire the shows: the run must mirror them."""
    if (config.reward_wait_s, config.default_reward) != (
        settings.reward_wait_s,
        settings.default_reward,
    ):
        raise SimUsageError(
            "through the worker, shows expire by the worker's TIPSTREAM_REWARD_WAIT_S "
            f"({settings.reward_wait_s:g}) and TIPSTREAM_DEFAULT_REWARD "
            f"({settings.default_reward}): set those for both, not --reward-wait-s or "
            "--default-reward"
        )


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
    if judge_class(config.judge).two_phase:
        raise SimUsageError("the external judge runs in two phases: use --requests-out")
    if config.via == "worker" and config.make_delivery() is not None:
        _check_worker_expiry(settings, config)
    personas = resolve_personas(config.personas_path)
    the_run_id = run_id = run_id or new_run_id()
    chooser = InProcessChooser.for_run(config, personas) if config.via == "inprocess" else None
    judge = make_judge(
        config.judge, llm_model=settings.llm_model, fallback=config.fallback == "rule"
    )
    problem = judge.usage_problem()
    if problem is not None:
        await judge.aclose()
        raise SimUsageError(problem)
    total = len(personas) * config.users * config.rounds
    async with contextlib.AsyncExitStack() as stack:
        ctx = await stack.enter_async_context(
            run_lifecycle(
                settings,
                config,
                personas,
                judge,
                run_id=run_id,
                record=True,
                progress_total=total,
                quiet=quiet,
                label=f"{run_id} {config.policy}",
            )
        )

        async def body() -> dict[str, Any]:
            if chooser is None and ctx.delivery is not None:
                await check_fresh_topics(settings)
            if chooser is None:
                http = session
                if http is None:
                    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
                    stack.push_async_callback(http.close)
                await play_schedule(ctx, WorkerChooser(settings, config.policy, the_run_id, http))
            else:
                await play_schedule(ctx, chooser)
            await ctx.publisher.drain()
            if ctx.store is not None:
                await ctx.store.flush()  # inside the guard: a failed write fails the run
            return run_summary(ctx)

        try:
            return await guarded(ctx, body)
        finally:
            await judge.aclose()
