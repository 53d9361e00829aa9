"""One clear line instead of a traceback: bad settings, and dependencies that fail.

The one home for how a command fails before it does its work:

- a bad ``TIPSTREAM_*`` value: :func:`settings_or_exit`, exit 2 with one line per variable
  (every command that reads settings);
- Kafka: :func:`kafka_failure_reason` (``worker``, ``topics ensure``, ``simulate``);
- PostgreSQL: :func:`require_database`, on the worker's own probe
  (``streams.worker.sink.check_database``), exit 1 naming host:port;
- the Anthropic API: :func:`anthropic_failure_line` for the LLM judge;
- any of these raised during a command's work: :func:`failure_line`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator

import typer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from pydantic import ValidationError

from judges.llm import LLMJudgeError
from streams.settings import Settings, get_settings, settings_error_lines
from streams.worker.sink import DatabaseUnavailableError, check_database

__all__ = [
    "aiokafka_silenced",
    "anthropic_failure_line",
    "fail",
    "failure_line",
    "kafka_failure_reason",
    "require_database",
    "settings_error_exit",
    "settings_or_exit",
]


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings_error_exit(err: ValidationError) -> typer.Exit:
    """Exit 2 with one ``error: VARIABLE=value: reason`` line per bad variable."""
    for line in settings_error_lines(err):
        typer.echo(f"error: {line}", err=True)
    return typer.Exit(2)


def settings_or_exit() -> Settings:
    """The settings from the environment; a bad value is exit 2 naming the variable."""
    try:
        return get_settings()
    except ValidationError as err:
        raise settings_error_exit(err) from None


def require_database(settings: Settings, timeout_s: float = 20.0) -> None:
    """Exit 1 with one line (host:port, never the password) unless PostgreSQL answers."""
    try:
        asyncio.run(check_database(settings.database_url, timeout_s=timeout_s))
    except DatabaseUnavailableError as err:
        raise fail(str(err), 1) from None


def anthropic_failure_line(err: LLMJudgeError) -> str:
    """One line for a strict LLM judge's failure: the API's address and why.

    >>> line = anthropic_failure_line(LLMJudgeError("connection_error", "http://127.0.0.1:9"))
    >>> line.split(";")[0]
    'cannot reach the Anthropic API at http://127.0.0.1:9 (connection_error)'
    """
    cause = f"{err.reason}: {err.detail}" if err.detail else err.reason
    head = (
        f"cannot reach the Anthropic API at {err.base_url}"
        if err.reason in ("connection_error", "timeout")
        else f"the Anthropic API at {err.base_url} failed"
    )
    return f"{head} ({cause}); --fallback rule judges such rounds with the rule judge instead"


def failure_line(err: BaseException, settings: Settings) -> str:
    """What a command prints for a failure it did not expect: one line naming the
    dependency and its address (PostgreSQL, Kafka, the Anthropic API), else the error."""
    if isinstance(err, DatabaseUnavailableError):
        return str(err)
    if isinstance(err, LLMJudgeError):
        return anthropic_failure_line(err)
    if isinstance(err, KafkaError):
        with aiokafka_silenced():
            return asyncio.run(kafka_failure_reason(settings, err))
    return f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def aiokafka_silenced() -> Iterator[None]:
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
