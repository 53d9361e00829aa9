"""The restart benchmark on a small state: the pre-filled changelog is what the worker
recovers (the figures measure a real recovery), before and after a kill -9."""

from __future__ import annotations

import pytest

from bench.restart import run
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
async def test_a_worker_recovers_the_prefilled_users_after_kill_9(
    database: str, settings: Settings, store: str
) -> None:
    figures = await run(users=3_000, tips=4, store=store)
    assert figures["users"] == 3_000
    assert figures["restart_after_kill9_healthy_s"] > 0
    assert figures["restart_after_kill9_first_feedback_visible_s"] > 0
