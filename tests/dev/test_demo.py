"""``tipstream demo`` end to end (a few rounds), as a newcomer runs it, on its own topics."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bandit.registry import DEFAULT_POLICY
from streams.dev.demo import DEMO_PARTITIONS, demo_settings
from streams.dev.worker_process import child_env
from streams.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_demo_settings_move_topics_and_group_only(settings: Settings) -> None:
    demo = demo_settings(settings)
    assert (demo.topic_shown, demo.topic_feedback, demo.topic_deadletter) == (
        "demo." + settings.topic_shown,
        "demo." + settings.topic_feedback,
        "demo." + settings.topic_deadletter,
    )
    assert demo.app_id == settings.app_id + "-demo"
    assert demo.partitions == DEMO_PARTITIONS
    assert demo.policy == settings.policy == DEFAULT_POLICY
    assert (demo.kafka_bootstrap, demo.database_url) == (
        settings.kafka_bootstrap,
        settings.database_url,
    )


async def test_demo_runs_the_served_policy_through_the_worker_and_reports(
    topics: Settings, database: str, tmp_path: Path
) -> None:
    # Runs in a scratch directory (the reports land there) on the demo's own topics.
    env = {**child_env(topics), "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "demo", "--users", "1", "--rounds", "3",
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=300)
        assert process.returncode == 0, out.decode()[-3000:] + err.decode()[-3000:]
        text = out.decode()
        assert f"demo: {DEFAULT_POLICY} through the worker" in text
        assert f"A = random, B = {DEFAULT_POLICY}" in text
        for pattern in ("reports/*/compare-*.png", "reports/*/compare-*.html"):
            assert await asyncio.to_thread(lambda p=pattern: list(tmp_path.glob(p))), pattern
    finally:
        demo = demo_settings(topics)
        own = {demo.topic_shown, demo.topic_feedback, demo.topic_deadletter}
        admin = AIOKafkaAdminClient(**topics.aiokafka_kwargs())
        await admin.start()
        with contextlib.suppress(Exception):
            names = await admin.list_topics()
            await admin.delete_topics([n for n in names if n in own or n.startswith(demo.app_id)])
        await admin.close()
