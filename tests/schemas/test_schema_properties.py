"""The JSON Schema files and the pydantic models agree: property tests at the event boundary.

Every instance that hypothesis-jsonschema generates from ``schemas/jsonschema/*.schema.json``
decodes to an event, and ``encode`` of a decoded event decodes to the same event again.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    DecodeError,
    TipFeedback,
    TipShown,
    decode_feedback,
    decode_shown,
    encode,
    from_epoch_ms,
    rfc3339,
    to_epoch_ms,
)
from tests.schemas.event_strategies import (
    EVENT_NAMES,
    PROPERTY_SETTINGS,
    event_documents,
    load_schema,
    wire,
)
from tests.schemas.test_schemas import SHOWN

__all__: list[str] = []

DECODERS = {"TipShown": decode_shown, "TipFeedback": decode_feedback}


def _decode(name: str, raw: bytes) -> TipShown | TipFeedback | DecodeError:
    # The size cap (TIPSTREAM_MAX_EVENT_BYTES) is a transport limit that the schema does not
    # state; the pipeline's property tests keep it.
    return DECODERS[name](raw, sys.maxsize)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_schema_instance_decodes_and_encode_round_trips(name: str) -> None:
    """One generated instance, two properties: generation is the slow part."""

    @PROPERTY_SETTINGS
    @given(document=event_documents(name), ascii_only=st.booleans())
    def check(document: dict[str, Any], ascii_only: bool) -> None:
        decoded = _decode(name, wire(document, ascii_only=ascii_only))
        assert not isinstance(decoded, DecodeError), (decoded, document)
        assert (decoded.type, decoded.event_id) == (name, document["eventId"])

        encoded = encode(decoded)
        again = _decode(name, encoded)
        # The wire form has millisecond UTC timestamps (docs/contracts.md): sub-millisecond
        # digits and the offset are not kept, and the worker reads milliseconds only.
        field = "served_at" if isinstance(decoded, TipShown) else "occurred_at"
        in_ms = from_epoch_ms(to_epoch_ms(getattr(decoded, field)))
        assert again == msgspec.structs.replace(decoded, **{field: in_ms})
        assert not isinstance(again, DecodeError)
        assert encode(again) == encoded  # and encoding is stable from then on

    check()


def test_the_schema_and_the_model_agree_on_the_limit_of_100_candidates() -> None:
    # The generated instances have at most 5 candidates (event_strategies), so the limit
    # itself is checked here, on both sides of it.
    candidate = {"tipId": "t1", "priority": 2, "isOverdue": False, "taskAgeDays": 3}
    schema = load_schema("TipShown")
    for count, valid in ((100, True), (101, False)):
        document = {**SHOWN, "candidates": [candidate] * count}
        assert jsonschema.Draft202012Validator(schema).is_valid(document) is valid
        assert isinstance(decode_shown(orjson.dumps(document)), TipShown) is valid


@pytest.mark.parametrize(
    ("timestamp", "valid"),
    [
        ("0001-01-01T00:00:00-01:00", True),
        ("0001-01-01T00:00:00+01:00", False),  # year 0 in UTC
        ("9999-12-31T23:59:59.999Z", True),
        ("9999-12-31T23:59:59.9995Z", False),  # rounds to year 10000 in milliseconds
        ("9999-12-31T23:00:00-01:00", False),
    ],
)
def test_a_timestamp_must_have_a_utc_millisecond_datetime(timestamp: str, valid: bool) -> None:
    """Found by the round trip: these decoded, then ``encode`` (and the sink, which writes
    ``occurredAt`` back as a datetime from its milliseconds) raised ValueError."""
    decoded = decode_shown(orjson.dumps({**SHOWN, "servedAt": timestamp}))
    assert isinstance(decoded, TipShown) is valid, decoded
    if isinstance(decoded, TipShown):
        assert decode_shown(encode(decoded)) == msgspec.structs.replace(
            decoded, served_at=from_epoch_ms(decoded.served_at_ms)
        )
    else:
        assert (decoded.code, decoded.detail.split(":")[0]) == ("schema_violation", "servedAt")


def test_epoch_milliseconds_are_exact_far_from_now() -> None:
    """Found by the round trip: float seconds have ~15 µs of resolution in year 5000, so
    ``encode`` wrote ``occurredAt`` a millisecond off the event's own ``occurred_at_ms``."""
    moment = datetime(5408, 11, 21, 1, 0, 30, 1000, tzinfo=UTC)
    assert from_epoch_ms(to_epoch_ms(moment)) == moment
    assert to_epoch_ms(datetime(748, 12, 11, 0, 40, 22, 407581, tzinfo=UTC)) % 1000 == 408
    assert rfc3339(to_epoch_ms(moment)) == "5408-11-21T01:00:30.001Z"


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999))
)
def test_epoch_milliseconds_round_half_up_everywhere(naive: datetime) -> None:
    """``to_epoch_ms`` reads the timedelta's fields (faster than dividing it by 1 µs); the
    reference is the exact count of microseconds, rounded half up."""
    moment = naive.replace(tzinfo=UTC)
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert to_epoch_ms(moment) == (micros + 500) // 1000


@pytest.mark.parametrize("policy", ["egreedy\x00v1", "a\x1fb", "tab\there", "del\x7f"])
def test_a_policy_name_has_no_control_characters(policy: str) -> None:
    """A NUL in ``policy`` passed validation, then PostgreSQL refused the row (text holds no
    NUL; asyncpg raises CharacterNotInRepertoireError, not a retryable error): the whole
    batch's write failed, and again on every restart. Now it is a schema_violation."""
    decoded = decode_shown(orjson.dumps({**SHOWN, "policy": policy}))
    assert isinstance(decoded, DecodeError)
    assert decoded.code == "schema_violation"
    assert not jsonschema.Draft202012Validator(load_schema("TipShown")).is_valid(
        {**SHOWN, "policy": policy}
    )


def test_a_candidate_count_beyond_32_bits_is_refused() -> None:
    """Found by the round trip: any integer passed, and ``encode`` raised TypeError beyond
    64 bits (orjson)."""
    too_many = json.dumps({**SHOWN, "candidateCount": 2**64}).encode()
    assert isinstance(decode_shown(too_many), DecodeError)
    assert isinstance(decode_shown(orjson.dumps({**SHOWN, "candidateCount": 2**31 - 1})), TipShown)


SIM_FEEDBACK = {
    "type": "TipFeedback",
    "schemaVersion": 1,
    "eventId": "e1",
    "tipId": "t1",
    "userId": "u1",
    "action": "done",
    "occurredAt": "2026-11-27T09:11:00Z",
    "source": "sim",
}


@pytest.mark.parametrize("run_id", [{}, {"runId": None}])
def test_the_schema_refuses_a_sim_event_without_a_run_id_as_the_model_does(run_id: dict) -> None:
    """Found by the properties above: the files allowed ``source: "sim"`` without a
    ``runId``, which the model dead-letters; the rule is now in them (if/then)."""
    document = {**SIM_FEEDBACK, **run_id}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, load_schema("TipFeedback"))
    assert isinstance(decode_feedback(orjson.dumps(document)), DecodeError)
    with_run = {**SIM_FEEDBACK, "runId": "r1"}
    jsonschema.validate(with_run, load_schema("TipFeedback"))
    assert isinstance(decode_feedback(orjson.dumps(with_run)), TipFeedback)
