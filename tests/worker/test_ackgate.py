"""The ack gate never lets faust commit past an event that was not processed."""

from __future__ import annotations

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.ackgate import AckGate, _Msg


@given(
    n=st.integers(min_value=1, max_value=60),
    dropped=st.sets(st.integers(min_value=0, max_value=59)),  # never reached the stream
    skipped=st.sets(st.integers(min_value=0, max_value=59)),  # reached it, acked unprocessed
)
def test_commits_stop_at_the_first_unprocessed_offset_and_resume_after_a_reread(
    n: int, dropped: set[int], skipped: set[int]
) -> None:
    gate = AckGate({"t"}, start=lambda tp: 0)  # the partition's committed offset
    lost = sorted(o for o in dropped | skipped if o < n)
    allowed = []
    for offset in range(n):
        if offset in dropped:
            continue
        if offset not in skipped:
            gate.mark_processed([("t", 0, offset)])
        if gate.allow(_Msg("t", 0, offset)):
            allowed.append(offset)
    if not lost:
        assert allowed == list(range(n))
        return
    assert all(o < lost[0] for o in allowed)
    if not gate.holes():
        # Nothing after the first lost offset reached the gate: nothing was acked past it,
        # so nothing is committed past it; the next start reads it.
        assert all(o in dropped for o in range(lost[0], n))
        return
    assert gate.holes() == {("t", 0): lost[0]}
    # The worker seeks back to the hole; everything from there is read and processed.
    for offset in range(lost[0], n):
        gate.mark_processed([("t", 0, offset)])
        if gate.allow(_Msg("t", 0, offset)):
            allowed.append(offset)
    assert sorted(set(allowed)) == list(range(n))
    assert gate.holes() == {}


def test_without_a_known_start_the_first_message_begins_the_run() -> None:
    gate = AckGate({"t"})
    gate.mark_processed([("t", 0, 5), ("t", 0, 6), ("t", 0, 8)])
    assert [gate.allow(_Msg("t", 0, o)) for o in (5, 6, 8)] == [True, True, False]
    assert gate.holes() == {("t", 0): 7}


def test_other_topics_pass_through() -> None:
    assert AckGate({"t"}).allow(_Msg("changelog", 0, 5))


class _Consumer:
    """The parts of faust's consumer the gate wraps: ``ack`` and its bookkeeping."""

    def __init__(self) -> None:
        self._committed_offset = {TP("t", 0): 0}  # committed at 0
        self._unacked_messages: set[_Msg] = set()  # a WeakSet in faust
        self.acked: list[int] = []

    def ack(self, message: _Msg) -> bool:
        self._unacked_messages.discard(message)
        self.acked.append(message.offset)
        return True


def test_a_held_back_message_is_not_waited_for() -> None:
    """faust's stop and rebalance wait until every delivered message is acked; one the gate
    holds back must leave that set, or a rebalance waits for ever (seen with two workers)."""
    consumer = _Consumer()
    gate = AckGate({"t"})
    gate.install(consumer)
    held, fine = _Msg("t", 0, 1), _Msg("t", 0, 0)
    consumer._unacked_messages.update([held, fine])
    gate.mark_processed([("t", 0, 1), ("t", 0, 0)])
    assert consumer.ack(held) is False  # offset 1 before 0: not committable yet
    assert held not in consumer._unacked_messages
    assert consumer.acked == []
    assert consumer.ack(fine) is True
    assert consumer.acked == [0]


def test_a_never_committed_partition_begins_at_the_log_start() -> None:
    """faust was seen never to fetch the head of a never-committed partition; a later event
    (a re-delivery) must then open a hole at the log's start, not begin the run."""
    consumer = _Consumer()
    consumer._committed_offset = {}  # never committed
    log_start = {TP("t", 0): 0}
    gate = AckGate({"t"})
    gate.install(consumer, log_start)
    late = _Msg("t", 0, 5)
    gate.mark_processed([("t", 0, 5)])
    assert consumer.ack(late) is False
    assert gate.holes() == {("t", 0): 0}
    assert gate.next_offset(("t", 0)) == 0


def test_admit_holds_a_partition_beyond_its_hole_and_keeps_the_others_going() -> None:
    # The bug this guards against: faust dropped offset 7 (the first feedback), delivered 8
    # (a second feedback with the same event id and other content), and 8 was learned from.
    gate = AckGate({"t"}, start=lambda tp: 7 if tp == ("t", 0) else 0)
    batch = [_Msg("t", 0, 8), _Msg("t", 1, 0), _Msg("t", 0, 9), _Msg("t", 1, 1)]
    assert gate.admit(batch) == [_Msg("t", 1, 0), _Msg("t", 1, 1)]
    assert gate.holes() == {("t", 0): 7}
    gate.mark_processed([("t", 1, 0), ("t", 1, 1)])
    for m in batch:  # faust acknowledges the whole batch: the held ones stay unacked
        gate.allow(m)
    assert gate.next_offset(("t", 0)) == 7
    assert gate.admit([_Msg("t", 0, 9)]) == []  # still beyond the hole
    again = [_Msg("t", 0, 7), _Msg("t", 0, 8), _Msg("t", 0, 9)]  # after the seek back
    assert gate.admit(again) == again
    gate.mark_processed([(m.topic, m.partition, m.offset) for m in again])
    assert [gate.allow(m) for m in again] == [True, True, True]
    assert gate.holes() == {}


def test_admit_takes_what_it_has_seen_before_and_starts_afresh_after_a_rebalance() -> None:
    gate = AckGate({"t"}, start=lambda tp: 0)
    first = [_Msg("t", 0, 0), _Msg("t", 0, 1)]
    assert gate.admit(first) == first
    assert gate.admit([_Msg("t", 0, 1)]) == [_Msg("t", 0, 1)]  # read again: idempotent
    gate.reset()  # a rebalance: faust seeks to the committed offset (0 here)
    assert gate.admit([_Msg("t", 0, 1)]) == []
    assert gate.admit(first) == first
