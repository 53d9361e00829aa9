"""``tipstream evaluate``: what would another policy have earned on the logged traffic?

Off-policy evaluation over a simulation run (``sim_events``) or production shows
(``tip_shown`` joined to the applied ``tip_feedback`` row of the same user and tip). Each
logged row carries the logging propensity of the shown tip, its reward and the full
candidate list, which is all IPS, SNIPS and doubly robust (DR) estimation needs.

Replay. A target policy is replayed over the log in time order: it starts from fresh
state, is asked for its probability vector over each row's candidates (so π is the
target's state at that moment), and then learns from the logged reward of the logged tip,
as a shadow policy in the worker would. Pooled policies keep one shared state across all
users. A simulation run is replayed round by round, exactly as the in-process simulator
plays it (every user of a round decides from the previous round's state, then the round is
learned in the simulator's user order), so replaying the logging policy itself reproduces
its logged propensities. Production rows are replayed one by one in ``served_at`` order
(the worker's state at show time may lag pending feedback; the replay ignores that lag).

DR's reward model (``reward_model``): a ridge regression on [1, one-hot priority 2..4,
isOverdue, morning, evening], fitted per user and shrunk towards the same regression pooled
over all users, cross-fitted in two folds (alternate rows of each user's sequence): a row's
prediction never uses its own reward, so the model's errors do not bias the correction.

Intervals are percentile bootstraps over rows (``bandit.ope.estimators``). The recommendation
compares each target with what the logging policy earned on the same rows (paired: DR term minus
logged reward, bootstrapped together), see ``recommend``.

Exit codes: 0 ok, 2 bad usage or bad input (no such run, no usable rows, unknown policy),
1 failure (database).
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import typer

from bandit.base import FloatArray, Moment, Policy, Task
from bandit.explore import one_hot
from bandit.ope.estimators import Estimate, doubly_robust, ips, snips
from bandit.stats import mean_ci

REWARD_FEATURES = 7
REWARD_MODEL = (
    "ridge on [1, priority one-hot (2,3,4), overdue, morning, evening]; per user, shrunk "
    "(λ=4) towards the all-user fit (λ=1); two-fold cross-fitted by alternate rows per user"
)


class EvaluateUsageError(ValueError):
    """Bad usage or bad input: exit code 2."""


@dataclass(frozen=True, slots=True)
class LoggedRow:
    """One logged show with its reward and candidates.

    Rows with the same ``batch`` were decided before any of them was learned from (one
    simulator round); production rows each have their own batch.
    """

    user_id: str
    batch: int
    moment: Moment
    tasks: tuple[Task, ...]
    index: int  # the shown tip's position in ``tasks``
    propensity: float
    reward: float
    policy: str
    expected: tuple[float, ...] | None = None  # the rule judge's exact expectation per task


@dataclass(slots=True)
class Log:
    """The rows to evaluate on, where they came from, and what was skipped."""

    source: str
    rows: list[LoggedRow]
    epsilon: float  # ε for egreedy-v1 when it is replayed
    skipped: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


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


async def _connect(database_url: str) -> Any:
    import asyncpg  # noqa: PLC0415
    import orjson  # noqa: PLC0415

    conn = await asyncpg.connect(database_url)
    await conn.set_type_codec(
        "jsonb", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
    )
    return conn


# A tip may be shown to the same user more than once (``tipId`` is the join key, not the
# show): a feedback row belongs to the latest show of that (user, tip) served at or before it
# (to the first show if the clocks put it earlier), and a show is evaluated with the earliest
# applied feedback in its window.
PRODUCTION_QUERY = """
WITH shows AS (
    SELECT s.*,
           lag(s.served_at) OVER w AS prev_served_at,
           lead(s.served_at) OVER w AS next_served_at
    FROM tip_shown s
    WINDOW w AS (PARTITION BY s.user_id, s.tip_id ORDER BY s.served_at, s.event_id)
)
SELECT s.event_id, s.tip_id, s.user_id, s.served_at, s.policy, s.propensity,
       s.features, s.candidates, f.reward_milli
FROM shows s
JOIN LATERAL (
    SELECT fb.reward_milli FROM tip_feedback fb
    WHERE fb.user_id = s.user_id AND fb.tip_id = s.tip_id
      AND fb.status = 'applied' AND fb.reward_milli IS NOT NULL
      AND (s.prev_served_at IS NULL OR fb.occurred_at >= s.served_at)
      AND (s.next_served_at IS NULL OR fb.occurred_at < s.next_served_at)
    ORDER BY fb.occurred_at LIMIT 1
) f ON true
WHERE s.served_at >= $1
ORDER BY s.served_at, s.event_id
"""


async def load_run(database_url: str, run_id: str) -> Log:
    conn = await _connect(database_url)
    try:
        run = await conn.fetchrow("SELECT config FROM sim_runs WHERE run_id = $1", run_id)
        if run is None:
            raise EvaluateUsageError(f"no run {run_id!r} in sim_runs")
        events = await conn.fetch(
            "SELECT round, user_id, persona, reward_milli, policy, propensity, features "
            "FROM sim_events WHERE run_id = $1",
            run_id,
        )
    finally:
        await conn.close()
    config = run["config"] or {}
    rows, skipped = sim_rows(events, config.get("persona_names") or [])
    return Log(
        source=f"run {run_id}",
        rows=rows,
        epsilon=float(config.get("epsilon", 0.1)),
        skipped=skipped,
    )


async def load_production(database_url: str, since: datetime, epsilon: float) -> Log:
    conn = await _connect(database_url)
    try:
        records = await conn.fetch(PRODUCTION_QUERY, since)
    finally:
        await conn.close()
    rows, skipped = production_rows(records)
    return Log(
        source=f"production since {since.isoformat()}", rows=rows, epsilon=epsilon, skipped=skipped
    )


# ----------------------------------------------------------------------------------------------
# Replay and the reward model
# ----------------------------------------------------------------------------------------------


def replay(
    policy: Policy | str, rows: Sequence[LoggedRow], *, epsilon: float = 0.1
) -> list[FloatArray]:
    """The target's probability vector over each row's candidates, learning as it goes.

    ``policy`` is a Policy object (fresh state is made here) or a registry name; ``oracle``
    needs the judge's expected rewards in the rows (simulation runs with the rule judge).
    """
    if isinstance(policy, str):
        if policy == "oracle":
            out: list[FloatArray] = []
            for row in rows:
                if row.expected is None:
                    raise EvaluateUsageError("the oracle needs the rule judge's expected rewards")
                out.append(one_hot(int(np.argmax(row.expected)), len(row.tasks)))
            return out
        from bandit.registry import UnknownPolicyError, make_policy  # noqa: PLC0415

        try:
            policy = make_policy(policy, epsilon=epsilon)
        except UnknownPolicyError as err:
            raise EvaluateUsageError(str(err)) from None
    shared = policy.new_shared()
    users: dict[str, Any] = {}
    probs: list[FloatArray] = []
    n, start = len(rows), 0
    while start < n:
        stop = start
        while stop < n and rows[stop].batch == rows[start].batch:
            stop += 1
        for row in rows[start:stop]:
            state = users.get(row.user_id)
            if state is None:
                state = users[row.user_id] = policy.new_user()
            probs.append(np.asarray(policy.probabilities(state, shared, row.moment, row.tasks)))
        for row in rows[start:stop]:
            policy.update(users[row.user_id], shared, row.moment, row.tasks[row.index], row.reward)
        start = stop
    return probs


def reward_features(moment: Moment, task: Task) -> FloatArray:
    """[1, priority==2, priority==3, priority==4, overdue, morning, evening]."""
    h = moment.hour_of_day
    return np.array(
        [
            1.0,
            1.0 if task.priority == 2 else 0.0,
            1.0 if task.priority == 3 else 0.0,
            1.0 if task.priority == 4 else 0.0,
            1.0 if task.is_overdue else 0.0,
            1.0 if 5 <= h < 10 else 0.0,
            1.0 if 18 <= h < 22 else 0.0,
        ],
        dtype=np.float64,
    )


def reward_model(
    rows: Sequence[LoggedRow], *, lam_user: float = 4.0, lam_pool: float = 1.0
) -> list[FloatArray]:
    """Cross-fitted predictions r̂ for every candidate of every row (see the module doc)."""
    d = REWARD_FEATURES
    seen: Counter[str] = Counter()
    fold = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        fold[i] = seen[row.user_id] % 2
        seen[row.user_id] += 1
    x = np.stack([reward_features(r.moment, r.tasks[r.index]) for r in rows])
    y = np.array([r.reward for r in rows])
    # Sufficient statistics per (user, fold) and per fold.
    gram: dict[tuple[str, int], FloatArray] = {}
    xty: dict[tuple[str, int], FloatArray] = {}
    for i, row in enumerate(rows):
        key = (row.user_id, int(fold[i]))
        if key not in gram:
            gram[key] = np.zeros((d, d))
            xty[key] = np.zeros(d)
        gram[key] += np.outer(x[i], x[i])
        xty[key] += y[i] * x[i]
    pooled = []
    for f in (0, 1):
        mask = fold == f
        a = lam_pool * np.eye(d) + x[mask].T @ x[mask]
        b = x[mask].T @ y[mask]
        pooled.append(np.linalg.solve(a, b))
    theta: dict[tuple[str, int], FloatArray] = {}
    out: list[FloatArray] = []
    for i, row in enumerate(rows):
        other = 1 - int(fold[i])
        key = (row.user_id, other)
        if key not in theta:
            prior = pooled[other]
            if key in gram:
                a = lam_user * np.eye(d) + gram[key]
                theta[key] = np.asarray(
                    np.linalg.solve(a, lam_user * prior + xty[key]), dtype=np.float64
                )
            else:
                theta[key] = prior
        xs = np.stack([reward_features(row.moment, t) for t in row.tasks])
        out.append(np.asarray(np.clip(xs @ theta[key], -1.0, 1.0), dtype=np.float64))
    return out


# ----------------------------------------------------------------------------------------------
# Estimates and the recommendation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyEstimate:
    policy: str
    ips: Estimate
    snips: Estimate | None  # None when the target never agrees with the log
    dr: Estimate
    dr_minus_logged: Estimate  # paired: DR term − logged reward, per row
    true_value: float | None  # simulation with the rule judge: Σ_k π_k E[r_k], averaged
    agreement: float  # mean π of the logged tip (how much of the log the target "sees")


@dataclass(frozen=True, slots=True)
class Evaluation:
    source: str
    rows: int
    skipped: dict[str, int]
    logging_policy: str
    logged: Estimate  # the on-policy mean reward with its t interval
    logged_true_value: float | None
    policies: list[PolicyEstimate]
    recommendation: dict[str, Any]


def _boot_mean(terms: FloatArray, rng: np.random.Generator, n_boot: int) -> Estimate:
    """Mean with a percentile bootstrap interval over rows (as in bandit.ope.estimators)."""
    ones = np.ones_like(terms)
    return ips(ones, terms, ones, rng, n_boot=n_boot)


def estimate_policy(
    name: str,
    rows: Sequence[LoggedRow],
    rhat: Sequence[FloatArray],
    rng: np.random.Generator,
    *,
    epsilon: float = 0.1,
    n_boot: int = 1000,
    policy: Policy | None = None,
) -> PolicyEstimate:
    probs = replay(policy if policy is not None else name, rows, epsilon=epsilon)
    idx = np.array([r.index for r in rows], dtype=np.int64)
    prop = np.array([r.propensity for r in rows])
    reward = np.array([r.reward for r in rows])
    pi_a = np.array([p[i] for p, i in zip(probs, idx, strict=True)])
    est_ips = ips(prop, reward, pi_a, rng, n_boot=n_boot)
    est_snips = snips(prop, reward, pi_a, rng, n_boot=n_boot) if pi_a.sum() > 0 else None
    est_dr = doubly_robust(prop, reward, idx, probs, rhat, rng, n_boot=n_boot)
    terms = np.array(
        [
            float(p @ rh) + pi_a[i] / prop[i] * (reward[i] - rh[idx[i]])
            for i, (p, rh) in enumerate(zip(probs, rhat, strict=True))
        ]
    )
    diff = _boot_mean(terms - reward, rng, n_boot)
    true_value = None
    if rows and all(r.expected is not None for r in rows):
        true_value = float(
            np.mean([float(p @ np.asarray(r.expected)) for p, r in zip(probs, rows, strict=True)])
        )
    return PolicyEstimate(
        policy=name,
        ips=est_ips,
        snips=est_snips,
        dr=est_dr,
        dr_minus_logged=diff,
        true_value=true_value,
        agreement=float(pi_a.mean()),
    )


def recommend(
    logging_policy: str, logged: Estimate, estimates: Sequence[PolicyEstimate]
) -> dict[str, Any]:
    """Which policy to promote, and how sure.

    - ``strong``: the best target's DR 95% lower bound is above the logging policy's 95%
      upper bound (the two intervals do not overlap);
    - ``moderate``: the paired interval of (DR − logged reward) on the same rows is above 0;
    - otherwise ``none``: not enough evidence, keep the logging policy.
    The best target is the one with the highest DR lower bound among those that are neither
    the logging policy nor the oracle (which cannot serve).
    """
    others = [e for e in estimates if e.policy not in (logging_policy, "oracle")]
    if not others:
        return {"promote": None, "confidence": "none", "text": "no other policy to compare"}
    best = max(others, key=lambda e: (e.dr.low, e.dr.value))
    dr, diff = best.dr, best.dr_minus_logged
    figures = (
        f"{best.policy}: DR {dr.value:.3f} [{dr.low:.3f}, {dr.high:.3f}] vs {logging_policy} "
        f"on-policy {logged.value:.3f} [{logged.low:.3f}, {logged.high:.3f}]; paired DR − logged "
        f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    )
    if dr.low > logged.high:
        confidence, verdict = "strong", f"promote {best.policy} (intervals do not overlap)"
    elif diff.low > 0.0:
        confidence, verdict = "moderate", f"promote {best.policy} (paired interval above 0)"
    else:
        return {
            "promote": None,
            "best": best.policy,
            "confidence": "none",
            "text": f"not enough evidence to promote anything; keep {logging_policy}. {figures}",
        }
    return {
        "promote": best.policy,
        "best": best.policy,
        "confidence": confidence,
        "text": f"{verdict}. {figures}",
    }


def evaluate_log(
    log: Log,
    policies: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Estimate every named policy on ``log`` (pure: no database)."""
    rows = log.rows
    if len(rows) < 2:
        raise EvaluateUsageError(
            f"{log.source}: {len(rows)} usable logged rows (need at least 2)"
            + (f"; skipped {log.skipped}" if log.skipped else "")
        )
    rng = np.random.default_rng(seed)
    rhat = reward_model(rows)
    estimates = [
        estimate_policy(name, rows, rhat, rng, epsilon=log.epsilon, n_boot=n_boot)
        for name in policies
    ]
    rewards = np.array([r.reward for r in rows])
    ci = mean_ci(rewards)
    logged = Estimate(ci.mean, ci.low, ci.high, ci.n)
    counts = Counter(r.policy for r in rows)
    logging_policy = counts.most_common(1)[0][0] if len(counts) == 1 else "mixed"
    logged_true = None
    if all(r.expected is not None for r in rows):
        logged_true = float(np.mean([r.expected[r.index] for r in rows if r.expected]))
    return Evaluation(
        source=log.source,
        rows=len(rows),
        skipped=log.skipped,
        logging_policy=logging_policy,
        logged=logged,
        logged_true_value=logged_true,
        policies=estimates,
        recommendation=recommend(logging_policy, logged, estimates),
    )


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def _est_json(e: Estimate | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 / ISO 8601 time (UTC if no offset) or a span back from now: 30m, 24h, 7d.

    >>> parse_since("2026-11-27T09:00:00Z").isoformat()
    '2026-11-27T09:00:00+00:00'
    >>> parse_since("2d", datetime(2026, 11, 27, tzinfo=UTC)).isoformat()
    '2026-11-25T00:00:00+00:00'
    """
    m = _RELATIVE.match(text.strip())
    if m:
        return (now or datetime.now(UTC)) - timedelta(
            seconds=float(m.group(1)) * _UNIT_S[m.group(2)]
        )
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise EvaluateUsageError(
            f"--since {text!r}: expected an ISO time (2026-11-27T09:00:00Z) or a span (24h, 7d)"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def default_policies() -> list[str]:
    from bandit.registry import POLICY_NAMES  # noqa: PLC0415

    return list(POLICY_NAMES)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def evaluate_command(  # noqa: PLR0917 - typer options
    run: Annotated[
        str | None, typer.Option("--run", help="a simulation run id: evaluate on its sim_events")
    ] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production", help="evaluate on production shows (tip_shown ⋈ applied tip_feedback)"
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="with --production: only shows from then on (ISO time, or 24h, 7d)"),
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            help="comma list of target policies (default: every registered one; 'oracle' on "
            "rule-judge runs)"
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples per interval")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    epsilon: Annotated[
        float | None,
        typer.Option(help="ε when replaying egreedy-v1 (default: the run's, or TIPSTREAM_EPSILON)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="last stdout line: the figures")] = False,
) -> None:
    """Estimate each policy's value from logged shows and rewards (IPS, SNIPS, doubly
    robust, bootstrap 95% intervals) and say which policy to promote and how sure.

    Every target is replayed over the log in time order, learning from the logged rewards as
    a shadow policy would. Examples:

      tipstream evaluate --run sim-20261127T101708-bc2ed7

      tipstream evaluate --production --since 7d --policies egreedy-v2,pooled-v1 --json
    """
    from streams.settings import get_settings  # noqa: PLC0415

    if (run is None) == (not production):
        raise _fail("give exactly one of --run RUN_ID or --production", 2)
    if since is not None and not production:
        raise _fail("--since goes with --production", 2)
    if n_boot < 2:
        raise _fail("--n-boot must be at least 2", 2)
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise _fail("--epsilon must be in [0, 1]", 2)
    names = (
        [p.strip() for p in policies.split(",") if p.strip()] if policies else default_policies()
    )
    if not names:
        raise _fail("--policies is empty", 2)
    settings = get_settings()
    try:
        if run is not None:
            log = asyncio.run(load_run(settings.database_url, run))
            if epsilon is not None:
                log.epsilon = epsilon
        else:
            start = parse_since(since) if since else datetime(1970, 1, 1, tzinfo=UTC)
            log = asyncio.run(
                load_production(
                    settings.database_url, start, settings.epsilon if epsilon is None else epsilon
                )
            )
        evaluation = evaluate_log(log, names, n_boot=n_boot, seed=seed)
    except EvaluateUsageError as err:
        raise _fail(str(err), 2) from None
    except KeyboardInterrupt:
        raise _fail("cancelled", 1) from None
    except Exception as err:
        raise _fail(f"{type(err).__name__}: {err}", 1) from None
    if as_json:
        import orjson  # noqa: PLC0415

        document = evaluation_json(evaluation)
        sys.stdout.write(orjson.dumps(_finite(document)).decode() + "\n")
    else:
        print_evaluation(evaluation)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def register(app: typer.Typer) -> None:
    """``tipstream evaluate`` and ``tipstream compare`` (one line in ``streams.cli.main``)."""
    from streams.analysis.compare import register as register_compare  # noqa: PLC0415

    app.command("evaluate")(evaluate_command)
    register_compare(app)
