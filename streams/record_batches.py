"""Records handed to aiokafka a whole record batch at a time, beneath its per-record send.

aiokafka's ``send`` costs, per record, a future, a lookup of the partition's open batch and
a callback. Where many records go out at once (the worker's changelog after a batch, the
simulator's load mode), they are grouped by partition here, in order, appended to record
batches of aiokafka's own (``create_batch``), closed, and handed over with ``send_batch``:
one future per batch. A closed batch is sent at once instead of lingering (``linger_ms``)
for records that will not come.

Records of one partition keep their order: one producer sends one batch per partition at a
time and retries a batch before later ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["SentBatch", "send_in_batches"]


class SentBatch(NamedTuple):
    """A record batch handed to aiokafka: where it goes, how many records, its delivery."""

    partition: int
    records: int
    delivery: asyncio.Future[Any]  # the broker's RecordMetadata of the batch's first record


async def send_in_batches(
    producer: Any, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None]]
) -> list[SentBatch]:
    """Send ``(partition, key, value)`` records, one batch per partition (more when one
    fills), each partition's in the given order; returns the batches, to await."""
    by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for partition, key, value in records:
        by_partition.setdefault(partition, []).append((key, value))
    sent: list[SentBatch] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is not None:
                continue
            # The batch is full: send it, and start the next with this record. An empty
            # batch takes any one record, even one over its size (Kafka's rule); one over
            # the broker's limit fails its delivery.
            sent.append(await _send(producer, batch, topic, partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
        sent.append(await _send(producer, batch, topic, partition))
    return sent


async def _send(producer: Any, batch: Any, topic: str, partition: int) -> SentBatch:
    batch.close()
    count = batch.record_count()
    delivery: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    return SentBatch(partition, count, delivery)
