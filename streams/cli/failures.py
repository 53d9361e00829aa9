"""One clear line for a dependency that fails: what the commands print instead of a traceback.

Used by every command that talks to Kafka: ``worker``, ``topics ensure`` and ``simulate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.settings import Settings

__all__ = ["aiokafka_silenced", "kafka_failure_reason"]


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
