"""The real worker as a subprocess (tests, benchmarks, demo): start, wait ready, stop or kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import aiohttp
from pydantic import SecretStr

from streams.settings import Settings

LOG_LEVELS = frozenset({"crit", "error", "warn", "info", "debug"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The TIPSTREAM_* environment that reproduces ``settings`` in another process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[f"TIPSTREAM_{name.upper()}"] = str(plain)
    return env


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process that must run with exactly ``settings``: ours,
    without any TIPSTREAM_* of our own, plus :func:`settings_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPSTREAM_")}
    env.update(settings_env(settings))
    return env


class WorkerProcess:
    """``tipstream worker`` in a child process with the given settings."""

    def __init__(self, settings: Settings, *, loglevel: str = "warn", **overrides: Any) -> None:
        if loglevel not in LOG_LEVELS:
            raise ValueError(f"loglevel must be one of {sorted(LOG_LEVELS)}")
        self.loglevel = loglevel
        self.data_dir = tempfile.mkdtemp(prefix="tipstream-worker-")
        self.settings = settings.model_copy(
            update={
                "web_port": free_port(),
                "data_dir": self.data_dir,
                "session_timeout_s": 6.0,
                **overrides,
            }
        )
        self.log_path = Path(self.data_dir) / "worker.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> None:
        env = child_env(self.settings)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (our own module, a validated log level)
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", self.loglevel],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def __aenter__(self) -> WorkerProcess:
        """Started and ready (``/healthz`` 200); stopped gracefully on the way out, also when
        it never became ready."""
        self.start()
        try:
            await self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited ({self.process.returncode}):\n{self.log()}")
                try:
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"worker not ready after {timeout_s}s:\n{self.log()}")
                await asyncio.sleep(0.25)

    def stop(self, *, kill: bool = False, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful) or SIGKILL; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._log is not None:
            self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as response:
            return response.status, await response.json(content_type=None)

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url + path, json=body, headers=headers or {}) as response,
        ):
            return response.status, await response.json(content_type=None)
