"""Policies by wire name.

``epsilon`` is the constant ε of ``egreedy-v1`` (the ``TIPSTREAM_EPSILON`` setting); the
newer policies have their own tuned, decaying exploration and ignore it. The oracle is not
here: it needs the judge's expected reward, so build it with ``make_oracle``.

>>> make_policy("egreedy-v1", epsilon=0.2).epsilon
0.2
>>> make_policy("nope")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bandit.registry.UnknownPolicyError: unknown policy 'nope'; known: random, egreedy-v1, ...
"""

from __future__ import annotations

from collections.abc import Callable

from bandit.base import Moment, Policy, Task
from bandit.baselines import OraclePolicy, RandomPolicy
from bandit.egreedy import EpsilonGreedyV1, EpsilonGreedyV2
from bandit.linucb import LinUCBV1
from bandit.pooled import PooledV1
from bandit.pooled_mix import PooledMixV1
from bandit.pooled_mix2 import PooledMixV2
from bandit.pooled_mix3 import PooledMixV3

POLICY_NAMES: tuple[str, ...] = (
    RandomPolicy.name,
    EpsilonGreedyV1.name,
    LinUCBV1.name,
    EpsilonGreedyV2.name,
    PooledV1.name,
    PooledMixV1.name,
    PooledMixV2.name,
    PooledMixV3.name,
)
ORACLE_NAME = OraclePolicy.name
# The serving default (TIPSTREAM_POLICY): the best policy that meets issue 4's learning
# targets on both persona sets (LEARNING.md).
DEFAULT_POLICY = PooledMixV3.name


class UnknownPolicyError(ValueError):
    """The name is not a registered policy."""


def make_policy(name: str, *, epsilon: float = 0.1) -> Policy:
    """A fresh policy object for a wire name (see POLICY_NAMES)."""
    if name == RandomPolicy.name:
        return RandomPolicy()
    if name == EpsilonGreedyV1.name:
        return EpsilonGreedyV1(epsilon=epsilon)
    if name == LinUCBV1.name:
        return LinUCBV1()
    if name == EpsilonGreedyV2.name:
        return EpsilonGreedyV2()
    if name == PooledV1.name:
        return PooledV1()
    if name == PooledMixV1.name:
        return PooledMixV1()
    if name == PooledMixV2.name:
        return PooledMixV2()
    if name == PooledMixV3.name:
        return PooledMixV3()
    raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")


def make_oracle(expected_reward: Callable[[Moment, Task], float]) -> OraclePolicy:
    """The oracle for one persona: argmax of the judge's expected reward."""
    return OraclePolicy(expected_reward)
