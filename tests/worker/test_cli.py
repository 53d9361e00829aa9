"""``tipstream topics ensure`` and ``tipstream worker``: exit codes and refusals."""

from __future__ import annotations

import secrets
import subprocess

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.settings import Settings
from tests.processes import run_module

pytestmark = pytest.mark.integration


def tipstream(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module("streams.cli", *args, settings=settings, timeout_s=120)


async def test_topics_ensure_creates_then_refuses_mismatched_inputs(
    settings: Settings, database: str
) -> None:
    suffix = secrets.token_hex(4)
    fresh = settings.model_copy(
        update={
            "topic_shown": f"cli.shown.{suffix}",
            "topic_feedback": f"cli.feedback.{suffix}",
            "topic_deadletter": f"cli.dead.{suffix}",
            # Not the broker's default (8): the dev broker auto-creates topics, and a
            # metadata request for a missing topic used to create it with 8 partitions.
            "partitions": 3,
        }
    )
    created = tipstream(fresh, "topics", "ensure")
    assert created.returncode == 0, created.stderr
    assert f"cli.shown.{suffix}: 3 partitions (created)" in created.stdout
    assert f"cli.dead.{suffix}: 3 partitions (created)" in created.stdout
    again = tipstream(fresh, "topics", "ensure")
    assert f"cli.shown.{suffix}: 3 partitions (exists)" in again.stdout

    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"cli.feedback4.{suffix}", 4, 1)])
    finally:
        await admin.close()
    mismatched = fresh.model_copy(update={"topic_feedback": f"cli.feedback4.{suffix}"})
    for args in (("topics", "ensure"), ("worker",)):
        refused = tipstream(mismatched, *args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "same count" in refused.stderr


def test_worker_rejects_an_unknown_policy(settings: Settings, database: str) -> None:
    result = tipstream(settings.model_copy(update={"policy": "no-such-policy"}), "worker")
    assert result.returncode == 2
    assert "no-such-policy" in result.stderr
