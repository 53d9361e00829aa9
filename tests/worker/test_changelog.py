"""The state table's changelog goes out a batch at a time (``streams/worker/changelog.py``):
per partition in write order, with faust's key encoding, split when a batch is full, and
delivered before ``send`` returns. The record batches are aiokafka's own; only the broker's
side of ``send_batch`` is played here (the restart tests and the fault matrix run it
against a real broker)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.state import key_partition


class Broker:
    """aiokafka's producer batch API; what it accepts goes into a log per partition."""

    def __init__(self, batch_size: int = 16_384, fail: bool = False) -> None:
        self.batch_size = batch_size
        self.fail = fail
        self.log: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        self.batches: dict[int, int] = defaultdict(int)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)  # no compression

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert batch.closed(), "a batch is closed before it is sent (else it lingers)"
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            delivery.set_exception(ConnectionError("broker gone"))
            return delivery
        base = len(self.log[partition])
        for record in DefaultRecordBatch(bytearray(batch._build())):
            self.log[partition].append((record.key, record.value))
        self.batches[partition] += 1
        delivery.set_result(SimpleNamespace(offset=base))
        return delivery


@pytest.fixture
def worker() -> Worker:
    return Worker(Settings(partitions=8))


def _attach(worker: Worker, broker: Broker) -> list[tuple[int, int]]:
    worker.app.producer._ensure_producer = lambda: broker  # type: ignore[method-assign]
    persisted: list[tuple[int, int]] = []
    worker.table.data.set_persisted_offset = lambda tp, offset: persisted.append(  # type: ignore[method-assign]
        (tp.partition, offset)
    )
    return persisted


async def test_writes_go_out_per_partition_in_write_order_with_faust_keys(worker: Worker) -> None:
    broker = Broker()
    persisted = _attach(worker, broker)
    table = worker.table
    keys = [f"user-{i}" for i in range(12)]
    for i, key in enumerate(keys):
        table[key] = b"v%d" % i
    table["user-3"] = b"again"
    del table["user-5"]
    assert table.changelog.unsent == 14
    await table.changelog.send()
    assert table.changelog.unsent == 0

    expected: dict[int, list[tuple[str, bytes | None]]] = defaultdict(list)
    for i, key in enumerate(keys):
        expected[key_partition(key, 8)].append((key, b"v%d" % i))
    expected[key_partition("user-3", 8)].append(("user-3", b"again"))
    expected[key_partition("user-5", 8)].append(("user-5", None))  # a tombstone
    got = {
        p: [(json.loads(k or b""), None if v is None else bytes(v)) for k, v in records]
        for p, records in broker.log.items()
    }
    assert got == dict(expected)
    assert all(n == 1 for n in broker.batches.values())  # one batch per partition
    assert sorted(persisted) == sorted((p, len(r) - 1) for p, r in expected.items())
    # What faust's own path would have sent as the key.
    encoded, _ = table.changelog_topic.prepare_key("user-1", table.key_serializer)
    assert broker.log[key_partition("user-1", 8)][0][0] == encoded


async def test_a_full_batch_is_sent_and_the_next_one_started(worker: Worker) -> None:
    broker = Broker(batch_size=512)
    persisted = _attach(worker, broker)
    partition = key_partition("u", 8)
    for i in range(20):
        worker.table["u"] = bytes([i]) * 100
    await worker.table.changelog.send()
    assert [bytes(v or b"")[0] for _, v in broker.log[partition]] == list(range(20))
    assert broker.batches[partition] > 1
    assert max(offset for p, offset in persisted if p == partition) == 19


async def test_a_record_larger_than_a_batch_goes_alone_in_its_own(worker: Worker) -> None:
    broker = Broker(batch_size=512)
    _attach(worker, broker)
    worker.table["u"] = b"small"
    worker.table["u"] = b"x" * 4096
    worker.table["u"] = b"after"
    await worker.table.changelog.send()
    partition = key_partition("u", 8)
    assert [len(v or b"") for _, v in broker.log[partition]] == [5, 4096, 5]
    assert broker.batches[partition] == 3


async def test_a_failed_delivery_raises_so_the_batch_is_never_acked(worker: Worker) -> None:
    persisted = _attach(worker, Broker(fail=True))
    worker.table["u"] = b"state"
    with pytest.raises(ConnectionError):
        await worker.table.changelog.send()
    assert persisted == []


async def test_nothing_queued_sends_nothing(worker: Worker) -> None:
    broker = Broker()
    _attach(worker, broker)
    await worker.table.changelog.send()
    assert not broker.log
