"""Local Kafka + PostgreSQL on loopback for development, tests and CI: ``tipstream dev up``.

No Docker: Apache Kafka (KRaft, one node that is broker and controller) comes from Maven
Central through ``dev/kafka/pom.xml`` and runs as ``java -cp libs/* kafka.Kafka``; PostgreSQL
is Debian's, installed with apt-get when it is missing, with its own cluster under ``var/``.

- Kafka (``streams.dev.kafka``): ``127.0.0.1:19092`` (PLAINTEXT), controller
  ``127.0.0.1:19093``, data in ``var/kafka``; the jars are cached per version in
  ``~/.cache/tipstream/kafka-<version>`` so that every clone on the machine shares one download.
- PostgreSQL (``streams.dev.postgres``): ``127.0.0.1:15432``, role/password/database
  ``tipstream``, cluster in ``var/postgres`` (run as the ``postgres`` OS user when we are
  root), migrations applied.
- Addresses, paths and the helpers both share: ``streams.dev.local``.

This module is the orchestration and the ``dev`` commands.

``up`` is idempotent and fast when both already run (pid files + a real Kafka metadata
request + a real SQL query); ``down`` stops both, politely first. The plain functions
:func:`ensure_up`, :func:`ensure_down` and :func:`check` serve tests, bench and demo.

``up`` and ``down`` need a checkout of the repository (``dev/`` holds the broker's Maven
project and configuration, ``var/`` its data): from an installed copy they exit 2 with one
line saying so. ``env`` and ``status`` work anywhere.

Exit codes: 0 ok, 1 failure (with a hint), 2 bad usage (no checkout, a bad
``TIPSTREAM_DEV_*`` value).
"""

from __future__ import annotations

import asyncio
import fcntl
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import typer

from streams.dev.kafka import kafka_down, kafka_pid, kafka_ready, kafka_up
from streams.dev.local import (
    DATABASE_URL,
    DEV_SETTINGS_ERROR,
    HOST,
    KAFKA_BOOTSTRAP,
    KAFKA_PORT,
    POSTGRES_PORT,
    VAR_DIR,
    DevSettings,
    DevStackError,
    DevUsageError,
    require_checkout,
    run_async,
    say,
)
from streams.dev.postgres import postgres_down, postgres_pid, postgres_ready, postgres_up
from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT, settings_error_lines

__all__ = [
    "DevStackError",
    "DevUsageError",
    "StackStatus",
    "check",
    "dev_app",
    "ensure_down",
    "ensure_up",
    "env_lines",
]

# the stack as a whole


@dataclass(frozen=True, slots=True)
class StackStatus:
    kafka_pid: int | None
    kafka_ok: bool
    postgres_pid: int | None
    postgres_ok: bool

    @property
    def up(self) -> bool:
        return self.kafka_ok and self.postgres_ok


def check(
    timeout_s: float = 5.0,
    *,
    bootstrap: str = KAFKA_BOOTSTRAP,
    database_url: str = DATABASE_URL,
    kafka_kwargs: Mapping[str, object] | None = None,
) -> StackStatus:
    """Probe both servers with real requests (a Kafka metadata request, ``SELECT 1``).

    By default the dev stack's addresses; tests pass their settings' (which may point at
    another broker and database, e.g. docker compose's).
    """

    async def probe() -> tuple[bool, bool]:
        k, p = await asyncio.gather(
            kafka_ready(bootstrap, timeout_s, kafka_kwargs),
            postgres_ready(database_url, timeout_s),
        )
        return k, p

    kafka_ok, postgres_ok = run_async(probe)
    return StackStatus(
        kafka_pid=kafka_pid(),
        kafka_ok=kafka_ok,
        postgres_pid=postgres_pid(),
        postgres_ok=postgres_ok,
    )


def ensure_up(*, quiet: bool = True) -> list[str]:
    """Start whatever is not running; return one line per server saying what was done.

    Raises :class:`DevStackError` with a hint when something cannot start, and
    :class:`DevUsageError` outside a checkout of the repository.
    """
    require_checkout()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    lock_path = VAR_DIR / "devstack.lock"
    # Serialise concurrent `up`s (two terminals, pytest-xdist workers).
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = [kafka_up(quiet=quiet)]
        say(lines[-1], quiet=quiet)
        lines.append(postgres_up(quiet=quiet))
        say(lines[-1], quiet=quiet)
    return lines


def ensure_down() -> list[str]:
    """Stop both servers (cleanly, killing only after a timeout)."""
    require_checkout()
    return [kafka_down(), postgres_down()]


def env_lines() -> list[str]:
    return [
        f"export TIPSTREAM_KAFKA_BOOTSTRAP={shlex.quote(KAFKA_BOOTSTRAP)}",
        f"export TIPSTREAM_DATABASE_URL={shlex.quote(DATABASE_URL)}",
    ]


# --------------------------------------------------------------------------------------
# CLI

dev_app = typer.Typer(
    help="Local Kafka + PostgreSQL on loopback (no Docker): up, down, env, status.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception) -> typer.Exit:
    print(f"dev: error: {err}", file=sys.stderr, flush=True)
    return typer.Exit(code=2 if isinstance(err, DevUsageError) else 1)


def _dev_settings_or_exit() -> None:
    """``env`` and ``status`` need no checkout, but valid ``TIPSTREAM_DEV_*`` settings."""
    if DEV_SETTINGS_ERROR is not None:
        raise _fail(DevUsageError("; ".join(settings_error_lines(DEV_SETTINGS_ERROR, DevSettings))))


@dev_app.command()
def up() -> None:
    """Start Kafka (127.0.0.1:19092) and PostgreSQL (127.0.0.1:15432); idempotent."""
    started = time.monotonic()
    try:
        ensure_up(quiet=False)
    except DevStackError as err:
        raise _fail(err) from None
    moved = (KAFKA_PORT, POSTGRES_PORT) != (DEV_KAFKA_PORT, DEV_POSTGRES_PORT)
    print(
        f'dev: up in {time.monotonic() - started:.1f}s; `eval "$(tipstream dev env)"` '
        + (
            "exports the settings (needed: TIPSTREAM_DEV_*_PORT moved the stack)"
            if moved
            else "exports the settings (they are also the defaults)"
        ),
        flush=True,
    )


@dev_app.command()
def down() -> None:
    """Stop both servers (data is kept under var/; delete it for a clean slate)."""
    try:
        for line in ensure_down():
            print(f"dev: {line}", flush=True)
    except DevStackError as err:
        raise _fail(err) from None


@dev_app.command()
def env() -> None:
    """Print `export TIPSTREAM_...` lines for a shell: eval "$(tipstream dev env)"."""
    _dev_settings_or_exit()
    for line in env_lines():
        print(line)


@dev_app.command()
def status() -> None:
    """Say whether each server answers; exit 1 unless both do."""
    _dev_settings_or_exit()
    st = check()
    print(
        f"kafka    {'up' if st.kafka_ok else 'down':4} {KAFKA_BOOTSTRAP}"
        f"{f' (pid {st.kafka_pid})' if st.kafka_pid else ''}"
    )
    print(
        f"postgres {'up' if st.postgres_ok else 'down':4} {HOST}:{POSTGRES_PORT}"
        f"{f' (pid {st.postgres_pid})' if st.postgres_pid else ''}"
    )
    if not st.up:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # `python -m streams.dev.devstack up` works without the main CLI
    dev_app()
