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

from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT

__all__ = [
    "DATABASE_URL",
    "DB_NAME",
    "DB_PASSWORD",
    "DB_USER",
    "DEV_DIR",
    "HOST",
    "KAFKA_BOOTSTRAP",
    "KAFKA_PORT",
    "POSTGRES_PORT",
    "REPO_ROOT",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "VAR_DIR",
    "DevStackError",
    "cmdline",
    "pid_alive",
    "port_open",
    "port_owner",
    "quiet_loggers",
    "read_pid",
    "run_async",
    "say",
    "stop_pid",
    "tail",
]

# The dev ports are the settings' defaults; TIPSTREAM_DEV_KAFKA_PORT / _POSTGRES_PORT move
# them (a second checkout's stack beside the first; then `eval "$(tipstream dev env)"`).
KAFKA_PORT = int(os.environ.get("TIPSTREAM_DEV_KAFKA_PORT", DEV_KAFKA_PORT))
POSTGRES_PORT = int(os.environ.get("TIPSTREAM_DEV_POSTGRES_PORT", DEV_POSTGRES_PORT))
HOST = "127.0.0.1"
DB_USER = DB_PASSWORD = DB_NAME = "tipstream"  # noqa: S105 - the dev stack's, on loopback

KAFKA_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
DATABASE_URL = f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{POSTGRES_PORT}/{DB_NAME}"

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = REPO_ROOT / "dev"
VAR_DIR = Path(os.environ.get("TIPSTREAM_DEV_VAR", str(REPO_ROOT / "var"))).resolve()

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

_T = TypeVar("_T")


class DevStackError(RuntimeError):
    """Something the developer must fix; the message says what and how."""


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
