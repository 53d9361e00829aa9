"""The command line fails clearly without any server: bad settings are exit 2 naming the
variable, a missing API key is exit 2, an unknown persona set lists the known ones, the
version comes from the package metadata, and the dev stack says when it needs a checkout.

Every dependency here points at a closed loopback port: nothing may reach it first.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli.main import app
from streams.dev.local import DevUsageError, require_checkout
from streams.settings import Settings, default_data_dir, get_settings
from tests.cli.clihelpers import closed_port, tipstream
from tests.processes import REPO

NOWHERE = {
    "TIPSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
    "TIPSTREAM_DATABASE_URL": f"postgresql://tipstream:tipstream@127.0.0.1:{closed_port()}/x",
}

BAD_PARTITIONS = (
    "error: TIPSTREAM_PARTITIONS='abc': Input should be a valid integer, unable to parse "
    "string as an integer"
)
# Every command that reads settings.
COMMANDS = [
    ("worker",),
    ("topics", "ensure"),
    ("simulate", "--rounds", "1"),
    ("report", "sim-x"),
    ("evaluate", "--run", "sim-x"),
    ("compare",),
    ("demo",),
    ("settings",),
]


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_bad_setting_is_exit_2_naming_the_variable(
    command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**NOWHERE, "TIPSTREAM_PARTITIONS": "abc"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, list(command))
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == [BAD_PARTITIONS]


@pytest.mark.parametrize("command", [("topics", "ensure"), ("simulate", "--rounds", "1")])
def test_a_bad_setting_from_a_shell_has_no_traceback(command: tuple[str, ...]) -> None:
    proc = tipstream(*command, env={**NOWHERE, "TIPSTREAM_PARTITIONS": "abc"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [BAD_PARTITIONS]


@pytest.mark.usefixtures("fresh_settings")
def test_every_bad_variable_gets_its_line_and_no_secret_is_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in NOWHERE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TIPSTREAM_WEB_PORT", "99999")
    monkeypatch.setenv("TIPSTREAM_EPSILON", "2")
    result = CliRunner().invoke(app, ["topics", "ensure"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: TIPSTREAM_EPSILON='2': Input should be less than or equal to 1",
        "error: TIPSTREAM_WEB_PORT='99999': Input should be less than or equal to 65535",
    ]
    # A rule across fields (SASL needs credentials) names the variables, never the secret.
    monkeypatch.delenv("TIPSTREAM_WEB_PORT")
    monkeypatch.delenv("TIPSTREAM_EPSILON")
    monkeypatch.setenv("TIPSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TIPSTREAM_KAFKA_SASL_PASSWORD", "hunter2-secret")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["topics", "ensure"])
    assert result.exit_code == 2
    assert "TIPSTREAM_KAFKA_SASL_USERNAME" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_a_bad_dev_setting_stops_only_the_dev_commands() -> None:
    env = {**NOWHERE, "TIPSTREAM_DEV_KAFKA_PORT": "x"}
    dev = tipstream("dev", "status", env=env)
    assert dev.returncode == 2, dev.stderr
    assert dev.stderr.strip().startswith("dev: error: TIPSTREAM_DEV_KAFKA_PORT='x'")
    assert "Traceback" not in dev.stderr
    other = tipstream("settings", env=env)
    assert other.returncode == 0, other.stderr


def test_version_comes_from_the_package_metadata() -> None:
    proc = tipstream("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"tipstream {version('tipstream')}"


def test_settings_prints_values_in_effect_with_secrets_hidden() -> None:
    proc = tipstream(
        "settings", env={"TIPSTREAM_ADMIN_TOKEN": "s3cret-token", "TIPSTREAM_PARTITIONS": "3"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "TIPSTREAM_PARTITIONS=3" in proc.stdout.splitlines()
    assert "TIPSTREAM_ADMIN_TOKEN=(set, hidden)" in proc.stdout.splitlines()
    assert "s3cret-token" not in proc.stdout


# ------------------------------------------------------------------- the data directory


def test_data_dir_defaults_to_the_users_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIPSTREAM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert Settings().data_dir == "/srv/state/tipstream"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # ignored, as the XDG spec says
    assert default_data_dir() == str(Path.home() / ".local" / "state" / "tipstream")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert Settings().data_dir == str(Path.home() / ".local" / "state" / "tipstream")


def test_a_relative_data_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIPSTREAM_DATA_DIR", "state/worker")
    assert Settings().data_dir == str(tmp_path / "state" / "worker")


def test_the_worker_creates_its_data_dir_anywhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "state"
    started = time.monotonic()
    proc = tipstream("worker", env={**NOWHERE, "TIPSTREAM_DATA_DIR": str(data_dir)}, cwd=tmp_path)
    # Created before anything else: then the unreachable broker is one line and exit 1.
    assert data_dir.is_dir()
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach Kafka at")
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = tipstream("worker", env={**NOWHERE, "TIPSTREAM_DATA_DIR": str(blocker / "worker")})
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot create TIPSTREAM_DATA_DIR={blocker / 'worker'}")


# ------------------------------------------------------------------- the dev stack


def test_the_dev_stack_needs_a_checkout(tmp_path: Path) -> None:
    require_checkout(REPO)  # this checkout has dev/
    with pytest.raises(DevUsageError, match="needs a checkout"):
        require_checkout(tmp_path)


def test_an_installed_copy_says_the_dev_stack_needs_a_checkout(tmp_path: Path) -> None:
    """The packages alone, as a wheel installs them (no dev/, no pyproject.toml beside)."""
    for package in ("streams", "bandit", "judges", "schemas"):
        shutil.copytree(REPO / package, tmp_path / package)
    for args in (("dev", "up"), ("dev", "down"), ("demo",)):
        proc = tipstream(*args, env=NOWHERE, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        [line] = proc.stderr.strip().splitlines()
        assert "needs a checkout of the tipstream repository" in line, line
        assert str(tmp_path) in line
    env = tipstream("dev", "env", env=NOWHERE, cwd=tmp_path)
    assert env.returncode == 0, env.stderr
    assert "export TIPSTREAM_KAFKA_BOOTSTRAP=" in env.stdout


# ------------------------------------------------------------------- simulate usage


def test_llm_judge_without_a_key_is_exit_2_before_any_server() -> None:
    started = time.monotonic()
    proc = tipstream("simulate", "--judge", "llm", "--policy", "random", env=NOWHERE)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "ANTHROPIC_API_KEY" in line
    assert "--fallback rule" in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--fallback", "rule"), "--fallback goes with --judge llm"),
        (("--fallback", "maybe"), "--fallback must be none or rule"),
        (("--personas", "nightowls"), "persona set 'nightowls'; known: standard, alternate"),
        (("--personas", "no/such/file.json"), "cannot read"),
    ],
)
def test_simulate_usage_errors_are_exit_2(args: tuple[str, ...], needle: str) -> None:
    proc = tipstream("simulate", "--policy", "random", *args, env=NOWHERE)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_knows_the_persona_sets_by_name() -> None:
    proc = tipstream("compare", "--personas", "nightowls", env=NOWHERE)
    assert proc.returncode == 2, proc.stderr
    assert "known: standard, alternate" in proc.stderr
