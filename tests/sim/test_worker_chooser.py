"""The simulator as a client of the worker: 503 and 504 are retried with bounded backoff,
other errors fail at once, and every retry is said on the log.

A real HTTP server on loopback stands in for the worker's ``/score/egreedy`` so that the
test can make it answer 503/504 on demand.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from bandit.base import Moment, Task
from judges.personas import load_personas
from streams.settings import Settings
from streams.sim.choosers import WorkerChooser
from streams.sim.config import SimFailedError, SimUser

TASKS = [Task("a", 4, True, 1.0), Task("b", 1, False, 2.0)]


class FakeWorker:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls = 0

    async def score(self, request: web.Request) -> web.Response:
        self.calls += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return web.json_response({"error": f"status {status}"}, status=status)
        body = await request.json()
        return web.json_response(
            {"tip_id": body["candidates"][1]["tip_id"], "score": 0.5,
             "policy": "egreedy-v1", "propensity": 0.9, "explored": False}
        )  # fmt: skip


@pytest.fixture
async def serve(unused_tcp_port: int) -> AsyncIterator[tuple[Settings, list[FakeWorker]]]:
    workers: list[FakeWorker] = []
    app = web.Application()

    async def route(request: web.Request) -> web.Response:
        return await workers[0].score(request)

    app.router.add_post("/score/egreedy", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        yield Settings(web_port=unused_tcp_port), workers
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WorkerChooser, "first_backoff_s", 0.001)


async def choose(settings: Settings) -> tuple[int, WorkerChooser]:
    user = SimUser(persona=load_personas()[0], index=0, user_id="u0")
    async with aiohttp.ClientSession() as session:
        chooser = WorkerChooser(settings, "egreedy-v1", "run-1", session)
        picked = await chooser.choose(user, Moment(9, 1), TASKS, np.random.default_rng(0))
    return picked.index, chooser


async def test_503_and_504_are_retried_and_logged(
    serve: tuple[Settings, list[FakeWorker]], caplog: pytest.LogCaptureFixture
) -> None:
    settings, workers = serve
    workers.append(FakeWorker([503, 503, 504]))
    with caplog.at_level(logging.WARNING):
        index, chooser = await choose(settings)
    assert index == 1
    assert workers[0].calls == 4
    assert chooser.retries == {503: 2, 504: 1}
    # Within one log interval: one line, which counts what it summarises.
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 1
    assert "503 for u0" in lines[0]
    assert "1 × 503" in lines[0]


async def test_every_retry_is_a_line_when_the_interval_is_zero(
    serve: tuple[Settings, list[FakeWorker]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(WorkerChooser, "retry_log_every_s", 0.0)
    settings, workers = serve
    workers.append(FakeWorker([503, 503, 504]))
    with caplog.at_level(logging.WARNING):
        await choose(settings)
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 3
    assert "1 × 504" in lines[2]


async def test_retries_are_bounded(serve: tuple[Settings, list[FakeWorker]]) -> None:
    settings, workers = serve
    workers.append(FakeWorker([503] * 100))
    with pytest.raises(SimFailedError, match=f"503 for u0 {WorkerChooser.attempts} times"):
        await choose(settings)
    assert workers[0].calls == WorkerChooser.attempts


async def test_other_errors_fail_at_once(serve: tuple[Settings, list[FakeWorker]]) -> None:
    settings, workers = serve
    workers.append(FakeWorker([400]))
    with pytest.raises(SimFailedError, match="answered 400"):
        await choose(settings)
    assert workers[0].calls == 1
