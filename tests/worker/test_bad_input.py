"""A corpus of malformed events: each is dead-lettered with its code, none crashes the
batch, and no user's state changes (the pipeline on an in-memory store)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from streams.worker.decoding import RawEvent
from streams.worker.state import UserRecord
from tests.worker.events import feedback, shown
from tests.worker.test_pipeline import SETTINGS, pipeline, raw

USER = "victim"


def _edit(make: Callable[..., dict[str, Any]], **changes: Any) -> bytes:
    document = make(USER, "t1")
    for dotted, value in changes.items():
        target = document
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        if value is _DROP:
            target.pop(last)
        else:
            target[last] = value
    return orjson.dumps(document)


_DROP = object()
S, F = "shown", "feedback"
VALID_SHOW = orjson.dumps(shown(USER, "t1"))
VALID_FEEDBACK = orjson.dumps(feedback(USER, "t1"))

# (name, topic, value bytes, dead-letter code); the key is the user id unless noted.
CORPUS: list[tuple[str, str, bytes, str]] = [
    ("empty value", F, b"", "invalid_json"),
    ("truncated json", F, VALID_FEEDBACK[:-7], "invalid_json"),
    ("not json at all", S, b"\x00\x01binary\xff", "invalid_json"),
    ("invalid utf-8", F, VALID_FEEDBACK.replace(b'"done"', b'"d\xffne"'), "invalid_json"),
    # The JSON parser reads NaN and Infinity; the fields refuse them.
    # Not JSON at all (RFC 8259 has no NaN or Infinity), though some parsers take them.
    ("bare NaN", F, VALID_FEEDBACK.replace(b"30000", b"NaN"), "invalid_json"),
    ("Infinity literal", S, VALID_SHOW.replace(b"0.9125", b"Infinity"), "invalid_json"),
    ("huge exponent", S, VALID_SHOW.replace(b"2.5", b"1e999"), "schema_violation"),
    ("json array", F, b"[1, 2, 3]", "schema_violation"),
    ("json string", S, b'"TipShown"', "schema_violation"),
    ("json null", F, b"null", "schema_violation"),
    ("deep nesting", F, b'{"a":' * 2000 + b"1" + b"}" * 2000, "invalid_json"),
    ("missing eventId", F, _edit(feedback, eventId=_DROP), "schema_violation"),
    ("missing occurredAt", F, _edit(feedback, occurredAt=_DROP), "schema_violation"),
    ("missing features", S, _edit(shown, features=_DROP), "schema_violation"),
    ("wrong type tag", F, _edit(feedback, type="TipShown"), "schema_violation"),
    ("eventId a number", F, _edit(feedback, eventId=12345), "schema_violation"),
    ("eventId empty", S, _edit(shown, eventId=""), "schema_violation"),
    ("eventId too long", S, _edit(shown, eventId="e" * 129), "schema_violation"),
    ("eventId control char", F, _edit(feedback, eventId="a\x1fb"), "schema_violation"),
    ("tipId a list", F, _edit(feedback, tipId=["t1"]), "schema_violation"),
    ("unknown action", F, _edit(feedback, action="liked"), "unknown_action"),
    ("action wrong case", F, _edit(feedback, action="DONE"), "unknown_action"),
    ("dwell negative", F, _edit(feedback, dwellMs=-1), "dwell_out_of_range"),
    ("dwell over 30 days", F, _edit(feedback, dwellMs=2_592_000_001), "dwell_out_of_range"),
    ("dwell a string", F, _edit(feedback, dwellMs="30000"), "schema_violation"),
    ("dwell a float", F, _edit(feedback, dwellMs=30000.5), "schema_violation"),
    ("occurredAt not a time", F, _edit(feedback, occurredAt="yesterday"), "schema_violation"),
    (
        "occurredAt no zone",
        F,
        _edit(feedback, occurredAt="2026-11-27T09:10:00"),
        "schema_violation",
    ),
    ("servedAt year 0", S, _edit(shown, servedAt="0000-01-01T00:00:00Z"), "schema_violation"),
    ("propensity zero", S, _edit(shown, propensity=0), "schema_violation"),
    ("propensity above 1", S, _edit(shown, propensity=1.5), "schema_violation"),
    ("priority out of range", S, _edit(shown, features__priority=9), "schema_violation"),
    ("hour out of range", S, _edit(shown, features__hourOfDay=24), "schema_violation"),
    ("isOverdue a string", S, _edit(shown, features__isOverdue="yes"), "schema_violation"),
    ("task age negative", S, _edit(shown, features__taskAgeDays=-2), "schema_violation"),
    ("schema version 2", F, _edit(feedback, schemaVersion=2), "unsupported_schema_version"),
    ("sim without runId", F, _edit(feedback, source="sim"), "schema_violation"),
    ("unknown source", S, _edit(shown, source="staging"), "schema_violation"),
    ("huge string", F, _edit(feedback, tipId="x" * 60_000), "schema_violation"),
    ("1 MB payload", S, _edit(shown, padding="p" * 1_000_000), "payload_too_large"),
    ("odd unicode id", F, _edit(feedback, userId="vi\u0441tim"), "key_mismatch"),
    ("other user's key", S, _edit(shown, userId="someone-else"), "key_mismatch"),
]


def _event(topic: str, value: bytes, offset: int) -> RawEvent:
    template = raw(shown(USER, "t1"), offset)
    name = SETTINGS.topic_shown if topic == S else SETTINGS.topic_feedback
    return RawEvent(name, template.partition, offset, template.timestamp_ms, USER.encode(), value)


def test_the_corpus_has_at_least_thirty_kinds() -> None:
    assert len({name for name, *_ in CORPUS}) >= 30


@pytest.mark.parametrize(("name", "topic", "value", "code"), CORPUS, ids=[c[0] for c in CORPUS])
async def test_each_malformed_event_is_dead_lettered_and_state_is_untouched(
    name: str, topic: str, value: bytes, code: str
) -> None:
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    # The user already has state: a settled tip and a show waiting for its feedback.
    await p.handle([raw(shown(USER, "t0"), 0), raw(feedback(USER, "t0"), 1)])
    await p.handle([raw(shown(USER, "t1"), 2)])
    before = dict(store)
    rows.rows.clear()
    await p.handle([_event(topic, value, 3)])
    assert [(d.code, d.event.offset, d.event.value) for d in letters.letters] == [
        (code, 3, value)
    ], name
    assert store == before
    assert rows.rows == []
    assert UserRecord.decode(store[USER]).pulls == 1


async def test_a_malformed_event_in_a_batch_does_not_stop_the_good_ones() -> None:
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    bad = [_event(topic, value, 10 + i) for i, (_, topic, value, _) in enumerate(CORPUS)]
    good = [raw(shown(USER, "ok"), 100), raw(feedback(USER, "ok"), 101)]
    await p.handle([*bad[:15], *good, *bad[15:]])
    assert len(letters.letters) == len(CORPUS)
    assert [r.status for r in rows.rows] == ["applied"]
    assert UserRecord.decode(store[USER]).pulls == 1
