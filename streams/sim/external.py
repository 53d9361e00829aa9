"""The external judge's two phases (``judges.external`` holds the file formats).

Phase 1 (:func:`run_external_requests`) chooses every (user, round) in-process, publishes
the shows and writes the judgment requests; the run stays ``running`` with its pending
requests in ``sim_requests``. Phase 2 (:func:`run_external_judgments`), in another process
and maybe much later, reads the judgments back, publishes the feedback, records them, and
finishes the run when the last one is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bandit.base import Moment, Task
from judges.external import JudgmentRequest, RequestKey, read_judgments, write_requests
from judges.personas import Persona
from judges.registry import UnknownJudgeError, judge_class, make_judge
from judges.world import World
from streams.analysis.summary import stat_from_row, summarize
from streams.settings import Settings
from streams.sim.choosers import InProcessChooser, Picked
from streams.sim.config import (
    SimConfig,
    SimUsageError,
    SimUser,
    new_run_id,
    resolve_personas,
)
from streams.sim.events import RunEvents, now_ms
from streams.sim.progress import Progress
from streams.sim.publisher import Publisher, make_producer
from streams.sim.run import RunContext, marked_if_it_fails, publish_and_record, run_lifecycle
from streams.sim.store import SimStore, connect_pool, fetch_events, fetch_run

__all__ = ["JudgmentLinesError", "run_external_judgments", "run_external_requests"]


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
    config.validate()
    if not judge_class(config.judge).two_phase:
        raise SimUsageError("--requests-out goes with --judge external")
    personas = resolve_personas(config.personas_path)
    run_id = run_id or new_run_id()
    chooser = InProcessChooser.for_run(config, personas)
    total = len(personas) * config.users * config.rounds
    async with run_lifecycle(
        settings,
        config,
        personas,
        make_judge(config.judge, llm_model=settings.llm_model),
        run_id=run_id,
        record=True,
        progress_total=total,
        quiet=quiet,
        label=f"{run_id} requests",
    ) as ctx:
        store = ctx.store
        assert store is not None

        async def body() -> dict[str, Any]:
            users = ctx.new_users()
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
                    shown = ctx.events.shown(
                        user, round_, chooser.name, moment, tasks, picked, served_at
                    )
                    await ctx.publisher.send(*ctx.events.record(shown))
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

        async with marked_if_it_fails(ctx):  # phase 1 leaves the run running
            return await body()


class JudgmentLinesError(SimUsageError):
    """Bad lines in a judgments file (each named by number): nothing was published."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def _is_two_phase(judge: Any) -> bool:
    """Whether a stored run's judge (a name, or anything a damaged row holds) is two-phase."""
    try:
        return judge_class(str(judge)).two_phase
    except UnknownJudgeError:
        return False


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
    pool = await connect_pool(settings.database_url)
    try:
        run = await fetch_run(pool, run_id)
        if run is None:
            raise SimUsageError(f"no run {run_id!r} in sim_runs")
        raw_config = dict(run["config"])
        if not _is_two_phase(raw_config.get("judge")):
            raise SimUsageError(f"run {run_id} does not use the external judge")
        if run["status"] != "running":
            raise SimUsageError(f"run {run_id} is {run['status']}, not awaiting judgments")
        config = SimConfig(
            **{k: raw_config[k] for k in SimConfig.__dataclass_fields__ if k in raw_config}
        )
        personas = {p["name"]: Persona(**p) for p in raw_config["personas"]}
        store = SimStore(pool, run_id)
        pending = await store.pending_requests()
        expected: dict[RequestKey, JudgmentRequest] = {}
        by_key: dict[RequestKey, dict[str, Any]] = {}
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
            ctx = RunContext(
                settings=settings,
                config=config,
                run_id=run_id,
                personas=list(personas.values()),
                world=World(config.seed),
                judge=make_judge(config.judge, llm_model=settings.llm_model),
                publisher=Publisher(producer, config.max_in_flight),
                store=store,
                progress=Progress(
                    len(accepted),
                    f"{run_id} judgments",
                    enabled=not quiet,
                    run_id=run_id if settings.log_format == "json" else None,
                ),
                events=RunEvents.of(settings, run_id),
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
