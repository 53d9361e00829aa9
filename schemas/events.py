"""The two input events, ``TipShown`` and ``TipFeedback`` (schemaVersion 1), as msgspec structs.

Validation is strict (a string is not an int, ``"true"`` is not a bool), unknown fields are
ignored for forward compatibility, and every failure maps to one dead-letter code.

Why msgspec, not pydantic: decoding is the worker's first step for every event. msgspec
decodes and validates a show in about half of pydantic's time, and its timestamps carry
the standard library's UTC, on which the epoch arithmetic below is three times faster than
on pydantic's own tzinfo (BENCHMARKS.md). Structs are also what the simulator builds.

>>> raw = (b'{"type":"TipFeedback","schemaVersion":1,"eventId":"e1","tipId":"t1",'
...        b'"userId":"u1","action":"done","dwellMs":30000,'
...        b'"occurredAt":"2026-11-27T09:10:00.123Z","extra":"ignored"}')
>>> event = decode_feedback(raw)
>>> (event.action.value, event.dwell_ms, event.occurred_at_ms)
('done', 30000, 1795770600123)
>>> decode_feedback(b'{"type":"TipFeedback"').code
'invalid_json'
>>> decode_feedback(raw.replace(b'"done"', b'"maybe"')).detail
"action: Invalid enum value 'maybe'"
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, cast

import msgspec
import orjson
from msgspec import Meta, Struct

__all__ = [
    "DECODE_CODES",
    "MAX_CANDIDATES",
    "MAX_CANDIDATE_COUNT",
    "MAX_DWELL_MS",
    "NO_CONTROL_CHARACTERS",
    "SIM_NEEDS_RUN_ID",
    "Action",
    "CandidateTip",
    "DecodeError",
    "Id",
    "PolicyName",
    "Source",
    "Timestamp",
    "TipFeatures",
    "TipFeedback",
    "TipShown",
    "decode_feedback",
    "decode_shown",
    "encode",
    "from_epoch_ms",
    "rfc3339",
    "to_epoch_ms",
]

MAX_DWELL_MS = 2_592_000_000  # 30 days
MAX_CANDIDATES = 100
MAX_CANDIDATE_COUNT = 2**31 - 1  # any larger and encode() failed beyond 64 bits (orjson)

# Python's ``$`` also matches before a final newline: ``(?!\n)`` refuses that one, and
# changes nothing in JSON Schema's (ECMA) dialect, where the same pattern is stated.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$(?!\n)"


def _text(max_length: int) -> Meta:
    return Meta(min_length=1, max_length=max_length, pattern=NO_CONTROL_CHARACTERS)


# 1–128 characters, no control characters: ids become parts of state keys and log lines.
Id = Annotated[str, _text(128)]
# No control characters either: the policy name is stored in PostgreSQL text columns, which
# refuse NUL, so a NUL here would fail the whole batch's write, again after every restart.
PolicyName = Annotated[str, _text(64)]
Timestamp = Annotated[datetime, Meta(tz=True)]  # RFC 3339 with an offset
# JSON has no infinity, but 1e999 parses as one: a finite upper bound refuses it.
_FINITE_DAYS = Annotated[float, Meta(ge=0, le=1.7976931348623157e308)]
_Priority = Annotated[int, Meta(ge=1, le=4)]


def _check_timestamp(field: str, moment: datetime) -> None:
    """Refuse an instant whose millisecond UTC form has no datetime (year 0 or 10000).

    ``0001-01-01T00:00:00+01:00`` is valid RFC 3339, but it is in year 0 in UTC; the worker
    stores timestamps as UTC milliseconds and writes them back as datetimes, which would
    raise while writing the batch.
    """
    if 1 < moment.year < 9999:  # an offset is under a day: only years 1 and 9999 can fail
        return
    try:
        from_epoch_ms(to_epoch_ms(moment))
    except OverflowError as exc:
        raise ValueError(f"{field}: timestamp is outside years 1-9999 in UTC") from exc


class Action(StrEnum):
    DONE = "done"
    SNOOZE = "snooze"
    DISMISS = "dismiss"
    HELPFUL = "helpful"  # legacy: stored, never learned from
    NOT_HELPFUL = "not_helpful"  # legacy

    @property
    def is_legacy(self) -> bool:
        return self in (Action.HELPFUL, Action.NOT_HELPFUL)


class Source(StrEnum):
    PROD = "prod"
    SIM = "sim"


class TipFeatures(Struct, frozen=True, rename="camel"):
    hour_of_day: Annotated[int, Meta(ge=0, le=23)]
    day_of_week: Annotated[int, Meta(ge=0, le=6, description="Monday = 0")]
    priority: Annotated[_Priority, Meta(description="Todoist priority")]
    is_overdue: bool
    task_age_days: Annotated[_FINITE_DAYS, Meta(description="days since due date")]


class CandidateTip(Struct, frozen=True, rename="camel"):
    tip_id: Id
    priority: _Priority
    is_overdue: bool
    task_age_days: _FINITE_DAYS


# The JSON Schema form of _Event.__post_init__'s rule, so that producers validating against
# the schema files do not send what the worker dead-letters.
SIM_NEEDS_RUN_ID: dict[str, Any] = {
    "if": {"properties": {"source": {"const": "sim"}}, "required": ["source"]},
    "then": {"properties": {"runId": {"type": "string"}}, "required": ["runId"]},
}


class _Event(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type"):
    type: ClassVar[str]  # the tag, the wire's "type"
    schema_version: Literal[1]
    event_id: Id
    tip_id: Id
    user_id: Id
    source: Source = Source.PROD
    run_id: Id | None = None

    @property
    def is_sim(self) -> bool:
        return self.source is Source.SIM


class TipShown(_Event, frozen=True, kw_only=True, tag="TipShown"):
    """A tip the policy served, with what is needed to learn from its feedback."""

    type: ClassVar[str] = "TipShown"
    served_at: Timestamp
    policy: PolicyName
    propensity: Annotated[float, Meta(gt=0, le=1)]
    features: TipFeatures
    candidate_count: Annotated[int, Meta(ge=1, le=MAX_CANDIDATE_COUNT)] | None = None
    candidates: Annotated[list[CandidateTip], Meta(max_length=MAX_CANDIDATES)] | None = None

    def __post_init__(self) -> None:
        _check_event(self, "servedAt", self.served_at)

    @property
    def served_at_ms(self) -> int:
        return to_epoch_ms(self.served_at)


class TipFeedback(_Event, frozen=True, kw_only=True, tag="TipFeedback"):
    """What the user did with a served tip."""

    type: ClassVar[str] = "TipFeedback"
    action: Action
    dwell_ms: Annotated[int, Meta(ge=0, le=MAX_DWELL_MS)] | None = None
    occurred_at: Timestamp

    def __post_init__(self) -> None:
        _check_event(self, "occurredAt", self.occurred_at)

    @property
    def occurred_at_ms(self) -> int:
        return to_epoch_ms(self.occurred_at)


def _check_event(event: TipShown | TipFeedback, field: str, moment: datetime) -> None:
    if event.source is Source.SIM and event.run_id is None:
        raise ValueError("runId: required when source is 'sim'")
    _check_timestamp(field, moment)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, to the nearest (half up), in exact integer arithmetic.

    Not ``round(moment.timestamp() * 1000)``: a float has only ~15 µs of resolution in year
    5000, so that was off by a millisecond for instants far from now.
    """
    since = moment - _EPOCH  # its fields, not floor division by 1 µs: a third faster
    return (since.days * 86_400 + since.seconds) * 1000 + (since.microseconds + 500) // 1000


def from_epoch_ms(epoch_ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds; OverflowError outside years 1-9999."""
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def rfc3339(epoch_ms: int) -> str:
    """``2026-11-27T09:10:00.123Z``: the contract's timestamp format.

    >>> rfc3339(1795770600123), rfc3339(-1)
    ('2026-11-27T09:10:00.123Z', '1969-12-31T23:59:59.999Z')
    """
    seconds, milliseconds = divmod(epoch_ms, 1000)
    return f"{_whole_second(seconds)}.{milliseconds:03d}Z"


@functools.lru_cache(maxsize=4096)
def _whole_second(epoch_s: int) -> str:
    """``2026-11-27T09:10:00``; cached, because a producer formats the same seconds over
    and over (formatting a datetime costs more than the rest of a small event's encoding)."""
    return from_epoch_ms(epoch_s * 1000).isoformat(timespec="seconds").removesuffix("+00:00")


class DecodeError:
    """Why bytes are not a valid event: a dead-letter code and one human line."""

    __slots__ = ("code", "detail")

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail

    def __repr__(self) -> str:
        return f"DecodeError({self.code!r}, {self.detail!r})"


# Every dead-letter code the decoder gives (the worker adds its own: see streams/worker/pipeline).
DECODE_CODES = frozenset(
    {
        "invalid_json",
        "schema_violation",
        "unknown_action",
        "dwell_out_of_range",
        "payload_too_large",
        "unsupported_schema_version",
    }
)

# Field-specific codes (per wire field, and how its message begins); everything else in a
# validation failure is a schema_violation.
_FIELD_CODES = {
    "action": (("Invalid enum value",), "unknown_action"),
    "dwellMs": (("Expected `int` >=", "Expected `int` <="), "dwell_out_of_range"),
    "schemaVersion": (("",), "unsupported_schema_version"),
}

_NAMED = re.compile(r"[a-zA-Z]+: ")  # "servedAt: ..."

# One decoder for both events: the tag (``type``) is then required, and says which it is.
_DECODER = msgspec.json.Decoder(TipShown | TipFeedback)


def _decode(
    expected: type[TipShown | TipFeedback], raw: bytes, max_bytes: int
) -> TipShown | TipFeedback | DecodeError:
    if len(raw) > max_bytes:
        return DecodeError("payload_too_large", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return _violation(str(exc))
    except msgspec.DecodeError as exc:  # after ValidationError, its subclass
        return DecodeError("invalid_json", str(exc)[:300])
    except RecursionError:
        return DecodeError("invalid_json", "nested too deeply")
    if type(event) is not expected:
        return DecodeError("schema_violation", f"type: expected {expected.type!r}")
    return event


def _violation(message: str) -> DecodeError:
    """The code and ``location: message`` of msgspec's ``message - at `$.location```."""
    text, _, where = message.partition(" - at `$")
    location = where.removesuffix("`").lstrip(".")
    prefixes, code = _FIELD_CODES.get(location, ((), "schema_violation"))
    if not any(text.startswith(prefix) for prefix in prefixes):
        code = "schema_violation"
    if not location:  # the event's own checks (__post_init__) name their field
        location, _, text = text.partition(": ") if _NAMED.match(text) else ("event", "", text)
    return DecodeError(code, f"{location}: {text}"[:300])


def decode_shown(raw: bytes, max_bytes: int = 64 * 1024) -> TipShown | DecodeError:
    return cast("TipShown | DecodeError", _decode(TipShown, raw, max_bytes))


def decode_feedback(raw: bytes, max_bytes: int = 64 * 1024) -> TipFeedback | DecodeError:
    return cast("TipFeedback | DecodeError", _decode(TipFeedback, raw, max_bytes))


def encode(event: TipShown | TipFeedback) -> bytes:
    """The wire form: camelCase JSON, RFC 3339 UTC timestamps to the millisecond, no nulls
    for absent options."""
    document = msgspec.to_builtins(event)
    for name, value in list(document.items()):
        if value is None:
            del document[name]
    if isinstance(event, TipShown):
        document["servedAt"] = rfc3339(event.served_at_ms)
    else:
        document["occurredAt"] = rfc3339(event.occurred_at_ms)
    return orjson.dumps(document)
