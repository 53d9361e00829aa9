"""The quixstreams peer: the naive per-user job (one RocksDB state update per event, keyed by
user), as a user who picked quixstreams would write it.

Run as ``python -m bench.peers.quix_app exactly-once|at-least-once APP_ID TARGET`` with
TIPSTREAM_* settings in the environment (``uv sync --group bench`` installs quixstreams).
Commits every second. Prints one JSON line ``{"events", "seconds"}``, from the first event
processed to the last, and exits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, Literal, cast

import orjson
from quixstreams import Application, State

from streams.settings import Settings

__all__ = ["main"]


def main() -> None:
    guarantee, app_id, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if guarantee not in {"exactly-once", "at-least-once"}:
        raise SystemExit(f"guarantee must be exactly-once or at-least-once, not {guarantee!r}")
    settings = Settings()
    seen = 0
    started = cpu_started = 0.0

    def count(value: dict[str, Any], state: State) -> None:
        nonlocal seen, started, cpu_started
        if seen == 0:
            started = time.perf_counter()
            cpu_started = time.process_time()
        state.set("count", state.get("count", 0) + 1)
        seen += 1
        if seen == target:
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started  # every thread's (librdkafka's too)
            result = {"events": seen, "seconds": elapsed, "cpu_seconds": cpu}
            print(orjson.dumps(result).decode(), flush=True)
            os._exit(0)  # measured; the commit that follows is not part of the figure

    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = Application(
            broker_address=settings.kafka_bootstrap,
            consumer_group=app_id,
            auto_offset_reset="earliest",
            commit_interval=1.0,
            processing_guarantee=cast("Literal['exactly-once', 'at-least-once']", guarantee),
            state_dir=state_dir,
            loglevel="WARNING",
        )
        for name in (settings.topic_shown, settings.topic_feedback):
            # Keys are the user ids (bytes on the wire); values JSON, as the worker reads them.
            topic = app.topic(name, key_deserializer="str", value_deserializer="json")
            app.dataframe(topic).update(count, stateful=True)
        app.run()


if __name__ == "__main__":
    main()
