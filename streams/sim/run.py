"""What every simulator run shares: its context, its lifecycle, and recording a judgment.

A run opens the topics, the producer and (when it records) its ``sim_runs`` row, which
ends ``finished``, ``failed`` or ``cancelled`` whatever happens (:func:`guarded`). Each
judgment is published (show and feedback) and recorded in ``sim_events`` by
:func:`publish_and_record`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.base import Moment, Task
from bandit.reward import reward_milli
from judges.base import Judge, Judgment
from judges.personas import Persona
from judges.world import World
from schemas.events import TipFeedback
from streams.settings import Settings
from streams.sim.choosers import Picked
from streams.sim.config import SimConfig, SimFailedError, SimUser, make_users
from streams.sim.delivery import Delivery
from streams.sim.events import RunEvents, features_json
from streams.sim.progress import Progress
from streams.sim.publisher import Publisher, make_producer
from streams.sim.store import EventRow, SimStore, connect_pool
from streams.sim.stream_clock import StreamClock
from streams.worker.topics import TopicLayoutError, ensure_topics

__all__ = [
    "RunContext",
    "finish",
    "guarded",
    "marked_if_it_fails",
    "publish_and_record",
    "run_lifecycle",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunContext:
    """Everything one run shares."""

    settings: Settings
    config: SimConfig
    run_id: str
    personas: list[Persona]
    world: World
    judge: Judge
    publisher: Publisher
    store: SimStore | None
    progress: Progress
    events: RunEvents
    stats: list[dict[str, Any]] = field(default_factory=list)  # one per judgment, for the summary
    delivery: Delivery | None = None  # late feedback for the in-process learner
    # Late feedback through the worker: the run's stream time on Kafka (set by the schedule).
    clock: StreamClock | None = None

    def __post_init__(self) -> None:
        if self.delivery is None:
            self.delivery = self.config.make_delivery()

    def new_users(self) -> list[SimUser]:
        """The run's users, fresh: ``config.users`` of each persona, ids from the world."""
        return make_users(self.world, self.personas, self.config.users)


@contextlib.asynccontextmanager
async def run_lifecycle(
    settings: Settings,
    config: SimConfig,
    personas: list[Persona],
    judge: Judge,
    *,
    run_id: str,
    record: bool,
    progress_total: int | None,
    quiet: bool,
    label: str,
) -> AsyncIterator[RunContext]:
    """Producer, store and the run row: running → finished / failed / cancelled."""
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
            world=config.make_world(personas),
            judge=judge,
            publisher=Publisher(producer, config.max_in_flight),
            store=store,
            progress=Progress(
                progress_total,
                label,
                enabled=not quiet,
                run_id=run_id if settings.log_format == "json" else None,
            ),
            events=RunEvents.of(settings, run_id),
        )
        log.info(
            "run %s started: policy %s, judge %s, via %s, %d users per persona",
            run_id,
            config.policy,
            config.judge,
            config.via,
            config.users,
            extra={"run_id": run_id},
        )
        with ctx.progress:
            yield ctx
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        if pool is not None:
            await pool.close()


async def finish(
    ctx: RunContext,
    status: str,
    *,
    events: int | None = None,
    error: str | None = None,
    summary: Mapping[str, Any] | None = None,
) -> None:
    """Close the run's row: its status, counts, summary and what the judge spent."""
    log.log(
        logging.INFO if status == "finished" else logging.WARNING,
        "run %s %s%s",
        ctx.run_id,
        status,
        f": {error}" if error else "",
        extra={"run_id": ctx.run_id},
    )
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
        llm=ctx.judge.usage_counters(),
    )


def _mean_reward(stats: Sequence[Mapping[str, Any]]) -> float | None:
    rewards = [s["reward"] for s in stats if s["reward"] is not None]
    return sum(rewards) / len(rewards) if rewards else None


@contextlib.asynccontextmanager
async def marked_if_it_fails(ctx: RunContext) -> AsyncIterator[None]:
    """Record ``cancelled`` or ``failed`` in ``sim_runs`` when the block raises, and re-raise."""
    try:
        yield
    except asyncio.CancelledError:
        await asyncio.shield(finish(ctx, "cancelled", error="cancelled (SIGINT/SIGTERM)"))
        raise
    except BaseException as err:
        with contextlib.suppress(Exception):
            await asyncio.shield(finish(ctx, "failed", error=f"{type(err).__name__}: {err}"[:2000]))
        raise


async def guarded(
    ctx: RunContext,
    body: Callable[[], Awaitable[dict[str, Any]]],
    events: Callable[[dict[str, Any]], int] | None = None,
) -> dict[str, Any]:
    """Run ``body``; record finished / failed / cancelled in ``sim_runs`` whatever happens."""
    async with marked_if_it_fails(ctx):
        summary = await body()
    await finish(ctx, "finished", summary=summary, events=events(summary) if events else None)
    return summary


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
    judged_as: Persona | None = None,
    in_stream_time: bool = False,
    publish_feedback: bool = True,
) -> TipFeedback:
    """Publish the show (unless phase 1 did) and the feedback; record the judgment; return
    the feedback.

    ``judged_as``: the preferences the judge read (a drifted persona), for the expectations.
    ``in_stream_time``: the show's record time is ``served_at``, and the feedback is not
    published here (the caller holds it back until it arrives: ``streams.sim.stream_clock``).
    ``publish_feedback=False``: the caller publishes it (a closed loop's block, together).
    """
    task = tasks[picked.index]
    if publish_shown:
        shown = ctx.events.shown(user, round_, policy_name, moment, tasks, picked, served_at)
        await ctx.publisher.send(
            *ctx.events.record(shown), timestamp_ms=served_at if in_stream_time else None
        )
    feedback = ctx.events.feedback(user, round_, task, judgment, served_at)
    if publish_feedback and not in_stream_time:
        await ctx.publisher.send(*ctx.events.record(feedback))

    knows_expectations = ctx.judge.knows_expectations
    expected = ctx.judge.expected_rewards(judged_as or user.persona, moment, tasks)
    chosen_expected = judgment.expected_reward if knows_expectations else None
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
            "fallback_reason": judgment.fallback_reason,
        }
    )
    ctx.progress.advance()
    return feedback
