"""What a person sees of simulator runs: a run's summary, and the report of one or two runs.

``tipstream simulate`` prints :func:`print_summary`; ``tipstream report`` and ``tipstream
demo`` write and print :func:`render_report` (tables with 95% intervals, the reward curve
as PNG + HTML, and for two runs their paired comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from streams.analysis.load import load_report
from streams.analysis.render import (
    ACTION_HEADERS,
    COMPARISON_HEADERS,
    PERSONA_HEADERS,
    action_rows,
    comparison_rows,
    persona_rows,
    print_tables,
    write_comparison,
    write_run_report,
)
from streams.analysis.summary import RunReport, check_comparable, compare, json_ready

__all__ = ["print_summary", "render_report"]


def _console(*, quiet: bool = False) -> Console:
    return Console(quiet=quiet, width=None if sys.stdout.isatty() else 110)


def print_summary(summary: dict[str, Any]) -> None:
    """A run's --json summary as a person reads it: the mean, the baselines, per persona."""
    console = _console()

    def f(v: Any) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    console.print(
        f"run [bold]{summary['run_id']}[/]: {summary['events']} judgments, mean reward "
        f"{f(summary['mean_reward'])} [95% CI {f(summary['ci95_low'])}, {f(summary['ci95_high'])}]"
    )
    if summary.get("expected_mean_reward") is not None:
        console.print(
            f"expected {f(summary['expected_mean_reward'])}, random "
            f"{f(summary['random_expected_mean_reward'])}, oracle "
            f"{f(summary['oracle_expected_mean_reward'])}, gap closed {f(summary['gap_closed'])}"
        )
    fallbacks = summary.get("fallbacks") or {}
    if fallbacks:
        reasons = ", ".join(f"{reason} {n}" for reason, n in fallbacks.items())
        console.print(
            f"LLM fallbacks: {sum(fallbacks.values())} of {summary['events']} judgments were "
            f"the rule judge's ({reasons})"
        )
    print_tables(
        console,
        "per persona",
        ("persona", "events", "mean reward", "expected"),
        [
            (name, p["events"], p["mean_reward"], p["expected_mean_reward"])
            for name, p in summary["per_persona"].items()
        ],
    )


async def render_report(
    database_url: str, run_id: str, run_b: str | None, out: Path, *, quiet: bool = False
) -> dict[str, Any]:
    """Write the report (and comparison) files; print the tables unless ``quiet``."""
    console = _console(quiet=quiet)
    report_a = await load_report(database_url, run_id)
    report_b = await load_report(database_url, run_b) if run_b is not None else None
    if report_b is not None:
        # Refuse before writing anything.
        check_comparable(report_a.run["config"], report_b.run["config"])
    page, picture = write_run_report(report_a, out)
    _print_run(console, report_a)
    document: dict[str, Any] = {
        "run_id": run_id,
        "summary": report_a.summary,
        "html": str(page),
        "png": str(picture),
    }
    console.print(f"report: {page}\npicture: {picture}")
    if report_b is not None:
        page_b, _ = write_run_report(report_b, out)
        _print_run(console, report_b)
        result = compare(report_a.stats, report_b.stats)
        cmp_page, cmp_picture = write_comparison(report_a, report_b, result, out)
        print_tables(
            console,
            f"B − A: A = {run_id}, B = {run_b} (paired by user and round)",
            COMPARISON_HEADERS,
            comparison_rows(
                result,
                str(report_a.run["config"].get("policy")),
                str(report_b.run["config"].get("policy")),
            ),
        )
        console.print(f"comparison: {cmp_page}\npicture: {cmp_picture}\nreport B: {page_b}")
        document["run_b"] = run_b
        document["summary_b"] = report_b.summary
        document["comparison"] = json_ready(
            {
                "pairs": result["pairs"],
                "reward": result["reward"],
                "expected": result["expected"],
                "per_persona": result["per_persona"],
            }
        )
        document["comparison_html"] = str(cmp_page)
        document["comparison_png"] = str(cmp_picture)
    return document


def _print_run(console: Console, report: RunReport) -> None:
    config = report.run.get("config") or {}
    console.print(
        f"\n[bold]{report.run['run_id']}[/] ({report.run.get('status')}): policy "
        f"{config.get('policy')}, judge {config.get('judge')}, seed {config.get('seed')}, "
        f"{report.summary['events']} judgments"
    )
    print_tables(console, "per persona", PERSONA_HEADERS, persona_rows(report.personas))
    print_tables(console, "per action", ACTION_HEADERS, action_rows(report.actions))
