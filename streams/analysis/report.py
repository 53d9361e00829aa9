"""Reports on simulation runs: tables with 95% intervals, the reward curve, pairwise comparison.

``tipstream report RUN_ID`` reads ``sim_runs`` / ``sim_events`` and writes, under
``reports/<run_id>/``, ``reward_curve.png`` (mean reward per round, and with the rule judge
the expected reward of the chosen tips beside the random and oracle expectations) and
``report.html`` (the tables and the picture). ``tipstream report RUN_A RUN_B`` pairs the two
runs' judgments by (user_id, round): they must share the seed and the world (personas,
judge), else the comparison is refused. The paired difference is B − A with its 95% interval;
an interval that contains 0 is reported as "no difference".

The summary of a run (the simulator's ``--json`` line) is :func:`summarize`; it is computed
the same way from the rows in ``sim_events``, so the two always agree.

>>> m = mean_ci95([1.0, 2.0, 3.0])
>>> (m.mean, round(m.low, 4), round(m.high, 4))
(2.0, -0.4841, 4.4841)
>>> d = paired_difference([0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 1.0, 2.0])
>>> (d.mean, round(d.low, 4), round(d.high, 4), d.verdict)
(1.5, 0.5813, 2.4187, 'B better')
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bandit import stats

Z_975 = stats.Z975


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (``bandit.stats``).

    >>> round(t_975(10), 3), round(t_975(60), 3), round(t_975(10**6), 3)
    (2.228, 2.0, 1.96)
    """
    return stats.t975(df)


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean with its 95% interval (t-based; a single value has an interval of itself)."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """For a paired difference B − A: "no difference" when the interval holds 0."""
        if self.low <= 0.0 <= self.high:
            return "no difference"
        return "B better" if self.mean > 0 else "A better"

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def mean_ci95(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval of independent values (``bandit.stats.mean_ci``)."""
    if not values:
        return Interval(0, math.nan, math.nan, math.nan)
    interval = stats.mean_ci(values)
    return Interval(interval.n, interval.mean, interval.low, interval.high)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Mean of b[i] − a[i] with its 95% interval (pairs share users, moments, candidates)."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    return mean_ci95([y - x for x, y in zip(a, b, strict=True)])


def proportion_ci95(k: int, n: int) -> Interval:
    """Share k/n with the Wilson 95% interval.

    >>> p = proportion_ci95(5, 10)
    >>> round(p.low, 3), round(p.high, 3)
    (0.237, 0.763)
    """
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    p = k / n
    z2 = Z_975**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(n, p, max(0.0, centre - half), min(1.0, centre + half))


def gap_closed(expected: float | None, random: float | None, oracle: float | None) -> float | None:
    """(expected − random) / (oracle − random); None when unknown or the gap is zero."""
    if expected is None or random is None or oracle is None or oracle == random:
        return None
    return (expected - random) / (oracle - random)


# ----------------------------------------------------------------------------------------------
# Summaries: the --json line, from in-memory stats or from sim_events rows
# ----------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _expected_means(
    stats: Sequence[Mapping[str, Any]],
) -> tuple[float | None, float | None, float | None]:
    """Mean expected / random / oracle reward; all None unless every judgment knows them."""
    if not stats or any(s.get("expected_reward") is None for s in stats):
        return None, None, None
    if any(s.get("random_expected") is None or s.get("oracle_expected") is None for s in stats):
        return _mean([s["expected_reward"] for s in stats]), None, None
    return (
        _mean([s["expected_reward"] for s in stats]),
        _mean([s["random_expected"] for s in stats]),
        _mean([s["oracle_expected"] for s in stats]),
    )


def summarize(stats: Sequence[Mapping[str, Any]], *, run_id: str) -> dict[str, Any]:
    """The simulator's ``--json`` summary from per-judgment stats.

    Each stat has ``persona``, ``reward`` (None when not learnable), and for the rule judge
    ``expected_reward`` (the chosen tip), ``random_expected`` (mean over the candidates) and
    ``oracle_expected`` (max over the candidates).
    """
    rewards = [s["reward"] for s in stats if s["reward"] is not None]
    interval = mean_ci95(rewards)
    expected, random, oracle = _expected_means(stats)
    by_persona: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in stats:
        by_persona[s["persona"]].append(s)
    per_persona = {}
    for name, items in by_persona.items():
        persona_rewards = [s["reward"] for s in items if s["reward"] is not None]
        per_persona[name] = {
            "events": len(items),
            "mean_reward": _mean(persona_rewards),
            "expected_mean_reward": _expected_means(items)[0],
        }
    return {
        "run_id": run_id,
        "events": len(stats),
        "mean_reward": _mean(rewards),
        "ci95_low": _finite(interval.low),
        "ci95_high": _finite(interval.high),
        "expected_mean_reward": expected,
        "random_expected_mean_reward": random,
        "oracle_expected_mean_reward": oracle,
        "gap_closed": gap_closed(expected, random, oracle),
        "per_persona": per_persona,
    }


def stat_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ``sim_events`` row as a per-judgment stat (rewards from ``reward_milli``)."""
    candidates = (row.get("features") or {}).get("candidates") or []
    expected = [c.get("expected_reward") for c in candidates]
    known = bool(expected) and all(e is not None for e in expected)
    return {
        "persona": row["persona"],
        "user_id": row["user_id"],
        "round": row["round"],
        "action": row["action"],
        "dwell_ms": row["dwell_ms"],
        "reward": row["reward_milli"] / 1000 if row["reward_milli"] is not None else None,
        "expected_reward": row["expected_reward"],
        "random_expected": math.fsum(expected) / len(expected) if known else None,
        "oracle_expected": max(expected) if known else None,
    }


# ----------------------------------------------------------------------------------------------
# Report of one run, comparison of two
# ----------------------------------------------------------------------------------------------


def persona_table(stats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_persona: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in stats:
        by_persona[s["persona"]].append(s)
    rows = []
    for name, items in [*by_persona.items(), ("all", list(stats))]:
        rewards = [s["reward"] for s in items if s["reward"] is not None]
        expected, random, oracle = _expected_means(items)
        rows.append(
            {
                "persona": name,
                "events": len(items),
                "reward": mean_ci95(rewards),
                "expected": expected,
                "random": random,
                "oracle": oracle,
                "gap_closed": gap_closed(expected, random, oracle),
            }
        )
    return rows


def action_table(stats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    n = len(stats)
    by_action: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in stats:
        by_action[s["action"]].append(s)
    rows = []
    for action in sorted(
        by_action,
        key=lambda a: (
            ("done", "snooze", "dismiss").index(a) if a in ("done", "snooze", "dismiss") else 9
        ),
    ):
        items = by_action[action]
        dwell = sorted(s["dwell_ms"] for s in items if s.get("dwell_ms") is not None)
        rewards = [s["reward"] for s in items if s["reward"] is not None]
        rows.append(
            {
                "action": action,
                "events": len(items),
                "share": proportion_ci95(len(items), n),
                "mean_reward": _mean(rewards),
                "median_dwell_s": dwell[len(dwell) // 2] / 1000 if dwell else None,
            }
        )
    return rows


def reward_curve(stats: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Per round: mean reward, and (rule judge) mean expected / random / oracle reward."""
    by_round: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for s in stats:
        by_round[s["round"]].append(s)
    rounds = sorted(by_round)
    curve: dict[str, list[Any]] = {
        "round": rounds,
        "reward": [],
        "expected": [],
        "random": [],
        "oracle": [],
    }
    for r in rounds:
        items = by_round[r]
        curve["reward"].append(_mean([s["reward"] for s in items if s["reward"] is not None]))
        expected, random, oracle = _expected_means(items)
        curve["expected"].append(expected)
        curve["random"].append(random)
        curve["oracle"].append(oracle)
    return curve


def pair_runs(
    stats_a: Sequence[Mapping[str, Any]], stats_b: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Judgments of both runs for the same (user_id, round), in a stable order."""
    index_b = {(s["user_id"], s["round"]): s for s in stats_b}
    pairs = [
        (s, index_b[(s["user_id"], s["round"])])
        for s in stats_a
        if (s["user_id"], s["round"]) in index_b
    ]
    pairs.sort(key=lambda p: (p[0]["round"], p[0]["user_id"]))
    return pairs


class IncomparableRunsError(ValueError):
    """Two runs that do not face the same world: exit 2."""


def check_comparable(config_a: Mapping[str, Any], config_b: Mapping[str, Any]) -> None:
    if config_a.get("seed") != config_b.get("seed"):
        raise IncomparableRunsError(
            f"different seeds ({config_a.get('seed')} vs {config_b.get('seed')}): "
            "pairs would not face the same world"
        )
    world_a, world_b = config_a.get("world"), config_b.get("world")
    if world_a != world_b:
        differing = sorted(
            k
            for k in set(world_a or {}) | set(world_b or {})
            if (world_a or {}).get(k) != (world_b or {}).get(k)
        )
        raise IncomparableRunsError(
            f"the runs' worlds differ in {', '.join(differing) or 'config'}"
        )


def compare(
    stats_a: Sequence[Mapping[str, Any]], stats_b: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Paired differences B − A of reward and (rule judge) expected reward, per persona too."""
    pairs = [
        (a, b)
        for a, b in pair_runs(stats_a, stats_b)
        if a["reward"] is not None and b["reward"] is not None
    ]
    if not pairs:
        raise IncomparableRunsError("the runs share no (user_id, round) judgment")
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "reward": paired_difference(
            [a["reward"] for a, _ in pairs], [b["reward"] for _, b in pairs]
        ),
        "expected": None,
        "per_persona": {},
    }
    with_expected = [
        (a, b)
        for a, b in pairs
        if a["expected_reward"] is not None and b["expected_reward"] is not None
    ]
    if with_expected and len(with_expected) == len(pairs):
        result["expected"] = paired_difference(
            [a["expected_reward"] for a, _ in pairs], [b["expected_reward"] for _, b in pairs]
        )
    by_persona: dict[str, list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = defaultdict(list)
    for a, b in pairs:
        by_persona[a["persona"]].append((a, b))
    for name, items in by_persona.items():
        result["per_persona"][name] = paired_difference(
            [a["reward"] for a, _ in items], [b["reward"] for _, b in items]
        )
    return result


# ----------------------------------------------------------------------------------------------
# Output: PNG, HTML, terminal
# ----------------------------------------------------------------------------------------------


def _smooth(values: Sequence[float | None], window: int) -> list[float]:
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
            _smooth(curve["reward"], window),
            color=colour,
            linewidth=1.6,
            label=f"{label}: reward (moving mean of {window})",
        )
        if any(v is not None for v in curve["expected"]):
            ax.plot(
                rounds,
                _smooth(curve["expected"], window),
                color=colour,
                linestyle="--",
                linewidth=1.4,
                label=f"{label}: expected reward of chosen tip",
            )
            if not baselines_drawn and any(v is not None for v in curve["random"]):
                ax.plot(
                    rounds,
                    _smooth(curve["oracle"], window),
                    color="black",
                    linestyle=":",
                    linewidth=1.2,
                    label="oracle (expected)",
                )
                ax.plot(
                    rounds,
                    _smooth(curve["random"], window),
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


def _fmt(value: Any, digits: int = 3) -> str:
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
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
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


def _run_header(run: Mapping[str, Any]) -> list[tuple[str, Any]]:
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


@dataclass(frozen=True, slots=True)
class RunReport:
    run: dict[str, Any]
    stats: list[dict[str, Any]]
    summary: dict[str, Any]
    personas: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    curve: dict[str, list[Any]]


def build_run_report(run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> RunReport:
    stats = [stat_from_row(r) for r in rows]
    return RunReport(
        run=dict(run),
        stats=stats,
        summary=summarize(stats, run_id=str(run["run_id"])),
        personas=persona_table(stats),
        actions=action_table(stats),
        curve=reward_curve(stats),
    )


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
            ("Run", _kv_table(_run_header(report.run))),
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
        table.add_row(*(_fmt(c) for c in row))
    console.print(table)


def interval_json(value: Any) -> Any:
    if isinstance(value, Interval):
        document = asdict(value)
        document["verdict"] = value.verdict
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in document.items()}
    if isinstance(value, dict):
        return {k: interval_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interval_json(v) for v in value]
    return value


async def load_report(database_url: str, run_id: str) -> RunReport:
    from streams.sim.store import connect_pool, fetch_events, fetch_run  # noqa: PLC0415

    pool = await connect_pool(database_url, max_size=1)
    try:
        run = await fetch_run(pool, run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} in sim_runs")
        rows = await fetch_events(pool, run_id)
    finally:
        await pool.close()
    return build_run_report(run, rows)
