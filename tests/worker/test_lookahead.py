"""``DecodeAhead``: later events decoded while a batch waits for its rows, used once, and
only for the very record they were decoded from."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bandit.policies.egreedy import EpsilonGreedyV1
from schemas.events import TipShown
from streams.settings import Settings
from streams.worker.app import Worker
from streams.worker.decoding import RawEvent
from streams.worker.joiner import FeedbackRow
from streams.worker.lookahead import DecodeAhead
from streams.worker.metrics import WorkerMetrics
from streams.worker.pipeline import Pipeline
from streams.worker.state import UserRecord
from tests.worker.events import feedback, shown
from tests.worker.test_pipeline import SETTINGS, Letters, Rows, raw


class SlowRows(Rows):
    """Rows whose write takes a few turns of the loop, as PostgreSQL's does; ``held``, it
    then waits until the test lets it go (``release``), or fails it."""

    def __init__(self, held: bool = False) -> None:
        super().__init__()
        self.release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not held:
            self.release.set_result(None)

    async def write(
        self,
        rows: Sequence[FeedbackRow],
        shows: Sequence[TipShown] = (),
        withdrawn: asyncio.Future[frozenset[str]] | None = None,
    ) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        if rows:
            await self.release
        await super().write(rows, shows, withdrawn)


def _counting(p: Pipeline) -> list[RawEvent]:
    """Record every event the pipeline decodes itself (now or early)."""
    decoded: list[RawEvent] = []
    inner = p.ahead._decode

    def decode(event: RawEvent) -> object:
        decoded.append(event)
        return inner(event)

    p.ahead._decode = decode  # type: ignore[assignment]
    return decoded


async def test_the_next_batch_is_decoded_while_the_rows_are_written_and_learns_the_same() -> None:
    first = [raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)]
    later = [raw(shown("u", "b"), 2), raw(feedback("u", "b"), 3), raw(feedback("v", "x"), 4)]
    stores: list[dict[str, bytes]] = []
    for ahead in (True, False):
        store: dict[str, bytes] = {}
        p = Pipeline(SETTINGS, [EpsilonGreedyV1()], store, SlowRows(), Letters(), WorkerMetrics())
        decoded = _counting(p)
        waiting = list(later) if ahead else []
        p.ahead.source = lambda n, waiting=waiting: [waiting.pop(0) for _ in waiting[:n]]
        await p.handle(first)
        assert len(decoded) == (5 if ahead else 2)  # the later batch too, during the write
        await p.handle(later)
        assert len(decoded) == 5  # each event decoded once
        assert p.ahead._done == {}
        stores.append(store)
    assert stores[0] == stores[1]
    assert UserRecord.decode(stores[0]["u"]).pulls == 2


async def test_a_record_fetched_again_is_decoded_again() -> None:
    """After a seek the same offset comes as another fetched record: its own bytes count."""
    p = Pipeline(SETTINGS, [EpsilonGreedyV1()], {}, SlowRows(), Letters(), WorkerMetrics())
    decoded = _counting(p)
    early = raw(shown("u", "a"), 0)
    p.ahead.source = lambda n, waiting=[early]: [waiting.pop(0) for _ in waiting[:n]]
    await p.handle([raw(shown("w", "z"), 9), raw(feedback("w", "z"), 10)])
    assert early in decoded
    again = early._replace(value=bytes(bytearray(early.value)))  # equal bytes, another record
    assert again == early
    assert again.value is not early.value
    await p.handle([again])
    assert decoded[-1].value is again.value


async def test_kept_results_are_bounded_and_cleared() -> None:
    events = [RawEvent("t", 0, offset, 0, None, b"%d" % offset) for offset in range(10)]
    ahead = DecodeAhead(lambda event: event.value, max_kept=4)
    ahead.source = lambda n, waiting=list(events): [waiting.pop(0) for _ in waiting[:3]]
    never = asyncio.get_running_loop().create_future()
    waiting_for = asyncio.ensure_future(ahead.wait(never))
    for _ in range(5):
        await asyncio.sleep(0)
        assert len(ahead._done) <= 4
    assert ahead._done  # the last chunk is kept
    never.set_result(None)
    await waiting_for
    ahead.clear()
    assert ahead._done == {}
    assert ahead.decode(events[0]) == b"0"  # decoded now


async def test_cancelling_the_wait_cancels_the_write() -> None:
    ahead = DecodeAhead(lambda event: event.value, max_kept=4)
    ahead.source = lambda n: [RawEvent("t", 0, 0, 0, None, b"x")]  # always more to decode
    write = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(ahead.wait(write))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert write.cancelled()


async def test_readers_see_a_batch_before_its_rows_are_written_and_the_store_after() -> None:
    store: dict[str, bytes] = {}
    rows = SlowRows(held=True)
    p = Pipeline(SETTINGS, [EpsilonGreedyV1()], store, rows, Letters(), WorkerMetrics())
    woken: list[dict[str, bytes]] = []
    p.on_fresh = lambda: woken.append(dict(p.fresh))
    handling = asyncio.ensure_future(
        p.handle([raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)])
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert not handling.done()
    assert "u" not in store  # the state waits for the rows
    assert UserRecord.decode(p.fresh["u"]).pulls == 1  # the readers do not
    assert woken == [p.fresh]
    rows.release.set_result(None)
    await handling
    assert p.fresh == {}
    assert UserRecord.decode(store["u"]).pulls == 1


async def test_a_failed_rows_write_leaves_readers_nothing_unwritten() -> None:
    store: dict[str, bytes] = {}
    rows = SlowRows(held=True)
    p = Pipeline(SETTINGS, [EpsilonGreedyV1()], store, rows, Letters(), WorkerMetrics())
    handling = asyncio.ensure_future(
        p.handle([raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)])
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert "u" in p.fresh
    rows.release.set_exception(ConnectionError("PostgreSQL went away"))
    with pytest.raises(ConnectionError):
        await handling
    assert p.fresh == {}
    assert store == {}


async def test_the_worker_reads_a_batch_s_fresh_record_before_the_table() -> None:
    worker = Worker(Settings())
    assert worker.record("u") is None
    record = UserRecord()
    record.pulls = 3
    worker.pipeline.fresh = {"u": record.encode()}
    found = worker.record("u")
    assert found is not None
    assert found.pulls == 3
