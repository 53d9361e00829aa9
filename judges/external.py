"""The external judge: phase 1 writes requests as JSONL, phase 2 reads judgments back.

Phase 1 line (one per request, compact JSON, UTF-8)::

    {"run_id", "user_id", "round", "persona", "tip_id",
     "moment": {"hour_of_day", "day_of_week"},
     "task": {"priority", "is_overdue", "task_age_days"}}

Phase 2 line (one per judgment)::

    {"run_id", "user_id", "round", "tip_id", "action", "dwell_ms"}

A judgment is matched to its request by (run_id, user_id, round, tip_id). Extra fields
are ignored, so a judge may copy a request line and add ``action`` and ``dwell_ms``.
``action`` is done, snooze or dismiss (surrounding whitespace and case ignored).
``dwell_ms`` is an integer in [0, 2,592,000,000] (docs/contracts.md). It is required for
``done``, whose reward depends on it: the external judge's answer is not replaced by the
rule judge's model. For snooze and dismiss it may be omitted or null, and is then the
midpoint of the rule judge's range (11,500 ms, 3,000 ms): their reward does not depend
on it. Rewards come from ``bandit.reward.infer_reward``; ``expected_reward`` is None.

Errors are reported by line number (1-based; blank lines are skipped but counted):
invalid JSON, not an object, missing or mistyped field, unknown request, bad action,
missing or out-of-range dwell, duplicate (a second accepted judgment for a request; a
rejected line does not claim its request, so a corrected line may follow it). Requests
left without an accepted judgment are reported with ``line=None``.

>>> import io
>>> req = JudgmentRequest("run1", "sim-p-0", 0, "p", Moment(8, 1), Task("t1", 4, True, 3.0))
>>> out = io.StringIO(); write_requests([req], out)
1
>>> ok, errors = read_judgments(
...     ['{"run_id":"run1","user_id":"sim-p-0","round":0,"tip_id":"t1","action":"done",'
...      '"dwell_ms":30000}'], {req.key: req})
>>> ok[0].judgment.action, ok[0].judgment.dwell_ms, ok[0].judgment.reward, errors
('done', 30000, 1.0, [])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TextIO

import numpy as np

from bandit.base import Moment, Task
from judges.base import ACTIONS, Judge, Judgment
from judges.personas import Persona
from judges.rule import DISMISS_MS, SNOOZE_MS, reward_of

__all__ = [
    "MAX_DWELL_MS",
    "ExternalJudge",
    "ExternalJudgment",
    "JudgmentRequest",
    "LineError",
    "RequestFileError",
    "RequestKey",
    "read_judgments",
    "read_requests",
    "write_requests",
]

MAX_DWELL_MS = 2_592_000_000  # 30 days, as in TipFeedback.dwellMs

RequestKey = tuple[str, str, int, str]
"""(run_id, user_id, round, tip_id)"""

_DEFAULT_DWELL_MS = {
    "snooze": (SNOOZE_MS[0] + SNOOZE_MS[1]) // 2,
    "dismiss": (DISMISS_MS[0] + DISMISS_MS[1]) // 2,
}


class ExternalJudge(Judge):
    """Judgments made outside the simulator: requests out in phase 1, judgments in in phase 2.

    It cannot answer one call in the loop (the answer comes back in another process, maybe
    days later), so ``judge`` refuses; the simulator reads ``two_phase`` and plays the run
    with :func:`write_requests` and :func:`read_judgments` instead.
    """

    name: ClassVar[str] = "external"
    two_phase: ClassVar[bool] = True

    async def judge(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> NoReturn:
        raise NotImplementedError(
            "the external judge answers in phase 2 (read_judgments), not in the loop"
        )


@dataclass(frozen=True, slots=True)
class JudgmentRequest:
    """One tip shown to one simulated user, waiting for an external judgment."""

    run_id: str
    user_id: str
    round: int
    persona: str  # the persona's name
    moment: Moment
    task: Task  # the chosen tip: its ``tip_id`` is the request's

    @property
    def tip_id(self) -> str:
        return self.task.tip_id

    @property
    def key(self) -> RequestKey:
        return (self.run_id, self.user_id, self.round, self.tip_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "user_id": self.user_id,
            "round": self.round,
            "persona": self.persona,
            "tip_id": self.tip_id,
            "moment": {
                "hour_of_day": self.moment.hour_of_day,
                "day_of_week": self.moment.day_of_week,
            },
            "task": {
                "priority": self.task.priority,
                "is_overdue": self.task.is_overdue,
                "task_age_days": self.task.task_age_days,
            },
        }


@dataclass(frozen=True, slots=True)
class ExternalJudgment:
    """An accepted judgment, with its request and the line it came from."""

    request: JudgmentRequest
    line: int
    judgment: Judgment


@dataclass(frozen=True, slots=True)
class LineError:
    """A rejected line (``line`` 1-based), or a request with no judgment (``line`` None)."""

    line: int | None
    message: str
    key: RequestKey | None = None


class RequestFileError(ValueError):
    """A phase-1 request file that cannot be read back (names the line)."""


class _BadLineError(ValueError):
    pass


def _describe(key: RequestKey) -> str:
    run_id, user_id, round_, tip_id = key
    return f"run_id={run_id!r} user_id={user_id!r} round={round_} tip_id={tip_id!r}"


def _string(obj: Mapping[str, Any], field: str) -> str:
    if field not in obj:
        raise _BadLineError(f"missing field {field!r}")
    value = obj[field]
    if not isinstance(value, str) or not value:
        raise _BadLineError(f"field {field!r}: expected a non-empty string, got {value!r}")
    return value


def _integer(obj: Mapping[str, Any], field: str, low: int, high: int) -> int:
    if field not in obj:
        raise _BadLineError(f"missing field {field!r}")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadLineError(f"field {field!r}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise _BadLineError(f"field {field!r}: {value} out of range [{low}, {high}]")
    return value


def _object(raw: str) -> Mapping[str, Any]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise _BadLineError(f"invalid JSON at column {err.colno}: {err.msg}") from None
    if not isinstance(obj, dict):
        raise _BadLineError("expected a JSON object")
    return obj


def _key(obj: Mapping[str, Any]) -> RequestKey:
    return (
        _string(obj, "run_id"),
        _string(obj, "user_id"),
        _integer(obj, "round", 0, 2**63 - 1),
        _string(obj, "tip_id"),
    )


def write_requests(requests: Iterable[JudgmentRequest], out: TextIO) -> int:
    """Phase 1: one JSON line per request; returns how many were written."""
    count = 0
    for request in requests:
        out.write(json.dumps(request.to_json(), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def _parse_request(raw: str) -> JudgmentRequest:
    obj = _object(raw)
    run_id, user_id, round_, tip_id = _key(obj)
    moment, task = obj.get("moment"), obj.get("task")
    if not isinstance(moment, dict) or not isinstance(task, dict):
        raise _BadLineError("fields 'moment' and 'task' must be objects")
    age = task.get("task_age_days")
    if isinstance(age, bool) or not isinstance(age, int | float) or not age >= 0:
        raise _BadLineError(f"field 'task.task_age_days': expected a number >= 0, got {age!r}")
    overdue = task.get("is_overdue")
    if not isinstance(overdue, bool):
        raise _BadLineError(f"field 'task.is_overdue': expected a boolean, got {overdue!r}")
    return JudgmentRequest(
        run_id=run_id,
        user_id=user_id,
        round=round_,
        persona=_string(obj, "persona"),
        moment=Moment(
            _integer(moment, "hour_of_day", 0, 23), _integer(moment, "day_of_week", 0, 6)
        ),
        task=Task(tip_id, _integer(task, "priority", 1, 4), overdue, float(age)),
    )


def read_requests(lines: Iterable[str]) -> dict[RequestKey, JudgmentRequest]:
    """Read a phase-1 file back (for phase 2 in another process), keyed for ``read_judgments``.

    Raises :class:`RequestFileError` naming the first bad or duplicate line.
    """
    requests: dict[RequestKey, JudgmentRequest] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            request = _parse_request(raw)
        except _BadLineError as err:
            raise RequestFileError(f"line {number}: {err}") from None
        if request.key in requests:
            raise RequestFileError(f"line {number}: duplicate request {_describe(request.key)}")
        requests[request.key] = request
    return requests


def _judge_line(obj: Mapping[str, Any]) -> tuple[str, int]:
    action_raw = obj.get("action")
    if "action" not in obj:
        raise _BadLineError("missing field 'action'")
    action = action_raw.strip().lower() if isinstance(action_raw, str) else None
    if action not in ACTIONS:
        raise _BadLineError(f"bad action {action_raw!r}: expected done, snooze or dismiss")
    if obj.get("dwell_ms") is None:
        if action == "done":
            raise _BadLineError("missing field 'dwell_ms': required for done")
        return action, _DEFAULT_DWELL_MS[action]
    return action, _integer(obj, "dwell_ms", 0, MAX_DWELL_MS)


def read_judgments(
    lines: Iterable[str], expected: Mapping[RequestKey, JudgmentRequest]
) -> tuple[list[ExternalJudgment], list[LineError]]:
    """Phase 2: accepted judgments in line order, and every problem (lines, then missing)."""
    accepted: list[ExternalJudgment] = []
    errors: list[LineError] = []
    first_line: dict[RequestKey, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        key: RequestKey | None = None
        try:
            obj = _object(raw)
            key = _key(obj)
            request = expected.get(key)
            if request is None:
                raise _BadLineError(f"unknown request {_describe(key)}")
            if key in first_line:
                raise _BadLineError(
                    f"duplicate judgment for {_describe(key)} (first at line {first_line[key]})"
                )
            action, dwell_ms = _judge_line(obj)
        except _BadLineError as err:
            errors.append(LineError(number, str(err), key))
            continue
        first_line[key] = number
        judgment = Judgment(action, dwell_ms, reward_of(action, dwell_ms), None)
        accepted.append(ExternalJudgment(request, number, judgment))
    for key in expected:
        if key not in first_line:
            errors.append(LineError(None, f"no judgment for {_describe(key)}", key))
    return accepted, errors
