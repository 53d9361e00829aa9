"""The worker's policies from settings: the exploration floor is the serving policy's only."""

from __future__ import annotations

from bandit.explore import ExplorationFloor
from streams.settings import Settings
from streams.worker.app import build_policies


def test_the_floor_goes_to_the_serving_policy_only() -> None:
    settings = Settings(
        policy="pooledmix-v3", shadow_policies="egreedy-v1,pooledmix-v3", exploration_floor=0.05
    )
    serving, *shadows = build_policies(settings)
    assert isinstance(serving, ExplorationFloor)
    assert (serving.name, serving.floor) == ("pooledmix-v3", 0.05)
    assert [p.name for p in shadows] == ["egreedy-v1"]  # a repeated name is served once
    assert not any(isinstance(p, ExplorationFloor) for p in shadows)
    assert not isinstance(build_policies(Settings())[0], ExplorationFloor)
