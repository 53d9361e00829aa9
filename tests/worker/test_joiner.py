"""The join, reward and guard rules on a user record, without Kafka (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import orjson
import pytest

from bandit.policies.egreedy import EpsilonGreedyV1
from schemas.events import TipFeedback, TipShown
from streams.worker.joiner import Joiner
from streams.worker.state import UserRecord
from tests.worker.reward_cases import DONE_REWARD_AT_DWELL_BOUNDARIES

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
WAIT_MS = 60_000


def show(tip: str = "t1", event_id: str | None = None, at: datetime = T0) -> TipShown:
    return msgspec.convert(
        {
            "type": "TipShown",
            "schemaVersion": 1,
            "eventId": event_id or f"s-{tip}",
            "tipId": tip,
            "userId": "u1",
            "servedAt": at,
            "policy": "egreedy-v1",
            "propensity": 0.9,
            "features": {
                "hourOfDay": 9,
                "dayOfWeek": 4,
                "priority": 3,
                "isOverdue": True,
                "taskAgeDays": 2.0,
            },
        },
        TipShown,
    )


def feedback(
    tip: str = "t1",
    action: str = "done",
    dwell: int | None = 30_000,
    event_id: str | None = None,
    at: datetime | None = None,
) -> TipFeedback:
    document = {
        "type": "TipFeedback",
        "schemaVersion": 1,
        "eventId": event_id or f"f-{tip}-{action}",
        "tipId": tip,
        "userId": "u1",
        "action": action,
        "dwellMs": dwell,
        "occurredAt": at or T0 + timedelta(seconds=40),
    }
    return msgspec.convert(document, TipFeedback)


@pytest.fixture
def joiner() -> Joiner:
    return Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS)


def run(joiner: Joiner, record: UserRecord, *events: TipShown | TipFeedback, now: int = T0_MS):
    return joiner.process(record, "u1", [(e, now, now) for e in events], now, {})


@pytest.mark.parametrize(("dwell", "milli"), [*DONE_REWARD_AT_DWELL_BOUNDARIES, (0, -300)])
def test_done_reward_at_every_dwell_boundary(joiner: Joiner, dwell: int, milli: int) -> None:
    record = UserRecord()
    result = run(joiner, record, show(), feedback(dwell=dwell))
    assert [(r.status, r.reward_milli, r.dwell_ms) for r in result.rows] == [
        ("applied", milli, dwell)
    ]
    assert record.pulls == 1
    assert record.reward_milli_sum == milli
    assert "egreedy-v1" in record.policy_blobs


@pytest.mark.parametrize(("action", "milli"), [("dismiss", -1000), ("snooze", 100)])
def test_dismiss_and_snooze(joiner: Joiner, action: str, milli: int) -> None:
    result = run(joiner, UserRecord(), show(), feedback(action=action, dwell=None))
    assert [(r.status, r.reward_milli, r.action) for r in result.rows] == [
        ("applied", milli, action)
    ]


def test_done_without_dwell_derives_it_from_the_show(joiner: Joiner) -> None:
    fb = feedback(dwell=None, at=T0 + timedelta(seconds=200))
    result = run(joiner, UserRecord(), show(), fb)
    assert [(r.dwell_ms, r.reward_milli) for r in result.rows] == [(200_000, 600)]


def test_feedback_before_its_show_waits_then_joins(joiner: Joiner) -> None:
    record = UserRecord()
    first = run(joiner, record, feedback())
    assert first.rows == []
    assert first.outcomes == ["feedback_waiting"]
    assert "t1" in record.pending_feedback
    second = run(joiner, record, show())
    assert [(r.status, r.reward_milli, r.policy, r.propensity) for r in second.rows] == [
        ("applied", 1000, "egreedy-v1", 0.9)
    ]
    assert record.pending_feedback == {}
    assert record.pulls == 1


def test_earliest_waiting_feedback_wins(joiner: Joiner) -> None:
    record = UserRecord()
    late = feedback(action="dismiss", dwell=2000, event_id="late", at=T0 + timedelta(seconds=90))
    early = feedback(action="snooze", dwell=2000, event_id="early", at=T0 + timedelta(seconds=5))
    run(joiner, record, late, early)
    result = run(joiner, record, show())
    assert sorted((r.event_id, r.status, r.reward_milli) for r in result.rows) == [
        ("early", "applied", 100),
        ("late", "duplicate", None),
    ]
    assert record.pulls == 1


def test_redelivery_rewrites_the_same_row_and_learns_nothing(joiner: Joiner) -> None:
    record = UserRecord()
    first = run(joiner, record, show(), feedback())
    blob = record.policy_blobs["egreedy-v1"]
    again = run(joiner, record, feedback(), show())
    assert again.rows == first.rows
    assert again.outcomes == ["redelivered", "show_duplicate"]
    assert record.pulls == 1
    assert record.policy_blobs["egreedy-v1"] == blob


def test_second_feedback_for_a_tip_is_a_duplicate(joiner: Joiner) -> None:
    record = UserRecord()
    run(joiner, record, show(), feedback())
    result = run(joiner, record, feedback(action="dismiss", dwell=1000))
    assert [(r.status, r.reward_milli, r.policy) for r in result.rows] == [
        ("duplicate", None, "egreedy-v1")
    ]
    assert record.pulls == 1


def test_legacy_actions_are_stored_not_learned(joiner: Joiner) -> None:
    record = UserRecord()
    result = run(joiner, record, show(), feedback(action="helpful", dwell=None))
    assert [(r.status, r.reward_milli, r.policy) for r in result.rows] == [
        ("legacy", None, "egreedy-v1")
    ]
    assert record.pulls == 0
    # The tip can still be learned from by a real action.
    later = run(joiner, record, feedback(action="done", dwell=20_000))
    assert [r.status for r in later.rows] == ["applied"]


def test_show_without_feedback_expires_at_the_wait(joiner: Joiner) -> None:
    record = UserRecord()
    run(joiner, record, show())
    assert run(joiner, record, now=T0_MS + WAIT_MS - 1).rows == []
    result = run(joiner, record, now=T0_MS + WAIT_MS)
    assert [(r.event_id, r.status, r.action, r.reward_milli) for r in result.rows] == [
        ("s-t1", "expired", None, None)
    ]
    assert record.pulls == 0
    late = run(joiner, record, feedback(), now=T0_MS + WAIT_MS + 1)
    assert [(r.status, r.reward_milli) for r in late.rows] == [("expired", None)]
    assert record.pulls == 0


def test_default_reward_is_learned_on_expiry() -> None:
    joiner = Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS, default_reward=-0.5)
    record = UserRecord()
    run(joiner, record, show())
    result = run(joiner, record, now=T0_MS + WAIT_MS)
    assert [(r.status, r.reward_milli) for r in result.rows] == [("expired", -500)]
    assert record.pulls == 1


def test_feedback_whose_show_never_comes_expires(joiner: Joiner) -> None:
    record = UserRecord()
    run(joiner, record, feedback())
    result = run(joiner, record, now=T0_MS + WAIT_MS)
    assert [(r.status, r.action, r.reward_milli) for r in result.rows] == [
        ("expired", "done", None)
    ]
    assert run(joiner, record, show(), now=T0_MS + WAIT_MS + 1).outcomes == ["show_duplicate"]


def test_guard_is_forgotten_after_the_retention() -> None:
    joiner = Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS, retention_ms=10 * WAIT_MS)
    record = UserRecord()
    run(joiner, record, show(), feedback())
    run(joiner, record, now=T0_MS + 5 * WAIT_MS)
    assert "t1" in record.settled
    run(joiner, record, now=T0_MS + 11 * WAIT_MS)
    assert record.settled == {}


def test_record_survives_its_codec_midway(joiner: Joiner) -> None:
    """What a restart does: state round-trips through bytes between two batches."""
    record = UserRecord()
    run(joiner, record, feedback(tip="a"), show(tip="b"))
    restored = UserRecord.decode(record.encode())
    result = run(joiner, restored, show(tip="a"), feedback(tip="b", action="snooze", dwell=3000))
    assert sorted((r.tip_id, r.status) for r in result.rows) == [("a", "applied"), ("b", "applied")]
    assert restored.pulls == 2


# -- the guard runs on stream time only (backfills, replays, wrong device clocks) ----------

MONTH = timedelta(days=30)


@pytest.mark.parametrize("payload_shift", [-MONTH, MONTH, -10 * 365 * timedelta(days=1)])
def test_guard_outlives_its_batch_whatever_the_payload_times(payload_shift: timedelta) -> None:
    """Payload times a month (or years) away from stream time: the guard is kept, and the
    very same events read again (a crash replay, a seek back to a hole) learn nothing."""
    joiner = Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS, retention_ms=10 * WAIT_MS)
    record = UserRecord()
    at = T0 + payload_shift
    events = (show(at=at), feedback(at=at + timedelta(seconds=40)))
    first = run(joiner, record, *events)
    assert first.outcomes == ["show_waiting", "applied"]
    assert "t1" in record.settled
    for replay_now in (T0_MS, T0_MS + 5 * WAIT_MS):
        again = run(joiner, record, *events, now=replay_now)
        assert again.outcomes == ["show_duplicate", "redelivered"]
    assert (record.pulls, record.reward_milli_sum) == (1, 1000)
    # ... and it is forgotten after the retention of stream time, even when the payload
    # times lie in the future (it would otherwise be kept for ever).
    run(joiner, record, now=T0_MS + 11 * WAIT_MS)
    assert record.settled == {}


def test_a_forgotten_tip_delivered_again_is_never_learned_twice() -> None:
    joiner = Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS, retention_ms=10 * WAIT_MS)
    record = UserRecord()
    events = (show(), feedback())
    run(joiner, record, *events)
    run(joiner, record, now=T0_MS + 11 * WAIT_MS)  # stream time moves on: the guard goes
    assert record.settled == {}
    assert record.guard_floor_ms == T0_MS + WAIT_MS
    # The group's offsets reset: the same records (same record times) arrive again.
    later = T0_MS + 12 * WAIT_MS
    again = joiner.process(record, "u1", [(e, T0_MS, later) for e in events], later, {})
    assert again.outcomes[0] == "show_stale"
    assert "applied" not in again.outcomes
    assert (record.pulls, record.reward_milli_sum) == (1, 1000)
    # A new tip shown after the floor is joined and learned as usual.
    fresh = T0_MS + 12 * WAIT_MS
    result = joiner.process(
        record,
        "u1",
        [(show(tip="t2"), fresh, fresh), (feedback(tip="t2"), fresh, fresh)],
        fresh,
        {},
    )
    assert result.outcomes == ["show_waiting", "applied"]
    assert record.pulls == 2


def test_format_1_guards_are_restamped_on_stream_time() -> None:
    """A record written before guards carried stream time: their payload-time stamps are
    never compared with stream time; they are stamped anew and kept for the retention."""
    joiner = Joiner([EpsilonGreedyV1()], reward_wait_ms=WAIT_MS, retention_ms=10 * WAIT_MS)
    record = UserRecord()
    old = T0 - MONTH
    run(joiner, record, show(at=old), feedback(at=old + timedelta(seconds=40)))
    # The format-1 bytes of that record: guards as JSON rows with the event id itself, stamped
    # with payload times, no guard floor.
    document = {
        "p": record.pulls, "r": record.reward_milli_sum, "u": record.last_updated_ms,
        "s": {}, "f": {},
        "g": {"t1": ["applied", "f1", *[None] * 4, int(old.timestamp() * 1000)]},
    }  # fmt: skip
    body = orjson.dumps(document)
    legacy = bytes([1]) + len(body).to_bytes(4, "little") + body
    for name, blob in record.policy_blobs.items():
        legacy += len(name).to_bytes(1, "little") + len(blob).to_bytes(4, "little")
        legacy += name.encode() + blob
    restored = UserRecord.decode(bytes(legacy))
    assert restored.settled["t1"].at_ms == -1
    run(joiner, restored, now=T0_MS + WAIT_MS)
    assert restored.settled["t1"].at_ms == T0_MS + WAIT_MS
    again = run(joiner, restored, show(at=old), feedback(at=old), now=T0_MS + 2 * WAIT_MS)
    assert "applied" not in again.outcomes
    assert restored.pulls == 1
