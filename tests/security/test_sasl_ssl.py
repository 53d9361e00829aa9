"""Every Kafka client of the project over SASL_SSL with SCRAM-SHA-512, on a real broker.

``topics ensure``, the worker and the simulator are run as the commands they are, with
only ``TIPSTREAM_*`` settings pointing them at the secure broker; a wrong password must
give one clear line and exit 1; no secret may appear in anything they print or log.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.worker.topics import ensure_topics
from tests.security.secure_broker import SecureBroker, make_certificates
from tests.sim.simhelpers import consume_run, run_cli
from tests.worker.events import Producer, feedback, shown

pytestmark = pytest.mark.integration

FAIL_WITHIN_S = 30.0


def secrets_of(settings: Settings) -> list[str]:
    password = settings.kafka_sasl_password
    assert password is not None
    return [password.get_secret_value(), settings.admin_token.get_secret_value()]


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "a secret appears in the output"


@pytest.fixture
async def secure_topics(secure: Settings) -> AsyncIterator[Settings]:
    """``secure`` with its topics created over SASL_SSL (deleted afterwards)."""
    await ensure_topics(secure)
    try:
        yield secure
    finally:
        admin = AIOKafkaAdminClient(**secure.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.delete_topics(
                [secure.topic_shown, secure.topic_feedback, secure.topic_deadletter]
            )
        finally:
            await admin.close()


async def test_the_broker_refuses_plaintext_and_anonymous_clients(
    secure_broker: SecureBroker, secure: Settings
) -> None:
    """The broker really demands SASL_SSL: otherwise every test below proves nothing."""
    plaintext = secure.model_copy(
        update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure to connect will do
        await asyncio.wait_for(ensure_topics(plaintext), 15)
    ssl_only = secure.model_copy(
        update={"kafka_security_protocol": "SSL", "kafka_sasl_mechanism": None}
    )
    with pytest.raises(Exception):  # noqa: B017, PT011
        await asyncio.wait_for(ensure_topics(ssl_only), 15)


async def test_topics_ensure_creates_the_topics(secure: Settings, database: str) -> None:
    code, out, err = await run_cli(secure, "topics", "ensure")
    assert code == 0, err
    for name in (secure.topic_shown, secure.topic_feedback, secure.topic_deadletter):
        assert f"{name}: {secure.partitions} partitions (created)" in out
    admin = AIOKafkaAdminClient(**secure.aiokafka_kwargs())
    await admin.start()
    try:
        listed = set(await admin.list_topics())
        assert {secure.topic_shown, secure.topic_feedback, secure.topic_deadletter} <= listed
        await admin.delete_topics(
            [secure.topic_shown, secure.topic_feedback, secure.topic_deadletter]
        )
    finally:
        await admin.close()
    assert_no_secret(out + err, *secrets_of(secure))


@pytest.mark.parametrize("command", [("topics", "ensure"), ("worker",)])
async def test_a_wrong_password_is_one_clear_line(
    secure_broker: SecureBroker, secure: Settings, command: tuple[str, ...]
) -> None:
    wrong = secure.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    started = time.monotonic()
    code, out, err = await run_cli(wrong, *command)
    elapsed = time.monotonic() - started
    assert code == 1, (out, err)
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert secure_broker.bootstrap in lines[0]
    assert "authentication failed" in lines[0]
    assert "Traceback" not in out + err
    assert elapsed < FAIL_WITHIN_S
    assert_no_secret(out + err, "not-the-password", *secrets_of(secure))


async def test_an_untrusted_broker_certificate_is_one_clear_line(
    secure_broker: SecureBroker, secure: Settings, tmp_path: Path
) -> None:
    # A CA of its own that did not sign the broker's certificate.
    other_ca = make_certificates(tmp_path, "unused-keystore-password")[0]
    untrusted = secure.model_copy(update={"kafka_ssl_cafile": str(other_ca)})
    code, out, err = await run_cli(untrusted, "topics", "ensure")
    assert code == 1, (out, err)
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1, lines
    assert secure_broker.bootstrap in lines[0]
    assert "CERTIFICATE_VERIFY_FAILED" in lines[0]
    assert "TIPSTREAM_KAFKA_SSL_CAFILE" in lines[0]
    assert_no_secret(out + err, *secrets_of(secure))


async def test_worker_learns_over_sasl_ssl(secure_topics: Settings, database: str) -> None:
    user = f"user-sec-{uuid.uuid4().hex[:10]}"
    process = WorkerProcess(secure_topics, loglevel="info")
    process.start()
    try:
        await process.wait_ready()
        async with Producer(secure_topics) as kafka:
            await kafka.shows(shown(user, "tip-secure"))
            await kafka.feedbacks(feedback(user, "tip-secure", "done", 30_000))
        deadline = asyncio.get_running_loop().time() + 60
        stats: dict[str, object] = {}
        while asyncio.get_running_loop().time() < deadline:
            status, stats = await process.get(f"/stats/egreedy/{user}")
            if status == 200 and stats["pulls"] == 1:
                break
            await asyncio.sleep(0.3)
        assert stats.get("pulls") == 1, (stats, process.log())
    finally:
        code = process.stop()
    assert code == 0, process.log()
    log = process.log_path.read_text(errors="replace")
    assert log.strip(), "the worker wrote nothing: the secret check below would be empty"
    assert_no_secret(log, *secrets_of(secure_topics))


async def test_simulator_publishes_over_sasl_ssl(secure_topics: Settings, database: str) -> None:
    code, out, err = await run_cli(
        secure_topics, "simulate", "--via", "inprocess", "--policy", "random",
        "--users", "1", "--rounds", "3", "--seed", "7", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["events"] == 15
    # What it says it sent is on the secure broker's topics.
    found = await consume_run(secure_topics, summary["run_id"], summary["events"])
    assert len(found[secure_topics.topic_shown]) == summary["events"]
    assert len(found[secure_topics.topic_feedback]) == summary["events"]
    assert_no_secret(out + err, *secrets_of(secure_topics))


async def test_simulator_load_mode_over_sasl_ssl(secure_topics: Settings, database: str) -> None:
    code, out, err = await run_cli(
        secure_topics, "simulate", "--rate", "200", "--duration", "2", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["messages"] > 0
    assert_no_secret(out + err, *secrets_of(secure_topics))
