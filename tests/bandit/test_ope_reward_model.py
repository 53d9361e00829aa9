"""The DR reward model: cross-fitted, bounded predictions."""

from __future__ import annotations

import numpy as np

from bandit.ope.reward_model import reward_model
from bandit.registry import make_policy
from tests.bandit.ope_helpers import sim_log


def test_reward_model_is_cross_fitted() -> None:
    """A row's prediction must not move when only its own reward changes."""
    rows = sim_log(make_policy("random"), seed=2, users=2, rounds=30)
    base = reward_model(rows)
    changed = list(rows)
    changed[17] = type(rows[17])(
        **{**{f: getattr(rows[17], f) for f in rows[17].__slots__}, "reward": 50.0}
    )
    moved = reward_model(changed)
    np.testing.assert_array_equal(base[17], moved[17])
    assert any(not np.array_equal(a, b) for a, b in zip(base, moved, strict=True))
    assert all(np.all(np.abs(p) <= 1.0) for p in base)
