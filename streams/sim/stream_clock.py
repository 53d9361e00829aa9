"""Late feedback through the worker: the run plays on Kafka in its own stream time.

The worker's clock is the Kafka record time, per partition: a partition's stream time is
the latest record time it has read, and a show expires once its partition's stream time
passes the show's record time + ``TIPSTREAM_REWARD_WAIT_S`` (``streams.worker.joiner``).
So a run with late feedback (:class:`~streams.sim.delivery.Delivery`) is played onto the
topics in the stream time the in-process learner uses, from a fixed epoch:
- round r's shows are published at ``STREAM_EPOCH_MS + r * round_s`` (record time and
  ``servedAt``), never at the wall clock;
- each feedback is held back and published, with its arrival as record time (its
  ``occurredAt`` stays served + dwell), before the choices of the first block it has arrived
  by, in arrival order; lost feedback is never published; feedback that arrives after its
  show's deadline is published at its arrival too, and the worker, which expires what is due
  before each record's time, stores it ``expired`` (outcome ``late``) and never learns it;
- after those, before the choices, one *clock record* per partition that holds a user of the
  run moves the partition's stream time to the block's time (:meth:`StreamClock.ticks`), so
  that every show whose deadline has passed expires before the choices, as in-process. A
  clock record is a ``TipFeedback`` with the legacy action ``helpful`` for the tip
  ``sim-clock`` from a user of the run in that partition: the worker stores no state for it
  and never learns from it (a legacy action), it only reads its record time.

So when a block chooses, the worker has learned exactly what the in-process learner has:
every on-time feedback that has arrived, and every expired show with the default reward when
one is set. The read-your-writes barrier (``min_updates``, ``min_run_updates``) counts both,
as the worker counts them (``pulls``), and with ``--concurrency 1`` both ways give the same
choices and rewards (``tests/sim/test_sim_delay_worker.py``).

The worker's stream time only moves forward, and other traffic in the same partitions moves
it too: a run needs input topics that were never written to, that is topics (and a worker)
of its own (:func:`check_fresh_topics`). Record times from 2000 also mean the
worker's ``tipstream_processing_lag_seconds`` reads 26 years for these records, and that the
broker may delete the run's records (``log.retention.*``) soon after the worker read them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.settings import Settings
from streams.sim.config import SimUsageError, SimUser
from streams.sim.events import RunEvents
from streams.sim.publisher import Message
from streams.worker.partitioning import partition_for

__all__ = ["STREAM_EPOCH_MS", "StreamClock", "check_fresh_topics"]

STREAM_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: round 0 of every such run
CLOCK_TIP = "sim-clock"


class StreamClock:
    """The run's stream time on Kafka: record times, and the clock records of each round."""

    __slots__ = ("_clock_users", "_events", "_ticked_ms", "round_ms")

    def __init__(
        self, events: RunEvents, users: Sequence[SimUser], *, partitions: int, round_ms: int
    ) -> None:
        self._events = events
        self.round_ms = round_ms
        self._clock_users: dict[int, SimUser] = {}  # partition -> the run's first user there
        for user in users:
            self._clock_users.setdefault(partition_for(user.user_id, partitions), user)
        self._ticked_ms = 0  # stream time of the last clock records (since the epoch)

    def record_time(self, at_ms: int) -> int:
        """The record time (epoch ms) of stream time ``at_ms`` (ms since the run's round 0)."""
        return STREAM_EPOCH_MS + at_ms

    def served_at(self, round_: int) -> int:
        """Round ``round_``'s shows' record time and ``servedAt`` (epoch ms)."""
        return self.record_time(round_ * self.round_ms)

    def ticks(self, round_: int) -> list[tuple[Message, int]]:
        """The clock records (and their record time) that move every partition of the run
        to round ``round_``'s time; none when it is there already (a later block)."""
        at_ms = round_ * self.round_ms
        if at_ms <= self._ticked_ms:
            return []
        self._ticked_ms = at_ms
        stamp = self.record_time(at_ms)
        return [
            (self._events.record(self._events.clock(user, round_, CLOCK_TIP, stamp)), stamp)
            for _, user in sorted(self._clock_users.items())
        ]


async def check_fresh_topics(settings: Settings) -> None:
    """Refuse input topics that were ever written to: a partition's stream time would be
    ahead of the run's, and its shows would expire at once.

    Not "that hold a record at or after the epoch": the broker's time retention deletes
    records dated 2000 within minutes (``log.retention.check.interval.ms``), and an earlier
    run's records were found gone while the worker's stream time stayed ahead. End offsets
    never go back.
    """
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        listed = await consumer.topics()
        wanted = [
            TopicPartition(topic, partition)
            for topic in (settings.topic_shown, settings.topic_feedback)
            if topic in listed
            for partition in range(settings.partitions)  # ensure_topics checked the count
        ]
        ends = await consumer.end_offsets(wanted) if wanted else {}
    finally:
        await consumer.stop()
    taken = sorted(f"{tp.topic}[{tp.partition}]" for tp, end in ends.items() if end > 0)
    if taken:
        raise SimUsageError(
            "late feedback through the worker plays in stream time of its own, from "
            f"2000-01-01, and {', '.join(taken[:4])}{' …' if len(taken) > 4 else ''} were "
            "written to before: use input topics and a worker of their own "
            "(TIPSTREAM_TOPIC_SHOWN, TIPSTREAM_TOPIC_FEEDBACK, TIPSTREAM_APP_ID), fresh for "
            "each such run"
        )
