"""``python -m bench.drift``: recovery after drift and the cost of late feedback, per policy.

Every run is the simulator's closed loop played in memory (``streams.sim.in_memory``: the
schedule, draws and summary of ``tipstream simulate --judge rule --via inprocess``, with
nothing published or stored), so it needs neither Kafka nor PostgreSQL. Deterministic: the
same arguments print the same tables. Two parts:

1. **Drift.** Each policy and seed plays ``--users`` per persona × ``--rounds``; at
   ``--drift-at`` every persona takes on other preferences (``--drift``: rotate or invert).
   Per policy: the mean reward per round before the drift, in the first window after it and
   in the last window, and the rounds to recover (``streams.analysis.recovery``: the first
   window of ``--window`` rounds from the drift on whose mean is back within
   ``--tolerance`` × the oracle-random gap of the pre-drift level), as a mean over seeds
   with a 95% t interval; a seed that does not recover within the run counts as the most it
   could show, and is counted. Played with instant feedback and with the ``hours`` delay.
2. **Delay.** No drift; cold start (``--cold-users`` × ``--cold-rounds``). gap_closed per
   policy and delay scenario (mean over seeds [95% t interval]) and its paired difference
   from instant feedback (same seeds, same worlds).

    uv run python -m bench.drift --seeds 0,1,2,3,4

takes about 10 minutes of one core with the defaults (``--jobs`` runs that many processes).
The result is appended as one JSON line to ``var/bench-results.jsonl``.

``--via worker`` plays each learner's runs through a real worker instead (``tipstream
simulate --via worker`` on fresh topics, a ``tipstream worker`` serving the policy with the
scenario's reward wait and default reward; needs ``tipstream dev up``), one run at a time,
and reads the judgments back from PostgreSQL. ``random`` and ``oracle`` are not served by
the worker; they are played in memory either way. A drift run of 20 users per persona ×
200 rounds takes about two minutes this way:

    uv run python -m bench.drift --via worker --policies pooledmix-v3 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bandit.stats import Interval, mean_ci95, paired_difference
from bench.worker_throughput import create_topics
from streams.analysis.load import fetch_expectations
from streams.analysis.recovery import recovery
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import get_settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.sim.in_memory import play_in_memory

__all__ = ["DELAY_SCENARIOS", "DelayScenario", "main", "play_through_worker"]


@dataclass(frozen=True, slots=True)
class DelayScenario:
    """How feedback reaches the learner (SimConfig's delay fields)."""

    delay: str = "none"
    lost: float = 0.0
    reward_wait_s: float = 86_400.0
    default_reward: float | None = None

    def apply(self, config: SimConfig) -> SimConfig:
        return replace(
            config,
            delay=self.delay,
            delay_lost=self.lost,
            reward_wait_s=self.reward_wait_s,
            default_reward=self.default_reward,
        )


# One round is an hour of stream time (SimConfig.round_s); the worker's default wait is 24 h.
DELAY_SCENARIOS: dict[str, DelayScenario] = {
    "instant": DelayScenario(),
    # minutes: exponential, mean 10 min; all arrive, almost all by the next round
    "minutes": DelayScenario("exp:600"),
    # hours: exponential, mean 3 h; 10% never arrive; shows expire after 6 h (so about 13%
    # of the rest arrive too late), and nothing is learned from an expired show
    "hours": DelayScenario("exp:10800", 0.1, 21_600.0),
    # the same, with TIPSTREAM_DEFAULT_REWARD=0 learned from every expired show
    "hours+default0": DelayScenario("exp:10800", 0.1, 21_600.0, 0.0),
}
LEARNERS = ("egreedy-v1", "pooledmix-v3", "pooled-v1", "linucb-v1")
REFERENCES = ("random", "oracle")


def _play(config: SimConfig) -> tuple[float, Sequence[Mapping[str, Any]]]:
    """gap_closed and the per-judgment stats: in memory, or through a worker."""
    if config.via == "worker" and config.policy not in REFERENCES:
        return asyncio.run(play_through_worker(config))
    summary, stats = asyncio.run(play_in_memory(replace(config, via="inprocess")))
    return float(summary["gap_closed"]), stats


async def play_through_worker(config: SimConfig) -> tuple[float, Sequence[Mapping[str, Any]]]:
    """The run through a real worker serving the policy, on fresh topics (a stream-time run
    needs them), its shows expiring as the scenario says; the judgments from PostgreSQL."""
    settings = await create_topics(get_settings())
    async with WorkerProcess(
        settings,
        policy=config.policy,
        reward_wait_s=config.reward_wait_s,
        default_reward=config.default_reward,
    ) as worker:
        summary = await run_closed_loop(worker.settings, config, quiet=True)
    stats = await fetch_expectations(settings.database_url, summary["run_id"])
    return float(summary["gap_closed"]), stats


def _recovery_of(config: SimConfig, window: int, tolerance: float) -> dict[str, Any]:
    gap, stats = _play(config)
    assert config.drift_at is not None
    rec = recovery(stats, drift_at=config.drift_at, window=window, tolerance=tolerance)
    return {"gap_closed": gap, "recovery": asdict(rec)}


def _gap_of(config: SimConfig) -> float:
    return _play(config)[0]


def _k(rec: dict[str, Any]) -> int:
    """Rounds to recover; a censored seed counts as the most the run could show."""
    k = rec["rounds_to_recover"]
    return int(rec["censored_at"] if k is None else k)


def _iv(values: Sequence[float], digits: int = 3) -> str:
    iv: Interval = mean_ci95(values)
    return iv.text(digits) if iv.n > 1 else f"{iv.mean:.{digits}f}"


def _where(args: argparse.Namespace) -> str:
    return "through the worker" if args.via == "worker" else "in memory"


def drift_table(args: argparse.Namespace, pool: ProcessPoolExecutor) -> dict[str, Any]:
    base = SimConfig(
        users=args.users,
        rounds=args.rounds,
        drift_at=args.drift_at,
        drift=args.drift,
        personas_path=args.personas,
        via=args.via,
    )
    feedbacks = ("instant", "hours")
    jobs = {
        (policy, feedback, seed): pool.submit(
            _recovery_of,
            DELAY_SCENARIOS[feedback].apply(replace(base, policy=policy, seed=seed)),
            args.window,
            args.tolerance,
        )
        for policy in args.policies
        for feedback in feedbacks
        for seed in args.seeds
    }
    results = {key: job.result() for key, job in jobs.items()}
    print(
        f"\n## Drift ({_where(args)}): {args.drift} at round {args.drift_at} of {args.rounds}, "
        f"{args.users} users per persona, seeds {','.join(map(str, args.seeds))}; window "
        f"{args.window} rounds, tolerance {args.tolerance} × (oracle − random)\n"
    )
    print(
        "| policy | before | first window after | last window | rounds to recover, "
        "instant [95% CI] | not recovered | rounds to recover, hours delay | not recovered |"
    )
    print("|---|---|---|---|---|---|---|---|")
    table: dict[str, Any] = {}
    for policy in args.policies:
        row: dict[str, Any] = {}
        cells = []
        for feedback in feedbacks:
            recs = [results[policy, feedback, s]["recovery"] for s in args.seeds]
            ks = [_k(r) for r in recs]
            censored = sum(r["rounds_to_recover"] is None for r in recs)
            row[feedback] = {
                "rounds_to_recover": [r["rounds_to_recover"] for r in recs],
                "censored_at": recs[0]["censored_at"],
                "before": [r["before"] for r in recs],
                "first_window": [r["first_window"] for r in recs],
                "last_window": [r["last_window"] for r in recs],
                "tolerance": [r["tolerance"] for r in recs],
            }
            if censored == len(recs):
                text = f"≥ {recs[0]['censored_at']}"
            else:  # a censored seed counts as the most it could show: a lower bound
                text = ("≥ " if censored else "") + _iv(ks, 1)
            cells.append((text, f"{censored}/{len(recs)}"))
        instant = row["instant"]
        print(
            f"| {policy} | {_iv(instant['before'])} | {_iv(instant['first_window'])} | "
            f"{_iv(instant['last_window'])} | {cells[0][0]} | {cells[0][1]} | "
            f"{cells[1][0]} | {cells[1][1]} |"
        )
        table[policy] = row
    return table


def delay_table(args: argparse.Namespace, pool: ProcessPoolExecutor) -> dict[str, Any]:
    base = SimConfig(
        users=args.cold_users, rounds=args.cold_rounds, personas_path=args.personas, via=args.via
    )
    learners = [p for p in args.policies if p not in REFERENCES]
    jobs = {
        (policy, name, seed): pool.submit(
            _gap_of, scenario.apply(replace(base, policy=policy, seed=seed))
        )
        for policy in learners
        for name, scenario in DELAY_SCENARIOS.items()
        for seed in args.seeds
    }
    gaps = {key: job.result() for key, job in jobs.items()}
    names = list(DELAY_SCENARIOS)
    print(
        f"\n## Late feedback ({_where(args)}): gap_closed at {args.cold_users} users per "
        f"persona × {args.cold_rounds} rounds (one round = 1 h of stream time), mean over seeds "
        "[95% t interval]; Δ = paired difference from instant\n"
    )
    deltas = " | ".join(f"Δ {n}" for n in names[1:])
    print("| policy | " + " | ".join(names) + " | " + deltas + " |")
    print("|---|" + "---|" * (2 * len(names) - 1))
    table: dict[str, Any] = {}
    for policy in learners:
        per = {n: [gaps[policy, n, s] for s in args.seeds] for n in names}
        diffs = [paired_difference(per["instant"], per[n]) for n in names[1:]]
        print(
            f"| {policy} | "
            + " | ".join(_iv(per[n]) for n in names)
            + " | "
            + " | ".join(d.text() if d.n > 1 else f"{d.mean:.3f}" for d in diffs)
            + " |"
        )
        table[policy] = per
    return table


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--policies", default=",".join(LEARNERS + REFERENCES))
    ap.add_argument("--personas", default=None, help="standard (default), alternate or a file")
    ap.add_argument("--users", type=int, default=20, help="drift: users per persona")
    ap.add_argument("--rounds", type=int, default=200, help="drift: rounds")
    ap.add_argument("--drift-at", type=int, default=100)
    ap.add_argument("--drift", default="rotate", help="rotate or invert")
    ap.add_argument("--window", type=int, default=10, help="rounds in the rolling mean")
    ap.add_argument("--tolerance", type=float, default=0.1, help="× (oracle − random)")
    ap.add_argument("--cold-users", type=int, default=50, help="delay: users per persona")
    ap.add_argument("--cold-rounds", type=int, default=20, help="delay: rounds")
    ap.add_argument("--parts", default="drift,delay")
    ap.add_argument("--jobs", type=int, default=1, help="processes (in memory only)")
    ap.add_argument(
        "--via",
        choices=("inprocess", "worker"),
        default="inprocess",
        help="inprocess: played in memory (default); worker: through a real worker",
    )
    args = ap.parse_args(argv)
    if args.via == "worker":
        ensure_up()
        args.jobs = 1  # one worker at a time: the machine's cores are the broker's too
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.policies = [p for p in args.policies.split(",") if p]
    parts = set(args.parts.split(","))
    started = time.monotonic()
    document: dict[str, Any] = {
        "bench": "drift",
        "at": datetime.now(UTC).isoformat(),
        "args": dict(vars(args).items()),
        "scenarios": {n: asdict(s) for n, s in DELAY_SCENARIOS.items()},
    }
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        if "drift" in parts:
            document["drift"] = drift_table(args, pool)
        if "delay" in parts:
            document["delay"] = delay_table(args, pool)
    document["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"\n({document['elapsed_s']} s)")
    path = Path("var/bench-results.jsonl")
    path.parent.mkdir(exist_ok=True)
    with path.open("ab") as out:
        out.write(orjson.dumps(document) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
