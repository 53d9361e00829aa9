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
from bandit.policies.baselines import OraclePolicy, RandomPolicy
from bandit.policies.egreedy import EpsilonGreedyV1, EpsilonGreedyV2
from bandit.policies.linucb import LinUCBV1
from bandit.policies.pooled import PooledV1
from bandit.policies.pooled_mix import PooledMixV1
from bandit.policies.pooled_mix2 import PooledMixV2
from bandit.policies.pooled_mix3 import PooledMixV3

# Wire name → a fresh policy, given the ε of egreedy-v1 (the others ignore it).
_FACTORIES: dict[str, Callable[[float], Policy]] = {
    RandomPolicy.name: lambda _: RandomPolicy(),
    EpsilonGreedyV1.name: lambda epsilon: EpsilonGreedyV1(epsilon=epsilon),
    LinUCBV1.name: lambda _: LinUCBV1(),
    EpsilonGreedyV2.name: lambda _: EpsilonGreedyV2(),
    PooledV1.name: lambda _: PooledV1(),
    PooledMixV1.name: lambda _: PooledMixV1(),
    PooledMixV2.name: lambda _: PooledMixV2(),
    PooledMixV3.name: lambda _: PooledMixV3(),
}
POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
ORACLE_NAME = OraclePolicy.name
# The serving default (TIPSTREAM_POLICY): the best policy that meets issue 4's learning
# targets on both persona sets (LEARNING.md).
DEFAULT_POLICY = PooledMixV3.name


class UnknownPolicyError(ValueError):
    """The name is not a registered policy."""


def make_policy(name: str, *, epsilon: float = 0.1) -> Policy:
    """A fresh policy object for a wire name (see POLICY_NAMES)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    return factory(epsilon)


def make_oracle(expected_reward: Callable[[Moment, Task], float]) -> OraclePolicy:
    """The oracle for one persona: argmax of the judge's expected reward."""
    return OraclePolicy(expected_reward)
