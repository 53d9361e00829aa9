"""Kafka records to events: decoded and checked, or a dead letter saying why not.

Pure (no state, no I/O): the pipeline decodes each batch's records here, and
``streams.worker.lookahead`` decodes later batches' records ahead, while a batch waits.
Beyond the schema (``schemas.events``), a record's Kafka key must be its ``userId``, and
its partition the one the key maps to (murmur2, as Kafka's default partitioner): an event in
the wrong place would be joined in the wrong place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import DecodeError, TipFeedback, TipShown, decode_feedback, decode_shown
from streams.settings import Settings
from streams.worker.partitioning import partition_for

__all__ = ["DeadLetter", "RawEvent", "decode_event"]


class RawEvent(NamedTuple):
    """What the pipeline needs of a Kafka record (faust's ``Message``, or a test's); a
    NamedTuple, built several times faster than a frozen dataclass, once per event."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: RawEvent
    code: str
    detail: str
    # What is known of the event, for the log line (the Kafka key when it did not decode).
    user_id: str | None = None
    event_id: str | None = None
    run_id: str | None = None

    def log_context(self) -> dict[str, object]:
        """``extra=`` for the log record: the ids where known, the code and the source."""
        return {
            "user_id": self.user_id,
            "event_id": self.event_id,
            "run_id": self.run_id,
            "code": self.code,
            "topic": self.event.topic,
            "partition": self.event.partition,
            "offset": self.event.offset,
        }

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("x-error-code", self.code.encode()),
            ("x-error-detail", self.detail.encode()[:1000]),
            ("x-source-topic", self.event.topic.encode()),
            ("x-source-partition", str(self.event.partition).encode()),
            ("x-source-offset", str(self.event.offset).encode()),
        ]


def decode_event(raw: RawEvent, settings: Settings) -> TipShown | TipFeedback | DeadLetter:
    """The event in ``raw``, or the dead letter that says why it is not one."""
    if raw.topic == settings.topic_shown:
        decoded: TipShown | TipFeedback | DecodeError = decode_shown(
            raw.value, settings.max_event_bytes
        )
    else:
        decoded = decode_feedback(raw.value, settings.max_event_bytes)
    if isinstance(decoded, DecodeError):
        return DeadLetter(raw, decoded.code, decoded.detail, _key_text(raw.key))
    ids = (decoded.user_id, decoded.event_id, decoded.run_id)
    if raw.key is None or raw.key != decoded.user_id.encode():
        detail = f"Kafka key {raw.key!r} is not userId {decoded.user_id!r}"
        return DeadLetter(raw, "key_mismatch", detail, *ids)
    expected = partition_for(decoded.user_id, settings.partitions)
    if expected != raw.partition:
        return DeadLetter(
            raw,
            "wrong_partition",
            f"key maps to partition {expected} of {settings.partitions} (murmur2), "
            f"event is in {raw.partition}: check the producer's partitioner",
            *ids,
        )
    return decoded


def _key_text(key: bytes | None) -> str | None:
    """The Kafka key (by contract the userId) as text, when it is short, printable UTF-8."""
    if key is None or len(key) > 128:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None
