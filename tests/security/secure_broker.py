"""A second, throw-away Kafka broker that only speaks SASL_SSL with SCRAM-SHA-512.

Test-only infrastructure for the security tests: the transport the worker, ``topics
ensure`` and the simulator use when ``TIPSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL``. It
runs the dev room's Kafka jars (``streams.dev.kafka``: same cache, same java command line,
same storage formatting) as a single KRaft node in a temporary directory, on free loopback
ports, beside the dev broker on 19092, which it never touches.

- A CA and a broker certificate (SAN ``IP:127.0.0.1``, ``DNS:localhost``) are made with
  ``openssl`` at start; clients trust ``ca.pem``.
- The client listener is SASL_SSL (SCRAM-SHA-512 only). The SCRAM credential is written into
  the metadata log at format time (``kafka-storage format --add-scram``), so the broker
  knows the user before it accepts its first connection.
- The controller listener and the inter-broker listener are PLAINTEXT on loopback, which
  a single node needs and no client is told about (they are not advertised to clients on
  the SASL_SSL listener's metadata).
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.dev.kafka import (
    fetch_kafka,
    find_java,
    format_kafka_storage,
    kafka_java_base,
    kafka_random_uuid,
    kafka_ready,
)
from streams.dev.local import HOST, DevStackError, run_async, tail
from streams.dev.worker_process import free_port
from streams.settings import Settings

__all__ = ["SCRAM_MECHANISM", "SecureBroker", "make_certificates", "start_secure_broker"]

SCRAM_MECHANISM = "SCRAM-SHA-512"
START_TIMEOUT_S = 60.0
HEAP = "256m"
# Server side of SCRAM: the credentials come from the metadata log, not from here.
_SERVER_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=SASL_SSL://{host}:{client_port},INTERNAL://{host}:{internal_port},CONTROLLER://{host}:{controller_port}
advertised.listeners=SASL_SSL://{host}:{client_port},INTERNAL://{host}:{internal_port}
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL

sasl.enabled.mechanisms={mechanism}
listener.name.sasl_ssl.sasl.enabled.mechanisms={mechanism}
listener.name.sasl_ssl.{mechanism_lower}.sasl.jaas.config={jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={keystore_password}
ssl.key.password={keystore_password}
ssl.client.auth=none

log.dirs={data_dir}
metadata.log.dir={data_dir}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
auto.create.topics.enable=true
num.partitions=8
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
log.segment.bytes=16777216
"""


@dataclass
class SecureBroker:
    """A running SASL_SSL broker: where it listens, whom it trusts, and how to stop it."""

    bootstrap: str
    ca_file: Path
    username: str
    password: str = field(repr=False)
    workdir: Path
    log_file: Path
    process: subprocess.Popen[bytes]
    startup_s: float = 0.0  # measured once it answers

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        """``base`` pointed at this broker over SASL_SSL with its SCRAM user."""
        env = {
            "TIPSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "TIPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TIPSTREAM_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "TIPSTREAM_KAFKA_SASL_USERNAME": self.username,
            "TIPSTREAM_KAFKA_SASL_PASSWORD": self.password,
            "TIPSTREAM_KAFKA_SSL_CAFILE": str(self.ca_file),
        }
        # Validated like the environment would be: a SASL protocol needs its credentials.
        fields = {name.removeprefix("TIPSTREAM_").lower(): value for name, value in env.items()}
        return Settings.model_validate({**base.model_dump(), **fields, **overrides})

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; remove the directory; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise DevStackError("openssl is not installed (Debian: apt-get install -y openssl)")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DevStackError(f"openssl {args[0]} failed:\n{proc.stderr.strip()}")


def make_certificates(directory: Path, keystore_password: str) -> tuple[Path, Path]:
    """A one-day CA (``ca.pem``) and the broker's key and chain as PKCS#12 (``broker.p12``)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=tipstream-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "broker.key", "-out", "broker.csr", "-subj", f"/CN={HOST}",
        cwd=directory,
    )  # fmt: skip
    (directory / "broker.ext").write_text(
        f"subjectAltName=IP:{HOST},DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
    )
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.pem", "-days", "1", "-extfile", "broker.ext",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
        "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{keystore_password}",
        cwd=directory,
    )  # fmt: skip
    (directory / "ca.key").unlink()
    return directory / "ca.pem", directory / "broker.p12"


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no broker outlives its session."""
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_secure_broker(username: str = "tipstream-test") -> SecureBroker:
    """Make certificates, format storage with a SCRAM user, start the broker, wait for it.

    Ready means a real SASL_SSL metadata request with the SCRAM credential succeeded.
    Raises :class:`DevStackError` (with the broker log's tail) when it cannot start.
    """
    started = time.monotonic()
    java = find_java()
    libs = fetch_kafka(quiet=True)
    workdir = Path(tempfile.mkdtemp(prefix="tipstream-secure-kafka-"))
    password = secrets.token_hex(16)
    keystore_password = secrets.token_hex(16)
    ca_file, keystore = make_certificates(workdir, keystore_password)
    client_port, internal_port, controller_port = free_port(), free_port(), free_port()
    data_dir = workdir / "data"
    log_file = workdir / "kafka.log"
    props = workdir / "server.properties"
    props.write_text(
        _SERVER_PROPERTIES.format(
            host=HOST,
            client_port=client_port,
            internal_port=internal_port,
            controller_port=controller_port,
            mechanism=SCRAM_MECHANISM,
            mechanism_lower=SCRAM_MECHANISM.lower(),
            jaas=_SERVER_JAAS,
            keystore=keystore,
            keystore_password=keystore_password,
            data_dir=data_dir,
        )
    )
    scram = f"{SCRAM_MECHANISM}=[name={username},password={password}]"
    format_kafka_storage(
        java,
        libs,
        props,
        data_dir,
        log_file,
        cluster_id=kafka_random_uuid(java, libs),
        extra_args=("--add-scram", scram),
    )
    cmd = [
        *kafka_java_base(java, libs),
        f"-Xmx{HEAP}",
        "-Xms64m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # C1 only: faster start, enough for a test broker
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(props),
    ]
    with log_file.open("ab") as logf:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, before exec
        )
    broker = SecureBroker(
        bootstrap=f"{HOST}:{client_port}",
        ca_file=ca_file,
        username=username,
        password=password,
        workdir=workdir,
        log_file=log_file,
        process=process,
    )
    client_kwargs = broker.settings(Settings()).aiokafka_kwargs()
    deadline = started + START_TIMEOUT_S
    while not run_async(lambda: kafka_ready(broker.bootstrap, 3.0, client_kwargs)):
        if process.poll() is not None or time.monotonic() > deadline:
            last_lines = tail(log_file)
            broker.stop()
            state = f"exited ({process.returncode})" if process.poll() is not None else "timed out"
            raise DevStackError(
                f"the SASL_SSL test broker {state} after {time.monotonic() - started:.0f}s; "
                f"last lines of its log:\n{last_lines}"
            )
        time.sleep(0.3)
    broker.startup_s = time.monotonic() - started
    return broker
