"""The console's routes through aiohttp's test client, against the real PostgreSQL (and, for
the runs it starts, the real broker): what each route shows, the token, the launch."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.console.app import create_app
from streams.console.views import LAUNCHER
from streams.settings import Settings
from streams.sim.store import EventRow, SimStore, connect_pool

TOKEN = "console-test-token"


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(database, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def client(pool: asyncpg.Pool, topics: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    settings = topics.model_copy(update={"admin_token": topics.admin_token.__class__(TOKEN)})
    app = create_app(settings, pool=pool)
    async with TestClient(TestServer(app)) as client:
        yield client


def _world(seed: int) -> dict[str, Any]:
    return {"seed": seed, "judge": "rule", "personas": [{"name": "a"}, {"name": "b"}]}


async def _stored_run(
    pool: asyncpg.Pool, policy: str, seed: int, bonus: float, *, finish: bool = True
) -> str:
    """A run of 2 personas × 1 user × 4 rounds written as the simulator writes it."""
    run_id = f"test-console-{secrets.token_hex(4)}"
    store = SimStore(pool, run_id)
    config = {"policy": policy, "judge": "rule", "via": "inprocess", "seed": seed, "users": 1,
              "rounds": 4, "persona_names": ["a", "b"], "personas_path": "standard",
              "world": _world(seed)}  # fmt: skip
    await store.create_run(config)
    for round_ in range(4):
        for persona in ("a", "b"):
            reward = min(1.0, 0.1 * round_ + bonus + (0.2 if persona == "a" else 0.0))
            await store.add(
                EventRow(
                    run_id=run_id,
                    event_id=f"{persona}-{round_}",
                    round=round_,
                    user_id=f"user-{persona}",
                    persona=persona,
                    tip_id="t1",
                    action="done" if reward > 0.3 else "snooze",
                    dwell_ms=2000,
                    reward_milli=round(reward * 1000),
                    policy=policy,
                    propensity=0.5,
                    explored=False,
                    features={},
                    expected_reward=None,
                    occurred_at=datetime.now(UTC),
                )
            )
    await store.flush()
    if finish:
        await store.finish_run("finished", events=store.written, mean_reward=0.3)
    return run_id


@pytest.fixture
async def runs(pool: asyncpg.Pool) -> AsyncIterator[dict[str, str]]:
    made = {
        "a": await _stored_run(pool, "random", 5, 0.0),
        "b": await _stored_run(pool, "egreedy-v1", 5, 0.25),
        "other_seed": await _stored_run(pool, "random", 6, 0.0),
        "running": await _stored_run(pool, "random", 5, 0.0, finish=False),
    }
    try:
        yield made
    finally:
        await pool.execute("DELETE FROM sim_runs WHERE run_id = ANY($1)", list(made.values()))


async def test_runs_are_listed_with_status_and_progress(
    client: TestClient[Any, Any], runs: dict[str, str]
) -> None:
    response = await client.get("/api/runs")
    assert response.status == 200
    listed = {r["run_id"]: r for r in (await response.json())["runs"]}
    assert listed[runs["a"]]["status"] == "finished"
    assert listed[runs["a"]]["progress"] == 1.0
    running = listed[runs["running"]]
    assert running["status"] == "running"
    assert (running["events"], running["expected_events"], running["progress"]) == (8, 8, 1.0)
    page = await client.get("/")
    text = await page.text()
    assert page.status == 200
    assert runs["b"] in text
    assert 'id="start-run"' in text


async def test_a_run_page_has_the_curve_and_the_tables(
    client: TestClient[Any, Any], runs: dict[str, str]
) -> None:
    response = await client.get(f"/runs/{runs['b']}")
    assert response.status == 200
    text = await response.text()
    assert "<svg" in text
    assert "<polyline" in text
    assert 'id="personas"' in text
    assert 'id="actions"' in text
    assert "95% CI" in text  # the interval columns
    document = await (await client.get(f"/api/runs/{runs['b']}")).json()
    assert document["run"]["status"] == "finished"
    assert document["summary"]["events"] == 8
    rewards = [min(1.0, 0.1 * r + 0.25 + (0.2 if p == "a" else 0.0)) for r in range(4)
               for p in "ab"]  # fmt: skip
    assert document["summary"]["mean_reward"] == pytest.approx(sum(rewards) / 8, abs=1e-3)
    svg = await client.get(f"/runs/{runs['b']}/curve.svg")
    assert svg.content_type == "image/svg+xml"
    assert (await client.get("/runs/no-such-run")).status == 404
    assert (await client.get("/api/runs/no-such-run")).status == 404


async def test_two_runs_are_compared_by_pairs(
    client: TestClient[Any, Any], runs: dict[str, str]
) -> None:
    response = await client.get("/compare", params={"a": runs["a"], "b": runs["b"]})
    assert response.status == 200
    text = await response.text()
    assert 'id="comparison"' in text
    assert "B (egreedy-v1) better" in text  # B is 0.25 better on every pair: its interval > 0
    refused = await client.get("/compare", params={"a": runs["a"], "b": runs["other_seed"]})
    assert refused.status == 400
    assert "different seeds (5 vs 6)" in await refused.text()
    missing = await client.get("/compare", params={"a": runs["a"], "b": "no-such-run"})
    assert missing.status == 404


@pytest.mark.parametrize(
    "auth",
    [{}, {"data": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer wrong"}}],
    ids=["missing", "wrong-field", "wrong-header"],
)
async def test_starting_a_run_needs_the_admin_token(
    client: TestClient[Any, Any], auth: dict[str, Any]
) -> None:
    data = {"policy": "random", "rounds": "2", **auth.get("data", {})}
    response = await client.post(
        "/runs", data=data, headers=auth.get("headers", {}), allow_redirects=False
    )
    assert response.status == 403
    assert "needs the admin token" in await response.text()
    assert client.app is not None
    assert client.app[LAUNCHER].launches == {}


async def test_a_bad_form_is_400_and_starts_nothing(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/runs", data={"policy": "random", "users": "0", "token": TOKEN}, allow_redirects=False
    )
    assert response.status == 400
    assert "users must be between 1 and" in await response.text()
    assert client.app is not None
    assert client.app[LAUNCHER].launches == {}


async def test_a_started_run_finishes_in_sim_runs(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    form = {"policy": "random", "personas": "standard", "users": "1", "rounds": "3",
            "seed": "11", "judge": "rule", "via": "inprocess"}  # fmt: skip
    response = await client.post(
        "/runs",
        json=form,
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
    )
    assert response.status == 202
    run_id = (await response.json())["run_id"]
    try:
        assert client.app is not None
        launch = await client.app[LAUNCHER].wait(run_id)
        assert launch is not None
        assert launch.returncode == 0, launch.stderr
        status = (await (await client.get(f"/api/runs/{run_id}")).json())["run"]
        assert status["status"] == "finished"
        assert status["events"] == status["expected_events"] == 5 * 3
        assert status["seed"] == 11
    finally:
        await pool.execute("DELETE FROM sim_runs WHERE run_id = $1", run_id)


async def test_a_form_post_redirects_to_the_runs_page(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    form = {"policy": "random", "rounds": "1", "via": "inprocess", "token": TOKEN}
    response = await client.post("/runs", data=form, allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/?started=sim-")
    run_id = location.split("=", 1)[1]
    assert client.app is not None
    await client.app[LAUNCHER].wait(run_id)
    await pool.execute("DELETE FROM sim_runs WHERE run_id = $1", run_id)


async def test_a_run_that_fails_before_its_row_shows_why(
    pool: asyncpg.Pool, topics: Settings
) -> None:
    # The child's broker does not answer: simulate fails before it writes a row.
    settings = topics.model_copy(update={"kafka_bootstrap": "127.0.0.1:9"})
    async with TestClient(TestServer(create_app(settings, pool=pool))) as client:
        response = await client.post(
            "/runs",
            data={
                "policy": "random",
                "rounds": "1",
                "via": "inprocess",
                "token": settings.admin_token.get_secret_value(),
            },
            headers={"Accept": "application/json"},
        )
        run_id = (await response.json())["run_id"]
        assert client.app is not None
        launch = await client.app[LAUNCHER].wait(run_id)
        assert launch is not None
        assert launch.returncode == 1
        status = (await (await client.get(f"/api/runs/{run_id}")).json())["run"]
        assert status["status"] == "failed"
        assert "127.0.0.1:9" in status["error"]
        page = await (await client.get(f"/runs/{run_id}")).text()
        assert 'id="run-error"' in page
        assert "127.0.0.1:9" in page
        listed = (await (await client.get("/api/runs")).json())["runs"]
        assert listed[0]["run_id"] == run_id
        assert listed[0]["status"] == "failed"
