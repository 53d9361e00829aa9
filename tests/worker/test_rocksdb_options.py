"""The RocksDB store gets the memory budget of the settings, not faust's per-database defaults."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.rocksdb_store import PartitionedRocksDBStore


def test_the_worker_opens_rocksdb_within_its_memory_budget(tmp_path: Path) -> None:
    settings = Settings(state_store="rocksdb", rocksdb_memory_mb=64, data_dir=str(tmp_path))
    store = Worker(settings).table.data
    assert isinstance(store, PartitionedRocksDBStore)
    options = store.rocksdb_options
    per_database = (
        options.write_buffer_size * options.max_write_buffer_number + options.block_cache_size
    )
    assert per_database * settings.partitions == 64 * 2**20
    # faust's defaults would be 3 x 64 MiB of write buffers and a 2 GiB cache per partition.
    assert options.block_cache_size == 4 * 2**20
