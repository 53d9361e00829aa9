"""``tipstream topics ensure`` and ``tipstream worker``: exit codes and refusals."""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
from pathlib import Path

import pytest
import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.cli.worker import GC_THRESHOLDS, claim_data_dir, tune_gc
from streams.dev.worker_process import WorkerProcess, free_port
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


async def test_a_second_worker_on_the_same_data_dir_is_refused(
    topics: Settings, database: str
) -> None:
    async with WorkerProcess(topics) as first:
        second = tipstream(first.settings.model_copy(update={"web_port": free_port()}), "worker")
        assert second.returncode == 2, second.stderr
        assert "another worker" in second.stderr
        assert f"TIPSTREAM_DATA_DIR={first.data_dir}" in second.stderr
        status, _ = await first.get("/healthz")
        assert status == 200  # the first one is undisturbed


def test_the_data_dir_lock_is_one_per_app_id(settings: Settings, tmp_path: Path) -> None:
    here = settings.model_copy(update={"data_dir": str(tmp_path)})
    held = claim_data_dir(here)
    try:
        with pytest.raises(typer.Exit) as refused:
            claim_data_dir(here)
        assert refused.value.exit_code == 2
        other_app = claim_data_dir(here.model_copy(update={"app_id": "another-app"}))
        os.close(other_app)
    finally:
        os.close(held)
    os.close(claim_data_dir(here))  # free again once the holder closed it


def test_the_worker_freezes_start_up_and_collects_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's way
        gc.collect()  # still collects what is made after
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
