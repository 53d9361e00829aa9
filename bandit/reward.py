"""The production reward rule: from what the user did, and how long it took, to a number.

The one home of the rule and its constants (the judges import them): a dismiss is
``DISMISS_REWARD``, a snooze ``SNOOZE_REWARD``; a done is rewarded by its dwell band,
[0, REFLEX_MS) ``DONE_REFLEX_REWARD``, [REFLEX_MS, FOCUSED_MS) ``DONE_FAST_REWARD``,
[FOCUSED_MS, SLOW_MS) ``DONE_FOCUSED_REWARD``, [SLOW_MS, ∞) ``DONE_SLOW_REWARD``.

>>> [infer_reward("done", d) for d in (14_999, 15_000, 119_999, 120_000, 599_999, 600_000)]
[-0.3, 1.0, 1.0, 0.6, 0.6, 0.3]
>>> infer_reward("dismiss", None), infer_reward("snooze", 4_000), infer_reward("helpful", 1)
(-1.0, 0.1, None)
>>> reward_milli(-0.3)
-300
"""

from __future__ import annotations

__all__ = [
    "DISMISS_REWARD",
    "DONE_FAST_REWARD",
    "DONE_FOCUSED_REWARD",
    "DONE_REFLEX_REWARD",
    "DONE_SLOW_REWARD",
    "FOCUSED_MS",
    "LEARNED_ACTIONS",
    "LEGACY_ACTIONS",
    "REFLEX_MS",
    "SLOW_MS",
    "SNOOZE_REWARD",
    "MissingDwellError",
    "infer_reward",
    "reward_for_done",
    "reward_milli",
]

LEGACY_ACTIONS = frozenset({"helpful", "not_helpful"})
LEARNED_ACTIONS = frozenset({"done", "snooze", "dismiss"})

REFLEX_MS = 15_000  # a "done" faster than this is a reflex or a stale task
FOCUSED_MS = 120_000
SLOW_MS = 600_000

DISMISS_REWARD = -1.0
SNOOZE_REWARD = 0.1
DONE_REFLEX_REWARD = -0.3  # dwell < REFLEX_MS
DONE_FAST_REWARD = 1.0  # REFLEX_MS ≤ dwell < FOCUSED_MS
DONE_FOCUSED_REWARD = 0.6  # FOCUSED_MS ≤ dwell < SLOW_MS
DONE_SLOW_REWARD = 0.3  # SLOW_MS ≤ dwell


class MissingDwellError(ValueError):
    """A ``done`` whose dwell time is unknown cannot be rewarded."""


def reward_for_done(dwell_ms: int) -> float:
    """The reward of a done by its dwell band."""
    if dwell_ms < REFLEX_MS:
        return DONE_REFLEX_REWARD
    if dwell_ms < FOCUSED_MS:
        return DONE_FAST_REWARD
    if dwell_ms < SLOW_MS:
        return DONE_FOCUSED_REWARD
    return DONE_SLOW_REWARD


def infer_reward(action: str, dwell_ms: int | None) -> float | None:
    """Reward for one feedback; None for legacy actions, which are never learned from.

    ``done`` needs ``dwell_ms`` (the caller derives it from the show when the event lacks it).
    """
    if action == "dismiss":
        return DISMISS_REWARD
    if action == "snooze":
        return SNOOZE_REWARD
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
