"""Shared fixtures: settings, the local stack (Kafka + PostgreSQL), a database, topics.

The stack is the one ``tipstream dev up`` runs (127.0.0.1:19092 and :15432). If it is not
up, the ``stack`` fixture starts it, so plain ``uv run pytest`` works too; if it cannot
start, the tests that need it fail loudly (they are never skipped: a green run must mean
the integration tests ran). Tests that use ``stack``, ``database``, ``pg`` or ``topics``
are marked ``integration`` automatically: ``pytest -m "not integration"`` runs the rest.

pytest-asyncio runs in auto mode with one session-wide event loop (see pyproject).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.migrations import migrate
from streams.dev import devstack
from streams.dev.local import DATABASE_URL, KAFKA_BOOTSTRAP
from streams.settings import Settings

_STACK_FIXTURES = {"stack", "database", "pg", "topics"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings from the environment (defaults: the dev stack)."""
    return Settings()


def _is_dev_stack(settings: Settings) -> bool:
    return settings.kafka_bootstrap == KAFKA_BOOTSTRAP and settings.database_url == DATABASE_URL


@pytest.fixture(scope="session")
def stack(settings: Settings) -> devstack.StackStatus:
    """Kafka and PostgreSQL answer real requests; started with ``ensure_up()`` if needed."""

    def probe() -> devstack.StackStatus:
        return devstack.check(
            bootstrap=settings.kafka_bootstrap,
            database_url=settings.database_url,
            kafka_kwargs=settings.aiokafka_kwargs(),
        )

    status = probe()
    if status.up:
        return status
    if not _is_dev_stack(settings):
        pytest.fail(
            f"the configured stack does not answer (kafka ok={status.kafka_ok} at "
            f"{settings.kafka_bootstrap}, postgres ok={status.postgres_ok}); TIPSTREAM_* "
            "point away from the dev stack, so it is not started here",
            pytrace=False,
        )
    try:
        devstack.ensure_up(quiet=True)
    except devstack.DevStackError as err:
        pytest.fail(f"`tipstream dev up` failed: {err}", pytrace=False)
    status = probe()
    if not status.up:
        pytest.fail(
            f"dev stack started but does not answer: {status}; see var/kafka/kafka.log "
            "and var/postgres/postgres.log",
            pytrace=False,
        )
    return status


@pytest.fixture(scope="session")
async def database(stack: devstack.StackStatus, settings: Settings) -> str:
    """The database URL, with every migration applied."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return settings.database_url


@pytest.fixture
async def pg(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh asyncpg connection to the migrated database."""
    conn = await asyncpg.connect(database)
    try:
        yield conn
    finally:
        await conn.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Until every partition of every topic has a leader (produce would fail before)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            t["error_code"] == 0
            and len(t["partitions"]) == partitions
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready and len(described) == len(names):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics {names} have no leaders after {timeout_s}s: {described}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def topics(stack: devstack.StackStatus, settings: Settings) -> AsyncIterator[Settings]:
    """Fresh, uniquely named shown/feedback/dead-letter topics (8 partitions each).

    Returns the settings pointing at them, with a unique ``app_id`` (so a unique consumer
    group and faust data dir); the topics are deleted afterwards.
    """
    suffix = secrets.token_hex(4)
    names = {
        "topic_shown": f"tips.shown.{suffix}",
        "topic_feedback": f"tips.feedback.{suffix}",
        "topic_deadletter": f"tips.deadletter.{suffix}",
    }
    partitions = settings.partitions
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name, num_partitions=partitions, replication_factor=settings.replication_factor
                )
                for name in names.values()
            ]
        )
        await _wait_for_leaders(admin, list(names.values()), partitions)
        yield settings.model_copy(update={**names, "app_id": f"tipstream-test-{suffix}"})
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics(list(names.values()))
        await admin.close()
