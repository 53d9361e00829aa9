"""``tipstream topics ensure``: create missing topics, refuse mismatched partition counts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.settings import Settings

__all__ = ["TopicLayoutError", "TopicReport", "ensure_topics"]


class TopicLayoutError(RuntimeError):
    """The input topics cannot be co-partitioned as they are."""


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    partitions: dict[str, int]


async def ensure_topics(settings: Settings) -> TopicReport:
    names = [settings.topic_shown, settings.topic_feedback, settings.topic_deadletter]
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
    await admin.start()
    try:
        # Listing never creates a topic; describing a missing one would, on a broker with
        # auto.create.topics.enable, at the broker's default partition count, not ours.
        listed = set(await admin.list_topics())
        missing = [name for name in names if name not in listed]
        existing = await _partition_counts(admin, [n for n in names if n in listed])
        if missing:
            await admin.create_topics(
                [NewTopic(n, settings.partitions, settings.replication_factor) for n in missing]
            )
            # A new topic's partitions reach the metadata a moment after it is created.
            for _ in range(100):
                existing = await _partition_counts(admin, names)
                if all(name in existing for name in names):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    shown, feedback = existing.get(settings.topic_shown), existing.get(settings.topic_feedback)
    if shown != feedback:
        raise TopicLayoutError(
            f"{settings.topic_shown} has {shown} partitions and {settings.topic_feedback} has "
            f"{feedback}: a user's shows and feedback must share a partition number, so both "
            "input topics need the same count"
        )
    if shown != settings.partitions:
        raise TopicLayoutError(
            f"input topics have {shown} partitions but TIPSTREAM_PARTITIONS={settings.partitions}:"
            " set it to the topics' count"
        )
    return TopicReport(missing, existing)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    if not names:  # describe_topics([]) would describe every topic
        return {}
    described = await admin.describe_topics(names)
    counts: dict[str, int] = {}
    for topic in described:
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[topic["topic"]] = len(topic["partitions"])
    return counts
