"""The state table's changelog, sent a batch at a time beneath faust's per-record path.

faust sends each table write on its own: a ``FutureMessage`` through its producer buffer,
one aiokafka ``send`` with a future and a callback per record, and before each offset
commit a flush that wakes once per record. The worker writes one record per touched user
per batch, and py-spy on a loaded worker (``bench worker --profile``, 6 Dec 2026) put that
path at about a fifth of the worker's time. Here the table's writes are queued as they
happen (``StateTable.on_key_set``) and ``ChangelogBatches.send`` hands them to aiokafka as
one record batch per changelog partition (``streams.record_batches``):

- in write order per partition, which the guard chunks rely on (a chunk before the record
  that names it, a deletion after: ``streams.worker.state``); one producer's batches to one
  partition land in order, and aiokafka keeps one batch per partition in flight;
- the same records faust would write (the key serialized by faust, the value's bytes, a
  tombstone for a deletion), so faust's recovery and standbys read them as before;
- ``send`` returns once the broker has acknowledged every record, and raises if it did
  not: the worker acks a batch's input offsets only after that, so no offset is committed
  ahead of the state it produced (faust's path relied on its flush before a commit, which
  does not look at whether the sends succeeded);
- a store on disk (RocksDB) records the last delivered offset per partition, as faust's
  own callback does, so a restart reads only the changelog's tail.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from streams.record_batches import send_in_batches

__all__ = ["ChangelogBatches"]


class ChangelogBatches:
    """The changelog records a table's writes queued since the last ``send``."""

    __slots__ = ("_lock", "_table", "_unsent")

    def __init__(self, table: Any) -> None:
        self._table = table
        self._unsent: list[tuple[int, bytes, bytes | None]] = []
        self._lock = asyncio.Lock()  # one send at a time keeps each partition in order

    def add(self, partition: int, key: str, value: bytes | None) -> None:
        """Queue the record of one write (``value`` None: the key was deleted)."""
        # The key as faust's own path serializes it (JSON for a str key, which recovery
        # expects); the value is the record's bytes (the table's raw codec).
        encoded, _ = self._table.changelog_topic.prepare_key(key, self._table.key_serializer)
        self._unsent.append((partition, encoded, value))

    @property
    def unsent(self) -> int:
        return len(self._unsent)

    async def send(self) -> None:
        """Send what is queued, one record batch per partition, and wait until the broker
        has it all; raises (and the records stay unacknowledged) if a batch failed."""
        async with self._lock:
            records, self._unsent = self._unsent, []
            if not records:
                return
            producer = self._table.app.producer._ensure_producer()  # aiokafka's, started
            topic = self._table.changelog_topic.get_topic_name()
            for partition, count, delivery in await send_in_batches(producer, topic, records):
                metadata = await delivery
                self._table.data.set_persisted_offset(
                    TP(topic, partition), metadata.offset + count - 1
                )
