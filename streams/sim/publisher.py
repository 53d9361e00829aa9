"""The simulator's way onto Kafka: one producer configuration and bounded in-flight sends.

The closed loop, the external judge's phases, load mode and the load bench all send
through a :class:`Publisher`: at most ``max_in_flight`` messages wait for their
acknowledgement, so a slow broker slows the run down instead of growing a queue.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.record_batches import send_in_batches
from streams.settings import Settings
from streams.sim.config import SimFailedError
from streams.worker.partitioning import partition_for_bytes

__all__ = ["Message", "Publisher", "make_producer"]

Message = tuple[str, bytes, bytes]
"""One record to send: (topic, key, value)."""


def make_producer(settings: Settings, *, linger_ms: int = 5) -> AIOKafkaProducer:
    """The producer the simulator and the load bench use (default partitioner: murmur2)."""
    return AIOKafkaProducer(
        **settings.aiokafka_kwargs(),
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        acks=1,
        client_id="tipstream-sim",
    )


class Publisher:
    """Sends with at most ``max_in_flight`` unacknowledged messages; the first error is raised.

    Without a producer (a run played in memory, ``streams.sim.in_memory``) every message is
    counted and dropped.
    """

    def __init__(self, producer: AIOKafkaProducer | None, max_in_flight: int = 1000) -> None:
        self.producer = producer
        self.max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.sent = 0
        self.acked = 0
        self._error: BaseException | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._partitions: dict[str, int] = {}  # per topic, for send_many

    async def send(
        self, topic: str, key: bytes, value: bytes, *, timestamp_ms: int | None = None
    ) -> None:
        """Send one record; ``timestamp_ms``: its record time (default: the producer's clock)."""
        if self._error is not None:
            raise SimFailedError(f"Kafka send failed: {self._error!r}") from self._error
        if self.producer is None:
            self.sent += 1
            self.acked += 1
            return
        await self._slots.acquire()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._idle.clear()
        try:
            future = await self.producer.send(
                topic, value=value, key=key, timestamp_ms=timestamp_ms
            )
        except BaseException:
            self._release()
            raise
        self.sent += 1
        future.add_done_callback(functools.partial(self._done, 1))

    async def send_many(self, messages: Sequence[Message]) -> None:
        """``send`` for many messages at once, as record batches per partition
        (``streams.record_batches``): what load mode sends a burst with. The partition is the
        default partitioner's (murmur2 of the key), so the messages land where ``send``
        would put them."""
        if self._error is not None:
            raise SimFailedError(f"Kafka send failed: {self._error!r}") from self._error
        if self.producer is None:
            self.sent += len(messages)
            self.acked += len(messages)
            return
        for start in range(0, len(messages), self.max_in_flight):
            await self._send_batches(messages[start : start + self.max_in_flight])

    async def _send_batches(self, messages: Sequence[Message]) -> None:
        """At most ``max_in_flight`` messages: their slots, then their batches."""
        assert self.producer is not None
        by_topic: dict[str, list[tuple[int, bytes | None, bytes | None]]] = {}
        for topic, key, value in messages:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = len(
                    await self.producer.partitions_for(topic)
                )
            by_topic.setdefault(topic, []).append(
                (partition_for_bytes(key, partitions), key, value)
            )
        for _ in messages:  # a slot per message, as send takes
            await self._slots.acquire()
        self.in_flight += len(messages)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._idle.clear()
        handed = 0
        try:
            for topic, records in by_topic.items():
                for batch in await send_in_batches(self.producer, topic, records):
                    handed += batch.records
                    batch.delivery.add_done_callback(functools.partial(self._done, batch.records))
        finally:
            self._release(len(messages) - handed)  # what never reached aiokafka
        self.sent += len(messages)

    def _release(self, count: int = 1) -> None:
        if not count:
            return
        self.in_flight -= count
        for _ in range(count):
            self._slots.release()
        if self.in_flight == 0:
            self._idle.set()

    def _done(self, count: int, future: asyncio.Future[Any]) -> None:
        self._release(count)
        if future.cancelled():
            self._error = self._error or asyncio.CancelledError("send cancelled")
        elif future.exception() is not None:
            self._error = self._error or future.exception()
        else:
            self.acked += count

    async def drain(self) -> None:
        """Wait until every send so far is acknowledged; raise the first failure."""
        if self.producer is None:
            return
        await self.producer.flush()
        await self._idle.wait()
        if self._error is not None:
            raise SimFailedError(f"Kafka send failed: {self._error!r}") from self._error
