"""Lets faust commit an input offset only after everything before it was processed.

Why: faust *acks* the events it skips while flow control is suspended (a stop or a
rebalance) and those from an older consumer generation ("otherwise the lag would
increase", faust/streams.py), and its commit logic misses a one-message gap right after
the committed offset. Together they can commit past events that no one processed: seen
here as feedback lost after a graceful stop. The gate sits in front of the consumer's
``ack``: an input message is acked only if the pipeline processed it and no earlier offset
of its partition is still unprocessed (a "hole"). Skipped messages leave a hole, so the
commit stops before them and they are read again (after the rebalance's seek, or on the
next start). Processing is idempotent, so reading again is safe.

>>> gate = AckGate({"shown"})
>>> m = lambda offset: _Msg("shown", 0, offset)
>>> gate.mark_processed([("shown", 0, 0), ("shown", 0, 2)])
>>> gate.allow(m(0)), gate.allow(m(1)), gate.allow(m(2))   # 1 was skipped by faust
(True, False, False)
>>> gate.mark_processed([("shown", 0, 1), ("shown", 0, 2)])  # read again later
>>> gate.allow(m(1)), gate.allow(m(2))
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Offset = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True, slots=True)
class _Msg:  # the three attributes of faust's Message the gate reads (doctest helper)
    topic: str
    partition: int
    offset: int


class AckGate:
    __slots__ = ("_holes", "_processed", "_sources")

    def __init__(self, source_topics: Iterable[str]) -> None:
        self._sources = frozenset(source_topics)
        self._processed: set[Offset] = set()
        self._holes: dict[tuple[str, int], int] = {}

    def mark_processed(self, offsets: Iterable[Offset]) -> None:
        self._processed.update(offsets)

    def allow(self, message: Any) -> bool:
        """May faust mark this message as safe to commit?"""
        if message.topic not in self._sources:
            return True
        tp = (message.topic, message.partition)
        offset: int = message.offset
        hole = self._holes.get(tp)
        key = (message.topic, message.partition, offset)
        if key not in self._processed:
            if hole is None or offset < hole:
                self._holes[tp] = offset
            return False
        self._processed.discard(key)
        if hole is None or offset < hole:
            return True
        if offset == hole:
            del self._holes[tp]  # the skipped message came round again and is done
            return True
        return False

    def reset(self) -> None:
        """After a rebalance faust seeks every partition back to its committed offset."""
        self._processed.clear()
        self._holes.clear()

    def install(self, consumer: Any) -> None:
        """Wrap ``consumer.ack`` (called by faust for every message's final ack)."""
        original: Callable[[Any], bool] = consumer.ack

        def ack(message: Any) -> bool:
            return original(message) if self.allow(message) else False

        consumer.ack = ack
