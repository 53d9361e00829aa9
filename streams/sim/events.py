"""What the simulator writes about one judgment: its two Kafka events and its row's features.

:class:`RunEvents` is the one place that builds a run's ``TipShown`` and ``TipFeedback``
(``source = sim``, the run id, event ids from (run, user, round)) and turns them into
records for the :class:`~streams.sim.publisher.Publisher`; :func:`features_json` is the
``sim_events.features`` document of the judgment.

Load mode encodes tens of thousands of events a second, where building and serialising the
event structs costs more than everything else: :meth:`RunEvents.shown_value` and
:meth:`RunEvents.feedback_value` write the very same bytes as ``encode`` of the models
(tests/sim/test_event_values.py compares them), from plain values, without validating.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bandit.base import Moment, Task
from judges.base import Judgment
from schemas.events import (
    Action,
    CandidateTip,
    Source,
    TipFeatures,
    TipFeedback,
    TipShown,
    encode,
    from_epoch_ms,
    rfc3339,
)
from streams.settings import Settings
from streams.sim.choosers import Picked
from streams.sim.config import SimUser
from streams.sim.publisher import Message

__all__ = ["RunEvents", "event_ids", "features_json", "now_ms", "task_json"]


_SIM = Source.SIM.value  # an enum member's value is a property: read it once


def event_ids(run_id: str, user_id: str, round_: int) -> tuple[str, str]:
    """(the show's, the feedback's): the same judgment always gets the same ids."""
    base = f"{run_id}/{user_id}/{round_}"
    return f"{base}/s", f"{base}/f"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RunEvents:
    """The events of one run, and the records that carry them (keyed by user id)."""

    run_id: str
    topic_shown: str
    topic_feedback: str

    @classmethod
    def of(cls, settings: Settings, run_id: str) -> RunEvents:
        return cls(run_id, settings.topic_shown, settings.topic_feedback)

    def _envelope(self, event_id: str, user: SimUser, tip_id: str) -> dict[str, Any]:
        """The fields every event of this run carries, whichever its type."""
        return {
            "schema_version": 1,
            "event_id": event_id,
            "tip_id": tip_id,
            "user_id": user.user_id,
            "source": Source.SIM,
            "run_id": self.run_id,
        }

    def shown(  # noqa: PLR0917 - one show's parts, all needed
        self,
        user: SimUser,
        round_: int,
        policy: str,
        moment: Moment,
        tasks: Sequence[Task],
        picked: Picked,
        served_at_ms: int,
    ) -> TipShown:
        task = tasks[picked.index]
        shown_id, _ = event_ids(self.run_id, user.user_id, round_)
        return TipShown(
            **self._envelope(shown_id, user, task.tip_id),
            served_at=from_epoch_ms(served_at_ms),
            policy=policy,
            propensity=picked.propensity,
            features=TipFeatures(
                hour_of_day=moment.hour_of_day,
                day_of_week=moment.day_of_week,
                priority=task.priority,
                is_overdue=task.is_overdue,
                task_age_days=task.task_age_days,
            ),
            candidate_count=len(tasks),
            candidates=[
                CandidateTip(
                    tip_id=t.tip_id,
                    priority=t.priority,
                    is_overdue=t.is_overdue,
                    task_age_days=t.task_age_days,
                )
                for t in tasks
            ],
        )

    def feedback(
        self, user: SimUser, round_: int, task: Task, judgment: Judgment, served_at_ms: int
    ) -> TipFeedback:
        """The reaction, ``dwell_ms`` after the show."""
        _, feedback_id = event_ids(self.run_id, user.user_id, round_)
        return TipFeedback(
            **self._envelope(feedback_id, user, task.tip_id),
            action=Action(judgment.action),
            dwell_ms=judgment.dwell_ms,
            occurred_at=from_epoch_ms(served_at_ms + (judgment.dwell_ms or 0)),
        )

    def clock(self, user: SimUser, round_: int, tip_id: str, at_ms: int) -> TipFeedback:
        """A clock record of round ``round_`` in ``user``'s partition: a legacy ``helpful``
        (never learned, no state) whose only use is its record time (``streams.sim.
        stream_clock``)."""
        base = f"{self.run_id}/{user.user_id}/{round_}"
        return TipFeedback(
            **self._envelope(f"{base}/clock", user, tip_id),
            action=Action.HELPFUL,
            occurred_at=from_epoch_ms(at_ms),
        )

    def shown_value(
        self,
        *,
        user_id: str,
        round_: int,
        policy: str,
        hour: int,
        day: int,
        tip_ids: Sequence[str],
        priorities: Sequence[int],
        overdue: Sequence[bool],
        ages: Sequence[float],
        chosen: int,
        propensity: float,
        served_at_ms: int,
    ) -> bytes:
        """``encode`` of :meth:`shown` for the candidates given column by column."""
        shown_id, _ = event_ids(self.run_id, user_id, round_)
        return orjson.dumps(
            {
                "type": "TipShown",
                **self._wire_envelope(shown_id, user_id, tip_ids[chosen]),
                "servedAt": rfc3339(served_at_ms),
                "policy": policy,
                "propensity": propensity,
                "features": {
                    "hourOfDay": hour,
                    "dayOfWeek": day,
                    "priority": priorities[chosen],
                    "isOverdue": overdue[chosen],
                    "taskAgeDays": ages[chosen],
                },
                "candidateCount": len(tip_ids),
                "candidates": [
                    {"tipId": t, "priority": p, "isOverdue": o, "taskAgeDays": a}
                    for t, p, o, a in zip(tip_ids, priorities, overdue, ages, strict=True)
                ],
            }
        )

    def feedback_value(
        self, *, user_id: str, round_: int, tip_id: str, action: str, dwell_ms: int,
        served_at_ms: int,
    ) -> bytes:  # fmt: skip
        """``encode`` of :meth:`feedback`."""
        _, feedback_id = event_ids(self.run_id, user_id, round_)
        return orjson.dumps(
            {
                "type": "TipFeedback",
                **self._wire_envelope(feedback_id, user_id, tip_id),
                "action": action,
                "dwellMs": dwell_ms,
                "occurredAt": rfc3339(served_at_ms + dwell_ms),
            }
        )

    def _wire_envelope(self, event_id: str, user_id: str, tip_id: str) -> dict[str, Any]:
        """``_envelope`` as ``encode`` writes it (camelCase, in the structs' field order)."""
        return {
            "schemaVersion": 1,
            "eventId": event_id,
            "tipId": tip_id,
            "userId": user_id,
            "source": _SIM,
            "runId": self.run_id,
        }

    def record(self, event: TipShown | TipFeedback) -> Message:
        """The record for the event's topic, keyed by its user (so both share a partition)."""
        topic = self.topic_shown if isinstance(event, TipShown) else self.topic_feedback
        return topic, event.user_id.encode(), encode(event)


def task_json(task: Task, expected: float | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "tip_id": task.tip_id,
        "priority": task.priority,
        "is_overdue": task.is_overdue,
        "task_age_days": task.task_age_days,
    }
    if expected is not None:
        document["expected_reward"] = expected
    return document


def features_json(
    *,
    user: SimUser,
    moment: Moment,
    tasks: Sequence[Task],
    picked: Picked,
    expected: Sequence[float] | None,
    via: str,
    fallback_reason: str | None = None,
) -> dict[str, Any]:
    """``sim_events.features``: the moment, the chosen task and every candidate.

    With the rule judge each candidate carries its exact expected reward, so the oracle, the
    random baseline and off-policy estimates need no extra run.
    """
    candidates = [
        task_json(t, expected[i] if expected is not None else None) for i, t in enumerate(tasks)
    ]
    if picked.probabilities is not None:
        for candidate, probability in zip(candidates, picked.probabilities, strict=True):
            candidate["probability"] = probability
    document: dict[str, Any] = {
        "user_index": user.index,
        "moment": {"hour_of_day": moment.hour_of_day, "day_of_week": moment.day_of_week},
        "chosen_index": picked.index,
        "chosen": candidates[picked.index],
        "candidates": candidates,
        "score": picked.score,
        "via": via,
    }
    if fallback_reason is not None:
        document["fallback_reason"] = fallback_reason
    return document
