"""``tipstream evaluate``: loading from sim_events and from tip_shown ⋈ tip_feedback, the
``--since`` argument, and the CLI on real rows."""

from __future__ import annotations

import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import numpy as np
import orjson
import pytest

from bandit.base import Moment, Task
from bandit.ope.logged import EvaluationInputError
from schemas import migrations
from schemas.events import TipShown
from streams.analysis.evaluate import production_rows, sim_rows
from streams.analysis.load import PRODUCTION_QUERY, connect, load_production_log
from streams.cli.evaluate import parse_since
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.worker.metrics import WorkerMetrics
from streams.worker.sink import FeedbackSink


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
    with pytest.raises(EvaluationInputError):
        parse_since("yesterday", now)


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


async def _json_types(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'tip_shown' AND column_name IN ('features', 'candidates')",
        schema,
    )
    return {r["column_name"]: r["data_type"] for r in rows}


async def test_jsonb_show_rows_survive_the_json_migration(
    pg: asyncpg.Connection, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tip_shown`` holding jsonb rows (migrations up to 0003) is migrated to json (0004):
    the rows keep their values, the sink writes new ones, and ``evaluate --production``'s
    loader reads both back as Python objects. In a schema of its own (search_path), so the
    shared tables are left alone."""
    schema = f"test_json_{secrets.token_hex(4)}"
    dsn = f"{database}?search_path={schema}"
    t0 = datetime(2199, 1, 1, tzinfo=UTC)
    # Not jsonb's canonical text (key order, spacing, 2.50; é and a backslash among the
    # candidates): what comes back must be the same values, whatever the text.
    features = '{"taskAgeDays": 2.50, "hourOfDay": 8,"dayOfWeek":1, "priority":2, "isOverdue":true}'
    cands = [{"tipId": "t-é", "priority": 2, "isOverdue": True, "taskAgeDays": 2.5},
             {"tipId": "t\\n2", "priority": 4, "isOverdue": False, "taskAgeDays": 0}]  # fmt: skip
    await pg.execute(f"CREATE SCHEMA {schema}")
    conn = await asyncpg.connect(dsn)
    sink = FeedbackSink(dsn, WorkerMetrics())
    try:
        everything = migrations.load_migrations
        with monkeypatch.context() as before:
            before.setattr(
                migrations, "load_migrations", lambda: [m for m in everything() if m.version <= 3]
            )
            assert await migrations.migrate(conn) == [1, 2, 3]
        assert await _json_types(conn, schema) == {"features": "jsonb", "candidates": "jsonb"}
        for i, (tip, candidates) in enumerate([("t-é", cands), ("t\\n2", cands), ("t-é", None)]):
            await conn.execute(
                "INSERT INTO tip_shown (event_id, tip_id, user_id, served_at, policy,"
                " propensity, features, candidates)"
                " VALUES ($1, $2, 'u', $3, 'random', 0.5, $4::jsonb, $5::jsonb)",
                f"s{i}", tip, t0 + timedelta(minutes=i), features,
                None if candidates is None else orjson.dumps(candidates).decode(),
            )  # fmt: skip
        assert await migrations.migrate(conn) == [m.version for m in everything() if m.version > 3]
        assert await _json_types(conn, schema) == {"features": "json", "candidates": "json"}

        # The sink writes the new column type (its statement casts to json).
        await sink.start()
        show = msgspec.json.decode(orjson.dumps({
            "type": "TipShown", "schemaVersion": 1, "eventId": "s3", "tipId": "t-é",
            "userId": "u", "servedAt": "2199-01-01T00:03:00Z", "policy": "random",
            "propensity": 0.5, "features": orjson.loads(features), "candidates": cands,
        }), type=TipShown)  # fmt: skip
        await sink.write([], [show])
        await sink.write([], [show])  # a replay writes no second row
        for i, reward in enumerate((1000, -1000, 400, -200)):
            await conn.execute(
                "INSERT INTO tip_feedback (event_id, tip_id, user_id, action, reward_milli,"
                " status, occurred_at) VALUES ($1, $2, 'u', 'done', $3, 'applied', $4)",
                f"f{i}", ("t-é", "t\\n2", "t-é", "t-é")[i], reward,
                t0 + timedelta(minutes=i, seconds=30),
            )  # fmt: skip

        reader = await connect(dsn)
        try:
            records = await reader.fetch(PRODUCTION_QUERY, t0)
        finally:
            await reader.close()
        assert [r["event_id"] for r in records] == ["s0", "s1", "s2", "s3"]
        assert all(r["features"] == orjson.loads(features) for r in records)
        assert [r["candidates"] for r in records] == [cands, cands, None, cands]

        log = await load_production_log(dsn, t0, epsilon=0.1)
        assert [(r.index, r.reward) for r in log.rows] == [(0, 1.0), (1, -1.0), (0, -0.2)]
        assert log.rows[0].tasks[0] == Task("t-é", 2, True, 2.5)
        assert log.rows[0].moment == Moment(8, 1)
        assert log.skipped == {"no candidate list": 1}
    finally:
        await sink.stop()
        await conn.close()
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")
