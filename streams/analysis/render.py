"""The files and tables of run reports: the reward-curve PNG, the HTML page and the console
tables of one run (``reports/<run_id>/``) and of the paired comparison of two runs.

The figures come from ``streams.analysis.summary``; this module only lays them out. The
console (``streams.console``) lays out the same rows, cells and curve with these helpers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bandit.stats import Interval
from streams.analysis.summary import RunReport

__all__ = [
    "ACTION_HEADERS",
    "COMPARISON_HEADERS",
    "PERSONA_HEADERS",
    "action_rows",
    "comparison_rows",
    "format_cell",
    "persona_rows",
    "print_tables",
    "run_header",
    "smooth",
    "write_comparison",
    "write_curve_png",
    "write_html",
    "write_run_report",
]


def smooth(values: Sequence[float | None], window: int) -> list[float]:
    """Trailing moving mean over ``window`` values, skipping None (NaN where all are None).

    >>> smooth([1.0, None, 3.0, 5.0], 2)
    [1.0, 1.0, 3.0, 4.0]
    """
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(math.fsum(chunk) / len(chunk) if chunk else math.nan)
    return out


def write_curve_png(path: Path, curves: Mapping[str, Mapping[str, list[Any]]], title: str) -> Path:
    """One picture: per run, the mean reward per round (light), its moving average and the
    expected reward of the chosen tips; the random and oracle expectations of the first run."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    baselines_drawn = False
    for (label, curve), colour in zip(curves.items(), colours, strict=False):
        rounds = curve["round"]
        n = len(rounds)
        window = max(1, n // 20)
        rewards = [math.nan if v is None else v for v in curve["reward"]]
        ax.plot(rounds, rewards, color=colour, alpha=0.2, linewidth=0.8)
        ax.plot(
            rounds,
            smooth(curve["reward"], window),
            color=colour,
            linewidth=1.6,
            label=f"{label}: reward (moving mean of {window})",
        )
        if any(v is not None for v in curve["expected"]):
            ax.plot(
                rounds,
                smooth(curve["expected"], window),
                color=colour,
                linestyle="--",
                linewidth=1.4,
                label=f"{label}: expected reward of chosen tip",
            )
            if not baselines_drawn and any(v is not None for v in curve["random"]):
                ax.plot(
                    rounds,
                    smooth(curve["oracle"], window),
                    color="black",
                    linestyle=":",
                    linewidth=1.2,
                    label="oracle (expected)",
                )
                ax.plot(
                    rounds,
                    smooth(curve["random"], window),
                    color="grey",
                    linestyle=":",
                    linewidth=1.2,
                    label="random (expected)",
                )
                baselines_drawn = True
    ax.set_xlabel("round")
    ax.set_ylabel("reward per judgment")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_cell(value: Any, digits: int = 3) -> str:
    """A table cell as text: an interval as ``mean [low, high]``, a missing value as ``–``.

    >>> format_cell(None), format_cell(0.12345), format_cell(7)
    ('–', '0.123', '7')
    """
    if value is None:
        return "–"
    if isinstance(value, Interval):
        return "–" if value.n == 0 else value.text(digits)
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PERSONA_HEADERS = (
    "persona",
    "events",
    "mean reward [95% CI]",
    "expected",
    "random",
    "oracle",
    "gap closed",
)
ACTION_HEADERS = ("action", "events", "share [95% CI]", "mean reward", "median dwell (s)")


def persona_rows(table: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["persona"],
            r["events"],
            r["reward"],
            r["expected"],
            r["random"],
            r["oracle"],
            r["gap_closed"],
        ]
        for r in table
    ]


def action_rows(table: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [r["action"], r["events"], r["share"], r["mean_reward"], r["median_dwell_s"]] for r in table
    ]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
"""


def run_header(run: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A run's ``sim_runs`` row as (label, value) pairs, for the head of its report."""
    config = run.get("config") or {}
    items: list[tuple[str, Any]] = [
        ("run", run["run_id"]),
        ("status", run.get("status")),
        ("policy", config.get("policy")),
        ("judge", config.get("judge")),
        ("via", config.get("via")),
        ("seed", config.get("seed")),
        ("users per persona", config.get("users")),
        ("rounds", config.get("rounds")),
        ("events", run.get("events")),
        ("created", run.get("created_at")),
        ("finished", run.get("finished_at")),
    ]
    if run.get("error"):
        items.append(("error", run["error"]))
    if config.get("judge") == "llm":
        items += [
            ("LLM calls", run.get("llm_calls")),
            ("LLM input tokens", run.get("llm_input_tokens")),
            ("LLM output tokens", run.get("llm_output_tokens")),
            ("LLM cache read tokens", run.get("llm_cache_read_tokens")),
            ("LLM cache write tokens", run.get("llm_cache_write_tokens")),
            ("LLM fallbacks", run.get("llm_fallbacks")),
        ]
    return items


def write_html(
    path: Path,
    title: str,
    sections: Sequence[tuple[str, str]],
    picture: Path,
) -> Path:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts.append(
        f"<h2>Reward over rounds</h2><img src='{html.escape(picture.name)}' "
        "alt='reward curve' style='max-width:100%'>"
    )
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _kv_table(items: Sequence[tuple[str, Any]]) -> str:
    return _html_table(("", ""), [(k, v) for k, v in items])


def write_run_report(report: RunReport, out_root: Path) -> tuple[Path, Path]:
    run_id = str(report.run["run_id"])
    directory = out_root / run_id
    picture = write_curve_png(
        directory / "reward_curve.png",
        {run_id: report.curve},
        f"{run_id}: {(report.run.get('config') or {}).get('policy')}",
    )
    page = write_html(
        directory / "report.html",
        f"Simulation run {run_id}",
        [
            ("Run", _kv_table(run_header(report.run))),
            ("Per persona", _html_table(PERSONA_HEADERS, persona_rows(report.personas))),
            ("Per action", _html_table(ACTION_HEADERS, action_rows(report.actions))),
        ],
        picture,
    )
    return page, picture


def comparison_rows(
    result: Mapping[str, Any], name_a: str = "A", name_b: str = "B"
) -> list[list[Any]]:
    """Rows of the paired comparison; verdicts name the policies when given."""

    def verdict(interval: Interval) -> str:
        text = interval.verdict
        if text == "A better":
            return f"A ({name_a}) better" if name_a != "A" else text
        if text == "B better":
            return f"B ({name_b}) better" if name_b != "B" else text
        return text

    rows: list[list[Any]] = [
        ["reward (all)", result["pairs"], result["reward"], verdict(result["reward"])]
    ]
    if result["expected"] is not None:
        rows.append(
            [
                "expected reward (all)",
                result["pairs"],
                result["expected"],
                verdict(result["expected"]),
            ]
        )
    for name, interval in result["per_persona"].items():
        rows.append([f"reward: {name}", interval.n, interval, verdict(interval)])
    return rows


COMPARISON_HEADERS = ("measure", "pairs", "B − A [95% CI]", "verdict")


def write_comparison(
    report_a: RunReport, report_b: RunReport, result: Mapping[str, Any], out_root: Path
) -> tuple[Path, Path]:
    a, b = str(report_a.run["run_id"]), str(report_b.run["run_id"])
    policy_a = (report_a.run.get("config") or {}).get("policy")
    policy_b = (report_b.run.get("config") or {}).get("policy")
    directory = out_root / a
    picture = write_curve_png(
        directory / f"compare-{b}.png",
        {f"A {policy_a}": report_a.curve, f"B {policy_b}": report_b.curve},
        f"A = {a} ({policy_a})  vs  B = {b} ({policy_b})",
    )
    page = write_html(
        directory / f"compare-{b}.html",
        f"A = {a} ({policy_a}) vs B = {b} ({policy_b})",
        [
            (
                "Paired difference B − A (pairs by user and round)",
                _html_table(
                    COMPARISON_HEADERS, comparison_rows(result, str(policy_a), str(policy_b))
                ),
            ),
            (f"A: {a}", _html_table(PERSONA_HEADERS, persona_rows(report_a.personas))),
            (f"B: {b}", _html_table(PERSONA_HEADERS, persona_rows(report_b.personas))),
        ],
        picture,
    )
    return page, picture


def print_tables(
    console: Any, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(format_cell(c) for c in row))
    console.print(table)
