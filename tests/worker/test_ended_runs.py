"""The state of simulated runs that ended is removed: records, guard chunks, pools, counts;
production users and runs still going keep theirs."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import timedelta

import asyncpg
import pytest

from bandit.registry import make_policy
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.worker.app import Worker
from streams.worker.metrics import WorkerMetrics
from streams.worker.pipeline import Pipeline
from streams.worker.sink import FeedbackSink
from streams.worker.state import UserRecord, is_chunk_key, key_run
from tests.sim.simhelpers import run_rows
from tests.worker.events import T0, feedback, shown
from tests.worker.test_pipeline import SETTINGS, Letters, Rows, raw


def _sim(document: dict[str, object], run_id: str) -> dict[str, object]:
    return {**document, "source": "sim", "runId": run_id}


async def test_forget_runs_removes_a_run_s_records_chunks_pools_and_counts() -> None:
    store: dict[str, bytes] = {}
    p = Pipeline(SETTINGS, [make_policy("pooledmix-v3")], store, Rows(), Letters(), WorkerMetrics())
    offset = 0
    for i in range(8):  # enough settled tips that guards spill into chunks
        at = T0 + timedelta(minutes=i)
        batch = []
        for user, run in (("a", "r1"), ("b", "r2"), ("c", None)):
            pair = [shown(user, f"t{i}", at=at), feedback(user, f"t{i}", at=at)]
            for document in pair:
                batch.append(raw(_sim(document, run) if run else document, offset))
                offset += 1
        await p.handle(batch)
    await p.handle([raw(_sim(shown("a", "waiting"), "r1"), offset)])  # left waiting
    assert any(is_chunk_key(key) and key_run(key) == "r1" for key in store)
    assert p.pools.runs() == {"r1", "r2"}
    waiting_before = sum(shows for shows, _ in p._waiting.values())
    kept = {key: blob for key, blob in store.items() if key_run(key) != "r1"}

    gone = p.forget_runs({"r1"})

    assert gone > 1
    assert store == kept  # r2's and the production user's state untouched
    assert p.pools.runs() == {"r2"}
    assert p.pools.applied("r1") == 0
    assert p.pools.applied("r2") == 8
    assert sum(shows for shows, _ in p._waiting.values()) == waiting_before - 1
    assert "a\x1fr1" not in p.hot
    # A late event of the ended run starts its user afresh.
    late = T0 + timedelta(hours=1)
    await p.handle(
        [
            raw(_sim(shown("a", "late", at=late), "r1"), offset + 1),
            raw(_sim(feedback("a", "late", at=late), "r1"), offset + 2),
        ]
    )
    assert UserRecord.decode(store["a\x1fr1"]).pulls == 1


def test_pools_drop_a_run_and_keep_the_others() -> None:
    p = Pipeline(SETTINGS, [make_policy("pooledmix-v3")], {}, Rows(), Letters(), WorkerMetrics())
    pooled = p.pools.pooled[0]
    for run in ("r1", "r2"):
        p.pools.view(pooled, run, 0)
        p.pools.count_applied(run, 3, 5)
    p.pools.drop_run("r1")
    assert p.pools.runs() == {"r2"}
    assert p.pools.parts_of(0) == 1


@pytest.mark.integration
async def test_the_sink_names_the_runs_that_ended_long_enough_ago(
    database: str, pg: asyncpg.Connection
) -> None:
    tag = secrets.token_hex(4)
    runs = {
        f"{tag}-running": ("running", None),
        f"{tag}-finished-long-ago": ("finished", "2 hours"),
        f"{tag}-cancelled-long-ago": ("cancelled", "2 hours"),
        f"{tag}-failed-just-now": ("failed", "1 second"),
    }
    for run_id, (status, ago) in runs.items():
        await pg.execute(
            "INSERT INTO sim_runs (run_id, status, config, finished_at) VALUES ($1, $2, '{}', "
            "CASE WHEN $3::text IS NULL THEN NULL ELSE now() - $3::interval END)",
            run_id,
            status,
            ago,
        )
    sink = FeedbackSink(database, WorkerMetrics())
    await sink.start()
    try:
        ended = await sink.ended_runs([*runs, f"{tag}-never-recorded"], 3600.0)
        assert sorted(ended) == [f"{tag}-cancelled-long-ago", f"{tag}-finished-long-ago"]
        assert await sink.ended_runs([], 3600.0) == []
    finally:
        await sink.stop()
        await pg.execute("DELETE FROM sim_runs WHERE run_id = ANY($1::text[])", list(runs))


@pytest.mark.integration
async def test_a_worker_removes_an_ended_run_s_state(
    topics: Settings, database: str, pg: asyncpg.Connection
) -> None:
    config = SimConfig(policy="pooledmix-v3", via="worker", users=1, rounds=3, seed=7)
    async with WorkerProcess(topics, loglevel="info", sim_state_keep_s=1.0) as worker:
        summary = await run_closed_loop(worker.settings, config, quiet=True)
        run_id = summary["run_id"]
        users = sorted({row["user_id"] for row in await run_rows(pg, run_id)})
        assert len(users) == 5  # one user per persona
        # Gone within a few sweeps (1 s apart), every user of the run.
        deadline = asyncio.get_running_loop().time() + 30
        for user in users:
            path = f"/stats/egreedy/{user}?run_id={run_id}"
            while (status := (await worker.get(path))[0]) == 200:
                assert asyncio.get_running_loop().time() < deadline, "the run's state stayed"
                await asyncio.sleep(0.5)
            assert status == 404
    log = worker.log_path.read_text(errors="replace")
    removed = re.search(r"removed the state of 1 ended simulated runs: (\d+) keys", log)
    assert removed is not None, "no sweep removed the run"
    assert int(removed.group(1)) >= len(users)  # a record per user (and any guard chunks)


async def test_a_sweep_that_cannot_reach_postgresql_removes_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(Settings(sim_state_keep_s=60.0))
    monkeypatch.setattr(worker, "is_ready", lambda: True)
    monkeypatch.setattr(worker, "active_partitions", set)
    monkeypatch.setattr(worker.pipeline.pools, "runs", lambda: {"r1"})

    async def down(self: FeedbackSink, run_ids: object, ended_s: float) -> list[str]:
        raise ConnectionRefusedError("PostgreSQL is down")

    monkeypatch.setattr(FeedbackSink, "ended_runs", down)
    forgotten: list[set[str]] = []
    monkeypatch.setattr(worker.pipeline, "forget_runs", forgotten.append)
    assert await worker.forget_ended_runs() == 0
    assert forgotten == []
    assert "could not ask PostgreSQL which simulated runs ended" in caplog.text
    # A keep of 0 keeps every run's state for good: no query at all.
    caplog.clear()
    keeper = Worker(Settings(sim_state_keep_s=0.0))
    monkeypatch.setattr(keeper, "is_ready", lambda: True)
    assert await keeper.forget_ended_runs() == 0
    assert "could not ask" not in caplog.text
