"""A batch's offsets are acked only once its production shows are written, in batch order,
while the next batch runs; a batch from before a rebalance is never acked (faust reads it
again). The worker's own ``process_messages`` with a fake consumer and pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.decoding import RawEvent

SETTINGS = Settings()


@dataclass(eq=False)
class Message:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1
    timestamp: float = 1_600_000_000.0  # event times are not "now"
    key: bytes = b"u"
    value: bytes = b"{}"
    acked: bool = False


@dataclass
class Consumer:
    acked: list[int] = field(default_factory=list)
    _committed_offset: dict[TP, int] = field(default_factory=dict)
    _unacked_messages: set[Any] = field(default_factory=set)

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


def worker_with(shows_writes: list[asyncio.Future[None] | None]) -> tuple[Worker, Consumer]:
    """A worker whose pipeline returns these shows' writes, batch after batch."""
    worker = Worker(SETTINGS)
    consumer = Consumer()
    topic = SETTINGS.topic_shown
    consumer._committed_offset[TP(topic, 0)] = 0
    worker.app.consumer = consumer  # type: ignore[assignment]
    worker.app.consumer_generation_id = 1
    worker.ack_gate.install(consumer)
    writes = iter(shows_writes)

    async def handle(batch: Sequence[RawEvent]) -> asyncio.Future[None] | None:
        return next(writes)

    class Changelog:
        async def send(self) -> None:
            return None

    worker.pipeline.handle = handle  # type: ignore[method-assign]
    worker.table.changelog = Changelog()  # type: ignore[assignment]
    return worker, consumer


def batch(first: int, n: int = 2, generation: int = 1) -> list[Any]:
    return [Message(SETTINGS.topic_shown, 0, first + i, generation) for i in range(n)]


async def test_acks_wait_for_the_shows_write_and_keep_batch_order() -> None:
    loop = asyncio.get_running_loop()
    first_shows: asyncio.Future[None] = loop.create_future()
    second_shows: asyncio.Future[None] = loop.create_future()
    second_shows.set_result(None)  # written at once
    worker, consumer = worker_with([first_shows, second_shows, None])
    await worker.process_messages(batch(0))
    assert consumer.acked == []  # its shows are still being written
    second = asyncio.ensure_future(worker.process_messages(batch(2)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done()  # the next batch ends by waiting for the first one's acks
    assert consumer.acked == []  # not out of order, though its own shows are written
    first_shows.set_result(None)
    await second
    await worker.process_messages(batch(4))  # no shows: acked as soon as the ones before
    await worker.batch_acks.done()
    assert consumer.acked == [0, 1, 2, 3, 4, 5]
    assert worker.ack_gate.holes() == {}


async def test_a_batch_from_before_a_rebalance_is_not_acked() -> None:
    shows: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    worker, consumer = worker_with([shows])
    await worker.process_messages(batch(0))
    worker.app.consumer_generation_id = 2  # a rebalance while the shows were written
    shows.set_result(None)
    await worker.batch_acks.done()
    assert consumer.acked == []  # faust reads the batch again from the committed offset


async def test_a_failed_shows_write_raises_in_the_next_batch_and_acks_nothing() -> None:
    shows: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    worker, consumer = worker_with([shows, None])
    await worker.process_messages(batch(0))
    shows.set_exception(RuntimeError("tip_shown refused the batch"))
    with pytest.raises(RuntimeError, match="refused"):
        await worker.process_messages(batch(2))
    assert consumer.acked == []
