"""Typed settings from the environment (``TIPSTREAM_*``), one place for every knob.

Every setting has a default that works with ``tipstream dev up`` (Kafka on 127.0.0.1:19092,
PostgreSQL on 127.0.0.1:15432), so a newcomer needs no configuration at all.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bandit.registry import DEFAULT_POLICY
from judges.llm import DEFAULT_MODEL

__all__ = [
    "DEFAULT_ADMIN_TOKEN",
    "DEV_KAFKA_PORT",
    "DEV_POSTGRES_PORT",
    "LOG_LEVELS",
    "Settings",
    "default_data_dir",
    "get_settings",
    "is_loopback_host",
    "settings_error_lines",
]

_STATE_HOME = "~/.local/state/tipstream"
DEV_KAFKA_PORT = 19092
DEV_POSTGRES_PORT = 15432
DEFAULT_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - public on purpose; loopback only
LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
LOG_LEVELS: tuple[LogLevel, ...] = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# The worker's --loglevel spellings (faust's), accepted here too.
_LEVEL_ALIASES = {"CRIT": "CRITICAL", "WARN": "WARNING"}


def default_data_dir() -> str:
    """The user's state directory for tipstream: ``$XDG_STATE_HOME/tipstream``, else
    ``~/.local/state/tipstream`` (the XDG base directory rule; a relative
    ``XDG_STATE_HOME`` is ignored, as the specification says). Absolute, so the worker runs
    from any directory; the worker creates it when it starts.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return str(root / "tipstream")


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
    """The worker's and the simulator's configuration.

    Each field's ``description`` is its documentation: ``tipstream settings --markdown``
    renders the table in README.md and docs/contracts.md from them.
    """

    model_config = SettingsConfigDict(env_prefix="TIPSTREAM_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default=f"127.0.0.1:{DEV_KAFKA_PORT}",
        description="Kafka bootstrap servers, `host:port[,host:port...]`",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None,
        description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; a SASL protocol needs the "
        "mechanism, the username and the password",
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL username")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never printed)"
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        description="CA file (PEM) the broker's certificate must chain to, for `SSL` and "
        "`SASL_SSL`; unset means the system's CAs. The host name is checked; client "
        "certificates are not supported",
    )

    database_url: str = Field(
        default=f"postgresql://tipstream:tipstream@127.0.0.1:{DEV_POSTGRES_PORT}/tipstream",
        description="PostgreSQL connection URL",
    )

    topic_shown: str = Field(default="tips.shown", description="input topic of `TipShown`")
    topic_feedback: str = Field(default="tips.feedback", description="input topic of `TipFeedback`")
    topic_deadletter: str = Field(
        default="tips.deadletter", description="where bad input goes, with its original bytes"
    )
    partitions: int = Field(
        default=8, ge=1, le=10_000, description="partitions of the topics (1–10,000)"
    )
    replication_factor: int = Field(
        default=1, ge=1, description="replication of the topics tipstream creates"
    )

    epsilon: float = Field(
        default=0.1, ge=0.0, le=1.0, description="ε of `egreedy-v1`; the other policies ignore it"
    )
    exploration_floor: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="share of the serving policy's choices made uniformly at random (and "
        "logged with their propensity), for off-policy evaluation; 0: the policy's own",
    )
    policy: str = Field(
        default=DEFAULT_POLICY,
        description="the policy that serves `/score/egreedy`, and the simulator's default "
        "`--policy`",
    )
    shadow_policies: str = Field(
        default="",
        description="comma list of policies that learn from the same stream without serving",
    )
    reward_wait_s: float = Field(
        default=86_400.0,
        gt=0,
        description="how long a show waits for its feedback, and feedback for its show",
    )
    default_reward: float | None = Field(
        default=None,
        description="reward learned from an expired show; unset means it is not learned from",
    )
    dedupe_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="how long (stream time) the guard remembers a settled tip",
    )
    sim_state_keep_s: float = Field(
        default=3600.0,
        ge=0,
        description="how long a worker keeps a simulated run's state (its users' records "
        "and pooled priors) after the run ended (its `sim_runs` row's `finished_at`); 0 "
        "keeps it for good",
    )
    max_event_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="larger events are dead-lettered `payload_too_large` (at least 1024)",
    )

    llm_model: str = Field(default=DEFAULT_MODEL, description="the LLM judge's Anthropic model")

    web_host: str = Field(default="127.0.0.1", description="the worker's HTTP address")
    web_port: int = Field(default=6066, ge=1, le=65_535, description="the worker's HTTP port")
    admin_token: SecretStr = Field(
        default=SecretStr(DEFAULT_ADMIN_TOKEN),
        description="bearer token for `/admin/...`. The default (or an empty token) is "
        "accepted only while `TIPSTREAM_WEB_HOST` is loopback (127.0.0.0/8, `::1`, "
        "`localhost`); otherwise the worker exits 2 at start",
        json_schema_extra={"doc_default": f"`{DEFAULT_ADMIN_TOKEN}`"},
    )

    app_id: str = Field(
        default="tipstream",
        description="faust app id: the consumer group and the changelog topics' prefix",
    )
    state_store: Literal["memory", "rocksdb"] = Field(
        default="memory",
        description="where the worker keeps user state: `memory` (rebuilt from the changelog "
        "at every start) or `rocksdb` (on disk in `TIPSTREAM_DATA_DIR`; a restart reads only "
        "the changelog's tail)",
    )
    rocksdb_memory_mb: float = Field(
        default=64.0,
        gt=0,
        description="with `rocksdb`: RocksDB's write buffers and block caches, shared out "
        "equally between the partitions' databases, in MiB",
    )
    data_dir: str = Field(
        default_factory=default_data_dir,
        description="faust's per-worker directory, created at start (the image sets "
        "`/var/lib/tipstream`); a relative path is taken from the current directory. One "
        "worker per directory and app id: a second one exits 2",
        json_schema_extra={"doc_default": f"`$XDG_STATE_HOME/tipstream`, else `{_STATE_HOME}`"},
    )
    batch_max: int = Field(default=2000, ge=1, description="events per batch at most")
    hot_cache_mb: float = Field(
        default=32.0,
        gt=0,
        description="decoded user records kept between batches (least recently used out "
        "first), bounded by an estimate of the memory they take decoded, in MiB",
    )
    standby_replicas: int = Field(
        default=0,
        ge=0,
        description="standby copies of the state on other workers (faust's "
        "`table_standby_replicas`): with 1, a survivor serves a dead worker's users without "
        "replaying their changelog",
    )
    session_timeout_s: float = Field(
        default=45.0,
        gt=0,
        description="Kafka consumer session timeout (Kafka's default): a busy lone worker "
        "keeps its group; a dead worker's partitions move after this long",
    )
    stop_timeout_s: float = Field(
        default=25.0,
        gt=0,
        description="a SIGTERM completes within this; past it the worker exits, and what was "
        "not committed is read again by the next owner",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` (for people) or `json`: one JSON object per line on stderr, with "
        "`ts`, `level`, `logger`, `message` and, where known, `run_id`, `user_id`, `event_id` "
        "(`tipstream worker` and `tipstream simulate`)",
    )
    log_level: LogLevel = Field(
        default="INFO",
        description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL` (any case; `warn` and "
        "`crit` too); the worker's `--loglevel` overrides it",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        if isinstance(value, str):
            name = value.strip().upper()
            return _LEVEL_ALIASES.get(name, name)
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a directory, not empty")
        return str(Path(value).expanduser().absolute())

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

    def admin_token_problem(
        self, host: str | None = None, *, where: str = "TIPSTREAM_WEB_HOST"
    ) -> str | None:
        """Why a server must not serve with this admin token on ``host`` (default: the
        worker's ``web_host``; ``where`` names how it was set), or None when it may.

        The default token is public (it is in this repository), so it is only acceptable
        while the server listens on loopback. Checked when the worker or ``tipstream
        console`` starts, not on every ``Settings()``: the simulator and ``topics ensure``
        never serve the admin API.
        """
        host = self.web_host if host is None else host
        if is_loopback_host(host):
            return None
        if self.admin_token.get_secret_value() in ("", DEFAULT_ADMIN_TOKEN):
            return (
                f"{where}={host} is not a loopback address, so the admin "
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
    """The settings from the environment, read once; a bad value raises pydantic's
    ``ValidationError`` (the CLI turns it into :func:`settings_error_lines` and exit 2)."""
    return Settings()


def settings_error_lines(err: ValidationError, model: type[BaseSettings] = Settings) -> list[str]:
    """One line per bad variable: its name, its value (never a secret's) and the reason.

    >>> try:
    ...     Settings(partitions="abc")
    ... except ValidationError as e:
    ...     print(settings_error_lines(e)[0])  # doctest: +ELLIPSIS
    TIPSTREAM_PARTITIONS='abc': Input should be a valid integer, ...
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    lines = []
    for error in err.errors(include_url=False):
        reason = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a rule across fields: its message names the variables
            lines.append(reason)
            continue
        name = str(error["loc"][0])
        field = model.model_fields.get(name)
        secret = field is not None and "SecretStr" in str(field.annotation)
        shown = "" if secret or error["type"] == "missing" else f"={error['input']!r}"
        lines.append(f"{prefix}{name.upper()}{shown}: {reason}")
    return lines
