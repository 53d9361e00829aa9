"""Decoded user records kept between batches, bounded in bytes, least recently used out first.

Decoding a record (and its guard chunks) and its policies' models costs more than the rest of
a user's batch, so the pipeline keeps what it decoded. An entry is valid only while the store
still holds the bytes it was decoded from (``get`` compares them): a changelog recovery or an
admin reset replaces a record behind the cache's back.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from streams.worker.state import UserRecord

__all__ = ["DECODED_BYTES_PER_RECORD_BYTE", "DECODED_GUARD_BYTES", "HotCache", "HotEntry"]

# What a cached user counts for in the bound: an estimate of the memory its decoded objects
# take, measured with tracemalloc (6 Dec 2026): a record with 70 settled tips (909 bytes
# encoded, 67 guards in chunks) takes 2,507 bytes decoded and its pooledmix-v3 state 1,402,
# about 4 bytes a byte of the record; each guard from a chunk about 350 bytes decoded (48
# packed). Counting 48 for those let a 16 MiB cache hold about 100 MiB.
DECODED_BYTES_PER_RECORD_BYTE = 4
DECODED_GUARD_BYTES = 350


@dataclass(slots=True)
class HotEntry:
    """A decoded record and its models, valid while the store still holds ``blob``."""

    blob: bytes
    record: UserRecord
    models: dict[str, Any]
    size: int  # what it counts for in the bound


class HotCache:
    """At most ``max_bytes`` of decoded records (by the estimate above), by state key."""

    __slots__ = ("_entries", "bytes", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._entries: OrderedDict[str, HotEntry] = OrderedDict()  # least recent first
        self.bytes = 0
        self.max_bytes = max_bytes

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __getitem__(self, key: str) -> HotEntry:
        return self._entries[key]

    def keys(self) -> list[str]:
        """The cached keys, least recently used first."""
        return list(self._entries)

    def entries(self) -> list[HotEntry]:
        return list(self._entries.values())

    def get(self, key: str, blob: bytes | None) -> HotEntry | None:
        """The entry decoded from ``blob`` (what the store holds now), else None; an entry
        of other bytes is dropped. Equal bytes, not the same object: a store on disk returns
        a new one on every read."""
        entry = self._entries.get(key)
        if entry is not None and blob == entry.blob:
            self._entries.move_to_end(key)
            return entry
        self.forget(key)
        return None

    def put(self, key: str, blob: bytes, record: UserRecord, models: dict[str, Any]) -> None:
        self.forget(key)
        size = DECODED_BYTES_PER_RECORD_BYTE * len(blob) + DECODED_GUARD_BYTES * len(
            record.archived
        )
        self._entries[key] = HotEntry(blob, record, models, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            self.bytes -= self._entries.popitem(last=False)[1].size

    def forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
