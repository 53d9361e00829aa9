"""Whole fetched batches from Kafka to the pipeline, beneath faust's per-event path.

Why: faust hands a stream one event at a time. Per event its fetch loop starts four tasks
(``wait_first``: the delivery, a flow stop, the service's stop or crash, whichever ends
first), decodes an ``Event``, queues it, and the stream takes it off the queue: faust's own
empty agent tops out at 9,000–12,000 events/s on our 2-core machines before any work is done
(``python -m bench worker``). The pipeline works on batches anyway.

So for the source topics ``BatchConsumer`` takes each fetch (aiokafka ``getmany``) whole and
hands its messages on as one batch (``FetchedBatches``), once per fetch instead of once per
event. Everything else stays faust's: group membership and rebalances, flow control, read
offsets and gaps, commits (the worker acks each message once it is processed, through the ack
gate), and the changelog's recovery and standbys, whose topics keep faust's per-event path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import Message
from mode import Service

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "BatchConsumer",
    "BatchConsumerThread",
    "BatchTransport",
    "FetchedBatches",
    "WorkerApp",
]


class FetchedBatches:
    """Fetched source messages waiting for the pipeline, a few fetches at most.

    The bound is the backpressure: while the pipeline is busy the fetch loop waits here (and
    aiokafka's prefetch fills its own buffer), so memory stays bounded. ``take`` merges what
    is waiting into one batch of at most ``max_events``: the busier the worker, the bigger
    its batches, and an idle worker processes a lone event at once.

    ``ahead`` hands out waiting messages of later batches once each, in order, for the
    pipeline to decode while it waits for a write (``streams.worker.lookahead``).
    """

    def __init__(self, max_events: int, max_fetches: int = 4) -> None:
        self.max_events = max_events
        self._queue: asyncio.Queue[list[Message]] = asyncio.Queue(max_fetches)
        self._carry: list[Message] = []
        # What waits, in order, is the messages ``ahead`` handed out, then ``_unseen``.
        self._unseen: deque[Message] = deque()
        self._seen = 0

    def offer(self, messages: list[Message]) -> bool:
        """Queue the fetch if there is room now (the fast path: no task to wait in)."""
        if self._queue.full():
            return False
        self._queue.put_nowait(messages)
        self._unseen.extend(messages)
        return True

    async def put(self, messages: list[Message]) -> None:
        await self._queue.put(messages)
        self._unseen.extend(messages)

    async def take(self) -> list[Message]:
        """The next batch, in fetch order (so in offset order within each partition)."""
        batch = self._carry or await self._queue.get()
        while len(batch) < self.max_events and not self._queue.empty():
            batch = batch + self._queue.get_nowait()
        self._carry = batch[self.max_events :]
        taken = min(len(batch), self.max_events)
        if taken <= self._seen:
            self._seen -= taken
        else:
            for _ in range(min(taken - self._seen, len(self._unseen))):
                self._unseen.popleft()
            self._seen = 0
        return batch[: self.max_events]

    def ahead(self, n: int) -> list[Message]:
        """Up to ``n`` waiting messages not handed out before, oldest first."""
        out = [self._unseen.popleft() for _ in range(min(n, len(self._unseen)))]
        self._seen += len(out)
        return out

    @property
    def waiting(self) -> bool:
        """Fetched messages wait for the pipeline (it is busy)."""
        return bool(self._carry) or not self._queue.empty()

    def clear(self) -> int:
        """Drop what is waiting (after a rebalance faust reads again from the committed
        offsets); return how many messages were dropped."""
        dropped = len(self._carry)
        self._carry = []
        while not self._queue.empty():
            dropped += len(self._queue.get_nowait())
        self._unseen.clear()
        self._seen = 0
        return dropped


log = logging.getLogger(__name__)

# How long the broker may hold a fetch that finds no new data (faust hard-codes 1,500 ms).
# aiokafka keeps one fetch in flight per broker and leaves out of it every partition whose
# records still wait in its buffer. While the pipeline works through a fetch, the next fetch
# holds only partitions with nothing new, and the broker kept it the whole 1.5 s: at 2,000
# events/s of live load the worker waited 1-1.4 s every 2 s with data on the broker, and a
# third of the events were read 1-2.5 s late.
FETCH_MAX_WAIT_MS = 100


class BatchConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, with a short fetch wait (``FETCH_MAX_WAIT_MS``)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka's consumer passes it to its fetcher in ``start``; faust offers no setting.
        if hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        else:  # another aiokafka: latency suffers, nothing else does
            log.warning("cannot shorten aiokafka's fetch wait: fetches may wait 1.5 s")
        return consumer


class BatchConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, handing the source topics' fetches on whole.

    The fetch loop mirrors faust's ``Consumer._drain_messages`` (read offsets, gaps, flow
    control, the consumer generation) with one difference: source messages are collected per
    fetch and put on ``batches``; the rest go to faust's per-event callback as before.
    """

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: Any, offset: int) -> None:
        """Seek in the consumer's own thread, where aiokafka's consumer runs.

        faust's ``_seek`` calls aiokafka's ``seek`` from the app's thread; it drops the
        partition's fetched records while the consumer thread may be reading them, which
        crashed a worker's fetcher (``KeyError`` in ``Fetcher.fetched_records``).
        """
        await cast("Any", self)._thread.seek_wait({partition: offset})

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_stopped = cast("Service", self)._stopped.is_set
        fetcher_stopped = cast("Service", fetcher)._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        callback = self.callback
        app = cast("WorkerApp", self.app)
        batches, batch_topics = app.batches, app.batch_topics
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # getmany can return at once, in a loop
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # a rebalance is under way: as faust does, seek back
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # faust logs and carries on too
                        self.log.warning("exception performing seek when flow not active %r", exc)
                    continue
                generation = self.app.consumer_generation_id
                batch: list[Message] = []
                others: list[Message] = []
                for tp, tp_records in records.items():
                    buffered = self._buffered_partitions
                    if active is not None and tp not in active and tp not in buffered:
                        continue
                    for record in tp_records:
                        offset = record.offset
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue  # behind what was read: faust drops these too
                        if last and offset - last > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, last + 1, offset)
                        read_offset[tp] = offset
                        message = self._to_message(tp, record)
                        (batch if tp.topic in batch_topics else others).append(message)
                if self.app.consumer_generation_id != generation:
                    continue  # a rebalance began during the fetch: faust seeks afresh
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                for other in others:
                    await self.wait_first(callback(other), self.suspend_flow.wait())
                if batch and not batches.offer(batch):
                    await self.wait_first(batches.put(batch), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


class WorkerApp(faust.App):
    """A faust app whose consumer puts the fetches of ``batch_topics`` on ``batches``."""

    def __init__(
        self, *args: Any, batch_topics: frozenset[str], batches: FetchedBatches, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_topics = batch_topics
        self.batches = batches

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)
