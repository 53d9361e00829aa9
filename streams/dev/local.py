"""Where the dev stack lives and the OS helpers its two servers share.

Part of the dev room (``tipstream dev``, see ``streams.dev.devstack``): the loopback
addresses and credentials of the local Kafka and PostgreSQL, the ``var/`` and ``dev/``
paths, timeouts, and small process, port and log helpers for ``streams.dev.kafka`` and
``streams.dev.postgres``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT, settings_error_lines

__all__ = [
    "DATABASE_URL",
    "DB_NAME",
    "DB_PASSWORD",
    "DB_USER",
    "DEV_DIR",
    "DEV_SETTINGS",
    "DEV_SETTINGS_ERROR",
    "HOST",
    "KAFKA_BOOTSTRAP",
    "KAFKA_HEAP",
    "KAFKA_PORT",
    "POSTGRES_PORT",
    "REPO_ROOT",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "VAR_DIR",
    "DevSettings",
    "DevStackError",
    "DevUsageError",
    "cmdline",
    "pid_alive",
    "port_open",
    "port_owner",
    "quiet_loggers",
    "read_pid",
    "require_checkout",
    "run_async",
    "say",
    "stop_pid",
    "tail",
]


class DevSettings(BaseSettings):
    """The dev stack's own knobs (``TIPSTREAM_DEV_*``); only ``tipstream dev`` reads them.

    The ports default to the settings' defaults, so the worker and the simulator need no
    configuration; moving them (a second checkout's stack beside the first) needs
    ``eval "$(tipstream dev env)"`` afterwards.
    """

    model_config = SettingsConfigDict(env_prefix="TIPSTREAM_DEV_", extra="ignore", frozen=True)

    kafka_port: int = Field(
        default=DEV_KAFKA_PORT,
        ge=1,
        le=65_534,
        description="dev stack only: the local broker's port (the controller takes the next)",
    )
    postgres_port: int = Field(
        default=DEV_POSTGRES_PORT, ge=1, le=65_535, description="dev stack only: PostgreSQL's port"
    )
    kafka_heap: str = Field(
        default="512m",
        pattern=r"^[1-9][0-9]*[kKmMgG]?$",
        description="dev stack only: the broker's Java heap (`-Xmx`)",
    )
    var: str | None = Field(
        default=None,
        description="dev stack only: where the servers keep their data, pid files and logs",
        json_schema_extra={"doc_default": "`var/` in the checkout"},
    )


def _dev_settings() -> tuple[DevSettings, ValidationError | None]:
    """The dev settings, or the defaults and why the environment's are wrong: the error is
    raised by :func:`require_checkout` (``tipstream dev``), so a bad ``TIPSTREAM_DEV_*``
    never breaks a command that does not use the dev stack."""
    try:
        return DevSettings(), None
    except ValidationError as err:
        return DevSettings.model_construct(), err


DEV_SETTINGS, DEV_SETTINGS_ERROR = _dev_settings()
KAFKA_PORT = DEV_SETTINGS.kafka_port
POSTGRES_PORT = DEV_SETTINGS.postgres_port
KAFKA_HEAP = DEV_SETTINGS.kafka_heap
HOST = "127.0.0.1"
DB_USER = DB_PASSWORD = DB_NAME = "tipstream"  # noqa: S105 - the dev stack's, on loopback

KAFKA_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
DATABASE_URL = f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{POSTGRES_PORT}/{DB_NAME}"

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = REPO_ROOT / "dev"
VAR_DIR = Path(DEV_SETTINGS.var or str(REPO_ROOT / "var")).resolve()
_CHECKOUT_MARKERS = ("pyproject.toml", "dev/kafka/pom.xml", "dev/kafka/server.properties.in")

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

_T = TypeVar("_T")


class DevStackError(RuntimeError):
    """Something the developer must fix; the message says what and how."""


class DevUsageError(DevStackError):
    """The dev stack cannot be used from here at all (exit 2): no checkout, bad settings."""


def require_checkout(root: Path = REPO_ROOT) -> None:
    """Raise :class:`DevUsageError` unless the dev stack can run: valid ``TIPSTREAM_DEV_*``
    settings, and a checkout of the repository (``dev/`` holds the broker's Maven project
    and configuration; an installed copy has none of it)."""
    if DEV_SETTINGS_ERROR is not None:
        raise DevUsageError("; ".join(settings_error_lines(DEV_SETTINGS_ERROR, DevSettings)))
    missing = [m for m in _CHECKOUT_MARKERS if not (root / m).is_file()]
    if missing:
        raise DevUsageError(
            f"the dev stack needs a checkout of the tipstream repository (it runs from its "
            f"dev/ directory), and this tipstream is installed at {root} without one "
            f"({missing[-1]} is missing): run `uv run tipstream dev ...` in a clone, or use "
            "docker compose"
        )


def say(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(f"dev: {message}", flush=True)


def run_async(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, whether or not a loop runs here.

    A private loop in a worker thread never disturbs the caller's loop (pytest-asyncio's
    session loop, faust's loop), at the price of blocking it while the probe runs.
    """

    async def main() -> _T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devstack") as pool:
        return pool.submit(asyncio.run, main()).result()


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """Best effort: who listens on the port (``ss -ltnp``), for error messages."""
    ss = shutil.which("ss")
    if not ss:
        return "unknown process (install iproute2 for `ss` to see which)"
    out = subprocess.run(  # noqa: S603
        [ss, "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out or "unknown process"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive for our purposes.
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields and fields[0] == "Z":
            return False
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Silence client libraries while we probe a server that may not be up yet."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def stop_pid(pid: int, name: str, timeout_s: float = STOP_TIMEOUT_S) -> str:
    """SIGTERM, wait, then SIGKILL: return how it ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return f"{name}: stopped (pid {pid})"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return f"{name}: killed (pid {pid}) after {timeout_s:.0f}s without a clean stop"
