"""The broker away for longer than a request's timeout: the worker's offset timer says so
and tries again, and the worker stays up (no broker needed: the consumer is a fake that
times out as aiokafka does)."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from streams.settings import Settings
from streams.worker.app import Worker


class _BrokerAway:
    """A consumer whose offset requests time out, as while the broker is down."""

    def __init__(self, settings: Settings) -> None:
        self.tps = [TP(settings.topic_feedback, p) for p in range(settings.partitions)]
        self.away = True

    def assignment(self) -> set[TP]:
        return set(self.tps)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.away:
            raise KafkaTimeoutError("Failed to get offsets by times in 90000 ms")
        return dict.fromkeys(tps, 5)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        if self.away:
            raise KafkaTimeoutError("Failed to get offsets by times in 90000 ms")
        return dict.fromkeys(tps, 0)


async def test_offsets_that_time_out_while_the_broker_is_away_do_not_stop_the_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bench.chaos (broker-restart, 7 Dec): the broker was away 80 s, the 2 s timer's end
    offsets timed out after 90 s, and the error, raised out of a faust timer, stopped the
    worker. Now the timer says so and tries again."""
    settings = Settings()
    worker = Worker(settings)
    consumer = _BrokerAway(settings)
    monkeypatch.setattr(type(worker.app), "consumer", property(lambda self: consumer))
    monkeypatch.setattr(type(worker.app), "rebalancing", property(lambda self: False))
    monkeypatch.setattr(worker.app.flow_control, "is_active", lambda: True)
    published: list[dict[TP, int]] = []
    monkeypatch.setattr(worker, "_publish_lag", published.append)
    with caplog.at_level(logging.WARNING, logger="streams.worker.app"):
        await worker.reread_missed()
        await worker.reread_missed(lag_only=True)
    assert published == []
    assert caplog.text.count("could not read the input offsets from Kafka") == 2
    consumer.away = False  # the broker is back: the next tick reads the lag
    await worker.reread_missed(lag_only=True)
    assert published == [dict.fromkeys(consumer.tps, 5)]
