"""``tipstream worker`` and ``tipstream topics ensure``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
from collections.abc import Iterator

import asyncpg
import typer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from schemas.migrations import migrate
from streams.settings import Settings, get_settings
from streams.worker.sink import DatabaseUnavailableError, check_database
from streams.worker.topics import TopicLayoutError, TopicReport, ensure_topics

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


@contextlib.contextmanager
def _aiokafka_silenced() -> Iterator[None]:
    """aiokafka logs each failed bootstrap itself; our one line says it better."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


async def kafka_failure_reason(settings: Settings, failure: BaseException) -> str:
    """Why the brokers in ``settings`` refuse us, found by connecting to each one directly.

    aiokafka's bootstrap turns every failure into "Unable to bootstrap"; a bare connection
    raises the real cause: wrong credentials, an untrusted certificate, or no broker. When
    every broker accepts a bare connection, ``failure`` (what the admin client raised) is
    the answer. It names the broker and the user, never the password.
    """
    kwargs = settings.aiokafka_kwargs()
    reasons: list[str] = []
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with asyncio.timeout(15):  # a silent peer must not stall the error line
                conn = await create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=10_000,
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=settings.kafka_security_protocol,
                    sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                    sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=kwargs.get("sasl_plain_password"),
                )
        except (SaslAuthenticationFailed, IllegalSaslStateError):
            return (
                f"Kafka at {address.strip()} refused the credentials: authentication failed "
                f"({settings.kafka_sasl_mechanism} as user {settings.kafka_sasl_username!r}); "
                "check TIPSTREAM_KAFKA_SASL_USERNAME and TIPSTREAM_KAFKA_SASL_PASSWORD"
            )
        except UnsupportedSaslMechanismError:
            return (
                f"Kafka at {address.strip()} does not accept SASL mechanism "
                f"{settings.kafka_sasl_mechanism}: check TIPSTREAM_KAFKA_SASL_MECHANISM"
            )
        except ssl.SSLError as exc:
            return (
                f"TLS with Kafka at {address.strip()} failed ({exc.reason or exc}): check "
                "TIPSTREAM_KAFKA_SECURITY_PROTOCOL and TIPSTREAM_KAFKA_SSL_CAFILE"
            )
        except Exception as exc:
            reasons.append(f"{address.strip()}: {type(exc).__name__}: {exc or 'no answer'}")
        else:
            conn.close()
    if reasons:
        return f"cannot reach Kafka at {settings.kafka_bootstrap} ({'; '.join(reasons)})"
    return f"Kafka at {settings.kafka_bootstrap} failed: {type(failure).__name__}: {failure}"


def _ensure_topics_or_exit(settings: Settings) -> TopicReport:
    """Exit 2 on a topic layout that cannot be co-partitioned, 1 when Kafka cannot be used.

    The failure is one line: wrong credentials, an untrusted certificate and an absent
    broker each say so and name the broker.
    """
    try:
        with _aiokafka_silenced():
            return asyncio.run(ensure_topics(settings))
    except TopicLayoutError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        with _aiokafka_silenced():
            reason = asyncio.run(kafka_failure_reason(settings, exc))
        typer.echo(f"error: {reason}", err=True)
        raise typer.Exit(1) from None


def _check_database_or_exit(settings: Settings) -> None:
    """Exit 1 with one line (address, never the password) when PostgreSQL cannot be used."""
    try:
        asyncio.run(check_database(settings.database_url))
    except DatabaseUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create missing topics and database tables; refuse if the input topics differ."""
    settings = get_settings()
    report = _ensure_topics_or_exit(settings)
    _check_database_or_exit(settings)
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
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="crit, error, warn, info, debug"),
) -> None:
    """Run the stream worker: consume shows and feedback, learn, serve /score/egreedy."""
    # faust and the worker's modules are heavy: `tipstream topics ensure` must not pay for them.
    from streams.worker.app import BoundedStopWorker, Worker  # noqa: PLC0415

    if loglevel not in _LOG_LEVELS:
        typer.echo(f"error: --loglevel must be one of {', '.join(_LOG_LEVELS)}", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    problem = settings.admin_token_problem()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    _ensure_topics_or_exit(settings)
    _check_database_or_exit(settings)
    try:
        tipstream = Worker(settings)
    except ValueError as exc:  # unknown policy names and the like
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(level=_LOG_LEVELS[loglevel])
    BoundedStopWorker(
        tipstream.app, loglevel=loglevel, quiet=True, stop_timeout_s=settings.stop_timeout_s
    ).execute_from_commandline()
    sys.exit(0)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(topics_app, name="topics")
