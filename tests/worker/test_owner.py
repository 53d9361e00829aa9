"""Which worker owns a user: read from the group's assignment with the events' own hash."""

from __future__ import annotations

import pytest
from faust.assignor.client_assignment import ClientAssignment

from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.partitioning import partition_for

ME, PEER = "http://127.0.0.1:6066", "http://127.0.0.1:6067"


def _worker(mine: list[int], peers: list[int]) -> Worker:
    """A worker (not started) whose group assignment gives it ``mine`` and a peer ``peers``."""
    settings = Settings(partitions=8)
    worker = Worker(settings)
    assignor = worker.app.assignor
    topic = settings.topic_feedback
    assignor._assignment = ClientAssignment(actives={topic: mine}, standbys={})  # type: ignore[attr-defined]
    assignor.external_topic_distribution = {ME: {topic: mine}, PEER: {topic: peers}}  # type: ignore[attr-defined]
    return worker


def _user_in(partition: int) -> str:
    return next(f"u{i}" for i in range(10_000) if partition_for(f"u{i}", 8) == partition)


def test_every_user_is_routed_to_the_member_owning_its_partition() -> None:
    worker = _worker(mine=[0, 2, 4, 6], peers=[1, 3, 5, 7])
    for partition in range(8):
        owner = worker.owner_url(_user_in(partition))
        assert owner == (None if partition % 2 == 0 else PEER), partition


def test_a_partition_no_member_owns_is_an_error_to_retry_not_a_guess() -> None:
    # Mid-rebalance: partition 7 is assigned to nobody yet.
    worker = _worker(mine=[0, 2, 4, 6], peers=[1, 3, 5])
    with pytest.raises(LookupError, match="partition 7"):
        worker.owner_url(_user_in(7))
