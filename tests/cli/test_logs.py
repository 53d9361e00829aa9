"""TIPSTREAM_LOG_FORMAT and TIPSTREAM_LOG_LEVEL: JSON lines that parse and carry the ids,
the level honoured, faust handed the same configuration, and bad values exit 2."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import orjson
import pytest
from pydantic import ValidationError

from streams.cli.logs import JsonFormatter, configure_logging, level_number, logging_config
from streams.settings import Settings
from tests.cli.clihelpers import closed_port, tipstream


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_a_json_line_parses_and_carries_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="json"))
    log = logging.getLogger("tipstream.test")
    log.warning(
        "dead-lettering %s\n(a second line)",
        "x",
        extra={"run_id": "sim-1", "user_id": "u1", "event_id": "e1", "partition": 3},
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    log.info("plain")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 3, err  # the two-line message and the traceback stay on one line each
    first, second, third = _lines(err)
    assert first["message"] == "dead-lettering x\n(a second line)"
    assert (first["run_id"], first["user_id"], first["event_id"]) == ("sim-1", "u1", "e1")
    assert first["partition"] == 3
    assert first["level"] == "WARNING"
    assert first["logger"] == "tipstream.test"
    assert str(first["ts"]).endswith("Z")
    assert "T" in str(first["ts"])
    assert "exc_info" not in first
    assert "Traceback" in str(second["exc_info"])
    assert "RuntimeError: boom" in str(second["exc_info"])
    assert "user_id" not in third  # ids only where the call knew them


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "shown"), [("warning", ["WARNING"]), ("debug", ["DEBUG", "INFO", "WARNING"])]
)
def test_the_level_setting_is_honoured(
    level: str, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format="json", log_level=level))  # type: ignore[arg-type]
    log = logging.getLogger("tipstream.level")
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert [line["level"] for line in _lines(capsys.readouterr().err)] == shown


@pytest.mark.usefixtures("restore_logging")
def test_text_is_the_default_and_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings()
    assert (settings.log_format, settings.log_level) == ("text", "INFO")
    configure_logging(settings)
    logging.getLogger("tipstream.text").info("hello %s", "there")
    err = capsys.readouterr().err
    assert "INFO tipstream.text: hello there" in err
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(err)


def test_faust_gets_our_formatter_and_level() -> None:
    """The mapping handed to faust's worker (``logging_config``) is a valid dictConfig
    whose handler formats JSON, at the worker's level."""
    config = logging_config(Settings(log_format="json"), level_number("WARNING"))
    assert config["root"]["level"] == logging.WARNING
    assert config["formatters"]["tipstream"]["()"].endswith(".JsonFormatter")
    formatter = logging.config.DictConfigurator(config).configure_custom(
        dict(config["formatters"]["tipstream"])
    )
    assert isinstance(formatter, JsonFormatter)


@pytest.mark.parametrize(
    ("value", "expected"), [("warn", "WARNING"), ("Debug", "DEBUG"), ("crit", "CRITICAL")]
)
def test_level_spellings(value: str, expected: str) -> None:
    assert Settings(log_level=value).log_level == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"), [("TIPSTREAM_LOG_FORMAT", "xml"), ("TIPSTREAM_LOG_LEVEL", "LOUD")]
)
def test_a_bad_log_setting_is_exit_2_naming_it(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(**{name.removeprefix("TIPSTREAM_").lower(): value})
    env = {
        name: value,
        "TIPSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "TIPSTREAM_DATABASE_URL": f"postgresql://x:y@127.0.0.1:{closed_port()}/x",
    }
    for command in (("worker",), ("simulate", "--rounds", "1")):
        result = tipstream(*command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        assert f"error: {name}={value!r}" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("restore_logging")
def test_http_clients_say_only_warnings_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="json"))
    logging.getLogger("httpx").info("HTTP Request: POST ...")
    logging.getLogger("httpx").warning("retrying")
    assert [line["message"] for line in _lines(capsys.readouterr().err)] == ["retrying"]
    configure_logging(Settings(log_format="json", log_level="DEBUG"))
    logging.getLogger("httpx").info("HTTP Request: POST ...")
    assert len(_lines(capsys.readouterr().err)) == 1
