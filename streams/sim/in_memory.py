"""The closed loop played in memory: the same schedule, draws and summary, nothing stored.

:func:`play_in_memory` runs the closed loop's own schedule
(:func:`streams.sim.closed_loop.play_schedule`) with an in-process policy, a publisher
without a producer (every message is built and dropped) and no store.
So it needs no broker and no database. The choices, judgments and summary are those of
``tipstream simulate --via inprocess`` with the same configuration, since the same code
plays both; ``tests/sim/test_sim_drift_delay.py`` checks them against ``sim_log``, the
replay of that schedule (no test runs both against a broker). Benchmarks that
sweep many policies and seeds (``bench.drift``) use it; the per-judgment ``stats`` come back
too, for figures per round.
"""

from __future__ import annotations

from typing import Any

from judges.registry import make_judge
from streams.settings import Settings
from streams.sim.choosers import InProcessChooser
from streams.sim.closed_loop import play_schedule, run_summary
from streams.sim.config import SimConfig, SimUsageError, resolve_personas
from streams.sim.events import RunEvents
from streams.sim.progress import Progress
from streams.sim.publisher import Publisher
from streams.sim.run import RunContext

__all__ = ["play_in_memory"]


async def play_in_memory(
    config: SimConfig, *, run_id: str = "sim-in-memory"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's ``--json`` summary and its per-judgment stats (one per user and round)."""
    config.validate()
    if config.via != "inprocess" or config.rate is not None:
        raise SimUsageError("a run in memory is a closed loop with an in-process policy")
    personas = resolve_personas(config.personas_path)
    judge = make_judge(config.judge, fallback=config.fallback == "rule")
    problem = judge.usage_problem()
    if problem is not None:
        raise SimUsageError(problem)
    settings = Settings()
    ctx = RunContext(
        settings=settings,
        config=config,
        run_id=run_id,
        personas=personas,
        world=config.make_world(personas),
        judge=judge,
        publisher=Publisher(None),
        store=None,
        progress=Progress(None, run_id, enabled=False),
        events=RunEvents.of(settings, run_id),
    )
    chooser = InProcessChooser.for_run(config, personas)
    try:
        await play_schedule(ctx, chooser)
    finally:
        await judge.aclose()
    return run_summary(ctx), ctx.stats
