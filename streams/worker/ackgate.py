"""Lets faust commit an input offset only when every offset before it was processed.

Why: faust loses events in three ways, all seen here by the restart tests.
- It *acks* the events it skips while flow control is suspended (a stop, a rebalance) or
  that belong to an older consumer generation ("otherwise the lag would increase",
  faust/streams.py).
- Its fetcher can drop an event while flow is suspended (``wait_first(callback,
  suspend_flow)``) and still advance its read offset, so the stream never sees it.
- Its commit misses a one-message gap right after the committed offset.
Together they can commit past events that nobody processed.

The gate sits in front of the consumer's ``ack``. Per input partition it lets offsets
through only in contiguous order: an offset is acked once the pipeline has processed it
and it directly follows the last acked one. A skipped event, or a jump in the offsets the
pipeline saw, leaves a *hole*. Nothing after the hole is acked, so the commit stops there,
and the worker seeks the partition back to the hole (``Worker.reread_holes``). Processing is
idempotent, so reading again is safe. After a rebalance faust seeks to the committed offsets
itself, and the gate starts afresh.

The gate also keeps each partition's events *in order* for the pipeline (``admit``): an event
beyond a hole is held back, not processed, until the hole's own offset has come round. Order
matters where the first of two events wins: a second feedback with the event id of the first
(and other content) was once learned from because faust had dropped the first, the one right
after the committed offset, and the watchdog read it again only later. Offsets that are not
consecutive for a good reason (a transactional producer's markers, a compacted topic) would
hold a partition for ever: the input topics take neither.

>>> gate = AckGate({"shown"}, start=lambda tp: 0)
>>> m = lambda offset: _Msg("shown", 0, offset)
>>> gate.mark_processed([("shown", 0, 0), ("shown", 0, 1), ("shown", 0, 3)])
>>> gate.allow(m(0)), gate.allow(m(1)), gate.allow(m(3))   # 2 never reached us
(True, True, False)
>>> gate.holes()
{('shown', 0): 2}
>>> gate.mark_processed([("shown", 0, 2), ("shown", 0, 3)])  # read again after the seek
>>> gate.allow(m(2)), gate.allow(m(3)), gate.holes()
(True, True, {})
>>> gate = AckGate({"shown"})                    # where the run starts is not known
>>> gate.allow(m(9)), gate.holes()               # skipped during a rebalance
(False, {('shown', 0): 9})
>>> gate.mark_processed([("shown", 0, 4), ("shown", 0, 5)])
>>> gate.allow(m(4)), gate.allow(m(5))           # below the hole: the run starts at 4
(True, True)
>>> gate = AckGate({"shown"}, start=lambda tp: 7)   # committed at 7
>>> [r.offset for r in gate.admit([m(8), m(9)])]    # 7 never reached us: hold 8 and 9
[]
>>> [r.offset for r in gate.admit([m(7), m(8), m(9)])]   # read again from 7, in order
[7, 8, 9]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from faust.types import TP

__all__ = ["AckGate", "BatchAcks", "input_lag"]

log = logging.getLogger(__name__)

Offset = tuple[str, int, int]  # topic, partition, offset


class _Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_Record)


@dataclass(frozen=True, slots=True)
class _Msg:  # the three attributes of faust's Message the gate reads (doctest helper)
    topic: str
    partition: int
    offset: int


class AckGate:
    __slots__ = ("_admitted", "_holes", "_last", "_processed", "_sources", "_start")

    def __init__(
        self,
        source_topics: Iterable[str],
        start: Callable[[tuple[str, int]], int | None] = lambda tp: None,
    ) -> None:
        self._sources = frozenset(source_topics)
        # Where a partition's run begins: its committed offset, when the consumer knows it.
        # Unknown (never committed), the first message begins the run: guessing 0 would
        # seek forever on a topic whose retention deleted its first offsets.
        self._start = start
        self._processed: set[Offset] = set()
        self._last: dict[tuple[str, int], int] = {}  # last offset let through
        self._holes: dict[tuple[str, int], int] = {}  # first offset not processed
        self._admitted: dict[tuple[str, int], int] = {}  # next offset the pipeline may take

    def admit(self, batch: Sequence[R]) -> list[R]:
        """The events of ``batch`` the pipeline may process now, in each partition's order.

        An event is admitted if it is the next offset of its partition, or one the pipeline
        has seen before (read again after a seek: processing is idempotent). One beyond the
        next offset means an event never reached us: it and everything after it in its
        partition are held back (never marked processed, so never acknowledged), the hole is
        opened, and the watchdog's seek brings them round again in order.
        """
        admitted: list[R] = []
        for record in batch:
            tp = (record.topic, record.partition)
            expected = self._admitted.get(tp)
            if expected is None:
                expected = self.next_offset(tp)  # the committed offset, or the log's start
            if expected is None or record.offset == expected:
                self._admitted[tp] = record.offset + 1
            elif record.offset > expected:
                self._open_hole(tp, expected)
                continue
            admitted.append(record)
        return admitted

    def mark_processed(self, offsets: Iterable[Offset]) -> None:
        self._processed.update(offsets)

    def allow(self, message: Any) -> bool:
        """May faust mark this message as safe to commit?"""
        if message.topic not in self._sources:
            return True
        tp = (message.topic, message.partition)
        offset: int = message.offset
        last = self._last.get(tp)
        if last is None:
            start = self._start(tp)
            if start is not None:
                last = self._last[tp] = start - 1
        key = (message.topic, message.partition, offset)
        if key not in self._processed:
            self._open_hole(tp, offset if last is None else last + 1)
            return False
        self._processed.discard(key)
        hole = self._holes.get(tp)
        if last is None:  # the first message since start or rebalance begins the run
            if hole is not None and offset > hole:
                return False
        elif offset <= last:
            return True  # read again after a seek: already behind the commit point
        elif offset != last + 1:
            self._open_hole(tp, last + 1)  # offsets last+1 .. offset-1 never reached us
            return False
        if hole is not None and offset >= hole:
            del self._holes[tp]  # the hole's own offset came round and is done
        self._last[tp] = offset
        return True

    def _open_hole(self, tp: tuple[str, int], offset: int) -> None:
        hole = self._holes.get(tp)
        if hole is None or offset < hole:
            log.info("%s[%d]@%d was not processed: holding commits there", *tp, offset)
            self._holes[tp] = offset

    def next_offset(self, tp: tuple[str, int]) -> int | None:
        """The first offset of the partition not yet let through, where known."""
        last = self._last.get(tp)
        return last + 1 if last is not None else self._start(tp)

    def holes(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the first offset that must be read again."""
        return dict(self._holes)

    def reset(self) -> None:
        """After a rebalance faust seeks every partition back to its committed offset."""
        self._processed.clear()
        self._last.clear()
        self._holes.clear()
        self._admitted.clear()

    def install(self, consumer: Any, log_start: Mapping[Any, int] | None = None) -> None:
        """Wrap ``consumer.ack`` (called by faust for every message's final ack).

        A partition's run begins at its committed offset; one never committed begins at
        the log's start, when ``log_start`` (kept up to date by the caller) knows it.
        """
        original: Callable[[Any], bool] = consumer.ack
        # faust fills this from the broker when it seeks to the committed offsets.
        committed = consumer._committed_offset
        starts: Mapping[Any, int] = log_start if log_start is not None else {}

        def start(tp: tuple[str, int]) -> int | None:
            key = TP(*tp)
            offset = committed.get(key)
            return offset if offset is not None else starts.get(key)

        self._start = start

        def ack(message: Any) -> bool:
            if self.allow(message):
                return original(message)
            # Held back: it is read again after the seek back, never acknowledged now. faust's
            # stop and rebalance wait (``wait_empty``) for every delivered message to be acked,
            # so one held back would block a rebalance for ever: it must not be waited for.
            consumer._unacked_messages.discard(message)
            return False

        consumer.ack = ack


class BatchAcks:
    """Acks each processed batch's messages through the gate once its remaining write (the
    production shows') is done, in batch order.

    A batch's acks wait in a task while the next batch runs; ``after`` returns once the
    acks of the batch before are done, so at most one batch's acks are outstanding, and a
    failed write raises there, one batch late. A batch from before a rebalance is not acked:
    faust reads it again from the committed offsets.
    """

    __slots__ = ("_ack", "_gate", "_generation", "_last")

    def __init__(
        self, gate: AckGate, ack: Callable[[Any], object], generation: Callable[[], int]
    ) -> None:
        self._gate = gate
        self._ack = ack
        self._generation = generation
        self._last: asyncio.Future[None] | None = None

    async def after(
        self,
        written: Awaitable[None] | None,
        processed: Iterable[_Record],
        messages: Sequence[Any],
    ) -> None:
        """Ack ``messages`` once ``written`` is done (``processed``: the admitted records)."""
        previous = self._last
        self._last = asyncio.ensure_future(self._ack_when(previous, written, processed, messages))
        if previous is not None:
            await previous

    async def done(self) -> None:
        """Wait for the acks still outstanding (before a stop)."""
        if self._last is not None:
            await self._last

    async def _ack_when(
        self,
        previous: asyncio.Future[None] | None,
        written: Awaitable[None] | None,
        processed: Iterable[_Record],
        messages: Sequence[Any],
    ) -> None:
        if previous is not None:
            await previous  # the gate wants each partition's offsets in order
        if written is not None:
            await written
        generation = self._generation()
        if any(m.generation_id != generation for m in messages):
            return
        # Only now may faust commit these offsets.
        self._gate.mark_processed((r.topic, r.partition, r.offset) for r in processed)
        for message in messages:
            self._ack(message)


def input_lag(
    ends: Mapping[tuple[str, int], int], next_offset: Callable[[tuple[str, int]], int | None]
) -> dict[tuple[str, int], int]:
    """Events behind the end per partition: end offset − next offset to process (never
    negative); partitions whose next offset is not known yet are left out.

    >>> input_lag({("t", 0): 10, ("t", 1): 5, ("t", 2): 4}, {("t", 0): 7, ("t", 2): 6}.get)
    {('t', 0): 3, ('t', 2): 0}
    """
    lags: dict[tuple[str, int], int] = {}
    for tp, end in ends.items():
        nxt = next_offset(tp)
        if nxt is not None:
            lags[tp] = max(0, end - nxt)
    return lags
