"""The faust table that holds the users' state records, changelogged a batch at a time.

Records are bytes (``streams.worker.state``), keyed by user (and run); each key's changelog
partition is its user's input partition, whatever event is being processed.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.worker.changelog import ChangelogBatches
from streams.worker.state import key_partition

__all__ = ["StateTable"]


class StateTable(faust.Table[str, bytes]):
    """A table whose changelog partition comes from the key, not from the current event.

    The key's user part hashes (murmur2) to the user's input partition, so records stay
    co-partitioned with the input topics while batches, expiry sweeps and admin requests
    write them outside any single event's context.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.value_serializer != "raw":
            raise TypeError("StateTable holds bytes: its changelog carries them as they are")
        self.changelog = ChangelogBatches(self)

    def partition_for_key(self, key: Any) -> int:
        return key_partition(str(key), self.partitions or self.app.conf.topic_partitions)

    def get(self, key: str, default: Any = None) -> Any:
        """One read of the store. faust's (``Mapping.get``) asks the store whether it holds
        the key and then reads it: two RocksDB reads, each with its key encoded, which with
        the RocksDB store were a fifth of a loaded worker's time (py-spy, 6 Dec 2026).
        faust's monitor is not told of the read (nothing here reads its table counters)."""
        try:
            return self.data[key]
        except KeyError:
            return default

    # A write's changelog record is queued, not sent on its own: ``changelog.send`` sends a
    # batch's records together (streams/worker/changelog.py says why).
    def on_key_set(self, key: Any, value: Any) -> None:
        self.changelog.add(self.partition_for_key(key), str(key), value)

    def on_key_del(self, key: Any) -> None:
        self.changelog.add(self.partition_for_key(key), str(key), None)
