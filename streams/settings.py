"""Typed settings from the environment (``TIPSTREAM_*``), one place for every knob.

Every setting has a default that works with ``tipstream dev up`` (Kafka on 127.0.0.1:19092,
PostgreSQL on 127.0.0.1:15432), so a newcomer needs no configuration at all.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bandit.registry import DEFAULT_POLICY
from judges.llm import DEFAULT_MODEL

__all__ = [
    "DEFAULT_ADMIN_TOKEN",
    "DEV_KAFKA_PORT",
    "DEV_POSTGRES_PORT",
    "Settings",
    "get_settings",
    "is_loopback_host",
]

DEV_KAFKA_PORT = 19092
DEV_POSTGRES_PORT = 15432
DEFAULT_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - public on purpose; loopback only


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect.

    Anything else, including ``0.0.0.0``, ``::``, an empty host and other names, may be
    reachable from the network.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """The worker's and the simulator's configuration."""

    model_config = SettingsConfigDict(env_prefix="TIPSTREAM_", extra="ignore", frozen=True)

    kafka_bootstrap: str = f"127.0.0.1:{DEV_KAFKA_PORT}"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    database_url: str = f"postgresql://tipstream:tipstream@127.0.0.1:{DEV_POSTGRES_PORT}/tipstream"

    topic_shown: str = "tips.shown"
    topic_feedback: str = "tips.feedback"
    topic_deadletter: str = "tips.deadletter"
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1)

    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    policy: str = DEFAULT_POLICY  # serves /score/egreedy
    shadow_policies: str = ""  # comma-separated names that learn without serving
    reward_wait_s: float = Field(default=86_400.0, gt=0)
    default_reward: float | None = None  # learned from on expiry when set
    dedupe_retention_s: float = Field(default=7 * 86_400.0, gt=0)
    max_event_bytes: int = Field(default=64 * 1024, ge=1024)

    llm_model: str = DEFAULT_MODEL  # the LLM judge's Anthropic model

    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65_535)
    admin_token: SecretStr = SecretStr(DEFAULT_ADMIN_TOKEN)

    app_id: str = "tipstream"
    data_dir: str = "var/worker"  # faust's per-worker directory
    batch_max: int = Field(default=2000, ge=1)
    batch_within_s: float = Field(default=0.05, gt=0)
    # Kafka's own default (session.timeout.ms = 45 s): a busy lone worker must not lose its
    # group; a worker that dies is replaced after this long (tests use a few seconds).
    # Standby replicas of the state table on other workers: a survivor then serves a dead
    # worker's users as soon as the group moves them, without replaying their changelog.
    standby_replicas: int = Field(default=0, ge=0)
    session_timeout_s: float = Field(default=45.0, gt=0)
    # A SIGTERM stops within this bound: what was not acknowledged by then is read again.
    stop_timeout_s: float = Field(default=25.0, gt=0)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "SASL security protocol needs TIPSTREAM_KAFKA_SASL_MECHANISM, "
                "TIPSTREAM_KAFKA_SASL_USERNAME and TIPSTREAM_KAFKA_SASL_PASSWORD"
            )
        return self

    def admin_token_problem(self) -> str | None:
        """Why the worker must not serve with this admin token, or None when it may.

        The default token is public (it is in this repository), so it is only acceptable
        while the web server listens on loopback. Checked when the worker starts, not on
        every ``Settings()``: the simulator and ``topics ensure`` never serve the admin API.
        """
        if is_loopback_host(self.web_host):
            return None
        if self.admin_token.get_secret_value() in ("", DEFAULT_ADMIN_TOKEN):
            return (
                f"TIPSTREAM_WEB_HOST={self.web_host} is not a loopback address, so the admin "
                "endpoints are reachable from the network: set TIPSTREAM_ADMIN_TOKEN to a "
                f"secret of your own (the default {DEFAULT_ADMIN_TOKEN!r} is public)"
            )
        return None

    @property
    def shadow_policy_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.shadow_policies.split(",") if n.strip())

    def aiokafka_kwargs(self) -> dict[str, object]:
        """Connection keyword arguments shared by every aiokafka client we create."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context  # noqa: PLC0415

            kwargs["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_sasl_mechanism:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return kwargs


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
