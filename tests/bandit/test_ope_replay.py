"""Replay of a target over a log: the logging policy reproduces its propensities; the
oracle needs the judge's expectations."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.ope.logged import EvaluationInputError
from bandit.ope.replay import replay
from bandit.registry import make_policy
from tests.bandit.ope_helpers import sim_log


@pytest.mark.parametrize("name", ["egreedy-v1", "egreedy-v2", "pooled-v1"])
def test_replaying_the_logging_policy_reproduces_its_propensities(name: str) -> None:
    rows = sim_log(make_policy(name), seed=3, users=2, rounds=40)
    probs = replay(name, rows)
    got = np.array([p[r.index] for p, r in zip(probs, rows, strict=True)])
    want = np.array([r.propensity for r in rows])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    for p in probs:
        assert abs(p.sum() - 1.0) < 1e-12


def test_oracle_replay_needs_expected_rewards() -> None:
    rows = sim_log(make_policy("random"), seed=1, users=1, rounds=3)
    probs = replay("oracle", rows)
    assert all(p[int(np.argmax(r.expected or ()))] == 1.0 for p, r in zip(probs, rows, strict=True))
    bare = [type(r)(**{**{f: getattr(r, f) for f in r.__slots__}, "expected": None}) for r in rows]
    with pytest.raises(EvaluationInputError):
        replay("oracle", bare)
    with pytest.raises(EvaluationInputError, match="unknown policy"):
        replay("nope", rows)
