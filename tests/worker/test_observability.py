"""A real worker watched by standard tools: with TIPSTREAM_LOG_FORMAT=json every line it
writes is one JSON object (faust's startup tables included), a dead letter's line carries
its ids, and /metrics exposes the process, latency, rebalance and state metrics."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from tests.worker.events import Producer, shown

pytestmark = pytest.mark.integration

SCORE_BODY: dict[str, Any] = {
    "candidates": [
        {"tip_id": "a", "features": {"priority": 1, "is_overdue": False, "task_age_days": 0}},
        {"tip_id": "b", "features": {"priority": 4, "is_overdue": True, "task_age_days": 9}},
    ],
    "context": {"hour_of_day": 8, "day_of_week": 1},
}


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line, parsed; fails naming the first line that is not a JSON object."""
    docs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
        assert isinstance(doc, dict), line
        assert {"ts", "level", "logger", "message"} <= set(doc), line
        docs.append(doc)
    return docs


async def _metrics(worker: WorkerProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


async def test_json_logs_and_metrics_of_a_real_worker(topics: Settings, database: str) -> None:
    user = f"user-{uuid.uuid4().hex[:10]}"
    worker = WorkerProcess(topics.model_copy(update={"log_format": "json"}), loglevel="info")
    async with worker:
        # A show under another user's key: dead-lettered key_mismatch, its ids known.
        event = shown(user, "x")
        async with Producer(worker.settings) as kafka:
            await kafka.send(worker.settings.topic_shown, event, key="someone-else")
        status, _ = await worker.post("/score/egreedy", {**SCORE_BODY, "user_id": user})
        assert status == 200
        status, _ = await worker.post("/score/egreedy", {"user_id": user})
        assert status == 400

        metrics = await _metrics(worker)
        deadline = asyncio.get_running_loop().time() + 30
        while "tipstream_deadlettered_total" not in metrics:
            assert asyncio.get_running_loop().time() < deadline, worker.log()
            await asyncio.sleep(0.5)
            metrics = await _metrics(worker)

        def value(name: str, **labels: str) -> float:
            matching = [v for got, v in metrics[name] if labels.items() <= got.items()]
            assert matching, (name, labels, metrics.get(name))
            return sum(matching)

        assert value("process_resident_memory_bytes") > 0
        assert value("process_cpu_seconds_total") > 0
        assert value("python_info") == 1
        assert value("tipstream_score_latency_seconds_count", outcome="ok") == 1
        assert value("tipstream_score_latency_seconds_count", outcome="bad_request") == 1
        assert value("tipstream_score_latency_seconds_bucket", outcome="ok", le="+Inf") == 1
        assert value("tipstream_rebalances_total") >= 1
        assert value("tipstream_ready") == 1
        assert value("tipstream_database_up") == 1
        assert value("tipstream_active_partitions") == worker.settings.partitions  # alone
        assert value("tipstream_ackgate_holes") == 0
    assert worker.process is not None
    assert worker.process.returncode == 0

    docs = _json_lines(worker.log_path.read_text())
    assert any(d["logger"].startswith("faust") for d in docs)
    # faust's tables (e.g. the subscription) were multi-line records: now one line each.
    assert any("\n" in d["message"] and d["logger"].startswith("faust") for d in docs)
    letters = [d for d in docs if d.get("code") == "key_mismatch"]
    assert len(letters) == 1, docs[-20:]
    assert letters[0]["user_id"] == user
    assert letters[0]["event_id"] == event["eventId"]
    assert letters[0]["level"] == "WARNING"
    assert any(d["message"].startswith("rebalance complete") for d in docs)
