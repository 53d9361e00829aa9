"""Policies by wire name.

``epsilon`` is the constant ε of ``egreedy-v1`` (the ``TIPSTREAM_EPSILON`` setting); the
newer policies have their own tuned, decaying exploration and ignore it. The two references
are not here: they need the judge's expected rewards, so build the oracle (told the user's
persona) with ``make_oracle`` and the cold-start ceiling (told the persona set only) with
``make_known_types``.

>>> make_policy("egreedy-v1", epsilon=0.2).epsilon
0.2
>>> make_policy("nope")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bandit.registry.UnknownPolicyError: unknown policy 'nope'; known: random, egreedy-v1, ...

A retired name is refused with its replacement (``RETIRED_POLICIES``):

>>> make_policy("pooledmix-v2")
Traceback (most recent call last):
...
bandit.registry.RetiredPolicyError: policy 'pooledmix-v2' is retired; use 'pooledmix-v3' instead
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bandit.base import Moment, Policy, Task
from bandit.explore import ExplorationFloor
from bandit.policies.baselines import OraclePolicy, RandomPolicy
from bandit.policies.egreedy import EpsilonGreedyV1, EpsilonGreedyV2
from bandit.policies.known_types import KnownTypes
from bandit.policies.linucb import LinUCBV1
from bandit.policies.pooled import PooledV1
from bandit.policies.pooled_mix import PRESETS as POOLED_MIX_PRESETS
from bandit.policies.pooled_mix import PooledMix

__all__ = [
    "DEFAULT_POLICY",
    "KNOWN_TYPES_NAME",
    "ORACLE_NAME",
    "POLICY_NAMES",
    "RETIRED_POLICIES",
    "RetiredPolicyError",
    "UnknownPolicyError",
    "check_policy_name",
    "make_known_types",
    "make_oracle",
    "make_policy",
]


def _pooled_mix(preset: str) -> Callable[[float], Policy]:
    return lambda _: PooledMix(preset)


# Wire name → a fresh policy, given the ε of egreedy-v1 (the others ignore it).
_FACTORIES: dict[str, Callable[[float], Policy]] = {
    RandomPolicy.name: lambda _: RandomPolicy(),
    EpsilonGreedyV1.name: lambda epsilon: EpsilonGreedyV1(epsilon=epsilon),
    LinUCBV1.name: lambda _: LinUCBV1(),
    EpsilonGreedyV2.name: lambda _: EpsilonGreedyV2(),
    PooledV1.name: lambda _: PooledV1(),
    **{preset: _pooled_mix(preset) for preset in POOLED_MIX_PRESETS},
}
POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
# Retired wire name → its replacement. Not in POLICY_NAMES; make_policy refuses them by name.
RETIRED_POLICIES: dict[str, str] = {"pooledmix-v2": "pooledmix-v3"}
ORACLE_NAME = OraclePolicy.name
KNOWN_TYPES_NAME = KnownTypes.name
# The serving default (TIPSTREAM_POLICY): the best policy that meets issue 4's learning
# targets on both persona sets (LEARNING.md).
DEFAULT_POLICY = "pooledmix-v3"


class UnknownPolicyError(ValueError):
    """The name is not a registered policy."""


class RetiredPolicyError(UnknownPolicyError):
    """The name was a policy once and is retired; the message names its replacement."""


def check_policy_name(name: str) -> None:
    """Raise unless ``name`` is in POLICY_NAMES (``RetiredPolicyError`` for a retired one)."""
    if name in _FACTORIES:
        return
    replacement = RETIRED_POLICIES.get(name)
    if replacement is not None:
        raise RetiredPolicyError(f"policy {name!r} is retired; use {replacement!r} instead")
    raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")


def make_policy(name: str, *, epsilon: float = 0.1, floor: float = 0.0) -> Policy:
    """A fresh policy object for a wire name (see POLICY_NAMES); with ``floor`` > 0, mixed
    with a uniform slice of that share (``ExplorationFloor``: the same name and state)."""
    check_policy_name(name)
    policy = _FACTORIES[name](epsilon)
    return ExplorationFloor(policy, floor) if floor > 0 else policy


def make_known_types(expected: Sequence[Callable[[Moment, Task], float]]) -> KnownTypes:
    """The cold-start ceiling: Bayes-greedy over the judge's known types (not a serving
    policy: it needs every persona's expected reward)."""
    return KnownTypes(expected)


def make_oracle(expected_reward: Callable[[Moment, Task], float]) -> OraclePolicy:
    """The oracle for one persona: argmax of the judge's expected reward."""
    return OraclePolicy(expected_reward)
