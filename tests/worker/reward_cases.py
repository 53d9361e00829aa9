"""Test data: the reward of ``done`` at each dwell boundary of ``bandit.reward``'s rule.

One table, so that the joiner's pure tests and the end-to-end worker test check the same
boundaries.
"""

from __future__ import annotations

__all__ = ["DONE_REWARD_AT_DWELL_BOUNDARIES"]

# (dwell_ms, reward_milli): each boundary and the millisecond before it.
DONE_REWARD_AT_DWELL_BOUNDARIES: list[tuple[int, int]] = [
    (14_999, -300),
    (15_000, 1000),
    (119_999, 1000),
    (120_000, 600),
    (599_999, 600),
    (600_000, 300),
]
