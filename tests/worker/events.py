"""Building and producing test events onto the real topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from streams.settings import Settings

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(user: str, tip: str, *, at: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "TipShown",
        "schemaVersion": 1,
        "eventId": f"show-{uuid.uuid4()}",
        "tipId": tip,
        "userId": user,
        "servedAt": iso(at),
        "policy": "egreedy-v1",
        "propensity": 0.9125,
        "features": {
            "hourOfDay": 9,
            "dayOfWeek": 4,
            "priority": 3,
            "isOverdue": True,
            "taskAgeDays": 2.5,
        },
        **extra,
    }


def feedback(
    user: str,
    tip: str,
    action: str = "done",
    dwell: int | None = 30_000,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "TipFeedback",
        "schemaVersion": 1,
        "eventId": event_id or f"fb-{uuid.uuid4()}",
        "tipId": tip,
        "userId": user,
        "action": action,
        "occurredAt": iso(at or T0 + timedelta(seconds=40)),
        **extra,
    }
    if dwell is not None:
        document["dwellMs"] = dwell
    return document


class Producer:
    """An aiokafka producer with Kafka's default partitioner (murmur2 of the key)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=5)  # type: ignore[arg-type]

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: dict[str, Any] | bytes,
        *,
        key: str | bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        if isinstance(value, dict):
            key = key if key is not None else value["userId"]
            value = orjson.dumps(value)
        await self._producer.send_and_wait(
            topic,
            value,
            key=key.encode() if isinstance(key, str) else key,
            partition=partition,
            timestamp_ms=timestamp_ms,
        )

    async def shows(self, *events: dict[str, Any], timestamp_ms: int | None = None) -> None:
        for event in events:
            await self.send(self.settings.topic_shown, event, timestamp_ms=timestamp_ms)

    async def feedbacks(self, *events: dict[str, Any], timestamp_ms: int | None = None) -> None:
        for event in events:
            await self.send(self.settings.topic_feedback, event, timestamp_ms=timestamp_ms)


async def wait_for_rows(
    pg: asyncpg.Connection, event_ids: Sequence[str], timeout_s: float = 60.0
) -> dict[str, asyncpg.Record]:
    """Poll tip_feedback until every event id has its row; return them by event id."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = await pg.fetch(
            "SELECT * FROM tip_feedback WHERE event_id = ANY($1)", list(event_ids)
        )
        found = {row["event_id"]: row for row in rows}
        if len(found) == len(set(event_ids)):
            return found
        if asyncio.get_running_loop().time() > deadline:
            missing = sorted(set(event_ids) - set(found))
            raise TimeoutError(f"rows missing after {timeout_s}s: {missing[:10]}")
        await asyncio.sleep(0.2)
