"""``tipstream evaluate``'s rows and output: logged rows as read from PostgreSQL turned into
``LoggedRow``s, and the evaluation as JSON or console tables.

The rows come from a simulation run (``sim_events``) or from production shows (``tip_shown``
joined to the applied ``tip_feedback`` row of the same user and tip, see
``streams.analysis.load``). Each logged row carries the logging propensity of the shown tip,
its reward and the full candidate list, which is all IPS, SNIPS and doubly robust
estimation needs (``bandit.ope``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bandit.base import Moment, Task
from bandit.ope.estimators import Estimate
from bandit.ope.evaluation import Evaluation
from bandit.ope.logged import LoggedRow
from bandit.ope.reward_model import REWARD_MODEL

__all__ = ["evaluation_json", "print_evaluation", "production_rows", "sim_rows"]


def _task(c: Mapping[str, Any], *, camel: bool) -> Task:
    if camel:
        return Task(
            tip_id=str(c["tipId"]),
            priority=int(c["priority"]),
            is_overdue=bool(c["isOverdue"]),
            task_age_days=float(c["taskAgeDays"]),
        )
    return Task(
        tip_id=str(c["tip_id"]),
        priority=int(c["priority"]),
        is_overdue=bool(c["is_overdue"]),
        task_age_days=float(c["task_age_days"]),
    )


def sim_rows(
    events: Sequence[Mapping[str, Any]], persona_order: Sequence[str]
) -> tuple[list[LoggedRow], dict[str, int]]:
    """``sim_events`` rows → LoggedRows in the simulator's order (round, persona, user)."""
    position = {name: i for i, name in enumerate(persona_order)}
    skipped: Counter[str] = Counter()
    keyed: list[tuple[tuple[int, int, int], LoggedRow]] = []
    for ev in events:
        if ev["reward_milli"] is None:
            skipped["no reward"] += 1
            continue
        f = ev["features"]
        cands = f.get("candidates") or []
        if not cands:
            skipped["no candidates"] += 1
            continue
        tasks = tuple(_task(c, camel=False) for c in cands)
        expected_values = [c.get("expected_reward") for c in cands]
        expected = (
            tuple(float(v) for v in expected_values)
            if all(v is not None for v in expected_values)
            else None
        )
        moment = Moment(int(f["moment"]["hour_of_day"]), int(f["moment"]["day_of_week"]))
        row = LoggedRow(
            user_id=str(ev["user_id"]),
            batch=int(ev["round"]),
            moment=moment,
            tasks=tasks,
            index=int(f["chosen_index"]),
            propensity=float(ev["propensity"]),
            reward=ev["reward_milli"] / 1000.0,
            policy=str(ev["policy"]),
            expected=expected,
        )
        key = (row.batch, position.get(str(ev["persona"]), len(position)), int(f["user_index"]))
        keyed.append((key, row))
    keyed.sort(key=lambda kr: kr[0])
    return [r for _, r in keyed], dict(skipped)


def production_rows(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[LoggedRow], dict[str, int]]:
    """``tip_shown`` ⋈ ``tip_feedback`` rows (already in ``served_at`` order) → LoggedRows."""
    skipped: Counter[str] = Counter()
    rows: list[LoggedRow] = []
    for rec in records:
        cands = rec["candidates"]
        if not cands:
            skipped["no candidate list"] += 1
            continue
        tasks = tuple(_task(c, camel=True) for c in cands)
        index = next((i for i, t in enumerate(tasks) if t.tip_id == rec["tip_id"]), None)
        if index is None:
            skipped["shown tip not among its candidates"] += 1
            continue
        p = float(rec["propensity"])
        if not 0.0 < p <= 1.0:
            skipped["propensity outside (0, 1]"] += 1
            continue
        f = rec["features"]
        rows.append(
            LoggedRow(
                user_id=str(rec["user_id"]),
                batch=len(rows),
                moment=Moment(int(f["hourOfDay"]), int(f["dayOfWeek"])),
                tasks=tasks,
                index=index,
                propensity=p,
                reward=rec["reward_milli"] / 1000.0,
                policy=str(rec["policy"]),
            )
        )
    return rows, dict(skipped)


def _est_json(e: Estimate | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
    """The ``--json`` document (non-finite floats still in: see ``json_ready``)."""
    return {
        "source": ev.source,
        "rows": ev.rows,
        "skipped": ev.skipped,
        "reward_model": REWARD_MODEL,
        "logging": {
            "policy": ev.logging_policy,
            "mean_reward": _est_json(ev.logged),
            "true_value": ev.logged_true_value,
        },
        "policies": {
            p.policy: {
                "ips": _est_json(p.ips),
                "snips": _est_json(p.snips),
                "dr": _est_json(p.dr),
                "dr_minus_logged": _est_json(p.dr_minus_logged),
                "true_value": p.true_value,
                "agreement": p.agreement,
            }
            for p in ev.policies
        },
        "recommendation": ev.recommendation,
    }


def _iv(e: Estimate | None) -> str:
    if e is None:
        return "–"
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def print_evaluation(ev: Evaluation) -> None:
    """The console tables and the recommendation."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(width=None if sys.stdout.isatty() else 150)
    skipped = ", ".join(f"{k}: {v}" for k, v in ev.skipped.items()) or "none"
    console.print(
        f"{ev.source}: {ev.rows} logged rows (skipped: {skipped}); logging policy "
        f"[bold]{ev.logging_policy}[/], on-policy mean reward {_iv(ev.logged)}"
        + (f", true {ev.logged_true_value:.3f}" if ev.logged_true_value is not None else "")
    )
    table = Table(
        title="policy value on the logged rows (95% bootstrap intervals)", title_justify="left"
    )
    has_true = any(p.true_value is not None for p in ev.policies)
    headers = ["policy", "IPS", "SNIPS", "DR", "DR − logged", "agree", "n"]
    if has_true:
        headers.insert(5, "true")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for p in ev.policies:
        cells = [p.policy, _iv(p.ips), _iv(p.snips), _iv(p.dr), _iv(p.dr_minus_logged)]
        if has_true:
            cells.append("–" if p.true_value is None else f"{p.true_value:.3f}")
        cells += [f"{p.agreement:.2f}", str(p.dr.n)]
        table.add_row(*cells)
    console.print(table)
    console.print(f"reward model (DR): {REWARD_MODEL}")
    console.print(
        f"[bold]recommendation[/] ({ev.recommendation['confidence']}): {ev.recommendation['text']}"
    )
