"""Generated bad input through the batch pipeline (``Pipeline.handle``, in-memory store).

Valid events generated from the JSON Schemas, mutations of them (a field removed, a field's
JSON type changed, the wrong Kafka key or partition, padding up to the size cap), random
JSON values and random bytes: ``handle`` never raises, every event is processed or
dead-lettered with a known code, the verdict is the one the schema files predict, and a
dead-lettered event leaves the store as it was. The hand-written corpus is in
test_bad_input.py; this finds what a corpus did not think of.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas.events import DECODE_CODES, TipFeedback, TipShown, decode_feedback, decode_shown
from streams.worker.decoding import RawEvent
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import Pipeline
from streams.worker.state import UserRecord, user_key
from tests.schemas.event_strategies import (
    EVENT_NAMES,
    PROPERTY_SETTINGS,
    TIME_FIELDS,
    event_documents,
    in_utc_range,
    load_schema,
    wire,
)
from tests.worker.events import feedback, shown
from tests.worker.test_pipeline import SETTINGS, pipeline, raw

__all__: list[str] = []

KNOWN_CODES = DECODE_CODES | {"key_mismatch", "wrong_partition"}  # the worker's own two
TOPICS = {"TipShown": SETTINGS.topic_shown, "TipFeedback": SETTINGS.topic_feedback}
VALIDATORS = {
    TOPICS[name]: jsonschema.Draft202012Validator(load_schema(name)) for name in EVENT_NAMES
}
TIMESTAMP_MS = 1_795_770_000_000  # the harness's record time: nothing expires between events
VICTIM = "victim"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity too: json writes them, the JSON parser reads them
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# The JSON type of a value, as a JSON Schema sees it (an int is a number too).
_JSON_TYPES: list[tuple[str, Callable[[Any], bool]]] = [
    ("null", lambda v: v is None),
    ("boolean", lambda v: isinstance(v, bool)),
    ("number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    ("string", lambda v: isinstance(v, str)),
    ("array", lambda v: isinstance(v, list)),
    ("object", lambda v: isinstance(v, dict)),
]


def json_type(value: Any) -> str:
    return next(name for name, matches in _JSON_TYPES if matches(value))


@dataclass(frozen=True)
class Case:
    """One Kafka record to feed the pipeline, and what the schema files say about it."""

    kind: str
    topic: str
    key: bytes | None
    partition: int
    value: bytes
    document: Any  # the value as JSON, None when it is not JSON

    def expected(self) -> str | None:
        """The dead-letter code the contract predicts, ``"some"`` for one of several, or
        None when the event must be processed."""
        if len(self.value) > SETTINGS.max_event_bytes:
            return "payload_too_large"
        document = self.document
        if not VALIDATORS[self.topic].is_valid(document):
            return "some"
        name = "TipShown" if self.topic == SETTINGS.topic_shown else "TipFeedback"
        if not in_utc_range(document[TIME_FIELDS[name]]):
            return "schema_violation"  # the one rule the schema cannot state
        if self.key != str(document["userId"]).encode():
            return "key_mismatch"
        if self.partition != partition_for(document["userId"], SETTINGS.partitions):
            return "wrong_partition"
        return None


def _keyed(kind: str, name: str, document: Any) -> Case:
    """Keyed and partitioned as a correct producer would (by userId, when there is one)."""
    user = document.get("userId") if isinstance(document, dict) else None
    user_id = user if isinstance(user, str) else VICTIM
    return Case(
        kind,
        TOPICS[name],
        user_id.encode(),
        partition_for(user_id, SETTINGS.partitions),
        wire(document),
        document,
    )


def _field_paths(document: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [(key,) for key in document]
    for key, value in document.items():
        if isinstance(value, dict):
            paths += [(key, inner) for inner in value]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            paths += [(key, "0", inner) for inner in value[0]]
    return paths


def _replace(document: Any, path: tuple[str, ...], value: Any) -> Any:
    """A copy with the field at ``path`` set to ``value`` (or removed, for _REMOVE)."""
    if not path:
        return value
    head, *rest = path
    if isinstance(document, list):
        copy_list = list(document)
        copy_list[int(head)] = _replace(copy_list[int(head)], tuple(rest), value)
        return copy_list
    copy = dict(document)
    if not rest and value is _REMOVE:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], tuple(rest), value)
    return copy


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


_REMOVE = object()
KINDS = ("valid", "removed", "retyped", "other_topic", "key", "partition", "padded", "json")
KINDS += ("bytes",)


@st.composite
def cases(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> Case:
    name = draw(st.sampled_from(EVENT_NAMES))
    kind = draw(st.sampled_from(kinds))
    if kind == "json":
        return _keyed(kind, name, draw(json_values))
    if kind == "bytes":
        value = draw(st.binary())
        key = draw(st.none() | st.binary(max_size=8))
        partition = draw(st.integers(0, SETTINGS.partitions - 1))
        return Case(kind, TOPICS[name], key, partition, value, _json_or_none(value))
    document = draw(event_documents(name))
    if kind == "removed":
        path = draw(st.sampled_from(_field_paths(document)))
        document = _replace(document, path, _REMOVE)
    elif kind == "retyped":
        path = draw(st.sampled_from(_field_paths(document)))
        old = json_type(_at(document, path))
        new = draw(json_values.filter(lambda v: json_type(v) != old))
        document = _replace(document, path, new)
    elif kind == "padded":  # around the size cap, on both sides of it
        size = len(wire(document))
        target = draw(st.integers(SETTINGS.max_event_bytes - 64, SETTINGS.max_event_bytes + 64))
        document = {**document, "zzPadding": "p" * max(0, target - size - len(',"zzPadding":""'))}
    case = _keyed(kind, name, document)
    if kind == "other_topic":
        return Case(kind, TOPICS[_other(name)], case.key, case.partition, case.value, document)
    if kind == "key":
        key = draw(st.none() | st.binary(max_size=12) | st.text(max_size=12).map(str.encode))
        return Case(kind, case.topic, key, case.partition, case.value, document)
    if kind == "partition":
        partition = draw(st.integers(0, SETTINGS.partitions - 1))
        return Case(kind, case.topic, case.key, partition, case.value, document)
    return case


def _other(name: str) -> str:
    return "TipFeedback" if name == "TipShown" else "TipShown"


def _json_or_none(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None  # not JSON: no instance of either schema


def _state_key(case: Case) -> str:
    decode = decode_shown if case.topic == SETTINGS.topic_shown else decode_feedback
    event = decode(case.value, SETTINGS.max_event_bytes)
    assert isinstance(event, TipShown | TipFeedback), event
    return user_key(event.user_id, event.run_id if event.is_sim else None)


async def _with_victim() -> tuple[Any, ...]:
    """A pipeline whose store already has a user with a settled tip and a waiting show."""
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    await p.handle([raw(shown(VICTIM, "t0"), 0), raw(feedback(VICTIM, "t0"), 1)])
    await p.handle([raw(shown(VICTIM, "t1"), 2)])
    rows.rows.clear()
    rows.shows.clear()
    return store, p, rows, letters


def _outcomes(p: Pipeline) -> float:
    """How many events the pipeline processed: each gets one outcome in the metrics."""
    return sum(
        sample.value
        for metric in p.metrics.registry.collect()
        if metric.name == "tipstream_events"
        for sample in metric.samples
        if sample.name == "tipstream_events_total"
    )


def _record(case: Case, offset: int) -> RawEvent:
    return RawEvent(case.topic, case.partition, offset, TIMESTAMP_MS, case.key, case.value)


# Kinds built from a generated event cost a schema draw each (slow); the others are cheap.
EXAMPLES = dict.fromkeys(KINDS, 8) | {"json": 60, "bytes": 60}


@pytest.mark.parametrize("kind", KINDS)
def test_one_event_is_processed_or_dead_lettered_as_the_schema_predicts(kind: str) -> None:
    @settings(PROPERTY_SETTINGS, max_examples=EXAMPLES[kind])
    @given(case=cases((kind,)))
    def check(case: Case) -> None:
        asyncio.run(_one_event(case))

    check()


async def _one_event(case: Case) -> None:
    """One record after a user's history: processed, or dead-lettered leaving all as it was."""
    event(case.kind)
    store, p, rows, letters = await _with_victim()
    before, counted = dict(store), _outcomes(p)
    await p.handle([_record(case, 10)])  # must not raise

    expected = case.expected()
    if expected is None:
        assert letters.letters == [], (case.kind, letters.letters)
        # Processed: it has an outcome (show_waiting, feedback_waiting, legacy, ...), and
        # only its own user's state may have changed (a legacy action changes none).
        assert _outcomes(p) == counted + 1
        assert {k for k in store if store[k] != before.get(k)} <= {_state_key(case)}
        return
    assert [(d.event.offset, d.event.value) for d in letters.letters] == [(10, case.value)]
    code = letters.letters[0].code
    event(code)
    assert code in KNOWN_CODES, (code, letters.letters[0].detail)
    assert expected in ("some", code), (case.kind, code, letters.letters[0].detail)
    assert store == before, "a dead-lettered event touched the store"
    assert (rows.rows, rows.shows) == ([], [])
    assert _outcomes(p) == counted
    assert UserRecord.decode(store[VICTIM]).pulls == 1


@settings(PROPERTY_SETTINGS, max_examples=12)
@given(batch=st.lists(cases(), min_size=2, max_size=4))
def test_a_mixed_batch_accounts_for_every_event_and_touches_only_processed_users(
    batch: list[Case],
) -> None:
    async def run() -> None:
        store, p, _, letters = await _with_victim()
        before, counted = dict(store), _outcomes(p)
        records = [_record(case, 10 + i) for i, case in enumerate(batch)]
        await p.handle(records)  # must not raise

        lettered = {d.event.offset for d in letters.letters}
        assert len(lettered) == len(letters.letters), "an event dead-lettered twice"
        assert all(d.code in KNOWN_CODES for d in letters.letters), letters.letters
        processed = [c for c, r in zip(batch, records, strict=True) if r.offset not in lettered]
        for case, record in zip(batch, records, strict=True):
            verdict = case.expected()
            assert (record.offset not in lettered) == (verdict is None), (case.kind, verdict)
        assert _outcomes(p) == counted + len(processed)
        touched = {k for k in store if store[k] != before.get(k)}
        assert touched <= {_state_key(c) for c in processed}

    asyncio.run(run())
