"""Hypothesis strategies for the input events, generated from the checked-in JSON Schemas.

Shared by the schema property tests (tests/schemas) and the pipeline's bad-input property
tests (tests/worker): what a producer validating against ``schemas/jsonschema`` may send.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from schemas.events import from_epoch_ms, to_epoch_ms
from schemas.jsonschema_export import OUT_DIR

__all__ = [
    "EVENT_NAMES",
    "PROPERTY_SETTINGS",
    "TIME_FIELDS",
    "event_documents",
    "in_utc_range",
    "load_schema",
    "wire",
]

EVENT_NAMES = ("TipShown", "TipFeedback")
EXTRA_FIELDS = 2
CANDIDATES = 5
TIME_FIELDS = {"TipShown": "servedAt", "TipFeedback": "occurredAt"}

# Generating an object from a schema takes 0.1-0.4 s on a shared core: moderate counts,
# derandomized and without the example database so that CI runs the same examples each
# time. No shrinking: shrinking a generated document runs into Hypothesis' 5-minute cap,
# and pytest's timeout (300 s) would kill the test before it printed the example.
PROPERTY_SETTINGS = settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def load_schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((OUT_DIR / f"{name}.v1.schema.json").read_bytes())
    return document


def in_utc_range(timestamp: str) -> bool:
    """The one model rule the schema cannot state.

    ``format: date-time`` allows ``0001-01-01T00:00:00+01:00``, whose UTC instant is in year
    0 and has no datetime; the model refuses it (schemas/events.py, ``Timestamp``). A string
    Python cannot parse is kept: whether the model accepts it is what the tests check.
    """
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return True
    if moment.tzinfo is None:
        return True  # the model refuses it, as it should
    try:
        from_epoch_ms(to_epoch_ms(moment))
    except OverflowError:
        return False
    return True


@functools.cache
def event_documents(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Instances of ``schemas/jsonschema/<name>.v1.schema.json``, unknown extra fields too.

    Left alone, hypothesis-jsonschema seldom writes an optional property (30 TipShowns had
    no ``candidates``), so this generates every property and then drops a drawn set of the
    optional ones; a document that is then no instance of the schema (``source: "sim"``
    left without its ``runId``) is discarded. (One schema variant per set of optional
    properties would do the same, but each costs half a second to prepare.)
    """
    schema = load_schema(name)
    optional = sorted(set(schema["properties"]) - set(schema["required"]))
    everything = from_schema(_with_few_extras({**schema, "required": sorted(schema["properties"])}))
    is_instance = jsonschema.Draft202012Validator(schema).is_valid
    return (
        st.builds(_without, everything, st.frozensets(st.sampled_from(optional)))
        .filter(is_instance)
        .filter(lambda doc: in_utc_range(doc[TIME_FIELDS[name]]))
    )


def _without(document: dict[str, Any], dropped: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in dropped}


def _with_few_extras(schema: dict[str, Any]) -> dict[str, Any]:
    """At most EXTRA_FIELDS unknown fields per object and CANDIDATES candidates: large
    objects make generation slow, and a few exercise the rules as well as many do (the
    limit of 100 candidates is tested on its own, in test_schema_properties)."""
    limited = {**schema, "maxProperties": len(schema["properties"]) + EXTRA_FIELDS}
    if "candidates" in schema["properties"]:  # 100 generated candidates take seconds
        listed, null = schema["properties"]["candidates"]["anyOf"]
        limited["properties"] = {
            **schema["properties"],
            "candidates": {"anyOf": [{**listed, "maxItems": CANDIDATES}, null]},
        }
    limited["$defs"] = {
        name: {**part, "maxProperties": len(part["properties"]) + EXTRA_FIELDS}
        if "properties" in part
        else part
        for name, part in schema.get("$defs", {}).items()
    }
    return limited


def wire(document: Any, *, ascii_only: bool = True) -> bytes:
    """JSON bytes of any generated value; ``json``, not orjson: the schemas allow integers
    beyond 64 bits (in unknown extra fields), which orjson refuses to write."""
    return json.dumps(document, ensure_ascii=ascii_only).encode()
