"""The user record's codec: format 4 and guard chunks round-trip, formats 1 to 3 are still read;
spilling guards to chunks keeps them all and forgets them on the floor."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.state import (
    CHUNK_MAX_BYTES,
    GUARDS_IN_RECORD,
    PendingShow,
    Settled,
    UserRecord,
    decode_chunk,
    encode_chunk,
    event_key,
)

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1,
              max_size=128)  # fmt: skip
guards = st.builds(
    Settled,
    kind=st.sampled_from(["applied", "expired"]),
    event=ids.map(event_key),
    reward_milli=st.none() | st.integers(-1000, 1000),
    dwell_ms=st.none() | st.integers(0, 10**12),
    policy=st.none() | st.sampled_from(["egreedy-v1", "pooledmix-v3", "pooled-v1"]),
    propensity=st.none() | st.floats(min_value=1e-9, max_value=1.0),
    at_ms=st.integers(-1, 2**62),
)


@given(
    settled=st.dictionaries(ids, guards, max_size=30),
    floor=st.integers(0, 2**62),
    chunks=st.tuples(st.integers(0, 2**40), st.integers(0, 2**20)),
)
def test_records_round_trip(
    settled: dict[str, Settled], floor: int, chunks: tuple[int, int]
) -> None:
    record = UserRecord(pulls=3, reward_milli_sum=-250, last_updated_ms=None)
    record.settled = settled
    record.guard_floor_ms = floor
    record.first_chunk, record.next_chunk = chunks[0], chunks[0] + chunks[1]
    record.pending_shows["t"] = PendingShow("e", 1, "egreedy-v1", 0.5, 1, 2, 3, False, 0.5, 9)
    record.policy_blobs = {"egreedy-v1": b"\x00" * 17, "pooledmix-v3": b""}
    assert UserRecord.decode(record.encode()) == record


def _format_2(rows: dict[str, list[object]], blobs: dict[str, bytes]) -> bytes:
    document = {"p": 2, "r": 1500, "u": 7, "s": {}, "f": {}, "g": rows, "w": 11}
    body = orjson.dumps(document)
    data = bytes([2]) + len(body).to_bytes(4, "little") + body
    for name, blob in blobs.items():
        data += bytes([len(name)]) + len(blob).to_bytes(4, "little") + name.encode() + blob
    return data


def test_format_2_records_are_read_and_rewritten_smaller() -> None:
    rows: dict[str, list[object]] = {
        f"tip-{i}": ["applied", f"f-{i:036d}", 750, 30_000, "egreedy-v1", 0.9125, 1_000 + i]
        for i in range(70)
    }
    rows["tip-x"] = ["expired", "s-x", None, None, None, None, 5]
    old = _format_2(rows, {"egreedy-v1": b"\x01\x02"})
    record = UserRecord.decode(old)
    assert record.settled["tip-3"] == Settled(
        "applied", event_key(f"f-{3:036d}"), 750, 30_000, "egreedy-v1", 0.9125, 1_003
    )
    assert record.settled["tip-x"] == Settled("expired", event_key("s-x"), None, None, None,
                                              None, 5)  # fmt: skip
    assert (record.pulls, record.reward_milli_sum, record.guard_floor_ms) == (2, 1500, 11)
    assert record.policy_blobs == {"egreedy-v1": b"\x01\x02"}
    new = record.encode()
    assert new[0] == 4
    assert UserRecord.decode(new) == record
    assert len(new) < len(old) / 2  # about 47 bytes a guard here, against about 105


@given(settled=st.dictionaries(ids, guards, max_size=30))
def test_guard_chunks_round_trip(settled: dict[str, Settled]) -> None:
    assert decode_chunk(encode_chunk(settled)) == settled


def test_format_3_records_are_read() -> None:
    record = UserRecord(pulls=1, reward_milli_sum=750, last_updated_ms=7)
    record.settled["t"] = Settled("applied", event_key("f"), 750, 10, "egreedy-v1", 0.9, 3)
    record.policy_blobs = {"egreedy-v1": b"\x01"}
    new = record.encode()
    length = int.from_bytes(new[1:5], "little")
    document = orjson.loads(new[5 : 5 + length])
    del document["c"]  # what format 3 wrote
    body = orjson.dumps(document)
    old = bytes([3]) + len(body).to_bytes(4, "little") + body + new[5 + length :]
    assert UserRecord.decode(old) == record


def _guard(at_ms: int) -> Settled:
    return Settled("expired", event_key(f"s{at_ms}"), None, None, None, None, at_ms)


def test_spill_moves_only_guards_already_written_and_keeps_them_findable() -> None:
    record = UserRecord()
    record.settled = {f"t{i}": _guard(i) for i in range(GUARDS_IN_RECORD)}
    assert record.spill(set(record.settled)) == ({}, [])  # not over the bound: nothing moves
    record.settled["new"] = _guard(99)
    new, gone = record.spill(set(record.settled) - {"new"})
    assert list(new) == [0]
    assert gone == []
    assert list(record.settled) == ["new"]  # settled in this pass: stays with its model
    assert decode_chunk(new[0]) == {f"t{i}": _guard(i) for i in range(GUARDS_IN_RECORD)}
    assert record.chunk_newest == {0: GUARDS_IN_RECORD - 1}
    assert list(record.chunk_numbers) == [0]
    assert all(record.guard(f"t{i}") == _guard(i) for i in range(GUARDS_IN_RECORD))
    again = UserRecord.decode(record.encode())
    assert again == record
    assert again.archived == {}  # the chunks' guards are not encoded


def test_a_pass_that_settles_many_tips_keeps_them_in_the_record() -> None:
    record = UserRecord()
    record.settled = {f"t{i}": _guard(i) for i in range(3 * GUARDS_IN_RECORD)}
    assert record.spill(set()) == ({}, [])


def _long_tip(i: int) -> str:
    return f"t{i}".ljust(150, "x")  # four such guards fill most of a chunk


def test_guards_join_the_newest_chunk_until_it_is_full() -> None:
    record, chunks = UserRecord(), {}
    for spill in range(40):
        record.settled.update({f"t{spill}.{i}": _guard(spill) for i in range(4)})
        new, gone = record.spill(set(record.settled))
        assert gone == []
        assert len(new) == 1
        chunks.update(new)
        # As the pipeline reads a user from the store: the record, then its chunks.
        record = UserRecord.decode(record.encode())
        for number in record.chunk_numbers:
            record.load_chunk(number, decode_chunk(chunks[number]))
    assert all(len(chunk) <= CHUNK_MAX_BYTES for chunk in chunks.values())
    assert 4 <= len(chunks) <= 10  # 160 guards of about 45 bytes: a fifth of a chunk's count
    assert sum(len(decode_chunk(chunk)) for chunk in chunks.values()) == 160
    assert all(record.guard(f"t{s}.{i}") == _guard(s) for s in range(40) for i in range(4))


def test_the_floor_forgets_chunked_guards_and_deletes_whole_chunks() -> None:
    record = UserRecord()
    for first in (0, 10, 20):  # chunk 0 holds guards at 0..3, chunk 1 at 10..13, 2 at 20..23
        record.settled = {
            _long_tip(i): _guard(i) for i in range(first, first + GUARDS_IN_RECORD + 1)
        }
        record.spill(set(record.settled))
    record.guard_floor_ms = 12
    assert record.guard(_long_tip(3)) is None  # below the floor
    assert record.guard(_long_tip(11)) is None
    assert record.guard(_long_tip(12)) == _guard(12)
    assert record.spill(set()) == ({}, [0])  # chunk 1 still holds guards at or above 12
    assert list(record.chunk_numbers) == [1, 2]
    assert sorted(record.archived) == [_long_tip(i) for i in (12, 13, 20, 21, 22, 23)]


def test_a_spill_after_every_chunk_was_dropped_opens_a_new_one() -> None:
    record = UserRecord()
    record.settled = {f"t{i}": _guard(i) for i in range(GUARDS_IN_RECORD + 1)}
    record.spill(set(record.settled))
    record.guard_floor_ms = 100
    assert record.spill(set()) == ({}, [0])
    record.settled = {f"u{i}": _guard(200) for i in range(GUARDS_IN_RECORD + 1)}
    new, _ = record.spill(set(record.settled))
    assert list(new) == [1]
    assert list(decode_chunk(new[1])) == [f"u{i}" for i in range(GUARDS_IN_RECORD + 1)]
