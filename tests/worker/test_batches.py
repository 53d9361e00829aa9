"""``FetchedBatches``: fetches merged into bounded batches, in order, nothing lost."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.batches import FETCH_MAX_WAIT_MS, BatchConsumerThread, FetchedBatches


def _fetch(*offsets: int) -> list[Any]:
    return cast("list[Any]", list(offsets))  # stand-ins for faust's messages


async def test_waiting_fetches_merge_into_one_batch_in_order() -> None:
    batches = FetchedBatches(max_events=10)
    assert batches.offer(_fetch(1, 2))
    assert batches.offer(_fetch(3))
    assert await batches.take() == [1, 2, 3]


async def test_a_batch_holds_at_most_max_events_and_the_rest_comes_next() -> None:
    batches = FetchedBatches(max_events=3)
    batches.offer(_fetch(1, 2))
    batches.offer(_fetch(3, 4, 5, 6, 7))
    assert await batches.take() == [1, 2, 3]
    assert await batches.take() == [4, 5, 6]
    assert await batches.take() == [7]


async def test_a_full_queue_refuses_the_fast_path_and_put_waits_for_room() -> None:
    batches = FetchedBatches(max_events=100, max_fetches=1)
    assert batches.offer(_fetch(1))
    assert not batches.offer(_fetch(2))
    waiting = asyncio.ensure_future(batches.put(_fetch(2)))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await batches.take() == [1]
    await waiting
    assert await batches.take() == [2]


async def test_clear_drops_what_waits_and_says_how_much() -> None:
    batches = FetchedBatches(max_events=2)
    batches.offer(_fetch(1, 2, 3))
    assert await batches.take() == [1, 2]  # 3 is carried to the next batch
    batches.offer(_fetch(4, 5))
    assert batches.clear() == 3
    batches.offer(_fetch(6))
    assert await batches.take() == [6]


async def test_the_worker_consumer_asks_the_broker_to_hold_a_fetch_briefly() -> None:
    """faust's 1.5 s fetch wait left the worker waiting with data on the broker
    (``FETCH_MAX_WAIT_MS``; bench.latency measures the effect)."""
    worker = Worker(Settings())
    thread = cast("Any", worker.app.consumer)._thread
    assert isinstance(thread, BatchConsumerThread)
    consumer = thread._create_worker_consumer(worker.app.transport)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500


async def test_an_aiokafka_without_the_fetch_wait_is_warned_of_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(Settings())
    thread = cast("Any", worker.app.consumer)._thread
    other = SimpleNamespace()  # an aiokafka consumer that keeps the wait elsewhere
    parent = aiokafka_driver.AIOKafkaConsumerThread
    monkeypatch.setattr(parent, "_create_worker_consumer", lambda self, transport: other)
    with caplog.at_level(logging.WARNING, logger="streams.worker.batches"):
        assert thread._create_worker_consumer(worker.app.transport) is other
    assert not hasattr(other, "_fetch_max_wait_ms")
    assert ["fetch wait" in r.getMessage() for r in caplog.records] == [True]


async def test_ahead_hands_out_each_waiting_message_once_in_order() -> None:
    batches = FetchedBatches(max_events=3)
    batches.offer(_fetch(1, 2))
    batches.offer(_fetch(3, 4, 5))
    assert batches.ahead(2) == [1, 2]
    assert batches.ahead(10) == [3, 4, 5]
    assert batches.ahead(10) == []
    assert await batches.take() == [1, 2, 3]  # taking changes nothing of what is waiting
    assert await batches.take() == [4, 5]


async def test_ahead_skips_what_a_batch_took_before_it_was_handed_out() -> None:
    batches = FetchedBatches(max_events=3)
    batches.offer(_fetch(1, 2))
    assert batches.ahead(1) == [1]
    batches.offer(_fetch(3, 4, 5))
    assert await batches.take() == [1, 2, 3]
    assert batches.ahead(10) == [4, 5]
    await batches.put(_fetch(6))
    assert await batches.take() == [4, 5, 6]
    assert batches.ahead(10) == []


async def test_ahead_forgets_what_clear_dropped() -> None:
    batches = FetchedBatches(max_events=3)
    batches.offer(_fetch(1, 2))
    assert batches.ahead(1) == [1]
    batches.clear()
    batches.offer(_fetch(7))
    assert batches.ahead(10) == [7]
    assert await batches.take() == [7]
    assert batches.ahead(10) == []
