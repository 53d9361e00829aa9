"""The two input events, ``TipShown`` and ``TipFeedback`` (schemaVersion 1), as pydantic models.

Validation is strict (a string is not an int, ``"true"`` is not a bool), unknown fields are
ignored for forward compatibility, and every failure maps to one dead-letter code.

>>> raw = (b'{"type":"TipFeedback","schemaVersion":1,"eventId":"e1","tipId":"t1",'
...        b'"userId":"u1","action":"done","dwellMs":30000,'
...        b'"occurredAt":"2026-11-27T09:10:00.123Z","extra":"ignored"}')
>>> event = decode_feedback(raw)
>>> (event.action.value, event.dwell_ms, event.occurred_at_ms)
('done', 30000, 1795770600123)
>>> decode_feedback(b'{"type":"TipFeedback"').code
'invalid_json'
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "DECODE_CODES",
    "MAX_CANDIDATES",
    "MAX_CANDIDATE_COUNT",
    "MAX_DWELL_MS",
    "NO_CONTROL_CHARACTERS",
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
    "to_snake",
]

MAX_DWELL_MS = 2_592_000_000  # 30 days
MAX_CANDIDATES = 100
MAX_CANDIDATE_COUNT = 2**31 - 1  # any larger and encode() failed beyond 64 bits (orjson)

NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"

# 1–128 characters, no control characters: ids become parts of state keys and log lines.
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL_CHARACTERS)]
# No control characters either: the policy name is stored in PostgreSQL text columns, which
# refuse NUL, so a NUL here would fail the whole batch's write, again after every restart.
PolicyName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)
]


def _representable_in_utc(moment: datetime) -> datetime:
    """Refuse an instant whose millisecond UTC form has no datetime (year 0 or 10000).

    ``0001-01-01T00:00:00+01:00`` is valid RFC 3339, but it is in year 0 in UTC; the worker
    stores timestamps as UTC milliseconds and writes them back as datetimes, which would
    raise while writing the batch.
    """
    if 1 < moment.year < 9999:  # an offset is under a day: only years 1 and 9999 can fail
        return moment
    try:
        from_epoch_ms(to_epoch_ms(moment))
    except OverflowError as exc:
        raise ValueError("timestamp is outside years 1-9999 in UTC") from exc
    return moment


Timestamp = Annotated[AwareDatetime, AfterValidator(_representable_in_utc)]


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


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        strict=True,
        frozen=True,
    )


class TipFeatures(_Model):
    hour_of_day: int = Field(ge=0, le=23)
    day_of_week: int = Field(ge=0, le=6, description="Monday = 0")
    priority: int = Field(ge=1, le=4, description="Todoist priority")
    is_overdue: bool
    task_age_days: float = Field(ge=0, allow_inf_nan=False, description="days since due date")


class CandidateTip(_Model):
    tip_id: Id
    priority: int = Field(ge=1, le=4)
    is_overdue: bool
    task_age_days: float = Field(ge=0, allow_inf_nan=False)


# The JSON Schema form of model_post_init's rule, so that producers validating against the
# schema files do not send what the worker dead-letters.
_SIM_NEEDS_RUN_ID: dict[str, Any] = {
    "if": {"properties": {"source": {"const": "sim"}}, "required": ["source"]},
    "then": {"properties": {"runId": {"type": "string"}}, "required": ["runId"]},
}


class _Event(_Model):
    model_config = ConfigDict(json_schema_extra=_SIM_NEEDS_RUN_ID)

    schema_version: Literal[1]
    event_id: Id
    tip_id: Id
    user_id: Id
    source: Source = Source.PROD
    run_id: Id | None = None

    @property
    def is_sim(self) -> bool:
        return self.source is Source.SIM

    def model_post_init(self, _context: object) -> None:
        if self.source is Source.SIM and self.run_id is None:
            raise ValueError("runId is required when source is 'sim'")


class TipShown(_Event):
    """A tip the policy served, with what is needed to learn from its feedback."""

    type: Literal["TipShown"]
    served_at: Timestamp
    policy: PolicyName
    propensity: float = Field(gt=0, le=1, allow_inf_nan=False)
    features: TipFeatures
    candidate_count: int | None = Field(default=None, ge=1, le=MAX_CANDIDATE_COUNT)
    candidates: list[CandidateTip] | None = Field(default=None, max_length=MAX_CANDIDATES)

    @property
    def served_at_ms(self) -> int:
        return to_epoch_ms(self.served_at)


class TipFeedback(_Event):
    """What the user did with a served tip."""

    type: Literal["TipFeedback"]
    action: Action
    dwell_ms: int | None = Field(default=None, ge=0, le=MAX_DWELL_MS)
    occurred_at: Timestamp

    @property
    def occurred_at_ms(self) -> int:
        return to_epoch_ms(self.occurred_at)


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

# Field-specific codes; everything else in a validation failure is a schema_violation.
_FIELD_CODES = {
    ("action", "enum"): "unknown_action",
    ("dwellMs", "greater_than_equal"): "dwell_out_of_range",
    ("dwellMs", "less_than_equal"): "dwell_out_of_range",
    ("schemaVersion", "literal_error"): "unsupported_schema_version",
}

_E = TypeVar("_E", "TipShown", "TipFeedback")


def _decode(model: type[_E], raw: bytes, max_bytes: int) -> _E | DecodeError:
    if len(raw) > max_bytes:
        return DecodeError("payload_too_large", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            return DecodeError("invalid_json", str(first["msg"])[:300])
        field = str(first["loc"][0]) if first["loc"] else ""
        code = _FIELD_CODES.get((field, first["type"]), "schema_violation")
        location = ".".join(str(part) for part in first["loc"]) or "event"
        return DecodeError(code, f"{location}: {first['msg']}"[:300])


def decode_shown(raw: bytes, max_bytes: int = 64 * 1024) -> TipShown | DecodeError:
    return _decode(TipShown, raw, max_bytes)


def decode_feedback(raw: bytes, max_bytes: int = 64 * 1024) -> TipFeedback | DecodeError:
    return _decode(TipFeedback, raw, max_bytes)


def encode(event: TipShown | TipFeedback) -> bytes:
    """The wire form: camelCase JSON, RFC 3339 UTC timestamps, no nulls for absent options."""
    document = event.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name in ("servedAt", "occurredAt"):
        if name in document:
            document[name] = rfc3339(to_epoch_ms(getattr(event, to_snake(name))))
    return orjson.dumps(document)


def to_snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
