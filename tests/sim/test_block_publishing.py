"""A closed loop publishes each block's feedback together, after the block's shows.

Why: the worker learns a batch's rewards together, as in-process learns a block. Sent back
to back, a block's feedback goes out in one produce request, so the worker gets the block
in one fetch and learns what in-process learns (issue 10: the same computation)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from streams.settings import Settings
from streams.sim.config import SimConfig
from streams.sim.in_memory import play_in_memory
from streams.sim.publisher import Publisher

SETTINGS = Settings()


class Recording(Publisher):
    topics: list[str]

    async def send(self, topic: str, key: bytes, value: bytes, **kw: Any) -> None:
        Recording.topics.append(topic)
        await super().send(topic, key, value, **kw)

    async def send_many(self, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
        Recording.topics.append("many: " + ",".join(sorted({m[0] for m in messages})))
        Recording.topics += [m[0] for m in messages]
        await super().send_many(messages)


def test_each_blocks_feedback_follows_its_shows_together(monkeypatch: pytest.MonkeyPatch) -> None:
    Recording.topics = []
    monkeypatch.setattr("streams.sim.in_memory.Publisher", Recording)
    config = SimConfig(policy="pooledmix-v3", users=2, rounds=3, seed=1, concurrency=4)
    asyncio.run(play_in_memory(config))
    shown, feedback = SETTINGS.topic_shown, SETTINGS.topic_feedback
    blocks = [4, 4, 2]  # 5 personas × 2 users, in blocks of 4
    together = [f"many: {feedback}"]
    expected = [t for n in blocks for t in [shown] * n + together + [feedback] * n] * config.rounds
    assert Recording.topics == expected
