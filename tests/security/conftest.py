"""Fixtures for the security tests: one SASL_SSL broker per session, settings that use it.

The broker (``tests.security.secure_broker``) starts once, on first use, and stops at the
end of the session. If it cannot start, every test that needs it fails with the broker
log's last lines: a green run must mean the SASL_SSL path was exercised, so nothing here
is ever skipped.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator

import pytest

from streams.dev.local import DevStackError
from streams.settings import Settings
from tests.security.secure_broker import SecureBroker, start_secure_broker

_SECURE_FIXTURES = {"secure_broker", "secure"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SECURE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def secure_broker() -> Iterator[SecureBroker]:
    """A running SASL_SSL / SCRAM-SHA-512 broker on free loopback ports."""
    try:
        broker = start_secure_broker()
    except DevStackError as err:
        pytest.fail(f"the SASL_SSL test broker did not start: {err}", pytrace=False)
    # Reported on purpose: startup time is part of what these tests measure.
    sys.stderr.write(f"\nsecure broker {broker.bootstrap} up in {broker.startup_s:.1f}s\n")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secure(secure_broker: SecureBroker, settings: Settings) -> Settings:
    """Settings for the secure broker: unique topics and app id, a secret admin token."""
    suffix = secrets.token_hex(4)
    return secure_broker.settings(
        settings,
        topic_shown=f"tips.shown.sec-{suffix}",
        topic_feedback=f"tips.feedback.sec-{suffix}",
        topic_deadletter=f"tips.deadletter.sec-{suffix}",
        app_id=f"tipstream-sec-{suffix}",
        admin_token=f"admin-{secrets.token_hex(12)}",
    )
