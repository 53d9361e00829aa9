"""Events of later batches, decoded while the current batch waits for a write.

Why: a batch waits for PostgreSQL (its feedback rows) and for the broker (its changelog),
and meanwhile the fetch loop has usually queued the next fetches already
(``streams.worker.batches.FetchedBatches``). Decoding an event needs no state, so those
events are decoded during the waits, and the next batch finds them done. Measured on 6 Dec
2026 (``python -m bench worker``): the two waits took about 18 µs per event and decoding
about 13, both on the batch's critical path.

A decoded event is keyed by its partition and offset, and used only if it comes from the
same fetched record (the same value object): after a seek the record is fetched, and
decoded, again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from streams.worker.decoding import RawEvent

__all__ = ["DecodeAhead"]

T = TypeVar("T")
D = TypeVar("D")

# Events decoded between two yields to the loop: the write waited for needs the loop too.
CHUNK = 64


class DecodeAhead(Generic[D]):
    """Decodes the events that ``source`` hands out while a write is awaited (``wait``);
    ``decode`` then returns an event's early result, or decodes it now.

    >>> ahead = DecodeAhead(lambda raw: raw.value.upper(), max_kept=10)
    >>> from streams.worker.decoding import RawEvent
    >>> ahead.decode(RawEvent("t", 0, 7, 0, None, b"x"))
    b'X'
    """

    __slots__ = ("_decode", "_done", "_max_kept", "source")

    def __init__(
        self,
        decode: Callable[[RawEvent], D],
        source: Callable[[int], list[RawEvent]] | None = None,
        *,
        max_kept: int,
    ) -> None:
        self._decode = decode
        self.source = source  # up to n events of later batches not handed out before
        self._done: dict[tuple[str, int, int], tuple[bytes, D]] = {}
        # Results of events that never reach a batch (dropped at a rebalance, of an older
        # consumer generation) are dropped past this bound.
        self._max_kept = max_kept

    def decode(self, raw: RawEvent) -> D:
        early = self._done.pop((raw.topic, raw.partition, raw.offset), None)
        if early is not None and early[0] is raw.value:
            return early[1]
        return self._decode(raw)

    async def wait(self, pending: Awaitable[T]) -> T:
        """Await ``pending``, decoding later events meanwhile (in chunks, yielding between)."""
        future = asyncio.ensure_future(pending)
        try:
            while not future.done() and self.source is not None:
                raws = self.source(CHUNK)
                if not raws:
                    break
                if len(self._done) + len(raws) > self._max_kept:
                    self._done.clear()
                decode, done = self._decode, self._done
                for raw in raws:
                    done[raw.topic, raw.partition, raw.offset] = (raw.value, decode(raw))
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            future.cancel()  # as a plain ``await`` of it would
            raise
        return await future

    def clear(self) -> None:
        """Forget every early result (a rebalance: what was fetched is fetched again)."""
        self._done.clear()
