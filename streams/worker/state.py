"""Per-user state as kept in the worker's changelogged table, and its compact codec.

One record per (namespace, user) holds everything the join and the learner need, so that
one changelog write updates the model and the idempotence guard together: a replay after
a crash finds the guard and never applies a feedback twice. Guards from earlier writes
move to guard chunks (``UserRecord.spill``), so that a write stays small.

Keys: a production user's key is its ``userId``; a simulated user's is
``userId \\x1f runId`` (ids never hold control characters, the schema forbids them). Pooled
priors are not stored: they are rebuilt from these records (``streams.worker.pools``). Keys
that start with ``\\x1e`` held them in earlier versions; the worker deletes them.

>>> record = UserRecord()
>>> show = PendingShow("e1", 1000, "egreedy-v1", 0.9, 9, 0, 2, True, 3.0, 5000)
>>> record.pending_shows["t1"] = show
>>> record.policy_blobs["egreedy-v1"] = b"\\x00\\x01"
>>> again = UserRecord.decode(record.encode())
>>> again.pending_shows["t1"].propensity, again.policy_blobs
(0.9, {'egreedy-v1': b'\\x00\\x01'})

Guards are packed binary, about 40 bytes and the tip id per settled tip (JSON took about
107): the event id is kept as its 8-byte BLAKE2b digest, since the guard only asks "the same
event or another one?" (two ids of one tip colliding has odds of about 2⁻⁶⁴), and the policy
as an index into the record's list of policy names.

>>> record.settled["t0"] = Settled("applied", event_key("f0"), 750, 30000, "egreedy-v1", 0.9, 7)
>>> UserRecord.decode(record.encode()).settled["t0"] == record.settled["t0"]
True

The record keeps only its newest guards (at most ``GUARDS_IN_RECORD`` from earlier writes):
:meth:`UserRecord.spill` moves older ones into *guard chunks*, keys of their own, so that a
changelog write stays small for a user with a week of settled tips instead of carrying every
guard again. A chunk's key is the record's key, ``\\x1d`` and its number. Guards join the
newest chunk while it stays under ``CHUNK_MAX_BYTES``, so that a user read from the store
costs a few reads, not one per spill.

>>> for i in range(1, 6):
...     record.settled[f"t{i}"] = Settled("expired", event_key(f"s{i}"), None, None, None, None, 8)
>>> new, gone = record.spill(stored=set(record.settled) - {"t5"})
>>> sorted(record.settled), list(new), gone, record.guard("t0").reward_milli
(['t5'], [0], [], 750)
>>> for i in range(6, 10):
...     record.settled[f"t{i}"] = Settled("expired", event_key(f"s{i}"), None, None, None, None, 9)
>>> new, gone = record.spill(stored=set(record.settled))
>>> sorted(record.settled), list(new), len(decode_chunk(new[0])), record.next_chunk
([], [0], 10, 1)
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from bandit.base import Policy
from streams.worker.partitioning import partition_for

__all__ = [
    "CHUNK_MAX_BYTES",
    "CHUNK_SEPARATOR",
    "GUARDS_IN_RECORD",
    "LEGACY_SHARED_PREFIX",
    "SIM_SEPARATOR",
    "PendingFeedback",
    "PendingShow",
    "Settled",
    "UserRecord",
    "chunk_key",
    "decode_chunk",
    "encode_chunk",
    "event_key",
    "is_chunk_key",
    "is_legacy_shared_key",
    "key_partition",
    "key_run",
    "user_key",
    "user_state",
]

SIM_SEPARATOR = "\x1f"
CHUNK_SEPARATOR = "\x1d"
LEGACY_SHARED_PREFIX = "\x1e"  # pooled priors were stored under such keys before 2026-12
# Guards from earlier writes that a record keeps before spilling them to a chunk: with the
# serving policy's state (about 650 bytes) and tip ids as long as a UUID, a write stays
# under 1 KB.
GUARDS_IN_RECORD = 3
# A guard chunk grows up to this size, so that a chunk's write is as small as a record's.
# With chunks of one spill each (3 or 4 guards) a user read from the store cost one read a
# spill: about 15 for a user with 45 settled tips, the liveness run's bottleneck (6 Dec 2026).
CHUNK_MAX_BYTES = 1000
_FORMAT = 4  # 4: older guards in chunks (a format-3 reader would miss them, so it must refuse)
# 3: guards packed binary after the JSON; 2: guards as JSON rows, stamped with stream time,
# and the per-user guard floor; 1: the same, stamped with payload times (restamped on read).
_LEGACY_FORMATS = frozenset({1, 2, 3})
_PACKED_FORMATS = frozenset({3, 4})
_HEADER = struct.Struct("<BI")  # format version, JSON length
_BLOB = struct.Struct("<BI")  # name length, blob length
_GUARDS = struct.Struct("<I")  # how many guards follow the JSON
# tip id length; event key, kind, reward (milli), dwell, policy index, propensity, at_ms
_TIP_LENGTH = struct.Struct("<H")
_GUARD = struct.Struct("<8sBhqBdq")
_KINDS = ("applied", "expired")
_NO_REWARD, _NO_DWELL, _NO_POLICY = -32768, -1, 255


def event_key(event_id: str) -> bytes:
    """What a guard keeps of an event id: its 8-byte BLAKE2b digest."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def user_key(user_id: str, run_id: str | None) -> str:
    return user_id if run_id is None else f"{user_id}{SIM_SEPARATOR}{run_id}"


def chunk_key(key: str, number: int) -> str:
    """The key of guard chunk ``number`` of the record under ``key``."""
    return f"{key}{CHUNK_SEPARATOR}{number}"


def is_chunk_key(key: str) -> bool:
    return CHUNK_SEPARATOR in key


def key_partition(key: str, partitions: int) -> int:
    """The changelog partition of a state key (a record or its chunk): its user's input
    partition."""
    if key.startswith(LEGACY_SHARED_PREFIX):
        return int(key.rsplit(SIM_SEPARATOR, 1)[1])
    user_id = key.split(SIM_SEPARATOR, 1)[0].split(CHUNK_SEPARATOR, 1)[0]
    return partition_for(user_id, partitions)


def key_run(key: str) -> str | None:
    """The simulated run of a state key (a record or its chunk); None for a production user.

    >>> key_run(user_key("u", "r1")), key_run(chunk_key(user_key("u", "r1"), 2)), key_run("u")
    ('r1', 'r1', None)
    """
    if key.startswith(LEGACY_SHARED_PREFIX):
        return None
    _, separator, rest = key.partition(SIM_SEPARATOR)
    return rest.partition(CHUNK_SEPARATOR)[0] if separator else None


def is_legacy_shared_key(key: str) -> bool:
    return key.startswith(LEGACY_SHARED_PREFIX)


def user_state(policy: Policy, blob: bytes | None) -> Any:
    """A policy's per-user state from its stored bytes, or a fresh one."""
    return policy.decode_user(blob) if blob is not None else policy.new_user()


@dataclass(slots=True)
class PendingShow:
    """A served tip waiting for its feedback: what learning from it will need."""

    event_id: str
    served_at_ms: int
    policy: str
    propensity: float
    hour_of_day: int
    day_of_week: int
    priority: int
    is_overdue: bool
    task_age_days: float
    deadline_ms: int


@dataclass(slots=True)
class PendingFeedback:
    """A feedback that arrived before its show."""

    event_id: str
    action: str
    dwell_ms: int | None
    occurred_at_ms: int
    deadline_ms: int


@dataclass(slots=True)
class Settled:
    """A tip whose one learnable feedback is decided: the idempotence guard.

    ``kind`` is ``applied`` (learned from the event whose :func:`event_key` is ``event``) or
    ``expired`` (no feedback in time; ``event`` is then the show's). The row fields are kept
    so that a replay rewrites the very same ``tip_feedback`` row.
    ``at_ms`` is the *stream time* (Kafka record time) at which the tip was settled; -1 for a
    guard read from a format-1 record, whose time was a payload time: it is stamped anew.
    """

    kind: str
    event: bytes  # event_key(the event id)
    reward_milli: int | None
    dwell_ms: int | None
    policy: str | None
    propensity: float | None
    at_ms: int


@dataclass(slots=True)
class UserRecord:
    pulls: int = 0
    reward_milli_sum: int = 0
    last_updated_ms: int | None = None
    pending_shows: dict[str, PendingShow] = field(default_factory=dict)
    pending_feedback: dict[str, list[PendingFeedback]] = field(default_factory=dict)
    settled: dict[str, Settled] = field(default_factory=dict)
    policy_blobs: dict[str, bytes] = field(default_factory=dict)
    # Stream time below which guards were forgotten: shows older than this are not joined.
    guard_floor_ms: int = 0
    # Guard chunks (see spill): the live ones are numbered first_chunk .. next_chunk - 1.
    first_chunk: int = 0
    next_chunk: int = 0
    # Loaded beside the record by the store's owner (load_chunk), never encoded in it: the
    # chunks' guards, and the stream time of each chunk's newest guard.
    archived: dict[str, Settled] = field(default_factory=dict, compare=False)
    chunk_newest: dict[int, int] = field(default_factory=dict, compare=False)
    # The newest chunk's guards, which the next spill may add to.
    tail: dict[str, Settled] = field(default_factory=dict, compare=False)
    # (floor, the oldest chunk guard at or above it): computed once, not on every pass.
    _oldest_live: tuple[int, int | None] | None = field(default=None, compare=False, repr=False)

    @property
    def chunk_numbers(self) -> range:
        return range(self.first_chunk, self.next_chunk)

    def load_chunk(self, number: int, guards: dict[str, Settled]) -> None:
        self.archived.update(guards)
        self._oldest_live = None
        self.chunk_newest[number] = max((g.at_ms for g in guards.values()), default=-1)
        if number == self.next_chunk - 1:
            self.tail = guards

    def oldest_chunk_guard_ms(self) -> int | None:
        """The stream time of the oldest chunk guard not yet forgotten (at or above the
        floor), or None."""
        floor = self.guard_floor_ms
        if self._oldest_live is None or self._oldest_live[0] != floor:
            live = [g.at_ms for g in self.archived.values() if g.at_ms >= floor]
            self._oldest_live = (floor, min(live, default=None))
        return self._oldest_live[1]

    def guard(self, tip: str) -> Settled | None:
        """The tip's guard, in the record or in a chunk; below the floor it is forgotten."""
        found = self.settled.get(tip)
        if found is None:
            found = self.archived.get(tip)
            if found is not None and found.at_ms < self.guard_floor_ms:
                return None
        return found

    def spill(self, stored: set[str]) -> tuple[dict[int, bytes], list[int]]:
        """Move guards into a chunk once the record holds more than ``GUARDS_IN_RECORD``, and
        drop the oldest chunks while all their guards are below the floor.

        Returns the chunks to write *before* this record and the chunk numbers to delete
        *after* it. The guards join the newest chunk (rewritten whole) while it stays under
        ``CHUNK_MAX_BYTES``, else open a new one; it keeps its guards below the floor, since
        removing them before the record that raised the floor lands is as unsafe as a
        deletion would be. Only guards of an earlier, already written record (``stored``)
        move: a chunk may land without the record that follows it, and a guard must never
        land without the model update it guards (a chunk holding guards the record still
        holds is harmless: the record's are read first, and the next spill writes the same
        chunk). The order makes every crash safe, because one producer's writes to one
        partition land in order (aiokafka sends one request per broker at a time and retries
        a batch before later ones): a chunk lands only after the record that held its
        guards, and a deletion only after the record that raised the floor.
        """
        new: dict[int, bytes] = {}
        over = len(self.settled) > GUARDS_IN_RECORD
        moving = {t: g for t, g in self.settled.items() if t in stored} if over else {}
        if moving:
            number, chunk = self.next_chunk - 1, b""
            if self.tail and number >= self.first_chunk:
                grown = {**self.tail, **moving}
                chunk = encode_chunk(grown)
            if len(chunk) > CHUNK_MAX_BYTES or not chunk:
                number, grown = self.next_chunk, moving
                chunk = encode_chunk(grown)
                self.next_chunk += 1
            new[number] = chunk
            self.load_chunk(number, grown)
            for tip in moving:
                del self.settled[tip]
        floor, gone = self.guard_floor_ms, []
        while self.first_chunk < self.next_chunk and (
            self.chunk_newest.get(self.first_chunk, -1) < floor
        ):
            self.chunk_newest.pop(self.first_chunk, None)
            gone.append(self.first_chunk)
            self.first_chunk += 1
        if gone:
            self.archived = {t: g for t, g in self.archived.items() if g.at_ms >= floor}
            self._oldest_live = None
            if self.first_chunk == self.next_chunk:
                self.tail = {}
        return new, gone

    def next_deadline_ms(self) -> int | None:
        deadlines = [s.deadline_ms for s in self.pending_shows.values()]
        deadlines += [f.deadline_ms for waiting in self.pending_feedback.values() for f in waiting]
        return min(deadlines, default=None)

    def encode(self) -> bytes:
        policies = sorted({g.policy for g in self.settled.values() if g.policy is not None})
        document = orjson.dumps(
            {
                "p": self.pulls,
                "r": self.reward_milli_sum,
                "u": self.last_updated_ms,
                "s": {t: _show_row(s) for t, s in self.pending_shows.items()},
                "f": {t: [_feedback_row(f) for f in w] for t, w in self.pending_feedback.items()},
                "gp": policies,
                "w": self.guard_floor_ms,
                "c": [self.first_chunk, self.next_chunk],
            }
        )
        parts = [_HEADER.pack(_FORMAT, len(document)), document]
        _pack_guards(parts, self.settled, policies)
        for name, blob in self.policy_blobs.items():
            encoded_name = name.encode()
            parts += [_BLOB.pack(len(encoded_name), len(blob)), encoded_name, blob]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> UserRecord:
        version, length = _HEADER.unpack_from(data, 0)
        if version != _FORMAT and version not in _LEGACY_FORMATS:
            raise ValueError(f"unknown user record format {version}")
        start = _HEADER.size
        document = orjson.loads(data[start : start + length])
        offset = start + length
        if version in _PACKED_FORMATS:
            settled, offset = _unpack_guards(data, offset, document["gp"])
        else:
            settled = {t: _legacy_guard(row, version) for t, row in document["g"].items()}
        blobs: dict[str, bytes] = {}
        while offset < len(data):
            name_length, blob_length = _BLOB.unpack_from(data, offset)
            offset += _BLOB.size
            name = data[offset : offset + name_length].decode()
            offset += name_length
            blobs[name] = data[offset : offset + blob_length]
            offset += blob_length
        if offset != len(data):
            raise ValueError("truncated user record")
        return cls(
            pulls=document["p"],
            reward_milli_sum=document["r"],
            last_updated_ms=document["u"],
            pending_shows={t: PendingShow(*row) for t, row in document["s"].items()},
            pending_feedback={
                t: [PendingFeedback(*row) for row in rows] for t, rows in document["f"].items()
            },
            settled=settled,
            policy_blobs=blobs,
            guard_floor_ms=document.get("w", 0),
            first_chunk=document.get("c", (0, 0))[0],
            next_chunk=document.get("c", (0, 0))[1],
        )


def encode_chunk(guards: dict[str, Settled]) -> bytes:
    """A guard chunk: the format, the policy names its guards index, and the packed guards."""
    policies = sorted({g.policy for g in guards.values() if g.policy is not None})
    names = orjson.dumps(policies)
    parts = [_HEADER.pack(_FORMAT, len(names)), names]
    _pack_guards(parts, guards, policies)
    return b"".join(parts)


def decode_chunk(data: bytes) -> dict[str, Settled]:
    version, length = _HEADER.unpack_from(data, 0)
    if version != _FORMAT:
        raise ValueError(f"unknown guard chunk format {version}")
    policies = orjson.loads(data[_HEADER.size : _HEADER.size + length])
    guards, offset = _unpack_guards(data, _HEADER.size + length, policies)
    if offset != len(data):
        raise ValueError("guard chunk has trailing bytes")
    return guards


def _pack_guards(parts: list[bytes], guards: dict[str, Settled], policies: list[str]) -> None:
    parts.append(_GUARDS.pack(len(guards)))
    index = {name: i for i, name in enumerate(policies)}
    pack_tip, pack_guard = _TIP_LENGTH.pack, _GUARD.pack
    for tip, g in guards.items():
        encoded_tip = tip.encode()
        parts += [
            pack_tip(len(encoded_tip)),
            encoded_tip,
            pack_guard(
                g.event,
                _KINDS.index(g.kind),
                _NO_REWARD if g.reward_milli is None else g.reward_milli,
                _NO_DWELL if g.dwell_ms is None else g.dwell_ms,
                _NO_POLICY if g.policy is None else index[g.policy],
                math.nan if g.propensity is None else g.propensity,
                g.at_ms,
            ),
        ]


def _unpack_guards(data: bytes, offset: int, policies: list[str]) -> tuple[dict[str, Settled], int]:
    (count,) = _GUARDS.unpack_from(data, offset)
    offset += _GUARDS.size
    settled: dict[str, Settled] = {}
    for _ in range(count):
        (tip_length,) = _TIP_LENGTH.unpack_from(data, offset)
        offset += _TIP_LENGTH.size
        tip = data[offset : offset + tip_length].decode()
        offset += tip_length
        event, kind, reward, dwell, policy, propensity, at_ms = _GUARD.unpack_from(data, offset)
        offset += _GUARD.size
        settled[tip] = Settled(
            _KINDS[kind],
            event,
            None if reward == _NO_REWARD else reward,
            None if dwell == _NO_DWELL else dwell,
            None if policy == _NO_POLICY else policies[policy],
            None if math.isnan(propensity) else propensity,
            at_ms,
        )
    return settled, offset


def _legacy_guard(row: list[Any], version: int) -> Settled:
    """A guard of a format-1 or format-2 record (a JSON row with the event id itself)."""
    kind, event_id, reward, dwell, policy, propensity, at_ms = row
    if version == 1:
        at_ms = -1  # a payload time: never compare it with stream time
    return Settled(kind, event_key(event_id), reward, dwell, policy, propensity, at_ms)


def _show_row(s: PendingShow) -> list[object]:
    return [
        s.event_id,
        s.served_at_ms,
        s.policy,
        s.propensity,
        s.hour_of_day,
        s.day_of_week,
        s.priority,
        s.is_overdue,
        s.task_age_days,
        s.deadline_ms,
    ]


def _feedback_row(f: PendingFeedback) -> list[object]:
    return [f.event_id, f.action, f.dwell_ms, f.occurred_at_ms, f.deadline_ms]
