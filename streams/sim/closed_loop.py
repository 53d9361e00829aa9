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
choices, rewards and final state, byte for byte; with larger blocks only the order of the
updates inside a block differs (the worker applies them by partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from bandit.base import Moment, Task
from judges.base import Judgment
from judges.registry import judge_class, make_judge
from streams.analysis.summary import summarize
from streams.settings import Settings
from streams.sim.choosers import Chooser, InProcessChooser, Picked, WorkerChooser
from streams.sim.config import (
    SimConfig,
    SimUsageError,
    SimUser,
    new_run_id,
    resolve_personas,
)
from streams.sim.events import now_ms
from streams.sim.run import RunContext, guarded, publish_and_record, run_lifecycle

__all__ = ["play_round", "run_closed_loop"]


async def play_round(
    ctx: RunContext,
    chooser: Chooser,
    user: SimUser,
    round_: int,
    picked: Picked,
) -> tuple[Moment, Task, Judgment]:
    """One round of one user, its choice made: judge, publish, record."""
    world = ctx.world
    persona = user.persona
    moment = world.moment(persona, user.index, round_)
    tasks = world.candidates(persona, user.index, round_)
    task = tasks[picked.index]
    served_at = now_ms()
    judgment = await ctx.judge.judge(
        persona, moment, task, world.judge_rng(persona, user.index, round_, task.tip_id)
    )
    await publish_and_record(
        ctx, chooser.name, chooser.via, user, round_, moment, tasks, picked, judgment, served_at
    )
    return moment, task, judgment


async def _play(ctx: RunContext, chooser: Chooser) -> None:
    """Every round, in blocks of ``concurrency`` users: choose, judge and publish, learn."""
    users = ctx.new_users()
    for user in users:
        user.state = chooser.new_user_state(user.persona)
    size = max(1, ctx.config.concurrency)
    run_learned = 0  # rewards of the run published and learned from so far
    for round_ in range(ctx.config.rounds):
        for start in range(0, len(users), size):
            block = users[start : start + size]
            picks = await asyncio.gather(
                *(_pick(ctx, chooser, user, round_, run_learned) for user in block)
            )
            results = await asyncio.gather(
                *(play_round(ctx, chooser, u, round_, p) for u, p in zip(block, picks, strict=True))
            )
            for user, (moment, task, judgment) in zip(block, results, strict=True):
                if judgment.reward is not None:
                    chooser.learn(user, moment, task, judgment.reward)
                    user.learned += 1
                    run_learned += 1


async def _pick(
    ctx: RunContext, chooser: Chooser, user: SimUser, round_: int, run_learned: int
) -> Picked:
    moment = ctx.world.moment(user.persona, user.index, round_)
    tasks = ctx.world.candidates(user.persona, user.index, round_)
    rng = ctx.world.policy_rng(user.persona, user.index, round_)
    if isinstance(chooser, WorkerChooser):
        return await chooser.choose(user, moment, tasks, rng, run_learned=run_learned)
    return chooser.choose(user, moment, tasks, rng)


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
    personas = resolve_personas(config.personas_path)
    the_run_id = run_id = run_id or new_run_id()
    chooser = (
        InProcessChooser(config.policy, config.epsilon, personas)
        if config.via == "inprocess"
        else None
    )
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
            if chooser is None:
                http = session
                if http is None:
                    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
                    stack.push_async_callback(http.close)
                await _play(ctx, WorkerChooser(settings, config.policy, the_run_id, http))
            else:
                await _play(ctx, chooser)
            await ctx.publisher.drain()
            if ctx.store is not None:
                await ctx.store.flush()  # inside the guard: a failed write fails the run
            summary = summarize(ctx.stats, run_id=the_run_id)
            return summary

        try:
            return await guarded(ctx, body)
        finally:
            await judge.aclose()
