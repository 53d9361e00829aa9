"""``tipstream evaluate``: replay, reward model, estimators and recommendation on logs whose
answer is known; loading from sim_events and from tip_shown ⋈ tip_feedback; the CLI."""

from __future__ import annotations

import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from tests.analysis.helpers import lockstep_log

from bandit.base import Moment, Task
from bandit.ope.estimators import Estimate
from bandit.registry import make_policy
from streams.analysis.evaluate import (
    EvaluateUsageError,
    Log,
    PolicyEstimate,
    evaluate_log,
    parse_since,
    production_rows,
    recommend,
    replay,
    reward_model,
    sim_rows,
)


@pytest.mark.parametrize("name", ["egreedy-v1", "egreedy-v2", "pooled-v1"])
def test_replaying_the_logging_policy_reproduces_its_propensities(name: str) -> None:
    rows = lockstep_log(make_policy(name), seed=3, users=2, rounds=40)
    probs = replay(name, rows)
    got = np.array([p[r.index] for p, r in zip(probs, rows, strict=True)])
    want = np.array([r.propensity for r in rows])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    for p in probs:
        assert abs(p.sum() - 1.0) < 1e-12


def test_oracle_replay_needs_expected_rewards() -> None:
    rows = lockstep_log(make_policy("random"), seed=1, users=1, rounds=3)
    probs = replay("oracle", rows)
    assert all(p[int(np.argmax(r.expected or ()))] == 1.0 for p, r in zip(probs, rows, strict=True))
    bare = [type(r)(**{**{f: getattr(r, f) for f in r.__slots__}, "expected": None}) for r in rows]
    with pytest.raises(EvaluateUsageError):
        replay("oracle", bare)
    with pytest.raises(EvaluateUsageError, match="unknown policy"):
        replay("nope", rows)


def test_reward_model_is_cross_fitted() -> None:
    """A row's prediction must not move when only its own reward changes."""
    rows = lockstep_log(make_policy("random"), seed=2, users=2, rounds=30)
    base = reward_model(rows)
    changed = list(rows)
    changed[17] = type(rows[17])(
        **{**{f: getattr(rows[17], f) for f in rows[17].__slots__}, "reward": 50.0}
    )
    moved = reward_model(changed)
    np.testing.assert_array_equal(base[17], moved[17])
    assert any(not np.array_equal(a, b) for a, b in zip(base, moved, strict=True))
    assert all(np.all(np.abs(p) <= 1.0) for p in base)


def test_estimates_on_seeded_random_logs_cover_the_true_values() -> None:
    """Deterministic (fixed logs and bootstrap seeds), but judged as a statistic: a correct
    95% interval misses on ≥ 3 of 8 independent logs with probability < 1%, and a biased
    estimator (e.g. a reward model that saw its own row, or a replay that looks ahead)
    misses far more often. Logged uniformly at random, so every target's true value is
    known exactly: Σ_k π_k E[r_k] over the same contexts."""
    covered: dict[str, int] = {}
    errors: dict[str, list[float]] = {}
    widths: dict[str, list[float]] = {}
    for s in range(8):
        rows = lockstep_log(make_policy("random"), seed=100 + s, users=4, rounds=60)
        ev = evaluate_log(
            Log("memory", rows, 0.1), ["random", "pooled-v1", "oracle"], n_boot=300, seed=s
        )
        by = {p.policy: p for p in ev.policies}
        # The target equal to the logging policy: every weight is 1, IPS is the logged mean.
        assert by["random"].ips.value == pytest.approx(ev.logged.value, abs=1e-12)
        assert by["oracle"].true_value is not None
        assert by["oracle"].true_value > ev.logged_true_value  # type: ignore[operator]
        for p in ev.policies:
            assert p.true_value is not None
            covered[p.policy] = covered.get(p.policy, 0) + p.dr.contains(p.true_value)
            errors.setdefault(p.policy, []).append(p.dr.value - p.true_value)
            widths.setdefault(p.policy, []).append(
                (p.dr.high - p.dr.low) / (p.ips.high - p.ips.low)
            )
    for name, count in covered.items():
        assert count >= 6, (name, count)
        assert abs(float(np.mean(errors[name]))) < 0.05, (name, errors[name])
    for name in ("pooled-v1", "oracle"):  # the reward model narrows the interval
        assert float(np.mean(widths[name])) < 0.95, (name, widths[name])


def _est(v: float, lo: float, hi: float) -> Estimate:
    return Estimate(v, lo, hi, 100)


def _pe(name: str, dr: Estimate, diff: Estimate) -> PolicyEstimate:
    return PolicyEstimate(name, dr, dr, dr, diff, None, 0.5)


def test_recommendation_levels() -> None:
    logged = _est(-0.5, -0.52, -0.48)
    strong = recommend(
        "egreedy-v1", logged, [_pe("a", _est(-0.4, -0.45, -0.35), _est(0.1, 0.05, 0.15))]
    )
    assert (strong["promote"], strong["confidence"]) == ("a", "strong")
    moderate = recommend(
        "egreedy-v1", logged, [_pe("a", _est(-0.45, -0.5, -0.4), _est(0.05, 0.01, 0.09))]
    )
    assert (moderate["promote"], moderate["confidence"]) == ("a", "moderate")
    none = recommend(
        "egreedy-v1", logged, [_pe("a", _est(-0.45, -0.6, -0.3), _est(0.05, -0.1, 0.2))]
    )
    assert none["promote"] is None
    assert "not enough evidence" in none["text"]
    # The oracle and the logging policy itself are never promoted.
    only = recommend(
        "egreedy-v1",
        logged,
        [
            _pe("oracle", _est(0.0, -0.1, 0.1), _est(0.5, 0.4, 0.6)),
            _pe("egreedy-v1", _est(-0.5, -0.52, -0.48), _est(0.0, -0.01, 0.01)),
        ],
    )
    assert only["promote"] is None


def test_sim_rows_follow_the_simulator_order_and_skip_unlearnable_rows() -> None:
    def ev(round_: int, persona: str, user: int, reward: int | None) -> dict[str, object]:
        cands = [
            {
                "tip_id": f"t{k}",
                "priority": k + 1,
                "is_overdue": k == 1,
                "task_age_days": 1.0,
                "expected_reward": -0.1 * k,
            }
            for k in range(3)
        ]
        return {
            "round": round_, "user_id": f"sim-{persona}-{user}", "persona": persona,
            "reward_milli": reward, "policy": "random", "propensity": 1 / 3,
            "features": {"user_index": user, "moment": {"hour_of_day": 7, "day_of_week": 2},
                         "chosen_index": 2, "candidates": cands},
        }  # fmt: skip

    events = [ev(1, "a", 0, 100), ev(0, "b", 0, -1000), ev(0, "a", 1, 600), ev(0, "a", 0, None)]
    rows, skipped = sim_rows(events, ["a", "b"])
    assert [(r.batch, r.user_id) for r in rows] == [(0, "sim-a-1"), (0, "sim-b-0"), (1, "sim-a-0")]
    assert skipped == {"no reward": 1}
    assert (rows[0].reward, rows[0].index, rows[0].tasks[1].is_overdue) == (0.6, 2, True)
    assert (rows[0].expected, rows[0].moment) == ((0.0, -0.1, -0.2), Moment(7, 2))


def test_production_rows_parse_camel_case_and_count_what_they_skip() -> None:
    cands = [{"tipId": "x", "priority": 4, "isOverdue": True, "taskAgeDays": 2.5},
             {"tipId": "y", "priority": 1, "isOverdue": False, "taskAgeDays": 0}]  # fmt: skip
    base = {"user_id": "u", "policy": "egreedy-v1", "propensity": 0.95, "reward_milli": -300,
            "features": {"hourOfDay": 20, "dayOfWeek": 6}}  # fmt: skip
    records = [
        {**base, "tip_id": "y", "candidates": cands},
        {**base, "tip_id": "z", "candidates": cands},
        {**base, "tip_id": "x", "candidates": None},
        {**base, "tip_id": "x", "candidates": cands},
    ]
    rows, skipped = production_rows(records)
    assert [(r.index, r.batch) for r in rows] == [(1, 0), (0, 1)]
    assert (rows[1].tasks[0], rows[0].reward) == (Task("x", 4, True, 2.5), -0.3)
    assert skipped == {"shown tip not among its candidates": 1, "no candidate list": 1}


def test_parse_since() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-27T09:00:00", now) == datetime(2026, 11, 27, 9, tzinfo=UTC)
    with pytest.raises(EvaluateUsageError):
        parse_since("yesterday", now)


def test_too_few_rows_is_bad_input() -> None:
    with pytest.raises(EvaluateUsageError):
        evaluate_log(Log("empty", [], 0.1), ["random"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["uv", "run", "tipstream", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_usage_errors_exit_2() -> None:
    assert _cli().returncode == 2
    assert _cli("--run", "x", "--production").returncode == 2
    assert _cli("--run", "x", "--since", "1d").returncode == 2
    assert _cli("--production", "--since", "soon").returncode == 2
    assert "doubly" in _cli("--help").stdout


async def test_cli_on_a_simulation_run(topics: object, database: str) -> None:
    from streams.settings import Settings  # noqa: PLC0415
    from streams.sim.simulate import SimConfig, run_closed_loop  # noqa: PLC0415

    settings = Settings()
    summary = await run_closed_loop(
        settings, SimConfig(policy="egreedy-v1", users=1, rounds=30, seed=5), quiet=True
    )
    out = _cli("--run", summary["run_id"], "--policies", "egreedy-v1,pooled-v1,oracle",
               "--n-boot", "200", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert (doc["rows"], doc["logging"]["policy"]) == (150, "egreedy-v1")
    v1 = doc["policies"]["egreedy-v1"]
    assert (
        v1["agreement"] > 0.75
    )  # ≈ E[propensity] = 0.83 for ε = 0.1, K = 8 when it replays itself
    assert v1["ips"]["value"] == pytest.approx(doc["logging"]["mean_reward"]["value"], abs=1e-9)
    assert doc["policies"]["oracle"]["true_value"] == pytest.approx(
        summary["oracle_expected_mean_reward"], abs=1e-9
    )
    assert doc["recommendation"]["confidence"] in ("strong", "moderate", "none")
    assert _cli("--run", "no-such-run").returncode == 2


async def test_cli_on_production_rows(pg: object, database: str) -> None:
    """Rows far in the future (and removed after) so that no other data is picked up."""
    conn = pg
    tag = secrets.token_hex(4)
    t0 = datetime(2199, 1, 1, tzinfo=UTC)

    def cands(i: int) -> list[dict[str, object]]:
        return [{"tipId": f"{tag}-{i}-{k}", "priority": k + 1, "isOverdue": False,
                 "taskAgeDays": 1} for k in range(4)]  # fmt: skip

    shown = (
        "INSERT INTO tip_shown (event_id, tip_id, user_id, served_at, policy, propensity,"
        " features, candidates) VALUES ($1,$2,$3,$4,'random',0.25,$5::jsonb,$6::jsonb)"
    )
    feedback = (
        "INSERT INTO tip_feedback (event_id, tip_id, user_id, action, reward_milli,"
        " status, occurred_at) VALUES ($1,$2,$3,'done',$4,'applied',$5)"
    )
    features = orjson.dumps(
        {"hourOfDay": 8, "dayOfWeek": 1, "priority": 1, "isOverdue": False, "taskAgeDays": 1}
    ).decode()
    rng = np.random.default_rng(0)
    try:
        for i in range(40):
            user, k = f"eval-{tag}-{i % 4}", int(rng.integers(4))
            tip = f"{tag}-{i}-{k}"
            served = t0 + timedelta(minutes=i)
            await conn.execute(  # type: ignore[attr-defined]
                shown, f"{tag}-s{i}", tip, user, served, features, orjson.dumps(cands(i)).decode()
            )
            if i % 10 != 9:  # a few shows without feedback are not evaluated
                reward = 1000 if k == 3 else -1000
                await conn.execute(  # type: ignore[attr-defined]
                    feedback, f"{tag}-f{i}", tip, user, reward, served + timedelta(seconds=30)
                )
        # The same tip shown twice to one user, feedback after the second show only: one row.
        again = f"{tag}-40-0"
        for j in (40, 41):
            await conn.execute(  # type: ignore[attr-defined]
                shown, f"{tag}-s{j}", again, f"eval-{tag}-0", t0 + timedelta(minutes=j),
                features, orjson.dumps(cands(40)).decode(),
            )  # fmt: skip
        await conn.execute(  # type: ignore[attr-defined]
            feedback, f"{tag}-f41", again, f"eval-{tag}-0", -1000, t0 + timedelta(minutes=41.5)
        )
        out = _cli("--production", "--since", "2199-01-01T00:00:00Z", "--policies",
                   "random,egreedy-v2", "--n-boot", "200", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        doc = orjson.loads(out.stdout.strip().splitlines()[-1])
        assert (doc["rows"], doc["logging"]["policy"]) == (37, "random")
        assert doc["policies"]["random"]["ips"]["value"] == pytest.approx(
            doc["logging"]["mean_reward"]["value"]
        )
    finally:
        await conn.execute("DELETE FROM tip_feedback WHERE event_id LIKE $1", f"{tag}-%")  # type: ignore[attr-defined]
        await conn.execute("DELETE FROM tip_shown WHERE event_id LIKE $1", f"{tag}-%")  # type: ignore[attr-defined]
