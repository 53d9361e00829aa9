"""The worker refuses to serve its admin API off loopback with the public default token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import SecretStr

from streams.dev.worker_process import settings_env
from streams.settings import DEFAULT_ADMIN_TOKEN, Settings, is_loopback_host

LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "localhost."]
NOT_LOOPBACK = ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7", "example.com", "worker"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_hosts_that_may_face_the_network(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize("host", LOOPBACK)
def test_the_default_token_is_fine_on_loopback(host: str) -> None:
    assert Settings(web_host=host).admin_token_problem() is None


@pytest.mark.parametrize("host", NOT_LOOPBACK)
@pytest.mark.parametrize("token", [DEFAULT_ADMIN_TOKEN, ""])
def test_the_default_or_an_empty_token_is_refused_off_loopback(host: str, token: str) -> None:
    problem = Settings(web_host=host, admin_token=SecretStr(token)).admin_token_problem()
    assert problem is not None
    assert "TIPSTREAM_ADMIN_TOKEN" in problem
    assert "\n" not in problem


def test_an_own_token_is_fine_off_loopback() -> None:
    settings = Settings(web_host="0.0.0.0", admin_token=SecretStr("s3cret-of-my-own"))
    assert settings.admin_token_problem() is None


def _worker(
    env_overrides: dict[str, str], unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = settings_env(Settings())
    env.update(env_overrides)
    for name in unset:
        env.pop(name, None)
    # Nothing else from the caller's TIPSTREAM_* environment, so "unset" means unset.
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIPSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("overrides", "unset"),
    [
        ({"TIPSTREAM_WEB_HOST": "0.0.0.0"}, ("TIPSTREAM_ADMIN_TOKEN",)),
        ({"TIPSTREAM_WEB_HOST": "0.0.0.0", "TIPSTREAM_ADMIN_TOKEN": DEFAULT_ADMIN_TOKEN}, ()),
    ],
    ids=["unset", "default"],
)
def test_worker_exits_2_naming_the_setting(
    overrides: dict[str, str], unset: tuple[str, ...]
) -> None:
    # Kafka points nowhere: the check must come first, before any connection is tried.
    proc = _worker({**overrides, "TIPSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, unset)
    assert proc.returncode == 2, proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "TIPSTREAM_ADMIN_TOKEN" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_the_console_host_follows_the_same_rule(host: str) -> None:
    """``tipstream console --host`` is checked like the worker's host, whatever web_host is."""
    settings = Settings(web_host="127.0.0.1")
    problem = settings.admin_token_problem(host, where="--host")
    assert problem is not None
    assert problem.startswith(f"--host={host} ")
    assert "TIPSTREAM_ADMIN_TOKEN" in problem
    own = Settings(web_host="127.0.0.1", admin_token=SecretStr("s3cret-of-my-own"))
    assert own.admin_token_problem(host, where="--host") is None
    assert Settings(web_host=host).admin_token_problem("127.0.0.1") is None
