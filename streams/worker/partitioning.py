"""Which partition a key belongs to: Kafka's default partitioner, murmur2 of the key bytes.

The worker checks every event against it (an event in the wrong partition would be joined
in the wrong place), and the state table uses it to keep each user's state in the
changelog partition numbered like the user's input partition.

>>> partition_for("user-42", 8) == partition_for("user-42", 8) < 8
True
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["partition_for", "partition_for_bytes"]


def partition_for_bytes(key: bytes, partitions: int) -> int:
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=65_536)
def partition_for(key: str, partitions: int) -> int:
    """Partition of a UTF-8 string key (cached: hot users are looked up on every event)."""
    return partition_for_bytes(key.encode(), partitions)
