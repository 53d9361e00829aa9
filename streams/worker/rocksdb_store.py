"""The state table on disk: faust's RocksDB store (rocksdict), partitioned by key.

Why: the in-memory store is rebuilt from the whole changelog on every start, about 8,000
records a second through faust's recovery (``python -m bench.restart``: 121 s for 1,000,000
users). RocksDB keeps each partition's records and the last changelog offset it applied
in ``TIPSTREAM_DATA_DIR``, so a restarted worker reads only the changelog's tail.

faust's store finds the partition of a write from the *current event*, and looks through
every partition's database for a read outside one. The worker reads and writes outside any
event (whole batches, expiry sweeps, admin requests), so here the partition always comes
from the key, as it does for the changelog (``StateTable.partition_for_key``).
"""

from __future__ import annotations

from typing import Any

from faust.stores import STORES, rocksdb

__all__ = ["ROCKSDB_STORE_URL", "PartitionedRocksDBStore", "rocksdb_options"]

# faust picks a table's store by its URL's scheme, from this registry.
ROCKSDB_STORE_URL = "tipstream-rocksdb://"
STORES.aliases["tipstream-rocksdb"] = f"{__name__}:PartitionedRocksDBStore"


def rocksdb_options(memory_mb: float, partitions: int) -> dict[str, int]:
    """faust's RocksDB options for one memory budget shared by the partitions' databases.

    faust opens a database per partition, each with its own write buffers (3 of 64 MiB by
    default) and block cache (2 GiB): a worker's memory then grows with the data it reads
    (``python -m bench.liveness``, 10 minutes: 280 to 731 MiB). Here each database gets an
    equal share: half for two write buffers, half for its block cache.

    >>> rocksdb_options(64, 8)
    {'write_buffer_size': 2097152, 'max_write_buffer_number': 2, 'block_cache_size': 4194304}
    """
    share = int(memory_mb * 2**20) // partitions
    return {
        "write_buffer_size": share // 4,
        "max_write_buffer_number": 2,
        "block_cache_size": share // 2,
    }


class PartitionedRocksDBStore(rocksdb.Store):
    """faust's RocksDB store, each key in the database of the partition its key names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["options"] = {**(kwargs.get("options") or {}), "driver": "rocksdict"}
        super().__init__(*args, **kwargs)

    def _partition(self, key: bytes) -> int:
        partition = self.table.partition_for_key(self._decode_key(key))
        assert partition is not None  # StateTable always names one
        return int(partition)

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._db_for_partition(self._partition(key)).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_partition(self._partition(key)).get(key)
        return value

    def _del(self, key: bytes) -> None:
        self._db_for_partition(self._partition(key)).delete(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None
