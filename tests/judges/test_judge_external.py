"""The external judge: requests out as JSONL, judgments back, every bad line by number."""

from __future__ import annotations

import io
import json

import pytest

from bandit.base import Moment, Task
from bandit.reward import infer_reward
from judges.external import (
    MAX_DWELL_MS,
    JudgmentRequest,
    LineError,
    RequestFileError,
    RequestKey,
    read_judgments,
    read_requests,
    write_requests,
)
from judges.personas import load_personas
from judges.world import World

RUN = "run-42"


def make_requests() -> list[JudgmentRequest]:
    world, out = World(3), []
    for p in load_personas()[:2]:
        for user in range(2):
            for round_ in range(2):
                tasks = world.candidates(p, user, round_)
                out.append(
                    JudgmentRequest(
                        RUN,
                        world.user_id(p, user),
                        round_,
                        p.name,
                        world.moment(p, user, round_),
                        tasks[round_ + 1],
                    )
                )
    return out


REQUESTS = make_requests()
EXPECTED: dict[RequestKey, JudgmentRequest] = {r.key: r for r in REQUESTS}


def line(request: JudgmentRequest, **fields: object) -> str:
    obj: dict[str, object] = {
        "run_id": request.run_id,
        "user_id": request.user_id,
        "round": request.round,
        "tip_id": request.tip_id,
    }
    obj.update(fields)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_phase_one_writes_one_line_per_request_with_the_contract_fields() -> None:
    out = io.StringIO()
    assert write_requests(REQUESTS, out) == len(REQUESTS) == 8
    lines = out.getvalue().splitlines()
    assert len(lines) == 8
    first = json.loads(lines[0])
    assert list(first) == ["run_id", "user_id", "round", "persona", "tip_id", "moment", "task"]
    assert list(first["moment"]) == ["hour_of_day", "day_of_week"]
    assert list(first["task"]) == ["priority", "is_overdue", "task_age_days"]
    r = REQUESTS[0]
    assert first == {
        "run_id": RUN,
        "user_id": r.user_id,
        "round": r.round,
        "persona": r.persona,
        "tip_id": r.tip_id,
        "moment": {"hour_of_day": r.moment.hour_of_day, "day_of_week": r.moment.day_of_week},
        "task": {
            "priority": r.task.priority,
            "is_overdue": r.task.is_overdue,
            "task_age_days": r.task.task_age_days,
        },
    }


def test_requests_round_trip() -> None:
    out = io.StringIO()
    write_requests(REQUESTS, out)
    back = read_requests(io.StringIO(out.getvalue()))
    assert back == EXPECTED
    assert list(back.values()) == REQUESTS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"run_id": "r"\n', "line 1: invalid JSON"),
        ("\n[1]\n", "line 2: expected a JSON object"),
        (
            json.dumps(
                {
                    "run_id": "r",
                    "user_id": "u",
                    "round": 0,
                    "persona": "p",
                    "tip_id": "t",
                    "moment": {"hour_of_day": 24, "day_of_week": 0},
                    "task": {"priority": 1, "is_overdue": False, "task_age_days": 0},
                }
            ),
            "line 1: field 'hour_of_day': 24 out of range",
        ),
    ],
)
def test_bad_request_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(RequestFileError, match=message):
        read_requests(io.StringIO(text))


def test_duplicate_request_lines_are_refused() -> None:
    out = io.StringIO()
    write_requests([REQUESTS[0], REQUESTS[0]], out)
    with pytest.raises(RequestFileError, match="line 2: duplicate request"):
        read_requests(out.getvalue().splitlines())


def test_all_good_judgments() -> None:
    actions = [
        ("done", 30_000),
        ("done", 14_999),
        ("done", 120_000),
        ("done", 600_000),
        ("snooze", 4_000),
        ("dismiss", 0),
        ("DONE ", 119_999),
        ("dismiss", MAX_DWELL_MS),
    ]
    lines = [line(r, action=a, dwell_ms=d) for r, (a, d) in zip(REQUESTS, actions, strict=True)]
    accepted, errors = read_judgments(lines, EXPECTED)
    assert errors == []
    assert [j.line for j in accepted] == list(range(1, 9))
    assert [j.request for j in accepted] == REQUESTS
    rewards = [j.judgment.reward for j in accepted]
    assert rewards == [1.0, -0.3, 0.6, 0.3, 0.1, -1.0, 1.0, -1.0]
    for j in accepted:
        assert j.judgment.reward == infer_reward(j.judgment.action, j.judgment.dwell_ms)
        assert j.judgment.expected_reward is None
        assert j.judgment.fallback_reason is None
    assert accepted[6].judgment.action == "done"


def test_dwell_is_optional_for_snooze_and_dismiss_only() -> None:
    lines = [
        line(REQUESTS[0], action="snooze"),
        line(REQUESTS[1], action="dismiss", dwell_ms=None),
        line(REQUESTS[2], action="done"),
        line(REQUESTS[3], action="done", dwell_ms=None),
    ]
    accepted, errors = read_judgments(lines, {r.key: r for r in REQUESTS[:4]})
    assert [(j.judgment.action, j.judgment.dwell_ms) for j in accepted] == [
        ("snooze", 11_500),
        ("dismiss", 3_000),
    ]
    assert [(e.line, e.message) for e in errors[:2]] == [
        (3, "missing field 'dwell_ms': required for done"),
        (4, "missing field 'dwell_ms': required for done"),
    ]
    assert [(e.line, e.key) for e in errors[2:]] == [
        (None, REQUESTS[2].key),
        (None, REQUESTS[3].key),
    ]


def test_a_request_line_with_an_answer_added_is_a_judgment() -> None:
    out = io.StringIO()
    write_requests(REQUESTS[:1], out)
    obj = json.loads(out.getvalue())
    obj.update(action="done", dwell_ms=20_000, note="extra fields are ignored")
    accepted, errors = read_judgments([json.dumps(obj)], {REQUESTS[0].key: REQUESTS[0]})
    assert errors == []
    assert accepted[0].judgment.reward == 1.0


def test_every_kind_of_bad_line_is_reported_by_number() -> None:
    r = REQUESTS
    lines = [
        line(r[0], action="done", dwell_ms=60_000),  # 1 ok
        "{not json",  # 2
        "",  # 3 blank: skipped
        '["a list"]',  # 4
        line(r[1], tip_id="nope", action="done", dwell_ms=1),  # 5 unknown (tip id)
        line(r[1], run_id="other-run", action="snooze"),  # 6 unknown (run)
        line(r[1], action="maybe"),  # 7 bad action
        line(r[1], action="helpful", dwell_ms=3),  # 8 legacy: not a judgment
        line(r[1], action=None),  # 9 bad action
        line(r[1]),  # 10 no action
        line(r[2], action="done", dwell_ms=-1),  # 11 out of range
        line(r[2], action="done", dwell_ms=MAX_DWELL_MS + 1),  # 12 out of range
        line(r[2], action="done", dwell_ms=1.5),  # 13 not an integer
        line(r[2], action="done", dwell_ms=True),  # 14 not an integer
        line(r[0], action="snooze", dwell_ms=5_000),  # 15 duplicate of line 1
        line(r[3], round=True, action="snooze"),  # 16 round not an integer
        line(r[3], user_id=...),  # 17 missing user_id
        line(r[2], action="Snooze", dwell_ms=3_000),  # 18 ok: corrects 11-14
        "   ",  # 19 blank
    ]
    accepted, errors = read_judgments(lines, EXPECTED)
    assert [(j.line, j.request.key) for j in accepted] == [(1, r[0].key), (18, r[2].key)]
    by_line = {e.line: e.message for e in errors if e.line is not None}
    assert sorted(by_line) == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert by_line[2].startswith("invalid JSON at column 2")
    assert by_line[4] == "expected a JSON object"
    assert by_line[5].startswith("unknown request")
    assert "tip_id='nope'" in by_line[5]
    assert by_line[6].startswith("unknown request")
    assert "other-run" in by_line[6]
    for n in (7, 8, 9):
        assert by_line[n].startswith("bad action"), by_line[n]
    assert by_line[10] == "missing field 'action'"
    assert "out of range" in by_line[11]
    assert "out of range" in by_line[12]
    assert "expected an integer" in by_line[13]
    assert "expected an integer" in by_line[14]
    assert by_line[15].startswith("duplicate judgment")
    assert "first at line 1" in by_line[15]
    assert "'round'" in by_line[16]
    assert by_line[17] == "missing field 'user_id'"
    missing = [e for e in errors if e.line is None]
    assert [e.key for e in missing] == [q.key for q in r if q.key not in {r[0].key, r[2].key}]
    assert all(e.message.startswith("no judgment for run_id=") for e in missing)
    # Lines first (in order), then the missing requests.
    assert errors[: len(by_line)] == [e for e in errors if e.line is not None]


def test_line_error_keys_point_at_the_request_when_known() -> None:
    _, errors = read_judgments([line(REQUESTS[0], action="maybe")], {REQUESTS[0].key: REQUESTS[0]})
    assert errors == [
        LineError(1, "bad action 'maybe': expected done, snooze or dismiss", REQUESTS[0].key),
        LineError(None, errors[1].message, REQUESTS[0].key),
    ]


def test_empty_input_reports_every_request_missing() -> None:
    accepted, errors = read_judgments([], EXPECTED)
    assert accepted == []
    assert len(errors) == len(EXPECTED)


def test_request_key_and_tip_id_come_from_the_task() -> None:
    r = JudgmentRequest("r", "u", 3, "p", Moment(1, 2), Task("tip-9", 2, False, 1.0))
    assert r.tip_id == "tip-9"
    assert r.key == ("r", "u", 3, "tip-9")
