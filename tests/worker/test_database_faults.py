"""PostgreSQL faults seen from the worker: health that tells the truth, clear start-up errors.

The worker reaches the real database through a TCP relay that the test can cut, so an
outage is injected for this worker alone (the shared server keeps running).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from streams.dev.worker_process import WorkerProcess, free_port
from streams.settings import Settings
from tests.processes import run_module
from tests.worker.events import Producer, feedback, shown, wait_for_rows

pytestmark = pytest.mark.integration


class Relay:
    """A loopback TCP relay to the database that can be cut and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones: the database is 'down'."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@127.0.0.1:{port}"))


@pytest.fixture
async def relayed(topics: Settings, database: str) -> AsyncIterator[tuple[WorkerProcess, Relay]]:
    """A ready worker whose only way to the database is a relay that the test can cut."""
    target = urlsplit(topics.database_url)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432)
    await relay.start()
    try:
        async with WorkerProcess(
            topics, database_url=via(topics.database_url, relay.port)
        ) as worker:
            yield worker, relay
    finally:
        await relay.cut()


async def health(worker: WorkerProcess) -> tuple[int, dict[str, object]]:
    return await worker.get("/healthz")


async def test_healthz_says_503_while_the_database_is_down_and_nothing_is_lost(
    relayed: tuple[WorkerProcess, Relay], topics: Settings, pg: asyncpg.Connection
) -> None:
    worker, relay = relayed
    await relay.cut()
    cut_at = time.monotonic()
    # Feedback arrives during the outage: it must be written once the database is back.
    run = uuid.uuid4().hex[:8]
    pairs = [(shown(f"db-{run}-{i}", "t"), feedback(f"db-{run}-{i}", "t")) for i in range(20)]
    async with Producer(topics) as kafka:
        for show, fb in pairs:
            await kafka.shows(show)
            await kafka.feedbacks(fb)
    # The writes of that feedback fail and are retried: 503 with the reason (and,
    # without traffic, the probe would report the outage after 10 s).
    while True:
        status, body = await health(worker)
        if status == 503:
            break
        assert time.monotonic() - cut_at < 30, body
        await asyncio.sleep(0.5)
    assert body["status"] == "unhealthy"
    assert "database" in str(body["reason"])
    assert "127.0.0.1" in str(body["reason"])
    assert f":{urlsplit(topics.database_url).password}@" not in str(body)  # no credentials

    await relay.start()
    rows = await wait_for_rows(pg, [fb["eventId"] for _, fb in pairs], timeout_s=60)
    assert {r["status"] for r in rows.values()} == {"applied"}
    for _ in range(60):
        if (await health(worker))[0] == 200:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(await health(worker))


def start_worker(settings: Settings) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_module("streams.cli", "worker", settings=settings, timeout_s=60)
    return result, time.monotonic() - started


def test_worker_refuses_wrong_database_credentials_in_one_line(
    settings: Settings, database: str
) -> None:
    parts = urlsplit(settings.database_url)
    user = parts.username or "tipstream"
    wrong = parts._replace(netloc=f"{user}:not-the-password@{parts.hostname}:{parts.port}")
    result, took = start_worker(settings.model_copy(update={"database_url": urlunsplit(wrong)}))
    assert result.returncode == 1, result.stderr
    assert took < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refused" in lines[0]
    assert f"{parts.hostname}:{parts.port}" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "not-the-password" not in result.stderr + result.stdout


def test_worker_exits_when_the_database_is_unreachable(settings: Settings, database: str) -> None:
    closed = via(settings.database_url, free_port())
    result, took = start_worker(settings.model_copy(update={"database_url": closed}))
    assert result.returncode == 1, result.stderr
    assert took < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach PostgreSQL at 127.0.0.1:" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


async def test_healthz_reports_an_idle_outage_after_ten_seconds(
    relayed: tuple[WorkerProcess, Relay],
) -> None:
    """No traffic, so no write fails: the probe alone must notice the database is gone."""
    worker, relay = relayed
    await relay.cut()
    cut_at = time.monotonic()
    while (status_body := await health(worker))[0] == 200:
        assert time.monotonic() - cut_at < 30, status_body
        await asyncio.sleep(0.5)
    waited = time.monotonic() - cut_at
    assert waited > 8, (waited, status_body)  # an outage is called after 10 s, not at once
    assert "unreachable" in str(status_body[1]["reason"])
