"""The production reward rule: from what the user did, and how long it took, to a number.

>>> [infer_reward("done", d) for d in (14_999, 15_000, 119_999, 120_000, 599_999, 600_000)]
[-0.3, 1.0, 1.0, 0.6, 0.6, 0.3]
>>> infer_reward("dismiss", None), infer_reward("snooze", 4_000), infer_reward("helpful", 1)
(-1.0, 0.1, None)
>>> reward_milli(-0.3)
-300
"""

from __future__ import annotations

LEGACY_ACTIONS = frozenset({"helpful", "not_helpful"})
LEARNED_ACTIONS = frozenset({"done", "snooze", "dismiss"})

REFLEX_MS = 15_000  # a "done" faster than this is a reflex or a stale task
FOCUSED_MS = 120_000
SLOW_MS = 600_000


class MissingDwellError(ValueError):
    """A ``done`` whose dwell time is unknown cannot be rewarded."""


def reward_for_done(dwell_ms: int) -> float:
    if dwell_ms < REFLEX_MS:
        return -0.3
    if dwell_ms < FOCUSED_MS:
        return 1.0
    if dwell_ms < SLOW_MS:
        return 0.6
    return 0.3


def infer_reward(action: str, dwell_ms: int | None) -> float | None:
    """Reward for one feedback; None for legacy actions, which are never learned from.

    ``done`` needs ``dwell_ms`` (the caller derives it from the show when the event lacks it).
    """
    if action == "dismiss":
        return -1.0
    if action == "snooze":
        return 0.1
    if action == "done":
        if dwell_ms is None:
            raise MissingDwellError("done without dwellMs: derive it from the show first")
        return reward_for_done(dwell_ms)
    if action in LEGACY_ACTIONS:
        return None
    raise ValueError(f"unknown action {action!r}")


def reward_milli(reward: float) -> int:
    """Rewards are stored as integers: round(reward × 1000)."""
    return round(reward * 1000)
