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

__all__ = ["ROCKSDB_STORE_URL", "PartitionedRocksDBStore"]

# faust picks a table's store by its URL's scheme, from this registry.
ROCKSDB_STORE_URL = "tipstream-rocksdb://"
STORES.aliases["tipstream-rocksdb"] = f"{__name__}:PartitionedRocksDBStore"


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
