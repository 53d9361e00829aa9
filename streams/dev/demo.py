"""``tipstream demo``: the whole loop on one machine, in a few minutes.

1. the dev stack (``tipstream dev up``: Kafka + PostgreSQL on loopback);
2. the worker (``tipstream worker``) as a child process, ready when ``/healthz`` answers;
3. the five standard personas against the serving policy (``TIPSTREAM_POLICY``, by default
   ``pooledmix-v3``) through the worker (rule judge);
4. the same world (same seed) against ``random`` in-process;
5. the report of both and their paired comparison (tables, PNG, HTML); the worker is stopped.

The demo plays on its own topics (``demo.tips.*``) under its own app id, so that traffic
left on the production topics by other runs (``tipstream compare`` writes millions of
events there) is not a backlog its worker must read before it can answer. Its topics have
two partitions: pooled policies pool per partition, and the demo's ten users spread over
eight partitions would leave one or two users per pool (README, known limits).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bandit.policies.baselines import RandomPolicy
from judges.rule import RuleJudge
from streams.dev import devstack
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings, get_settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.sim.reports import print_summary, render_report

__all__ = ["DEMO_PARTITIONS", "demo_settings", "run_demo"]


async def _demo(settings: Settings, *, users: int, rounds: int, seed: int, out: Path) -> None:
    policy = settings.policy
    print(f"demo: {policy} through the worker, {users} users x 5 personas x {rounds} rounds")
    learned = await run_closed_loop(
        settings,
        SimConfig(
            policy=policy,
            judge=RuleJudge.name,
            users=users,
            rounds=rounds,
            seed=seed,
            via="worker",
            epsilon=settings.epsilon,
        ),
    )
    print_summary(learned)
    print("demo: random in-process, same seed (the same users, moments and candidates)")
    baseline = await run_closed_loop(
        settings,
        SimConfig(
            policy=RandomPolicy.name,
            judge=RuleJudge.name,
            users=users,
            rounds=rounds,
            seed=seed,
            via="inprocess",
        ),
    )
    print_summary(baseline)
    print(f"demo: report, A = random, B = {policy}")
    document = await render_report(
        settings.database_url, baseline["run_id"], learned["run_id"], out
    )
    print(f"\ndemo: the picture is {document['comparison_png']}")
    print(f"demo: the page is {document['comparison_html']}")


DEMO_PARTITIONS = 2


def demo_settings(settings: Settings) -> Settings:
    """``settings`` moved to the demo's own topics and consumer group."""
    return settings.model_copy(
        update={
            "topic_shown": "demo." + settings.topic_shown,
            "topic_feedback": "demo." + settings.topic_feedback,
            "topic_deadletter": "demo." + settings.topic_deadletter,
            "app_id": settings.app_id + "-demo",
            "partitions": DEMO_PARTITIONS,
        }
    )


def run_demo(
    *, users: int = 2, rounds: int = 200, seed: int = 7, out: Path = Path("reports")
) -> int:
    base = demo_settings(get_settings())
    try:
        for line in devstack.ensure_up(quiet=True):
            print(f"demo: {line}")
    except devstack.DevUsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except devstack.DevStackError as err:
        print(f"error: the dev stack did not start: {err}", file=sys.stderr)
        return 1
    worker = WorkerProcess(base)  # serves settings.policy
    print(f"demo: starting the worker on {worker.url} (log {worker.log_path})")
    worker.start()
    try:
        asyncio.run(_wait_then_demo(worker, users=users, rounds=rounds, seed=seed, out=out))
    except Exception as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        code = worker.stop()
        print(f"demo: worker stopped (exit {code})")
    return 0


async def _wait_then_demo(
    worker: WorkerProcess, *, users: int, rounds: int, seed: int, out: Path
) -> None:
    await worker.wait_ready(timeout_s=120.0)
    print("demo: worker ready")
    await _demo(worker.settings, users=users, rounds=rounds, seed=seed, out=out)
