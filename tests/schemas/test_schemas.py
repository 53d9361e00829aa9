"""Event validation and the generated JSON Schema files."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from schemas.events import decode_feedback, decode_shown, encode
from schemas.jsonschema_export import OUT_DIR, schemas

SHOWN = {
    "type": "TipShown",
    "schemaVersion": 1,
    "eventId": "e1",
    "tipId": "t1",
    "userId": "u1",
    "servedAt": "2026-11-27T09:10:00.123Z",
    "policy": "egreedy-v1",
    "propensity": 0.9,
    "features": {
        "hourOfDay": 9,
        "dayOfWeek": 4,
        "priority": 2,
        "isOverdue": False,
        "taskAgeDays": 3,
    },
    "candidates": [{"tipId": "t1", "priority": 2, "isOverdue": False, "taskAgeDays": 3}],
}
FEEDBACK = {
    "type": "TipFeedback",
    "schemaVersion": 1,
    "eventId": "e2",
    "tipId": "t1",
    "userId": "u1",
    "action": "done",
    "dwellMs": 30_000,
    "occurredAt": "2026-11-27T09:11:00Z",
}


def test_checked_in_json_schemas_match_the_code() -> None:
    for name, content in schemas().items():
        assert (OUT_DIR / name).read_bytes() == content, (
            f"{name} is stale: run `uv run python -m schemas.jsonschema_export`"
        )


@pytest.mark.parametrize(("name", "event"), [("TipShown", SHOWN), ("TipFeedback", FEEDBACK)])
def test_json_schema_accepts_a_valid_event_and_rejects_a_broken_one(name: str, event: dict) -> None:
    schema = orjson.loads((OUT_DIR / f"{name}.v1.schema.json").read_bytes())
    jsonschema.validate(event, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "schemaVersion": "1"}, schema)


def test_encode_round_trips_and_ignores_unknown_fields() -> None:
    shown = decode_shown(orjson.dumps({**SHOWN, "futureField": {"x": 1}}))
    assert not hasattr(shown, "code")
    again = decode_shown(encode(shown))  # type: ignore[arg-type]
    assert again == shown
    assert orjson.loads(encode(shown))["servedAt"] == "2026-11-27T09:10:00.123Z"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"action": "maybe"}, "unknown_action"),
        ({"dwellMs": -1}, "dwell_out_of_range"),
        ({"dwellMs": 2_592_000_001}, "dwell_out_of_range"),
        ({"dwellMs": "5"}, "schema_violation"),
        ({"schemaVersion": 2}, "unsupported_schema_version"),
        ({"userId": ""}, "schema_violation"),
        ({"userId": "x" * 129}, "schema_violation"),
        ({"userId": "a\x1fb"}, "schema_violation"),
        ({"occurredAt": "2026-11-27T09:11:00"}, "schema_violation"),
        ({"source": "sim"}, "schema_violation"),
        ({"type": "TipShown"}, "schema_violation"),
    ],
)
def test_bad_feedback_gets_its_dead_letter_code(patch: dict, code: str) -> None:
    result = decode_feedback(orjson.dumps({**FEEDBACK, **patch}))
    assert getattr(result, "code", None) == code, result


def test_missing_field_and_wrong_types_are_rejected() -> None:
    missing = {k: v for k, v in FEEDBACK.items() if k != "occurredAt"}
    assert decode_feedback(orjson.dumps(missing)).code == "schema_violation"  # type: ignore[union-attr]
    assert decode_shown(orjson.dumps({**SHOWN, "propensity": 1.5})).code == "schema_violation"  # type: ignore[union-attr]
    assert decode_shown(b"\xff\xfe").code == "invalid_json"  # type: ignore[union-attr]
    assert decode_shown(b"{}" + b" " * 70_000).code == "payload_too_large"  # type: ignore[union-attr]
