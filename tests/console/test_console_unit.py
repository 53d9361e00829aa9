"""The console's pure parts: run statuses, tables, the SVG curve, the form's checks."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.analysis.summary import build_run_report
from streams.console import data
from streams.console.app import template_environment
from streams.console.launcher import (
    FORM_JUDGES,
    FORM_POLICIES,
    LaunchFormError,
    LaunchRequest,
    parse_launch_form,
    simulate_argv,
)
from streams.console.svg import Scale, polyline_points, reward_curve_svg
from streams.settings import Settings

SVG = "{http://www.w3.org/2000/svg}"


def _row(round_: int, user: str, persona: str, reward: float, action: str = "done") -> dict:
    return {
        "run_id": "r",
        "round": round_,
        "user_id": user,
        "persona": persona,
        "action": action,
        "dwell_ms": 1000,
        "reward_milli": round(reward * 1000),
        "expected_reward": None,
        "features": {},
    }


def _report(rows: list[dict[str, Any]], **run: Any) -> Any:
    config = {"policy": "random", "seed": 3, "persona_names": ["a", "b"], "users": 1, "rounds": 2}
    return build_run_report({"run_id": "r", "status": "finished", "config": config, **run}, rows)


def test_run_status_progress_counts_the_judgments_to_come() -> None:
    config = {"persona_names": ["a", "b", "c"], "users": 2, "rounds": 10, "policy": "random"}
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = data.run_status(
        {"run_id": "x", "status": "running", "config": config, "events": 15, "created_at": created}
    )
    assert status["expected_events"] == 60
    assert status["progress"] == pytest.approx(0.25)
    assert status["created_at"] == created.isoformat()
    assert status["policy"] == "random"
    assert status["personas"] == "standard"
    done = data.run_status({"run_id": "x", "status": "finished", "config": config, "events": 60})
    assert done["progress"] == 1.0
    load = data.run_status(
        {"run_id": "y", "status": "running", "config": {**config, "rate": 50.0}, "events": 9}
    )
    assert load["expected_events"] is None
    assert load["progress"] is None


def test_tables_are_the_reports_rows_as_text() -> None:
    rows = [
        _row(0, "u1", "a", 1.0),
        _row(1, "u1", "a", 0.5, "snooze"),
        _row(0, "u2", "b", -1.0, "dismiss"),
        _row(1, "u2", "b", 0.0, "snooze"),
    ]
    report = _report(rows)
    personas = data.persona_table(report)
    assert personas.headers[0] == "persona"
    by_name = {r[0]: r for r in personas.rows}
    assert set(by_name) == {"a", "b", "all"}
    assert by_name["a"][1] == "2"
    assert by_name["all"][2].startswith("0.125 [")  # mean of 1, 0.5, -1, 0 with its interval
    actions = {r[0]: r for r in data.action_table(report).rows}
    assert actions["snooze"][1] == "2"
    assert actions["snooze"][2].startswith("0.500 [")  # 2 of 4, with a Wilson interval
    items = dict(data.summary_items(report))
    assert items["run"] == "r"
    assert items["mean reward"].startswith("0.125 [95% CI ")


def test_the_curve_is_valid_svg_with_a_line_per_measure() -> None:
    curve = {
        "round": [0, 1, 2, 3],
        "reward": [0.1, None, 0.5, 0.3],
        "expected": [0.2, 0.3, 0.4, 0.5],
        "random": [0.1, 0.1, 0.1, 0.1],
        "oracle": [0.9, 0.9, 0.9, 0.9],
    }
    svg = reward_curve_svg({"A <b>&": curve, "B": curve})
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    titles = [t.text for t in root.iter(f"{SVG}title")]
    # A: faint reward in two stretches (round 1 has none), moving mean, expected; baselines
    # once; B: the same three.
    assert titles.count("A <b>&: reward") == 2
    assert "A <b>&: expected reward of chosen tip" in titles
    assert titles.count("oracle (expected)") == 1
    assert "B: reward (moving mean of 1)" in titles
    assert "<b>" not in svg  # the label is escaped
    points = [p.get("points") for p in root.iter(f"{SVG}polyline")]
    for attr in points:
        for pair in attr.split():
            x, y = (float(v) for v in pair.split(","))
            assert math.isfinite(x)
            assert math.isfinite(y)


def test_a_higher_reward_is_drawn_higher() -> None:
    scale = Scale(0, 10, -1, 1, 400, 300)
    assert scale.y(1.0) < scale.y(0.0) < scale.y(-1.0)
    assert scale.x(0) < scale.x(10)
    [line] = polyline_points([0, 10], [-1.0, 1.0], scale)
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in line.split())
    assert x0 < x1
    assert y1 < y0


def test_no_rounds_is_an_empty_chart_that_says_so() -> None:
    svg = reward_curve_svg({"r": {"round": [], "reward": [], "expected": [], "random": [],
                                  "oracle": []}})  # fmt: skip
    assert "no judgments yet" in svg
    ET.fromstring(svg)


def _form(**overrides: str) -> dict[str, str]:
    form = {"policy": "random", "personas": "standard", "users": "2", "rounds": "5",
            "seed": "7", "judge": "rule", "via": "inprocess"}  # fmt: skip
    return {**form, **overrides}


def test_the_form_makes_the_simulate_command_line() -> None:
    request = parse_launch_form(_form(), Settings())
    assert request == LaunchRequest("random", "standard", 2, 5, 7, "rule", "inprocess")
    argv = simulate_argv(request, "sim-x")
    assert argv[1:4] == ["-m", "streams.cli", "simulate"]
    text = " ".join(argv[4:])
    assert "--run-id sim-x" in text
    assert "--policy random" in text
    assert "--via inprocess" in text
    assert "--users 2 --rounds 5 --seed 7 --judge rule" in text
    auto = parse_launch_form(_form(via="auto"), Settings())
    assert "--via" not in simulate_argv(auto, "sim-y")
    assert "oracle" in FORM_POLICIES
    assert "external" not in FORM_JUDGES


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"policy": "nope"}, "policy must be one of"),
        ({"personas": "/etc/passwd"}, "personas must be one of"),
        ({"users": "0"}, "users must be between 1 and"),
        ({"rounds": "ten"}, "rounds must be a whole number"),
        ({"seed": "-1"}, "seed must be between 0"),
        ({"judge": "external"}, "judge must be one of"),
        ({"policy": "oracle", "judge": "llm"}, "knows the rule judge only"),
        ({"policy": "random", "via": "worker"}, "does not serve 'random'"),
    ],
)
def test_a_bad_form_is_refused_with_the_reason(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchFormError, match=re.escape(message)):
        parse_launch_form(_form(**overrides), Settings())


def test_templates_escape_what_they_show() -> None:
    env = template_environment()
    html = env.get_template("error.html").render(status=400, message="<script>x</script>")
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html


def _console(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIPSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "console", *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_console_off_loopback_needs_a_token_of_ones_own() -> None:
    refused = _console("--host", "0.0.0.0")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --host=0.0.0.0 is not a loopback address")
    assert "TIPSTREAM_ADMIN_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_console_without_its_database_is_one_line_and_exit_1() -> None:
    # Nothing listens on port 9 of loopback: refused at once, then retried for 10 s.
    failed = _console("--port", "6079", TIPSTREAM_DATABASE_URL="postgresql://u:p@127.0.0.1:9/db")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: cannot reach PostgreSQL at 127.0.0.1:9/db")
    assert failed.stderr.count("\n") == 1
    assert "p@" not in failed.stderr
