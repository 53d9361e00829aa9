"""``tipstream worker`` and ``tipstream topics ensure``."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import sys
from pathlib import Path

import asyncpg
import typer

from schemas.migrations import migrate
from streams.cli.failures import (
    aiokafka_silenced,
    fail,
    kafka_failure_reason,
    require_database,
    settings_or_exit,
)
from streams.cli.logs import configure_logging, level_number, logging_config
from streams.settings import Settings
from streams.worker.topics import TopicLayoutError, TopicReport, ensure_topics

__all__ = ["claim_data_dir", "register", "topics_app", "topics_ensure", "worker"]

_LOG_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

topics_app = typer.Typer(
    help="Kafka topics: create what is missing, check partition counts.", no_args_is_help=True
)


def _ensure_topics_or_exit(settings: Settings) -> TopicReport:
    """Exit 2 on a topic layout that cannot be co-partitioned, 1 when Kafka cannot be used.

    The failure is one line: wrong credentials, an untrusted certificate and an absent
    broker each say so and name the broker.
    """
    try:
        with aiokafka_silenced():
            return asyncio.run(ensure_topics(settings))
    except TopicLayoutError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        with aiokafka_silenced():
            reason = asyncio.run(kafka_failure_reason(settings, exc))
        typer.echo(f"error: {reason}", err=True)
        raise typer.Exit(1) from None


def _data_dir_or_exit(settings: Settings) -> None:
    """Create faust's directory (``TIPSTREAM_DATA_DIR``); exit 1 naming it if we cannot."""
    try:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(
            f"cannot create TIPSTREAM_DATA_DIR={settings.data_dir} "
            f"({exc.strerror or exc}): set it to a directory this user may write",
            1,
        ) from None


def claim_data_dir(settings: Settings) -> int:
    """Hold the data directory for this app id until the process ends (the lock goes with
    the process, a ``kill -9`` too); exit 2 when another worker holds it.

    Why: faust keeps the app's tables under it (with ``rocksdb``, each partition's database),
    and a second worker on the same directory waits on RocksDB's locks, then crashes. Returns
    the lock file's descriptor, which the caller keeps open.
    """
    path = Path(settings.data_dir) / f".{settings.app_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise fail(
            f"another worker of app id {settings.app_id!r} is using "
            f"TIPSTREAM_DATA_DIR={settings.data_dir}: give each worker its own directory",
            2,
        ) from None
    return fd


# The collector's thresholds for the worker (Python's defaults: 700, 10, 10). A batch
# allocates tens of thousands of short-lived objects, so at 700 the collector ran 2,400 times
# per 80,000 events, 19 of them over the whole heap of cached records: 30% of the pipeline's
# time in memory (bench.layers' events over 20,000 users), 5% with these.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect less often, and never walk what start-up built (modules, the faust app):
    ``gc.freeze`` moves it out of the collector's generations for good."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create missing topics and database tables; refuse if the input topics differ."""
    settings = settings_or_exit()
    report = _ensure_topics_or_exit(settings)
    require_database(settings)
    asyncio.run(_migrate(settings.database_url))
    for name, count in report.partitions.items():
        state = "created" if name in report.created else "exists"
        typer.echo(f"{name}: {count} partitions ({state})")


async def _migrate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    typer.echo(f"database: migrations {'applied ' + str(applied) if applied else 'up to date'}")


def worker(
    loglevel: str | None = typer.Option(
        None,
        "--loglevel",
        "-l",
        help="crit, error, warn, info, debug (default: TIPSTREAM_LOG_LEVEL)",
        show_default=False,
    ),
) -> None:
    """Run the stream worker: consume shows and feedback, learn, serve /score/egreedy."""
    # faust and the worker's modules are heavy: `tipstream topics ensure` must not pay for them.
    from streams.worker.app import BoundedStopWorker, Worker  # noqa: PLC0415

    if loglevel is not None and loglevel not in _LOG_LEVELS:
        typer.echo(f"error: --loglevel must be one of {', '.join(_LOG_LEVELS)}", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    level = _LOG_LEVELS[loglevel] if loglevel else level_number(settings.log_level)
    configure_logging(settings, level)
    problem = settings.admin_token_problem()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    _data_dir_or_exit(settings)
    _ensure_topics_or_exit(settings)
    require_database(settings)
    try:
        tipstream = Worker(settings)
    except ValueError as exc:  # unknown policy names and the like
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    claim_data_dir(settings)  # its descriptor stays open, so the lock is held until we exit
    tune_gc()
    tipstream.metrics.watch_gc()  # this process is the worker's: time its collector's pauses
    json_logs = settings.log_format == "json"
    process = BoundedStopWorker(
        tipstream.app,
        loglevel=level,
        quiet=True,
        stop_timeout_s=settings.stop_timeout_s,
        # faust sets up logging again when it starts: in json, with our formatter (its own
        # colour handler otherwise), so its multi-line tables stay inside one JSON line.
        logging_config=logging_config(settings, level) if json_logs else None,
    )
    process.execute_from_commandline()
    sys.exit(0)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(topics_app, name="topics")
