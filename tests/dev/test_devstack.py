"""The local dev stack (``tipstream dev up|down|env|status``): idempotence, real requests."""

from __future__ import annotations

import shlex
import subprocess

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from schemas.migrations import load_migrations, migrate
from streams.dev import devstack
from streams.dev.kafka import KAFKA_VERSION, kafka_metadata
from streams.dev.local import KAFKA_PORT, POSTGRES_PORT
from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT, Settings
from tests.processes import REPO, run_module

DEV_PORTS_MOVED = (KAFKA_PORT, POSTGRES_PORT) != (
    DEV_KAFKA_PORT,
    DEV_POSTGRES_PORT,
)


def _dev(*args: str) -> subprocess.CompletedProcess[str]:
    # The dev sub-app's own entry point: the same typer commands `tipstream dev` mounts.
    return run_module("streams.dev.devstack", *args, timeout_s=240)


def _pids() -> tuple[int | None, int | None]:
    status = devstack.check()
    return status.kafka_pid, status.postgres_pid


# ---------------------------------------------------------------- without the stack


def test_env_lines_parse_to_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = {}
    for line in devstack.env_lines():
        word, assignment = shlex.split(line)
        assert word == "export"
        name, _, value = assignment.partition("=")
        exported[name] = value
    assert set(exported) == {"TIPSTREAM_KAFKA_BOOTSTRAP", "TIPSTREAM_DATABASE_URL"}
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    configured = Settings()
    assert configured.kafka_bootstrap == f"127.0.0.1:{KAFKA_PORT}"
    assert configured.database_url.endswith(f"@127.0.0.1:{POSTGRES_PORT}/tipstream")
    if DEV_PORTS_MOVED:
        return  # TIPSTREAM_DEV_*_PORT moved the stack off the defaults on purpose
    # The contract: the defaults already work with `tipstream dev up`.
    for name in list(exported):
        monkeypatch.delenv(name)
    defaults = Settings()
    assert (defaults.kafka_bootstrap, defaults.database_url) == (
        configured.kafka_bootstrap,
        configured.database_url,
    )


def test_server_properties_template_is_single_node_kraft() -> None:
    text = (REPO / "dev" / "kafka" / "server.properties.in").read_text()
    props = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert "127.0.0.1:{kafka_port}" in props["listeners"]
    pom = (REPO / "dev" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


# ---------------------------------------------------------------- with the stack


def test_up_twice_is_idempotent_and_restarts_nothing(stack: devstack.StackStatus) -> None:
    # Normally this checkout's own servers (pids known); in a second checkout while another
    # one's stack runs, `up` uses those instead and says so. Either way, nothing restarts.
    before = _pids()
    for _ in range(2):
        result = _dev("up")
        assert result.returncode == 0, result.stdout + result.stderr
        for name, pid in zip(("kafka", "postgres"), before, strict=True):
            expected = f"{name}: already running" if pid else f"{name}: using"
            assert expected in result.stdout, result.stdout
    assert _pids() == before


def test_status_and_env_commands(stack: devstack.StackStatus) -> None:
    status = _dev("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "kafka    up" in status.stdout
    assert "postgres up" in status.stdout
    env = _dev("env")
    assert env.returncode == 0
    assert env.stdout.splitlines() == devstack.env_lines()


async def test_broker_answers_a_metadata_request(stack: devstack.StackStatus) -> None:
    cluster = await kafka_metadata()
    brokers = cluster["brokers"]
    assert isinstance(brokers, list)
    assert [(b["host"], b["port"]) for b in brokers] == [("127.0.0.1", KAFKA_PORT)]


async def test_topics_fixture_gives_eight_partition_topics(topics: Settings) -> None:
    admin = AIOKafkaAdminClient(**topics.aiokafka_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics(
            [topics.topic_shown, topics.topic_feedback, topics.topic_deadletter]
        )
    finally:
        await admin.close()
    assert sorted(len(t["partitions"]) for t in described) == [8, 8, 8]
    assert topics.app_id.startswith("tipstream-test-")

    producer = AIOKafkaProducer(**topics.aiokafka_kwargs())
    await producer.start()
    try:
        sent = await producer.send_and_wait(topics.topic_shown, b"{}", key=b"user-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topics.topic_shown,
        **topics.aiokafka_kwargs(),
        group_id=topics.app_id,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [r for batch in got.values() for r in batch]
    assert [(r.key, r.partition) for r in records] == [(b"user-1", sent.partition)]


async def test_database_answers_sql(pg: asyncpg.Connection) -> None:
    assert "PostgreSQL" in await pg.fetchval("SELECT version()")
    assert await pg.fetchval("SELECT current_user") == "tipstream"
    tables = {
        r["table_name"]
        for r in await pg.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert {"schema_migrations", "tip_feedback"} <= tables


async def test_migrations_are_safe_to_run_twice(pg: asyncpg.Connection) -> None:
    assert await migrate(pg) == []
    assert await migrate(pg) == []
    versions = {r["version"] for r in await pg.fetch("SELECT version FROM schema_migrations")}
    # (a superset when the database is shared with a checkout that has newer migrations)
    assert {m.version for m in load_migrations()} <= versions
