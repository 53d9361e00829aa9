"""The user record's codec: format 3 round-trips, formats 1 and 2 are still read."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.state import PendingShow, Settled, UserRecord, event_key

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


@given(settled=st.dictionaries(ids, guards, max_size=30), floor=st.integers(0, 2**62))
def test_records_round_trip(settled: dict[str, Settled], floor: int) -> None:
    record = UserRecord(pulls=3, reward_milli_sum=-250, last_updated_ms=None)
    record.settled = settled
    record.guard_floor_ms = floor
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
    assert new[0] == 3
    assert UserRecord.decode(new) == record
    assert len(new) < len(old) / 2  # about 47 bytes a guard here, against about 105
