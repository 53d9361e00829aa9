"""Summaries of simulation runs (pure): the simulator's ``--json`` summary, the per-persona
and per-action tables, the reward curve, and the pairing and comparison of two runs.

The summary of a run is :func:`summarize`; the simulator computes it from its in-memory
stats and ``tipstream report`` from the rows in ``sim_events`` (:func:`stat_from_row`), the
same way, so the two always agree. Two runs are compared by pairing their judgments by
(user_id, round): they must share the seed and the world (personas, judge), else the
comparison is refused. The paired difference is B − A with its 95% interval; an interval
that contains 0 is reported as "no difference". Reading the rows is
``streams.analysis.load``; the files and tables are ``streams.analysis.render``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bandit.stats import Interval, gap_closed, mean_ci95, paired_difference, proportion_ci95

__all__ = [
    "IncomparableRunsError",
    "RunReport",
    "action_table",
    "build_run_report",
    "check_comparable",
    "compare",
    "fallbacks",
    "json_ready",
    "pair_runs",
    "persona_table",
    "reward_curve",
    "stat_from_row",
    "summarize",
]


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
        "fallbacks": fallbacks(stats),
    }


def fallbacks(stats: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """LLM judgments handed to the rule judge, by reason (``--fallback rule``); {} if none.

    >>> fallbacks([{"fallback_reason": "timeout"}, {}, {"fallback_reason": "timeout"}])
    {'timeout': 2}
    """
    counts: dict[str, int] = {}
    for s in stats:
        reason = s.get("fallback_reason")
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


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
        "fallback_reason": (row.get("features") or {}).get("fallback_reason"),
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


@dataclass(frozen=True, slots=True)
class RunReport:
    """One run with its per-judgment stats and what the report shows of them."""

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


def json_ready(value: Any) -> Any:
    """A JSON-ready copy: Intervals as dicts with their verdict, non-finite floats as None,
    through dicts and lists."""
    if isinstance(value, Interval):
        document = asdict(value)
        document["verdict"] = value.verdict
        return {k: json_ready(v) for k, v in document.items()}
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value
