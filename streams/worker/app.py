"""The faust application: the source topics, the state table, the agent and the timers.

Layers, bottom up: Kafka (faust/aiokafka) → state (``StateTable``, one record per user) →
stream (``Pipeline`` over whole fetches from ``batches``) → user API (HTTP views here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Coroutine, Mapping, MutableMapping
from typing import Any, cast

import aiohttp
import faust
import faust.worker
import numpy as np
from aiokafka.errors import KafkaError
from faust.tables.manager import TableManager
from faust.types import TP, Message, TopicT
from faust.web import Request
from mode.types.signals import BaseSignalT

from bandit.base import Moment, Policy, Task, choice_rng
from bandit.registry import make_policy
from streams.settings import Settings
from streams.worker.ackgate import AckGate, BatchAcks, input_lag
from streams.worker.batches import FetchedBatches, WorkerApp
from streams.worker.decoding import DeadLetter, RawEvent
from streams.worker.http import ScoreRequest, mount_views
from streams.worker.metrics import WorkerMetrics
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import Pipeline
from streams.worker.rocksdb_store import ROCKSDB_STORE_URL, rocksdb_options
from streams.worker.sink import FeedbackSink
from streams.worker.stalls import STALL_S, StallWatch
from streams.worker.state import UserRecord, user_key, user_state
from streams.worker.state_table import StateTable

__all__ = [
    "STATE_TABLE",
    "BoundedStopWorker",
    "Worker",
    "build_policies",
    "faust_broker_credentials",
    "raw_topic",
]

log = logging.getLogger(__name__)

STATE_TABLE = "user-state"
MIN_UPDATES_TIMEOUT_S = 10.0
# A batch slower than this is logged with its steps' times (p99 latency's target is 100 ms).
SLOW_BATCH_S = 0.25
# How often the state of ended simulated runs is looked for (``forget_ended_runs``).
SWEEP_S = 60.0


class BoundedStopWorker(faust.worker.Worker):
    """faust's worker process, whose stop on SIGTERM or SIGINT takes at most ``stop_timeout_s``.

    faust's stop waits for every fetched event to be acknowledged (``wait_empty``); a stop
    was seen to hang for minutes on an acknowledgement the ack gate held back (the gate no
    longer lets faust wait for those). The bound stays as the safety net for any other wait:
    past it the process exits, whatever was not committed is read again by the next owner,
    and the guard makes that re-read harmless (the path of a ``kill -9``, which the restart
    tests and the fault matrix cover).
    """

    def __init__(self, *args: Any, stop_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No terminal spinner: a service logs, and at WARN and above faust hooks the spinner
        # to the root logger at DEBUG, which made every debug call on the hot path (faust
        # logs each changelog send) build a log record that no handler wanted: 5% of a
        # loaded worker's time under py-spy.
        self.spinner = None
        self._stop_timeout_s = stop_timeout_s
        self._stop_timer: threading.Timer | None = None

    def _schedule_shutdown(self, signal: Any) -> None:
        if self._stop_timer is None:
            self._stop_timer = threading.Timer(self._stop_timeout_s, self._stop_overdue)
            self._stop_timer.daemon = True
            self._stop_timer.start()
        super()._schedule_shutdown(signal)

    def _stop_overdue(self) -> None:
        log.warning(
            "stop did not finish within %.0fs; exiting now (events not yet committed are "
            "read again on the next start)",
            self._stop_timeout_s,
        )
        logging.shutdown()
        os._exit(0)


def build_policies(settings: Settings) -> list[Policy]:
    """The serving policy first, then the shadow policies (which learn but never serve).

    The exploration floor only changes choices, so only the serving policy carries it."""
    names = [settings.policy, *settings.shadow_policy_names]
    unique = list(dict.fromkeys(names))
    serving, *shadows = unique
    return [
        make_policy(serving, epsilon=settings.epsilon, floor=settings.exploration_floor),
        *(make_policy(name, epsilon=settings.epsilon) for name in shadows),
    ]


def raw_topic(app: faust.App, *names: str) -> TopicT:
    """The topics ``names`` with keys and values as raw bytes: records are decoded and
    encoded by ``schemas.events``, never by faust."""
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def faust_broker_credentials(settings: Settings) -> Any:
    kwargs = settings.aiokafka_kwargs()
    ssl_context = cast("ssl.SSLContext | None", kwargs.get("ssl_context"))
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


class Worker:
    """Everything one worker process runs, built from settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.policies = build_policies(settings)
        self.serving = self.policies[0]
        self.batches = FetchedBatches(settings.batch_max)
        self.app = WorkerApp(
            settings.app_id,
            batch_topics=frozenset({settings.topic_shown, settings.topic_feedback}),
            batches=self.batches,
            broker="kafka://" + settings.kafka_bootstrap.replace(",", ";"),
            broker_credentials=faust_broker_credentials(settings),
            store=ROCKSDB_STORE_URL if settings.state_store == "rocksdb" else "memory://",
            datadir=settings.data_dir,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=settings.standby_replicas,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
            web_enabled=True,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            # For faust's own sends (dead letters): a burst of them goes out in one request.
            # The changelog batches itself and is sent at once (streams/worker/changelog.py).
            producer_linger_ms=10,
            producer_max_batch_size=256 * 1024,
            autodiscover=False,
        )
        self.source = raw_topic(self.app, settings.topic_shown, settings.topic_feedback)
        self.deadletter_topic = raw_topic(self.app, settings.topic_deadletter)
        self.table: StateTable = self.app.tables.add(  # type: ignore[assignment]
            StateTable(
                self.app,
                name=STATE_TABLE,
                beacon=self.app.tables.beacon,
                key_type=str,  # str and bytes mean the "raw" codec: our own record format
                value_type=bytes,
                partitions=settings.partitions,
                options=(
                    rocksdb_options(settings.rocksdb_memory_mb, settings.partitions)
                    if settings.state_store == "rocksdb"
                    else None
                ),
            )
        )
        self.sink = FeedbackSink(settings.database_url, self.metrics)
        self.pipeline = Pipeline(
            settings,
            self.policies,
            cast("MutableMapping[str, bytes]", self.table),
            self.sink,
            self,
            self.metrics,
        )
        self.pipeline.ahead.source = lambda n: [_raw(m) for m in self.batches.ahead(n)]
        self.pipeline.on_fresh = self._wake_waiters
        self.ack_gate = AckGate([settings.topic_shown, settings.topic_feedback])
        self._reread: dict[TP, tuple[int, float]] = {}
        self._stalls = StallWatch()
        self._log_start: dict[TP, int] = {}  # where never-committed partitions begin
        self.input_lag: dict[tuple[str, int], int] = {}  # refreshed by reread_missed
        self.lag_refresh: asyncio.Future[None] | None = None
        self._rng = np.random.default_rng()
        self._http: aiohttp.ClientSession | None = None
        self._batch_done: asyncio.Event | None = None  # set, and replaced, after each batch
        self.batch_lock = asyncio.Lock()
        # Looked up at each ack: the consumer comes later, its ack wrapped by the gate.
        ack = lambda message: self.app.consumer.ack(message)  # noqa: E731, PLW0108
        self.batch_acks = BatchAcks(self.ack_gate, ack, lambda: self.app.consumer_generation_id)
        # Read when /metrics is scraped, from what /healthz reads too.
        self.metrics.watch(
            ready=self.is_ready,
            database_up=lambda: self.sink.health() is None,
            active_partitions=lambda: len(self.active_partitions()),
            holes=lambda: len(self.ack_gate.holes()),
        )
        self._register()

    # -- dead letters (the pipeline's DeadLetterSink) ----------------------------------

    async def send(self, letter: DeadLetter) -> None:
        await self.deadletter_topic.send(
            key=letter.event.key, value=letter.event.value, headers=letter.headers()
        )

    # -- wiring ------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        worker = self

        @app.agent(self.source, name="feedback-loop", concurrency=1)
        async def feedback_loop(stream: Any) -> None:
            # Iterating a topic is what subscribes faust's consumer to it (faust/topics.py).
            # Its events come as whole fetches on worker.batches (streams/worker/batches.py),
            # beneath faust's per-event path, not through this stream.
            aiter(stream.channel)
            worker.ack_gate.install(app.consumer, worker._log_start)
            await worker.sink.start()
            log.info(
                "feedback loop started: serving %s, shadows %s",
                worker.serving.name,
                [p.name for p in worker.policies[1:]] or "none",
            )
            try:
                while True:
                    messages = await worker.batches.take()
                    await app.flow_control.acquire()  # no work while a rebalance is under way
                    # faust's own sends keep up: at most one batch of them waits.
                    waiting = time.perf_counter()
                    await changelog_within(app.producer.buffer, worker.settings.batch_max)
                    waited_s = time.perf_counter() - waiting
                    # Hold every cancellation (a stop) until the batch's rows and state are
                    # written and its offsets acked, then honour it.
                    await _uncancellable(worker.process_messages(messages, waited_s))
            finally:
                await worker.batch_acks.done()  # the last batch's shows written, its offsets acked
                await worker.sink.stop()

        @app.timer(interval=2.0)  # type: ignore[untyped-decorator]  # faust leaves it untyped
        async def _reread_missed() -> None:
            await worker.reread_missed()

        @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
        async def _probe_database() -> None:
            await worker.sink.probe()

        # Often enough for a short keep (tests), at most a minute apart.
        sweep_s = min(SWEEP_S, max(1.0, self.settings.sim_state_keep_s))

        @app.timer(interval=sweep_s)  # type: ignore[untyped-decorator]
        async def _forget_ended_runs() -> None:
            await worker.forget_ended_runs()

        @app.on_rebalance_complete.connect
        def _on_rebalance(
            sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
        ) -> None:
            worker.ack_gate.reset()
            worker.batches.clear()  # fetched before: faust reads again from the commit
            active = worker.active_partitions()
            worker.pipeline.on_partitions_changed(active)
            worker.metrics.rebalances.inc()
            # The lag at once, not at the next timer: a fast worker may have read it all by then.
            worker.lag_refresh = asyncio.ensure_future(worker.reread_missed(lag_only=True))
            log.info("rebalance complete: active partitions %s", sorted(active) or "none")

        mount_views(app, worker)

    async def reread_missed(self, lag_only: bool = False) -> None:
        """Seek back to input events that were not processed, once the stream is steady
        (``lag_only``: just refresh the lag, as at once when partitions are assigned).

        Two cases: a hole the ack gate saw (faust skipped or dropped an event before a later
        one), and a partition with lag that makes no progress for ``STALL_S`` while the
        pipeline has nothing fetched waiting (``streams.worker.stalls``; its tail never reached
        the stream; seen after faust's start-up seek). Reading again is idempotent.
        """
        if not lag_only and (self.app.rebalancing or not self.app.flow_control.is_active()):
            return
        consumer = self.app.consumer
        holes = self.ack_gate.holes()
        now = time.monotonic()
        inputs = [
            tp
            for tp in consumer.assignment()
            if tp.topic in (self.settings.topic_shown, self.settings.topic_feedback)
        ]
        # A partition that was never committed nor read has no next offset: its run begins
        # at the log's start (faust was seen never to fetch such a partition after a start).
        unknown = [
            tp for tp in inputs if self.ack_gate.next_offset((tp.topic, tp.partition)) is None
        ]
        try:  # end offsets from the broker: a partition never fetched has none locally
            ends = await consumer.highwaters(*inputs) if inputs else {}
            if unknown:
                self._log_start.update(await consumer.earliest_offsets(*unknown))
        except (KafkaError, TimeoutError) as exc:
            # The broker away past a request's timeout: out of a timer, it stopped the worker.
            log.warning("could not read the input offsets from Kafka (%r); next try in 2 s", exc)
            return
        self._publish_lag(ends)
        if lag_only:
            return
        for tp in inputs:
            key = (tp.topic, tp.partition)
            target = holes.get(key)
            if target is None:
                target = self._stalls.check(
                    tp,
                    next_offset=self.ack_gate.next_offset(key),
                    highwater=ends.get(tp),
                    now=now,
                    busy=self.batches.waiting,
                )
            if target is None:
                continue
            last = self._reread.get(tp)
            if last and last[0] == target and now - last[1] < STALL_S:
                continue
            log.warning("re-reading %s[%d] from offset %d, which was not processed", *tp, target)
            self.metrics.rereads.inc()
            self._reread[tp] = (target, now)
            await consumer.seek(tp, target)

    async def forget_ended_runs(self) -> int:
        """Remove the state of the simulated runs that ended ``sim_state_keep_s`` ago or
        more (``sim_runs``), between batches; return how many keys went."""
        keep_s = self.settings.sim_state_keep_s
        if not keep_s or not self.is_ready():
            return 0
        self.pipeline.ensure_indexed(self.active_partitions())  # every owned run is known
        try:
            ended = await self.sink.ended_runs(self.pipeline.pools.runs(), keep_s)
        except Exception as exc:  # the next sweep tries again
            log.warning("could not ask PostgreSQL which simulated runs ended: %r", exc)
            return 0
        if not ended:
            return 0
        async with self.batch_lock:
            gone = self.pipeline.forget_runs(set(ended))
            await self.table.changelog.send()  # the deletions' tombstones
        log.info("removed the state of %d ended simulated runs: %d keys", len(ended), gone)
        return gone

    def _publish_lag(self, ends: Mapping[TP, int]) -> None:
        """Per assigned input partition, events behind the broker's end (unknown until the
        partition's start offset is): for /healthz and the lag gauge."""
        self.input_lag = input_lag(
            {(tp.topic, tp.partition): end for tp, end in ends.items()}, self.ack_gate.next_offset
        )
        self.metrics.input_lag.clear()
        for (topic, partition), lag in self.input_lag.items():
            self.metrics.input_lag.labels(topic, str(partition)).set(lag)

    async def _learn_log_starts(self, batch: list[RawEvent]) -> None:
        """Where each never-committed input partition of the batch begins, before its acks.

        Without it the ack gate takes a partition's first message for the start of its run,
        and faust was seen never to fetch the head of such a partition after a restart: a
        re-delivered event then made the gate believe the partition was read to its end.
        """
        committed = cast("Any", self.app.consumer)._committed_offset  # filled by faust
        # Once per partition of the batch, not per event: this runs on the hot path.
        tps = {TP(topic, p) for topic, p in {(r.topic, r.partition) for r in batch}}
        unknown = [tp for tp in tps if tp not in self._log_start and committed.get(tp) is None]
        if unknown:
            self._log_start.update(await self.app.consumer.earliest_offsets(*unknown))

    async def process_messages(self, messages: list[Message], waited_s: float = 0.0) -> None:
        """Process a batch of fetched messages, each acked once its shows are written too
        (``BatchAcks``); ``waited_s``: how long it waited for the changelog to keep up."""
        generation = self.app.consumer_generation_id
        # Fetched before a rebalance: not ours to process now (faust reads them again).
        current = [m for m in messages if m.generation_id == generation]
        if not current:
            return
        async with self.batch_lock:  # no sweep of ended runs' state in the middle
            admitted, shows_written = await self.process_batch([_raw(m) for m in current], waited_s)
        await self.batch_acks.after(shows_written, admitted, current)

    async def process_batch(
        self, batch: list[RawEvent], waited_s: float = 0.0
    ) -> tuple[list[RawEvent], asyncio.Future[None] | None]:
        """Process the batch; what was admitted, and the write its acks must wait for."""
        await self._learn_log_starts(batch)
        # Each partition in order: what lies beyond a hole waits for the re-read.
        admitted = self.ack_gate.admit(batch)
        started = time.perf_counter()
        shows_written = await self.pipeline.handle(admitted)
        await self.pipeline.ahead.wait(self.table.changelog.send())  # before any ack
        self.pipeline.steps.mark("changelog")
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._report_steps(len(admitted), waited_s)
        self._wake_waiters()
        return admitted, shows_written

    def _wake_waiters(self) -> None:  # those waiting for updates (wait_for_updates)
        if self._batch_done is not None:
            self._batch_done.set()
            self._batch_done = None

    def _report_steps(self, events: int, waited_s: float) -> None:
        """Each step's wall time into ``tipstream_batch_step_seconds``; a warning with the
        breakdown when the batch took longer than ``SLOW_BATCH_S`` (a latency's p99)."""
        seconds = {"changelog_wait": waited_s, **self.pipeline.steps.seconds}
        for step, spent in seconds.items():
            self.metrics.batch_step_seconds.labels(step).observe(spent)
        total = waited_s + self.pipeline.steps.total()
        if total > SLOW_BATCH_S:
            parts = ", ".join(f"{step} {1000 * spent:.0f}" for step, spent in seconds.items())
            log.warning("slow batch: %d events in %.0f ms (%s)", events, 1000 * total, parts)

    async def _next_batch(self, timeout_s: float) -> None:
        """Return after the next batch is processed, or after ``timeout_s``."""
        if self._batch_done is None:
            self._batch_done = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._batch_done.wait(), timeout_s)

    # -- ownership and routing ---------------------------------------------------------

    def active_partitions(self) -> set[int]:
        assignment = self.app.assignor.assigned_actives()
        return {tp.partition for tp in assignment if tp.topic == self.settings.topic_feedback}

    def owns_every_partition(self) -> bool:
        return len(self.active_partitions()) == self.settings.partitions

    def is_ready(self) -> bool:
        recovery = cast("TableManager", self.app.tables).recovery
        return (
            not self.app.rebalancing
            and recovery.completed.is_set()
            and bool(self.active_partitions())
        )

    def owner_url(self, user_id: str) -> str | None:
        """Base URL of the worker owning this user's partition, or None if it is us.

        Ownership is read from the group's assignment of the feedback topic, the same
        partitions ``active_partitions`` reports, with the same murmur2 of the user id the
        events are keyed by. faust's ``router.key_store`` is not used: it hashes the key
        through the producer's view of the changelog topic and, measured, named the wrong
        member for about half the users (the request came back to the sender).

        Raises ``LookupError`` when no member owns the partition (a rebalance under way).
        """
        partition = partition_for(user_id, self.settings.partitions)
        if partition in self.active_partitions():
            return None
        topic = self.settings.topic_feedback
        for url, topics in self.app.router.external_topics_metadata().items():
            if partition in topics.get(topic, ()):
                return str(url).rstrip("/")
        raise LookupError(f"no worker owns partition {partition} yet; retry shortly")

    async def forward(
        self, request: Request, base_url: str, body: bytes | None
    ) -> tuple[int, bytes]:
        """Send the request on to the owning worker; return its status and body."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        url = base_url + str(request.rel_url)
        headers = {"content-type": "application/json", "x-tipstream-forwarded": "1"}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        async with self._http.request(request.method, url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    # -- scoring -----------------------------------------------------------------------

    def record(self, key: str) -> UserRecord | None:
        blob = self.pipeline.fresh.get(key) or self.table.get(key)
        return UserRecord.decode(blob) if blob is not None else None

    def score(self, request: ScoreRequest) -> dict[str, Any]:
        policy = self.policy_named(request.policy)
        key = user_key(request.user_id, request.run_id)
        record = self.record(key)
        state = user_state(policy, record.policy_blobs.get(policy.name) if record else None)
        shared = None
        if policy.new_shared() is not None:
            self.pipeline.ensure_indexed(self.active_partitions())
            shared = self.pipeline.pools.total(policy, request.run_id)
        moment = Moment(request.context.hour_of_day, request.context.day_of_week)
        tasks = [
            Task(c.tip_id, c.features.priority, c.features.is_overdue, c.features.task_age_days)
            for c in request.candidates
        ]
        rng = choice_rng(request.seed) if request.seed is not None else self._rng
        choice = policy.choose(state, shared, moment, tasks, rng)
        return {
            "tip_id": tasks[choice.index].tip_id,
            "score": choice.score,
            "policy": policy.name,
            "propensity": choice.propensity,
            "explored": choice.explored,
            "run_barrier": request.min_run_updates is not None and self.owns_every_partition(),
        }

    def policy_named(self, name: str | None) -> Policy:
        if name is None:
            return self.serving
        for policy in self.policies:
            if policy.name == name:
                return policy
        known = ", ".join(p.name for p in self.policies)
        raise ValueError(f"policy {name!r} is not served or shadowed here (have: {known})")

    async def wait_for_updates(
        self, key: str, min_updates: int, run_id: str | None = None, min_run_updates: int = 0
    ) -> bool:
        """Wait until the user has learned from ``min_updates`` feedbacks and, for a run,
        the run from ``min_run_updates`` (read-your-writes for the simulator); False after
        ``MIN_UPDATES_TIMEOUT_S``. The run's count is only known to a worker that owns every
        partition; others wait for the user alone (``run_barrier`` false in the answer).

        It checks again after each batch, not on a timer: a block of simulated users waiting
        together, polling every few milliseconds, each decoding the user's record, once took
        more of the worker's core than the batches they were waiting for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MIN_UPDATES_TIMEOUT_S
        while True:
            record = self.record(key)
            user_ok = not min_updates or (record is not None and record.pulls >= min_updates)
            run_ok = not (run_id and min_run_updates and self.owns_every_partition())
            if not run_ok and user_ok:
                self.pipeline.ensure_indexed(self.active_partitions())
                run_ok = self.pipeline.pools.applied(run_id or "") >= min_run_updates
            if user_ok and run_ok:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # A bound on the wait, for state that changes without a batch (recovery).
            await self._next_batch(min(remaining, 0.25))


async def changelog_within(buffer: Any, limit: int) -> None:
    """Wait until at most ``limit`` sends wait in faust's producer buffer.

    faust's own ``wait_until_ebb`` sends 100 of them and returns, so a worker that wrote more
    changelog records a batch than that saw the buffer grow without bound behind a backlog:
    84,000 records waiting (hundreds of MiB), and offset commits that took 86 s to flush them.
    Since the table's changelog goes out in batches (``ChangelogBatches.send``, which waits
    for delivery), only faust's own sends (dead letters) pass through this buffer.
    """
    while buffer.size > limit:
        await buffer.flush_atmost(buffer.size - limit)


async def _uncancellable(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
            log.info("stop requested: finishing the current batch first")
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def _raw(message: Any) -> RawEvent:
    return RawEvent(
        message.topic,
        message.partition,
        message.offset,
        round(message.timestamp * 1000),
        message.key,
        message.value if message.value is not None else b"",
    )
