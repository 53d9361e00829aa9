"""The console's reads over ``sim_runs`` and ``sim_events``, summarized by ``streams.analysis``.

A run's row becomes a JSON-ready status (:func:`run_status`): its configuration, its
progress (``sim_runs.events``, written live by the simulator, over the judgments the run
will make) and its result. A run's page and the comparison of two runs are the report's
figures (``streams.analysis.summary``) laid out as rows of text cells
(``streams.analysis.render``), exactly what ``tipstream report`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from streams.analysis.render import (
    ACTION_HEADERS,
    COMPARISON_HEADERS,
    PERSONA_HEADERS,
    action_rows,
    comparison_rows,
    format_cell,
    persona_rows,
    run_header,
)
from streams.analysis.summary import RunReport, build_run_report, check_comparable, compare
from streams.sim.store import fetch_events, fetch_run

__all__ = [
    "RUNS_QUERY",
    "Comparison",
    "RunReport",
    "Table",
    "action_table",
    "comparison_table",
    "expected_events",
    "list_runs",
    "load_comparison",
    "load_report",
    "persona_table",
    "run_status",
    "summary_items",
]

RUNS_QUERY = """
SELECT run_id, status, config, created_at, finished_at, events, mean_reward, error
FROM sim_runs ORDER BY created_at DESC, run_id LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class Table:
    """A table as the page shows it: headers and rows of text cells."""

    headers: Sequence[str]
    rows: list[list[str]]


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def expected_events(config: Mapping[str, Any]) -> int | None:
    """How many judgments a closed-loop run makes (personas × users × rounds); None for a
    load-mode run (its length is a duration) or a configuration that does not say.

    >>> expected_events({"persona_names": ["a", "b"], "users": 3, "rounds": 10})
    60
    >>> expected_events({"persona_names": ["a"], "users": 1, "rounds": 5, "rate": 100.0}) is None
    True
    """
    names, users, rounds = config.get("persona_names"), config.get("users"), config.get("rounds")
    if config.get("rate") is not None or not names or not users or not rounds:
        return None
    return len(names) * int(users) * int(rounds)


def run_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ``sim_runs`` row as the runs page shows and polls it (JSON-ready)."""
    config = row.get("config") or {}
    events = int(row.get("events") or 0)
    total = expected_events(config)
    if row.get("status") == "finished":
        progress: float | None = 1.0
    elif total:
        progress = min(1.0, events / total)
    else:
        progress = None
    personas = config.get("personas_path") or "standard"
    return {
        "run_id": row["run_id"],
        "status": row.get("status"),
        "policy": config.get("policy"),
        "judge": config.get("judge"),
        "via": config.get("via"),
        "seed": config.get("seed"),
        "users": config.get("users"),
        "rounds": config.get("rounds"),
        "personas": personas,
        "events": events,
        "expected_events": total,
        "progress": progress,
        "mean_reward": row.get("mean_reward"),
        "created_at": _iso(row.get("created_at")),
        "finished_at": _iso(row.get("finished_at")),
        "error": row.get("error"),
    }


async def list_runs(pool: asyncpg.Pool, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` runs, newest first, as :func:`run_status`."""
    return [run_status(dict(r)) for r in await pool.fetch(RUNS_QUERY, limit)]


async def load_report(pool: asyncpg.Pool, run_id: str) -> RunReport | None:
    """A run with its judgments so far, summarized; None when ``sim_runs`` has no such run."""
    run = await fetch_run(pool, run_id)
    if run is None:
        return None
    return build_run_report(run, await fetch_events(pool, run_id))


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[format_cell(c) for c in row] for row in rows]


def persona_table(report: RunReport) -> Table:
    return Table(PERSONA_HEADERS, _cells(persona_rows(report.personas)))


def action_table(report: RunReport) -> Table:
    return Table(ACTION_HEADERS, _cells(action_rows(report.actions)))


def summary_items(report: RunReport) -> list[tuple[str, str]]:
    """The head of a run's page: its ``sim_runs`` row, then the summary's mean and interval."""
    summary = report.summary
    items = [
        (k, v.strftime("%Y-%m-%d %H:%M:%S %Z") if isinstance(v, datetime) else format_cell(v))
        for k, v in run_header(report.run)
    ]
    low, high = summary.get("ci95_low"), summary.get("ci95_high")
    mean = format_cell(summary.get("mean_reward"))
    interval = f" [95% CI {format_cell(low)}, {format_cell(high)}]" if low is not None else ""
    items.append(("mean reward", mean + interval))
    if summary.get("gap_closed") is not None:
        items.append(("gap closed", format_cell(summary["gap_closed"])))
    return items


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two runs and their paired difference B − A."""

    a: RunReport
    b: RunReport
    result: dict[str, Any]


async def load_comparison(pool: asyncpg.Pool, run_a: str, run_b: str) -> Comparison:
    """The paired comparison of two runs (``LookupError`` for a missing run,
    ``IncomparableRunsError`` for runs that do not face the same world)."""
    reports = []
    for run_id in (run_a, run_b):
        report = await load_report(pool, run_id)
        if report is None:
            raise LookupError(f"no run {run_id!r} in sim_runs")
        reports.append(report)
    a, b = reports
    check_comparable(a.run["config"], b.run["config"])
    return Comparison(a=a, b=b, result=compare(a.stats, b.stats))


def comparison_table(comparison: Comparison) -> Table:
    policy_a = (comparison.a.run.get("config") or {}).get("policy")
    policy_b = (comparison.b.run.get("config") or {}).get("policy")
    rows = comparison_rows(comparison.result, str(policy_a), str(policy_b))
    return Table(COMPARISON_HEADERS, _cells(rows))
