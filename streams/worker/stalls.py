"""When a lagging input partition is stalled (to be read again), and when it only waits its
turn behind a busy pipeline.

A partition was seen never to reach the stream after faust's start-up seek: it had lag, and
its next offset to process never moved. The worker reads such a partition again from that
offset (``Worker.reread_missed``). But a partition also stands still while the pipeline works
through what other partitions' fetches brought: taking that for a stall made a worker behind
a backlog seek back again and again, throwing away what it had fetched each time
(``tests/worker/test_overload.py``). So the stall clock runs only while nothing fetched is
waiting for the pipeline.

>>> watch = StallWatch(stall_s=10.0)
>>> watch.check("p", next_offset=5, highwater=9, now=0.0, busy=False) is None
True
>>> watch.check("p", next_offset=5, highwater=9, now=10.0, busy=False)
5
>>> watch.check("p", next_offset=5, highwater=9, now=11.0, busy=True) is None
True
>>> watch.check("p", next_offset=5, highwater=9, now=20.0, busy=False) is None
True
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["STALL_S", "StallWatch"]

STALL_S = 10.0  # a lagging input partition with no progress this long is read again


class StallWatch:
    """Per partition, the next offset to process and since when it has not moved."""

    __slots__ = ("_since", "stall_s")

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._since: dict[Hashable, tuple[int, float]] = {}

    def check(
        self,
        partition: Hashable,
        *,
        next_offset: int | None,
        highwater: int | None,
        now: float,
        busy: bool,
    ) -> int | None:
        """The offset to read ``partition`` again from when it is stalled, else None.

        ``busy``: fetched messages are waiting for the pipeline, so no partition is stalled
        and every clock starts again.
        """
        if next_offset is None or highwater is None or next_offset >= highwater:
            self._since.pop(partition, None)  # nothing to read: not stalled
            return None
        seen = self._since.get(partition)
        if busy or seen is None or seen[0] != next_offset:
            self._since[partition] = (next_offset, now)
            return None
        return next_offset if now - seen[1] >= self.stall_s else None
