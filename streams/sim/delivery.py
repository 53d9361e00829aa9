"""Late feedback for the in-process learner: each reward is learned when it arrives.

Stream time is the simulator's: round r is served at ``r * round_s`` seconds (every block of
a round at the same instant). A feedback judged in round r with dwell ``d`` and delay
``delay`` (drawn by :class:`judges.delay.FeedbackDelay` from the world's delivery stream)
arrives at ``r * round_s + d + delay``. The learner takes every reward that has arrived
before each block's choices, in arrival order (ties in the order they were judged). So a
feedback is learned before the first round r' with ``r' * round_s`` ≥ its arrival: never in
its own round, and ``ceil((d + delay) / round_s)`` rounds later.

Expiry mirrors the worker's join (``streams.worker.joiner``, ``TIPSTREAM_REWARD_WAIT_S`` and
``TIPSTREAM_DEFAULT_REWARD``): a show waits ``reward_wait_s`` of stream time for its
feedback. A feedback that arrives by then is learned with its own reward. A show whose
feedback arrives later (the worker stores that feedback as ``expired`` and never learns it)
or never arrives expires at ``served + reward_wait_s``: it is learned with
``default_reward`` at that moment when one is set, and not at all otherwise.

Pure: no clock, no draws but the ones passed in.

>>> from judges.delay import parse_delay
>>> delivery = Delivery(parse_delay("fixed:5400"), round_s=3600, reward_wait_s=86400)
>>> delivery.post("alice", 0, 0.6, dwell_ms=120_000, rng=np.random.default_rng(0))
>>> delivery.due(1), [a.item for a in delivery.due(2)]
([], ['alice'])
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from judges.delay import FeedbackDelay

__all__ = ["APPLIED", "EXPIRED", "LATE", "Arrival", "Delivery"]

APPLIED = "applied"  # learned with its own reward
EXPIRED = "expired"  # its show expired: learned with the default reward
LATE = "late"  # a feedback after its show's deadline: delivered, never learned


@dataclass(frozen=True, slots=True, order=True)
class Arrival:
    """A reward due to the learner at ``at_ms`` (stream time); ``item`` is the caller's."""

    at_ms: int
    seq: int
    reward: float = field(compare=False)
    kind: str = field(compare=False)
    item: Any = field(compare=False)


class Delivery:
    """Rewards on their way to the learner, in stream time (see the module docstring)."""

    __slots__ = (
        "_queue",
        "_seq",
        "counts",
        "default_reward",
        "delay",
        "late_arrivals",
        "round_ms",
        "wait_ms",
    )

    def __init__(
        self,
        delay: FeedbackDelay,
        *,
        round_s: float,
        reward_wait_s: float,
        default_reward: float | None = None,
        late_arrivals: bool = False,
    ) -> None:
        if not round_s > 0 or not reward_wait_s > 0:
            raise ValueError("round_s and reward_wait_s must be > 0")
        self.delay = delay
        self.round_ms = round(round_s * 1000)
        self.wait_ms = round(reward_wait_s * 1000)
        self.default_reward = default_reward
        # Also deliver late feedback (kind LATE, never learned): the worker is sent it, and
        # stores it as late.
        self.late_arrivals = late_arrivals
        self._queue: list[Arrival] = []
        self._seq = 0
        # on_time, late (arrived after its show expired), lost (never arrived),
        # learned_default (expired shows learned with the default reward)
        self.counts: Counter[str] = Counter()

    def served_at_ms(self, round_: int) -> int:
        """The stream time of round ``round_``'s shows."""
        return round_ * self.round_ms

    def post(
        self, item: Any, round_: int, reward: float, *, dwell_ms: int, rng: np.random.Generator
    ) -> None:
        """A feedback judged in ``round_``: schedule its reward, or its show's expiry."""
        delay_s = self.delay.draw(rng)
        served = self.served_at_ms(round_)
        deadline = served + self.wait_ms
        if delay_s is not None:
            arrives = served + dwell_ms + math.ceil(delay_s * 1000)
            if arrives <= deadline:
                self.counts["on_time"] += 1
                self._push(arrives, reward, APPLIED, item)
                return
            self.counts["late"] += 1
            if self.late_arrivals:
                self._push(arrives, reward, LATE, item)
        else:
            self.counts["lost"] += 1
        if self.default_reward is not None:
            self.counts["learned_default"] += 1
            self._push(deadline, self.default_reward, EXPIRED, item)

    def _push(self, at_ms: int, reward: float, kind: str, item: Any) -> None:
        heapq.heappush(self._queue, Arrival(at_ms, self._seq, reward, kind, item))
        self._seq += 1

    def due(self, round_: int) -> list[Arrival]:
        """Every reward arrived by round ``round_``'s shows, in arrival order."""
        now = self.served_at_ms(round_)
        arrived = []
        while self._queue and self._queue[0].at_ms <= now:
            arrived.append(heapq.heappop(self._queue))
        return arrived

    @property
    def waiting(self) -> int:
        """Rewards scheduled but not yet learned."""
        return sum(a.kind != LATE for a in self._queue)

    def summary(self) -> dict[str, Any]:
        """The run's ``feedback`` figures: the settings and what happened to each feedback."""
        return {
            "delay": self.delay.text,
            "lost_fraction": self.delay.lost,
            "round_s": self.round_ms / 1000,
            "reward_wait_s": self.wait_ms / 1000,
            "default_reward": self.default_reward,
            "on_time": self.counts["on_time"],
            "late": self.counts["late"],
            "lost": self.counts["lost"],
            "learned_default": self.counts["learned_default"],
            "waiting_at_end": self.waiting,
        }
