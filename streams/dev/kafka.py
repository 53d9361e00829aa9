"""The dev room's Kafka: fetch the jars, format KRaft storage, start and stop the broker,
and probe it with real requests.

One node that is broker and controller, ``java -cp libs/* kafka.Kafka``, listening on
``KAFKA_BOOTSTRAP`` (PLAINTEXT) with the controller on the next port and its data in
``var/kafka``. The jars come from Maven Central through ``dev/kafka/pom.xml`` and are cached
per version in ``~/.cache/tipstream/kafka-<version>`` (``$XDG_CACHE_HOME`` honoured), so
every clone on the machine shares one download.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from streams.dev.local import (
    DEV_DIR,
    KAFKA_BOOTSTRAP,
    KAFKA_HEAP,
    KAFKA_PORT,
    START_TIMEOUT_S,
    VAR_DIR,
    DevStackError,
    cmdline,
    pid_alive,
    port_open,
    port_owner,
    quiet_loggers,
    read_pid,
    run_async,
    say,
    stop_pid,
    tail,
)

__all__ = [
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_DIR",
    "KAFKA_VERSION",
    "fetch_kafka",
    "find_java",
    "format_kafka_storage",
    "kafka_cache_dir",
    "kafka_down",
    "kafka_java_base",
    "kafka_libs_dir",
    "kafka_metadata",
    "kafka_pid",
    "kafka_random_uuid",
    "kafka_ready",
    "kafka_up",
]

KAFKA_VERSION = "4.1.1"  # a 4.x release on Maven Central; Kafka 4 servers need Java 17+
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
KAFKA_DIR = VAR_DIR / "kafka"


async def kafka_metadata(
    bootstrap: str = KAFKA_BOOTSTRAP,
    timeout_s: float = 5.0,
    client_kwargs: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """A real Kafka Metadata request: the cluster description (brokers, cluster id).

    ``client_kwargs`` (e.g. ``Settings.aiokafka_kwargs()``) replace ``bootstrap`` when given,
    for brokers that need TLS or SASL.
    """
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    kwargs = dict(client_kwargs or {"bootstrap_servers": bootstrap})
    admin = AIOKafkaAdminClient(
        **kwargs, request_timeout_ms=int(timeout_s * 1000), connections_max_idle_ms=60_000
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster: dict[str, object] = await admin.describe_cluster()
            return cluster
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def kafka_ready(
    bootstrap: str = KAFKA_BOOTSTRAP,
    timeout_s: float = 5.0,
    client_kwargs: Mapping[str, object] | None = None,
) -> bool:
    """True when the broker answers a metadata request and lists at least one broker."""
    with quiet_loggers("aiokafka"):
        try:
            cluster = await kafka_metadata(bootstrap, timeout_s, client_kwargs)
        except Exception:
            return False
    return bool(cluster.get("brokers"))


async def _kafka_warm_coordinator(bootstrap: str, deadline: float) -> None:
    """Ask for a group coordinator until one answers: creates ``__consumer_offsets`` now
    rather than during the first test's consumer start."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    with quiet_loggers("aiokafka"):
        try:
            await admin.start()
            while time.monotonic() < deadline:
                try:
                    await admin.find_coordinator("tipstream-devstack-warmup")
                    return
                except Exception:
                    await asyncio.sleep(0.3)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


def kafka_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tipstream" / f"kafka-{KAFKA_VERSION}"


def kafka_libs_dir() -> Path:
    return kafka_cache_dir() / "libs"


def _kafka_pid_file() -> Path:
    return KAFKA_DIR / "kafka.pid"


def _kafka_log_file() -> Path:
    return KAFKA_DIR / "kafka.log"


def _kafka_data_dir() -> Path:
    return KAFKA_DIR / "data"


def kafka_pid() -> int | None:
    """Our broker's pid, if the pid file names a live ``kafka.Kafka`` process."""
    pid = read_pid(_kafka_pid_file())
    if pid and pid_alive(pid) and "kafka.Kafka" in cmdline(pid):
        return pid
    return None


def find_java() -> str:
    """The ``java`` to run Kafka with (``$JAVA_HOME`` first); Java 17+ or an error."""
    java = shutil.which("java")
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        java = str(Path(home, "bin", "java"))
    if not java:
        raise DevStackError(
            "Java is not installed: Kafka 4 needs Java 17 or newer "
            "(Debian: apt-get install -y openjdk-17-jre-headless)"
        )
    out = subprocess.run(  # noqa: S603
        [java, "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise DevStackError(
                f"{java} is Java {major}; Kafka {KAFKA_VERSION} needs Java 17 or newer "
                "(set JAVA_HOME or install openjdk-17-jre-headless)"
            )
    return java


def fetch_kafka(*, quiet: bool = False) -> Path:
    """Make sure the Kafka jars are in the cache (Maven, once per version); return the dir."""
    libs = kafka_libs_dir()
    done = kafka_cache_dir() / ".complete"
    if done.exists() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise DevStackError(
            "Maven is not installed: it fetches Apache Kafka from Maven Central "
            "(Debian: apt-get install -y maven)"
        )
    say(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...", quiet=quiet)
    started = time.monotonic()
    staging = kafka_cache_dir() / f"libs.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(DEV_DIR / "kafka" / "pom.xml"),
        "dependency:copy-dependencies",
        f"-Dkafka.version={KAFKA_VERSION}",
        f"-Dkafka.libs={staging}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        hint = ""
        if re.search(r"offline|Could not transfer|UnknownHost|resolve", "\n".join(output), re.I):
            hint = "\nMaven could not reach Maven Central: are you offline (or is a proxy needed)?"
        raise DevStackError(
            f"Maven failed to fetch Kafka {KAFKA_VERSION} (exit {proc.returncode}):\n"
            + "\n".join(output)
            + hint
        )
    # Publish atomically so that a concurrent or interrupted fetch never leaves half a cache.
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    done.write_text(f"{KAFKA_VERSION}\n")
    say(f"fetched Kafka {KAFKA_VERSION} in {time.monotonic() - started:.1f}s", quiet=quiet)
    return libs


def _render_server_properties() -> Path:
    template = (DEV_DIR / "kafka" / "server.properties.in").read_text()
    values = {
        "kafka_port": str(KAFKA_PORT),
        "controller_port": str(KAFKA_CONTROLLER_PORT),
        "log_dir": str(_kafka_data_dir()),
    }
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    target = KAFKA_DIR / "server.properties"
    target.write_text(template)
    return target


def kafka_java_base(java: str, libs: Path) -> list[str]:
    """``java ... -cp libs/*``: the start of every Kafka command line (main class follows)."""
    return [
        java,
        f"-Dlog4j2.configurationFile={DEV_DIR / 'kafka' / 'log4j2.xml'}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
    ]


def kafka_random_uuid(java: str, libs: Path) -> str:
    """A new cluster id from ``kafka-storage random-uuid``."""
    uuid = subprocess.run(  # noqa: S603
        [*kafka_java_base(java, libs), "-Xmx256m", "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True,
        text=True,
        check=False,
    )
    cluster_id = uuid.stdout.strip().splitlines()[-1] if uuid.stdout.strip() else ""
    if uuid.returncode != 0 or not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        raise DevStackError(f"kafka-storage random-uuid failed:\n{uuid.stdout}{uuid.stderr}")
    return cluster_id


def format_kafka_storage(
    java: str,
    libs: Path,
    props: Path,
    data_dir: Path,
    log_file: Path,
    *,
    cluster_id: str,
    extra_args: tuple[str, ...] = (),
) -> None:
    """``kafka-storage format --standalone`` of ``data_dir`` for the node in ``props``.

    ``extra_args`` go to the tool as they are (``--add-scram 'SCRAM-SHA-512=[...]'``), so
    they are never written to ``log_file``, which gets the tool's output only.
    """
    shutil.rmtree(data_dir, ignore_errors=True)
    fmt = subprocess.run(  # noqa: S603
        [
            *kafka_java_base(java, libs),
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(props),
            *extra_args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    with log_file.open("a") as logf:
        logf.write(fmt.stdout + fmt.stderr)
    if fmt.returncode != 0:
        raise DevStackError(
            f"formatting Kafka storage failed (see {log_file}):\n"
            + "\n".join((fmt.stdout + fmt.stderr).splitlines()[-15:])
        )


def _format_kafka_storage(java: str, libs: Path, props: Path, *, quiet: bool) -> None:
    if (_kafka_data_dir() / "meta.properties").exists():
        return
    cluster_id = kafka_random_uuid(java, libs)
    format_kafka_storage(
        java, libs, props, _kafka_data_dir(), _kafka_log_file(), cluster_id=cluster_id
    )
    (KAFKA_DIR / "cluster.id").write_text(cluster_id + "\n")
    say(f"kafka: formatted storage in {_kafka_data_dir()} (cluster {cluster_id})", quiet=quiet)


def kafka_up(*, quiet: bool = False) -> str:
    """Start the broker unless it already answers; return what was done."""
    pid = kafka_pid()
    if pid and run_async(lambda: _kafka_answers_as_ours(5.0)):
        return f"kafka: already running at {KAFKA_BOOTSTRAP} (pid {pid})"
    if pid is None and port_open(KAFKA_PORT):
        if run_async(lambda: kafka_ready(timeout_s=5.0)):
            return (
                f"kafka: using a broker that is already listening at {KAFKA_BOOTSTRAP} "
                "(not started by tipstream dev, so `dev down` will not stop it)"
            )
        raise DevStackError(
            f"port {KAFKA_PORT} is taken by something that is not Kafka: "
            f"{port_owner(KAFKA_PORT)}; stop it and run `tipstream dev up` again"
        )
    if pid is None and port_open(KAFKA_CONTROLLER_PORT):
        raise DevStackError(
            f"port {KAFKA_CONTROLLER_PORT} (Kafka controller) is taken: "
            f"{port_owner(KAFKA_CONTROLLER_PORT)}"
        )
    if pid is not None:
        # Ours, alive, but not answering: it may still be starting (a concurrent `up`).
        if _wait_kafka(pid, deadline=time.monotonic() + START_TIMEOUT_S):
            return f"kafka: already running at {KAFKA_BOOTSTRAP} (pid {pid})"
        raise DevStackError(
            f"kafka (pid {pid}) runs but does not answer on {KAFKA_BOOTSTRAP}; "
            f"see {_kafka_log_file()} or run `tipstream dev down`"
        )

    java = find_java()
    libs = fetch_kafka(quiet=quiet)
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    props = _render_server_properties()
    _format_kafka_storage(java, libs, props, quiet=quiet)
    if port_open(KAFKA_PORT):  # taken while we fetched: by whom decides what to do
        return kafka_up(quiet=quiet)

    started = time.monotonic()
    cmd = [
        *kafka_java_base(java, libs),
        f"-Xmx{KAFKA_HEAP}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(props),
    ]
    with _kafka_log_file().open("ab") as logf:
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=KAFKA_DIR,
            start_new_session=True,  # survives the CLI, and Ctrl-C in the shell that ran `up`
            close_fds=True,
        )
    _kafka_pid_file().write_text(f"{proc.pid}\n")
    if not _wait_kafka(proc.pid, deadline=started + START_TIMEOUT_S):
        if proc.poll() is None:
            stop_pid(proc.pid, "kafka")
        _kafka_pid_file().unlink(missing_ok=True)
        raise DevStackError(
            f"kafka did not start within {START_TIMEOUT_S:.0f}s; last lines of "
            f"{_kafka_log_file()}:\n{tail(_kafka_log_file())}"
        )
    run_async(lambda: _kafka_warm_coordinator(KAFKA_BOOTSTRAP, time.monotonic() + 30))
    return (
        f"kafka: started {KAFKA_VERSION} at {KAFKA_BOOTSTRAP} (pid {proc.pid}) "
        f"in {time.monotonic() - started:.1f}s; log {_kafka_log_file()}"
    )


def _our_cluster_id() -> str | None:
    try:
        return (KAFKA_DIR / "cluster.id").read_text().strip() or None
    except OSError:
        return None


async def _kafka_answers_as_ours(timeout_s: float) -> bool:
    """The broker on our port answers, and it is ours (our cluster id, not another's)."""
    with quiet_loggers("aiokafka"):
        try:
            cluster = await kafka_metadata(timeout_s=timeout_s)
        except Exception:
            return False
    ours = _our_cluster_id()
    return bool(cluster.get("brokers")) and (ours is None or cluster.get("cluster_id") == ours)


def _wait_kafka(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        if port_open(KAFKA_PORT) and run_async(lambda: _kafka_answers_as_ours(3.0)):
            return True
        time.sleep(0.5)
    return False


def kafka_down() -> str:
    pid = kafka_pid()
    if pid is None:
        _kafka_pid_file().unlink(missing_ok=True)
        return "kafka: not running"
    result = stop_pid(pid, "kafka")
    _kafka_pid_file().unlink(missing_ok=True)
    return result
