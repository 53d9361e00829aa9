"""The show/feedback join for one user, its reward, and the learning it triggers.

Pure logic over a ``UserRecord``: no Kafka, no database, no clock. Time is *stream time*,
the Kafka record timestamps, so that a replay makes the same decisions as the first run.

Rules (``docs/contracts.md``, "The reward rule" and "Join, deduplication and expiry"):
- the earliest feedback for a tip is learned from, once; later ones are ``duplicate`` and a
  re-delivered ``eventId`` rewrites its own row unchanged;
- feedback before its show waits; a show (or waiting feedback) past the reward wait time
  ``expired``s, and is learned from only if a default reward is set;
- legacy actions are stored as ``legacy``, never learned from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bandit.base import Moment, Policy, Task
from bandit.reward import LEGACY_ACTIONS, infer_reward, reward_milli
from schemas.events import TipFeedback, TipShown
from streams.worker.state import (
    PendingFeedback,
    PendingShow,
    Settled,
    UserRecord,
    event_key,
    user_state,
)

__all__ = [
    "APPLIED",
    "DUPLICATE",
    "EXPIRED",
    "LEGACY",
    "FeedbackRow",
    "Joiner",
    "Lesson",
    "PolicyModels",
    "UserResult",
]

APPLIED = "applied"
DUPLICATE = "duplicate"
LEGACY = "legacy"
EXPIRED = "expired"


class FeedbackRow(NamedTuple):
    """One ``tip_feedback`` row (a NamedTuple: immutable, and built several times faster
    than a frozen dataclass, once per feedback)."""

    event_id: str
    tip_id: str
    user_id: str
    action: str | None
    dwell_ms: int | None
    reward_milli: int | None
    policy: str | None
    propensity: float | None
    status: str
    occurred_at_ms: int


@dataclass(slots=True)
class UserResult:
    """What processing one user's events produced, for the sink and the metrics."""

    rows: list[FeedbackRow] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # one label per event or expiry
    reward_latencies_ms: list[int] = field(default_factory=list)
    changed: bool = False
    # With ``learn_later``: the user's models, whose lessons the caller learns (with other
    # users', ``streams.worker.learning``) and then flushes into the record.
    models: PolicyModels | None = None


class Lesson(NamedTuple):
    """One reward to learn: the moment and task it was shown for."""

    moment: Moment
    task: Task
    reward: float


class PolicyModels:
    """The user's per-policy states: decoded lazily, encoded back once per batch.

    ``decoded`` may be kept by the caller between batches (a hot cache), so that a busy
    user's models are not decoded again for every batch. With ``later``, ``learn`` keeps
    the lesson in ``lessons`` (the states decoded at once, so a bad one fails here) for the
    caller to learn together with other users'.
    """

    __slots__ = ("_decoded", "_dirty", "_later", "_policies", "_record", "_shared", "lessons")

    def __init__(
        self,
        policies: Sequence[Policy],
        record: UserRecord,
        shared: Mapping[str, Any],
        decoded: dict[str, Any] | None = None,
        later: bool = False,
    ) -> None:
        self._policies = policies
        self._record = record
        self._shared = shared
        self._decoded = decoded if decoded is not None else {}
        self._dirty = False
        self._later = later
        self.lessons: list[Lesson] = []

    @property
    def shared(self) -> Mapping[str, Any]:
        """Each pooled policy's shared state (view), by policy name."""
        return self._shared

    def state(self, policy: Policy) -> Any:
        found = self._decoded.get(policy.name)
        if found is None:
            found = user_state(policy, self._record.policy_blobs.get(policy.name))
            self._decoded[policy.name] = found
        return found

    def learn(self, moment: Moment, task: Task, reward: float) -> None:
        self._dirty = True
        if self._later:
            for policy in self._policies:
                self.state(policy)
            self.lessons.append(Lesson(moment, task, reward))
            return
        for policy in self._policies:
            policy.update(self.state(policy), self._shared.get(policy.name), moment, task, reward)

    def flush(self) -> None:
        if not self._dirty:
            return
        for policy in self._policies:
            self._record.policy_blobs[policy.name] = policy.encode_user(self.state(policy))


class Joiner:
    """Applies one user's events, in arrival order, to that user's record."""

    __slots__ = ("default_reward", "policies", "retention_ms", "wait_ms")

    def __init__(
        self,
        policies: Sequence[Policy],
        *,
        reward_wait_ms: int,
        default_reward: float | None = None,
        retention_ms: int = 7 * 86_400_000,
    ) -> None:
        self.policies = policies
        self.wait_ms = reward_wait_ms
        self.default_reward = default_reward
        self.retention_ms = retention_ms

    def process(
        self,
        record: UserRecord,
        user_id: str,
        events: Iterable[tuple[TipShown | TipFeedback, int, int]],
        stream_time_ms: int,
        shared: Mapping[str, Any],
        *,
        decoded_models: dict[str, Any] | None = None,
        learn_later: bool = False,
    ) -> UserResult:
        """Apply ``(event, record_timestamp_ms, stream_before_ms)`` triples, then expire what
        is overdue at ``stream_time_ms`` (the partition's stream time after them).

        ``stream_before_ms`` is the partition's stream time just before the event. Before the
        event is applied, what was overdue by then expires (as it would have if a batch had
        ended there), and so does what is due before the event's own record time (a
        feedback at its show's deadline is still in time). So a feedback that arrives after
        its show's deadline is ``late`` however the events were cut into batches, and a
        replay decides as the first run did.

        With ``learn_later`` the rewards are not learned yet: ``result.models`` holds them
        (``PolicyModels.lessons``), and the caller learns them and flushes the models. The
        join never reads what was learned, so learning after it changes nothing else.
        """
        models = PolicyModels(self.policies, record, shared, decoded_models, learn_later)
        user = _UserPass(record, user_id, models, UserResult(), stream_time_ms)
        due = record.next_deadline_ms()
        for event, timestamp_ms, stream_before_ms in events:
            overdue_ms = max(stream_before_ms, timestamp_ms - 1)
            if due is not None and due <= overdue_ms:
                self._expire_due(user, overdue_ms)
                due = record.next_deadline_ms()
            if isinstance(event, TipShown):
                self._on_show(user, event, timestamp_ms)
            else:
                self._on_feedback(user, event, timestamp_ms)
            # What the event left waiting is due at its time + the wait: ``due`` stays a
            # lower bound of the record's next deadline (too low costs one idle check).
            if due is None or timestamp_ms + self.wait_ms < due:
                due = timestamp_ms + self.wait_ms
        self._expire(user)
        if learn_later:
            user.result.models = models
        else:
            models.flush()
        return user.result

    # -- shows -------------------------------------------------------------------------

    def _on_show(self, user: _UserPass, show: TipShown, timestamp_ms: int) -> None:
        record, result = user.record, user.result
        tip = show.tip_id
        if tip in record.pending_shows or record.guard(tip) is not None:
            # A re-delivery, or a second show of a tip already served: the first one counts.
            result.outcomes.append("show_duplicate")
            return
        if timestamp_ms < record.guard_floor_ms:
            # Older than the guards this user has forgotten: it may have been learned from
            # already, and a re-delivery must never be applied twice (see _expire).
            result.outcomes.append("show_stale")
            return
        f = show.features
        pending = PendingShow(
            show.event_id,
            show.served_at_ms,
            show.policy,
            show.propensity,
            f.hour_of_day,
            f.day_of_week,
            f.priority,
            f.is_overdue,
            f.task_age_days,
            timestamp_ms + self.wait_ms,
        )
        result.changed = True
        waiting = record.pending_feedback.pop(tip, None)
        if not waiting:
            record.pending_shows[tip] = pending
            result.outcomes.append("show_waiting")
            return
        result.outcomes.append("show_joined")
        # The earliest feedback is learned from; the others are duplicates of it.
        waiting.sort(key=lambda w: w.occurred_at_ms)
        first, *later = waiting
        self._settle(user, tip, pending, first)
        for other in later:
            result.rows.append(_row(tip, show.user_id, DUPLICATE, other, record.guard(tip)))
            result.outcomes.append(DUPLICATE)

    # -- feedback ----------------------------------------------------------------------

    def _on_feedback(self, user: _UserPass, feedback: TipFeedback, timestamp_ms: int) -> None:
        record, result = user.record, user.result
        tip = feedback.tip_id
        action = feedback.action.value
        waiting = PendingFeedback(
            feedback.event_id,
            action,
            feedback.dwell_ms,
            feedback.occurred_at_ms,
            timestamp_ms + self.wait_ms,
        )
        if action in LEGACY_ACTIONS:
            origin = record.pending_shows.get(tip) or record.guard(tip)
            result.rows.append(_row(tip, feedback.user_id, LEGACY, waiting, origin))
            result.outcomes.append(LEGACY)
            return
        settled = record.guard(tip)
        if settled is not None:
            if settled.kind == APPLIED and settled.event == event_key(feedback.event_id):
                # Re-delivery of the feedback we learned from: rewrite its row, learn nothing.
                result.rows.append(
                    _row(
                        tip,
                        feedback.user_id,
                        APPLIED,
                        waiting,
                        settled,
                        dwell_ms=settled.dwell_ms,
                        reward_milli=settled.reward_milli,
                    )
                )
                result.outcomes.append("redelivered")
            elif settled.kind == APPLIED:
                result.rows.append(_row(tip, feedback.user_id, DUPLICATE, waiting, settled))
                result.outcomes.append(DUPLICATE)
            else:
                result.rows.append(_row(tip, feedback.user_id, EXPIRED, waiting, settled))
                result.outcomes.append("late")
            return
        show = record.pending_shows.pop(tip, None)
        result.changed = True
        if show is None:
            queue = record.pending_feedback.setdefault(tip, [])
            if any(w.event_id == feedback.event_id for w in queue):
                result.outcomes.append("redelivered")
            else:
                queue.append(waiting)
                result.outcomes.append("feedback_waiting")
            return
        self._settle(user, tip, show, waiting)

    def _settle(
        self, user: _UserPass, tip: str, show: PendingShow, feedback: PendingFeedback
    ) -> None:
        """Learn from the first feedback of a tip and remember that it was learned from.

        The guard is stamped with stream time, never a payload time: pruning compares it with
        stream time, and payload times of backfills, replays and wrong device clocks can lie
        weeks away from it.
        """
        record, result = user.record, user.result
        latency_ms = feedback.occurred_at_ms - show.served_at_ms
        dwell_ms = feedback.dwell_ms
        if dwell_ms is None and feedback.action == "done":
            # Clock skew can make the derived dwell negative: treat it as an instant "done".
            dwell_ms = max(0, latency_ms)
        reward = infer_reward(feedback.action, dwell_ms)
        assert reward is not None  # legacy actions never reach the join
        milli = reward_milli(reward)
        user.models.learn(_moment(show), _task(tip, show), reward)
        record.pulls += 1
        record.reward_milli_sum += milli
        record.last_updated_ms = feedback.occurred_at_ms
        record.settled[tip] = Settled(
            APPLIED,
            event_key(feedback.event_id),
            milli,
            dwell_ms,
            show.policy,
            show.propensity,
            user.now_ms,
        )
        result.rows.append(
            _row(tip, user.user_id, APPLIED, feedback, show, dwell_ms=dwell_ms, reward_milli=milli)
        )
        result.outcomes.append(APPLIED)
        result.reward_latencies_ms.append(latency_ms)

    # -- expiry ------------------------------------------------------------------------

    def _expire(self, user: _UserPass) -> None:
        self._expire_due(user, user.now_ms)
        self._forget_old_guards(user)

    def _expire_due(self, user: _UserPass, now_ms: int) -> None:
        """Expire the shows and waiting feedback whose deadline is ``now_ms`` or earlier."""
        record, result, user_id = user.record, user.result, user.user_id
        for tip, show in list(record.pending_shows.items()):
            if show.deadline_ms > now_ms:
                continue
            del record.pending_shows[tip]
            milli = None
            if self.default_reward is not None:
                user.models.learn(_moment(show), _task(tip, show), self.default_reward)
                milli = reward_milli(self.default_reward)
                record.pulls += 1
                record.reward_milli_sum += milli
                record.last_updated_ms = show.deadline_ms
            record.settled[tip] = Settled(
                EXPIRED, event_key(show.event_id), milli, None, show.policy, show.propensity, now_ms
            )
            result.rows.append(
                FeedbackRow(
                    event_id=show.event_id,
                    tip_id=tip,
                    user_id=user_id,
                    action=None,
                    dwell_ms=None,
                    reward_milli=milli,
                    policy=show.policy,
                    propensity=show.propensity,
                    status=EXPIRED,
                    occurred_at_ms=show.deadline_ms,
                )
            )
            result.outcomes.append(EXPIRED)
            result.changed = True
        for tip, queue in list(record.pending_feedback.items()):
            if min(w.deadline_ms for w in queue) > now_ms:
                continue
            del record.pending_feedback[tip]
            for waiting in queue:
                result.rows.append(_row(tip, user_id, EXPIRED, waiting, None))
                result.outcomes.append(EXPIRED)
            record.settled[tip] = Settled(
                EXPIRED, event_key(queue[0].event_id), None, None, None, None, now_ms
            )
            result.changed = True

    def _forget_old_guards(self, user: _UserPass) -> None:
        """Drop guards older than the retention, on stream time, and raise the user's floor.

        A forgotten tip could be delivered again (a crash replay, a seek back to a hole, the
        group's offsets reset). Its show then has a record time below the floor, and
        ``_on_show`` refuses it, so the tip can never be joined, and learned from, twice.
        Guards written before they carried stream time (``at_ms`` < 0) are stamped now.
        """
        record, now_ms = user.record, user.now_ms
        horizon = now_ms - self.retention_ms
        stale = []
        for tip, settled in record.settled.items():
            if settled.at_ms < 0:
                settled.at_ms = now_ms
                user.result.changed = True
            elif settled.at_ms < horizon:
                stale.append(tip)
        # A chunk's guards below the new floor are forgotten by raising it (UserRecord.guard).
        oldest = record.oldest_chunk_guard_ms()
        stale_archived = oldest is not None and oldest < horizon
        if not stale and not stale_archived:
            return
        for tip in stale:
            del record.settled[tip]
        record.guard_floor_ms = max(record.guard_floor_ms, horizon)
        user.result.changed = True


@dataclass(slots=True)
class _UserPass:
    """One user's part of a batch: the record, its models, what it produced, stream time."""

    record: UserRecord
    user_id: str
    models: PolicyModels
    result: UserResult
    now_ms: int


def _moment(show: PendingShow) -> Moment:
    return Moment(show.hour_of_day, show.day_of_week)


def _task(tip: str, show: PendingShow) -> Task:
    return Task(tip, show.priority, show.is_overdue, show.task_age_days)


def _row(
    tip: str,
    user_id: str,
    status: str,
    feedback: PendingFeedback,
    origin: PendingShow | Settled | None,
    *,
    dwell_ms: int | None = None,
    reward_milli: int | None = None,
) -> FeedbackRow:
    """The ``tip_feedback`` row of one feedback; ``origin`` says which policy logged the tip.

    ``dwell_ms`` overrides the feedback's own (a derived or a stored dwell).
    """
    return FeedbackRow(
        event_id=feedback.event_id,
        tip_id=tip,
        user_id=user_id,
        action=feedback.action,
        dwell_ms=feedback.dwell_ms if dwell_ms is None else dwell_ms,
        reward_milli=reward_milli,
        policy=origin.policy if origin else None,
        propensity=origin.propensity if origin else None,
        status=status,
        occurred_at_ms=feedback.occurred_at_ms,
    )
