"""``tipstream compare``: the standard policy comparison of issue 4, through the real simulator.

Every (policy, seed, setting) is one ``tipstream simulate --judge rule --via inprocess`` run
(a subprocess: Kafka topics, ``sim_runs``/``sim_events`` rows, exactly as a user would run
it), ``--jobs`` at a time. The figures are then read back from ``sim_events``:

- *expected reward*: the rule judge's exact expectation of the shown tip, so a policy is
  judged on what it chose, not on the judge's dice; ``random`` and ``oracle`` baselines for
  ``gap_closed`` are the mean and the max of the candidates' expectations of the same rows
  (docs/contracts.md: gap_closed = (expected − random) / (oracle − random));
- two settings: *long* (``--long-users`` per persona × ``--long-rounds``, reported over the
  first 20, 200, … rounds of the same runs and over the last ``--last`` rounds), and *cold*
  (``--cold-users`` per persona × ``--cold-rounds``, the whole run). A prefix of a long run
  is exactly the shorter run: the in-process simulator plays lockstep rounds, and round r
  depends only on the seed and rounds < r.
- 95% intervals: t intervals over units (one unit = one simulated user of one seed: their
  mean over the window); gap_closed's interval is a percentile bootstrap over the same units
  of the ratio of sums. Users of a pooled policy share a prior, so they are not quite
  independent: read the intervals of pooled policies as slightly optimistic.

The command line is ``streams.cli.compare``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.base import FloatArray
from bandit.registry import DEFAULT_POLICY, KNOWN_TYPES_NAME, ORACLE_NAME
from bandit.stats import mean_ci95
from streams.analysis.load import fetch_expectations

__all__ = [
    "STANDARD_POLICIES",
    "Cell",
    "CompareUsageError",
    "Job",
    "RunRows",
    "cell",
    "compare",
    "render_markdown",
    "run_rows",
    "run_simulation",
    "windows",
]

# The columns (random, egreedy-v1, with an intercept, oracle), the older and the
# pooled policies, and the serving default.
STANDARD_POLICIES = (
    "random",
    "egreedy-v1",
    "linucb-v1",
    "egreedy-v2",
    "pooled-v1",
    DEFAULT_POLICY,
    KNOWN_TYPES_NAME,  # the cold-start ceiling: told the persona set, not the user's persona
    ORACLE_NAME,
)


class CompareUsageError(ValueError):
    """Bad usage: exit code 2."""


@dataclass(frozen=True, slots=True)
class RunRows:
    """One run's judgments as arrays (one entry per judgment)."""

    user: Sequence[str]
    round: FloatArray
    expected: FloatArray
    reward: FloatArray
    random_expected: FloatArray  # mean of the candidates' expectations
    oracle_expected: FloatArray  # max of the candidates' expectations


@dataclass(frozen=True, slots=True)
class Cell:
    """One policy in one window: expected and realized reward, gap closed, with intervals."""

    expected: tuple[float, float, float]
    reward: tuple[float, float, float]
    gap: tuple[float, float, float]
    random: float
    oracle: float
    units: int
    judgments: int


def _units(runs: Sequence[RunRows], lo: int, hi: int) -> dict[str, FloatArray]:
    """Per (seed, user) means over rounds lo ≤ r < hi."""
    out: dict[str, list[float]] = {
        "expected": [],
        "reward": [],
        "random_expected": [],
        "oracle_expected": [],
    }
    count = 0
    for seed_index, run in enumerate(runs):
        mask = (run.round >= lo) & (run.round < hi)
        users = np.array([f"{seed_index}/{u}" for u in run.user])[mask]
        for name, acc in out.items():
            values = getattr(run, name)[mask]
            acc.extend(float(values[users == u].mean()) for u in np.unique(users))
        count += int(mask.sum())
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    arrays["judgments"] = np.array([count], dtype=np.float64)
    return arrays


def cell(runs: Sequence[RunRows], lo: int, hi: int, *, n_boot: int = 2000, seed: int = 0) -> Cell:
    """The figures of one policy over rounds [lo, hi) of its runs (one per seed)."""
    u = _units(runs, lo, hi)
    e, r, rnd, orc = u["expected"], u["reward"], u["random_expected"], u["oracle_expected"]
    if e.size == 0:
        raise CompareUsageError(f"no judgments in rounds [{lo}, {hi})")
    ie, ir = mean_ci95(e), mean_ci95(r)
    gap = float((e.sum() - rnd.sum()) / (orc.sum() - rnd.sum()))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, e.size, size=(n_boot, e.size))
    boot = (e[idx].sum(1) - rnd[idx].sum(1)) / (orc[idx].sum(1) - rnd[idx].sum(1))
    glo, ghi = np.quantile(boot, [0.025, 0.975])
    return Cell(
        expected=(ie.mean, ie.low, ie.high),
        reward=(ir.mean, ir.low, ir.high),
        gap=(gap, float(glo), float(ghi)),
        random=float(rnd.mean()),
        oracle=float(orc.mean()),
        units=int(e.size),
        judgments=int(u["judgments"][0]),
    )


def run_rows(run_id: str, rows: Sequence[Mapping[str, Any]]) -> RunRows:
    """One run's ``EXPECTATIONS_QUERY`` rows (``streams.analysis.load``) as arrays."""
    if not rows or any(r["expected_reward"] is None for r in rows):
        raise CompareUsageError(f"run {run_id}: no rule-judge expectations to compare")
    return RunRows(
        user=[r["user_id"] for r in rows],
        round=np.array([r["round"] for r in rows], dtype=np.float64),
        expected=np.array([r["expected_reward"] for r in rows], dtype=np.float64),
        reward=np.array([(r["reward_milli"] or 0) / 1000.0 for r in rows], dtype=np.float64),
        random_expected=np.array([r["random_expected"] for r in rows], dtype=np.float64),
        oracle_expected=np.array([r["oracle_expected"] for r in rows], dtype=np.float64),
    )


@dataclass(frozen=True, slots=True)
class Job:
    """One simulation of the comparison."""

    policy: str
    seed: int
    users: int
    rounds: int
    setting: str  # "long" or "cold"


def run_simulation(job: Job, personas: Path | None) -> str:
    """One ``tipstream simulate`` run; returns its run id (RuntimeError if it failed)."""
    cmd = [
        sys.executable, "-m", "streams.cli", "simulate", "--policy", job.policy,
        "--judge", "rule", "--via", "inprocess", "--users", str(job.users),
        "--rounds", str(job.rounds), "--seed", str(job.seed), "--json", "--quiet",
    ]  # fmt: skip
    if personas is not None:
        cmd += ["--personas", str(personas)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(
            f"{job.policy} seed {job.seed} ({job.setting}): exit {done.returncode}: "
            f"{done.stderr.strip()[-500:]}"
        )
    return str(orjson.loads(done.stdout.strip().splitlines()[-1])["run_id"])


def windows(checkpoints: Sequence[int], long_rounds: int, last: int) -> list[tuple[str, int, int]]:
    """(label, lo, hi) for the long setting.

    >>> windows([20], 1000, 200)
    [('rounds 0–20', 0, 20), ('rounds 0–1000', 0, 1000), ('last 200 of 1000', 800, 1000)]
    """
    out = [(f"rounds 0–{c}", 0, c) for c in checkpoints if c < long_rounds]
    out.append((f"rounds 0–{long_rounds}", 0, long_rounds))
    if 0 < last < long_rounds:
        out.append((f"last {last} of {long_rounds}", long_rounds - last, long_rounds))
    return out


def _fmt3(t: tuple[float, float, float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(t[0])} [{f.format(t[1])}, {f.format(t[2])}]"


def render_markdown(result: Mapping[str, Any]) -> str:
    """Two markdown tables (expected reward, gap closed): one row per window, one column per
    policy; then the realized mean reward."""
    policies = result["policies"]
    lines = []
    for title, key in (
        ("mean expected reward per judgment [95% CI]", "expected"),
        ("gap_closed [95% CI]", "gap"),
        ("mean realized reward per judgment [95% CI]", "reward"),
    ):
        lines.append(f"**{title}**\n")
        lines.append("| setting | " + " | ".join(policies) + " |")
        lines.append("|---" * (len(policies) + 1) + "|")
        for w in result["windows"]:
            cells = [_fmt3(tuple(w["cells"][p][key])) for p in policies]
            lines.append(f"| {w['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def compare(  # noqa: PLR0917 - one comparison's parameters
    policies: Sequence[str],
    seeds: Sequence[int],
    long_users: int,
    long_rounds: int,
    cold_users: int,
    cold_rounds: int,
    checkpoints: Sequence[int],
    last: int,
    personas: Path | None,
    jobs: int,
    database_url: str,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every simulation, read the runs back and compute each policy's cell per window."""
    work = [Job(p, s, cold_users, cold_rounds, "cold") for s in seeds for p in policies]
    if long_rounds > 0:
        work += [Job(p, s, long_users, long_rounds, "long") for s in seeds for p in policies]
    started = time.monotonic()
    run_ids: dict[Job, str] = {}

    def one(job: Job) -> tuple[Job, str]:
        rid = run_simulation(job, personas)
        if progress:
            print(
                f"compare: {job.setting} {job.policy} seed {job.seed}: {rid} "
                f"({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        return job, rid

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for job, rid in pool.map(one, work):
            run_ids[job] = rid

    async def load_all() -> dict[Job, RunRows]:
        return {
            job: run_rows(rid, await fetch_expectations(database_url, rid))
            for job, rid in run_ids.items()
        }

    data = asyncio.run(load_all())
    spans: list[tuple[str, str, int, int]] = []
    if long_rounds > 0:
        spans += [
            ("long", label, lo, hi) for label, lo, hi in windows(checkpoints, long_rounds, last)
        ]
    spans.append(("cold", f"cold start: {cold_users} users × {cold_rounds} rounds", 0, cold_rounds))
    out_windows = []
    for setting, label, lo, hi in spans:
        users = long_users if setting == "long" else cold_users
        cells: dict[str, Any] = {}
        for p in policies:
            runs = [
                data[Job(p, s, users, long_rounds if setting == "long" else cold_rounds, setting)]
                for s in seeds
            ]
            c = cell(runs, lo, hi)
            cells[p] = {
                "expected": c.expected,
                "reward": c.reward,
                "gap": c.gap,
                "random": c.random,
                "oracle": c.oracle,
                "units": c.units,
                "judgments": c.judgments,
            }
        out_windows.append(
            {"label": f"{label} ({users} users/persona)" if setting == "long" else label,
             "setting": setting, "lo": lo, "hi": hi, "cells": cells}
        )  # fmt: skip
    return {
        "policies": list(policies),
        "seeds": list(seeds),
        "personas": str(personas) if personas is not None else "standard",
        "windows": out_windows,
        "runs": [
            {"policy": j.policy, "seed": j.seed, "setting": j.setting, "run_id": rid}
            for j, rid in run_ids.items()
        ],
        "wall_s": round(time.monotonic() - started, 1),
    }
