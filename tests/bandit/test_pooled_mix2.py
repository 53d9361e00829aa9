"""pooledmix-v2: the grid of types and the per-coordinate prior (propensities and codecs:
tests/bandit/test_policies.py; the shrunk user model: tests/bandit/test_pooled_mix3.py)."""

from __future__ import annotations

import pytest

from bandit.policies.pooled_mix2 import PooledMixV2, grid_prototypes
from bandit.registry import make_policy


def test_registered_with_fifteen_types_and_split_prior() -> None:
    pol = make_policy("pooledmix-v2")
    assert isinstance(pol, PooledMixV2)
    assert grid_prototypes().shape == (15, 5)
    assert len(pol.new_shared()) == 15
    assert pol.new_user().lam.tolist() == [4.0, 8.0, 8.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="lam_task"):
        PooledMixV2(lam_task=0.0)
