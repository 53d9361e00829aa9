"""Local Kafka + PostgreSQL on loopback for development, tests and CI: ``tipstream dev up``.

No Docker: Apache Kafka (KRaft, one node that is broker and controller) comes from Maven
Central through ``dev/kafka/pom.xml`` and runs as ``java -cp libs/* kafka.Kafka``; PostgreSQL
is Debian's, installed with apt-get when it is missing, with its own cluster under ``var/``.

- Kafka: ``127.0.0.1:19092`` (PLAINTEXT), controller ``127.0.0.1:19093``, data in
  ``var/kafka``; the jars are cached per version in ``~/.cache/tipstream/kafka-<version>``
  (``$XDG_CACHE_HOME`` honoured) so that every clone on the machine shares one download.
- PostgreSQL: ``127.0.0.1:15432``, role/password/database ``tipstream``, cluster in
  ``var/postgres`` (run as the ``postgres`` OS user when we are root), migrations applied.

``up`` is idempotent and fast when both already run (pid files + a real Kafka metadata
request + a real SQL query); ``down`` stops both, politely first. The plain functions
:func:`ensure_up`, :func:`ensure_down` and :func:`check` serve tests, bench and demo.

Exit codes: 0 ok, 1 failure (with a hint), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import hashlib
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer

from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT

KAFKA_VERSION = "4.1.1"  # a 4.x release on Maven Central; Kafka 4 servers need Java 17+
# The dev ports are the settings' defaults; TIPSTREAM_DEV_KAFKA_PORT / _POSTGRES_PORT move
# them (a second checkout's stack beside the first; then `eval "$(tipstream dev env)"`).
KAFKA_PORT = int(os.environ.get("TIPSTREAM_DEV_KAFKA_PORT", DEV_KAFKA_PORT))
POSTGRES_PORT = int(os.environ.get("TIPSTREAM_DEV_POSTGRES_PORT", DEV_POSTGRES_PORT))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
KAFKA_HEAP = os.environ.get("TIPSTREAM_DEV_KAFKA_HEAP", "512m")
HOST = "127.0.0.1"
DB_USER = DB_PASSWORD = DB_NAME = "tipstream"  # noqa: S105 - the dev stack's, on loopback

KAFKA_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
DATABASE_URL = f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{POSTGRES_PORT}/{DB_NAME}"

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = REPO_ROOT / "dev"
VAR_DIR = Path(os.environ.get("TIPSTREAM_DEV_VAR", str(REPO_ROOT / "var"))).resolve()
KAFKA_DIR = VAR_DIR / "kafka"
POSTGRES_LINK = VAR_DIR / "postgres"

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

T = TypeVar("T")
log = logging.getLogger(__name__)


class DevStackError(RuntimeError):
    """Something the developer must fix; the message says what and how."""


# --------------------------------------------------------------------------------------
# small helpers


def _say(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(f"dev: {message}", flush=True)


def _run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, whether or not a loop runs here.

    A private loop in a worker thread never disturbs the caller's loop (pytest-asyncio's
    session loop, faust's loop), at the price of blocking it while the probe runs.
    """

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devstack") as pool:
        return pool.submit(asyncio.run, main()).result()


def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_owner(port: int) -> str:
    """Best effort: who listens on the port (``ss -ltnp``), for error messages."""
    ss = shutil.which("ss")
    if not ss:
        return "unknown process (install iproute2 for `ss` to see which)"
    out = subprocess.run(  # noqa: S603
        [ss, "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out or "unknown process"


def _pid_alive(pid: int) -> bool:
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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Silence client libraries while we probe a server that may not be up yet."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


# --------------------------------------------------------------------------------------
# probes (also used by tests/conftest.py)


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
    with _quiet_loggers("aiokafka"):
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
    with _quiet_loggers("aiokafka"):
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


async def postgres_ready(url: str = DATABASE_URL, timeout_s: float = 5.0) -> bool:
    """True when PostgreSQL answers a real query with the dev credentials."""
    import asyncpg  # noqa: PLC0415

    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except Exception:
        return False
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False
    finally:
        await conn.close()


async def apply_migrations(url: str = DATABASE_URL) -> list[int]:
    """Apply pending migrations (``schemas.migrations``); return the versions applied now."""
    import asyncpg  # noqa: PLC0415

    from schemas.migrations import migrate  # noqa: PLC0415

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------
# Kafka


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


def _kafka_pid() -> int | None:
    """Our broker's pid, if the pid file names a live ``kafka.Kafka`` process."""
    pid = _read_pid(_kafka_pid_file())
    if pid and _pid_alive(pid) and "kafka.Kafka" in _cmdline(pid):
        return pid
    return None


def _java() -> str:
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
    _say(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...", quiet=quiet)
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
    _say(f"fetched Kafka {KAFKA_VERSION} in {time.monotonic() - started:.1f}s", quiet=quiet)
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


def _java_base(java: str, libs: Path) -> list[str]:
    return [
        java,
        f"-Dlog4j2.configurationFile={DEV_DIR / 'kafka' / 'log4j2.xml'}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
    ]


def _format_kafka_storage(java: str, libs: Path, props: Path, *, quiet: bool) -> None:
    if (_kafka_data_dir() / "meta.properties").exists():
        return
    base = [*_java_base(java, libs), "-Xmx256m"]
    uuid = subprocess.run(  # noqa: S603
        [*base, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True,
        text=True,
        check=False,
    )
    cluster_id = uuid.stdout.strip().splitlines()[-1] if uuid.stdout.strip() else ""
    if uuid.returncode != 0 or not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        raise DevStackError(f"kafka-storage random-uuid failed:\n{uuid.stdout}{uuid.stderr}")
    shutil.rmtree(_kafka_data_dir(), ignore_errors=True)
    fmt = subprocess.run(  # noqa: S603
        [
            *base,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    with _kafka_log_file().open("a") as logf:
        logf.write(fmt.stdout + fmt.stderr)
    if fmt.returncode != 0:
        raise DevStackError(
            f"formatting Kafka storage failed (see {_kafka_log_file()}):\n"
            + "\n".join((fmt.stdout + fmt.stderr).splitlines()[-15:])
        )
    (KAFKA_DIR / "cluster.id").write_text(cluster_id + "\n")
    _say(f"kafka: formatted storage in {_kafka_data_dir()} (cluster {cluster_id})", quiet=quiet)


def kafka_up(*, quiet: bool = False) -> str:
    """Start the broker unless it already answers; return what was done."""
    pid = _kafka_pid()
    if pid and _run_async(lambda: _kafka_answers_as_ours(5.0)):
        return f"kafka: already running at {KAFKA_BOOTSTRAP} (pid {pid})"
    if pid is None and _port_open(KAFKA_PORT):
        if _run_async(lambda: kafka_ready(timeout_s=5.0)):
            return (
                f"kafka: using a broker that is already listening at {KAFKA_BOOTSTRAP} "
                "(not started by tipstream dev, so `dev down` will not stop it)"
            )
        raise DevStackError(
            f"port {KAFKA_PORT} is taken by something that is not Kafka: "
            f"{_port_owner(KAFKA_PORT)}; stop it and run `tipstream dev up` again"
        )
    if pid is None and _port_open(KAFKA_CONTROLLER_PORT):
        raise DevStackError(
            f"port {KAFKA_CONTROLLER_PORT} (Kafka controller) is taken: "
            f"{_port_owner(KAFKA_CONTROLLER_PORT)}"
        )
    if pid is not None:
        # Ours, alive, but not answering: it may still be starting (a concurrent `up`).
        if _wait_kafka(pid, deadline=time.monotonic() + START_TIMEOUT_S):
            return f"kafka: already running at {KAFKA_BOOTSTRAP} (pid {pid})"
        raise DevStackError(
            f"kafka (pid {pid}) runs but does not answer on {KAFKA_BOOTSTRAP}; "
            f"see {_kafka_log_file()} or run `tipstream dev down`"
        )

    java = _java()
    libs = fetch_kafka(quiet=quiet)
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    props = _render_server_properties()
    _format_kafka_storage(java, libs, props, quiet=quiet)
    if _port_open(KAFKA_PORT):  # taken while we fetched: by whom decides what to do
        return kafka_up(quiet=quiet)

    started = time.monotonic()
    cmd = [
        *_java_base(java, libs),
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
            _stop_pid(proc.pid, "kafka")
        _kafka_pid_file().unlink(missing_ok=True)
        raise DevStackError(
            f"kafka did not start within {START_TIMEOUT_S:.0f}s; last lines of "
            f"{_kafka_log_file()}:\n{_tail(_kafka_log_file())}"
        )
    _run_async(lambda: _kafka_warm_coordinator(KAFKA_BOOTSTRAP, time.monotonic() + 30))
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
    with _quiet_loggers("aiokafka"):
        try:
            cluster = await kafka_metadata(timeout_s=timeout_s)
        except Exception:
            return False
    ours = _our_cluster_id()
    return bool(cluster.get("brokers")) and (ours is None or cluster.get("cluster_id") == ours)


def _wait_kafka(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return False
        if _port_open(KAFKA_PORT) and _run_async(lambda: _kafka_answers_as_ours(3.0)):
            return True
        time.sleep(0.5)
    return False


def _stop_pid(pid: int, name: str, timeout_s: float = STOP_TIMEOUT_S) -> str:
    """SIGTERM, wait, then SIGKILL: return how it ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return f"{name}: stopped (pid {pid})"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return f"{name}: killed (pid {pid}) after {timeout_s:.0f}s without a clean stop"


def kafka_down() -> str:
    pid = _kafka_pid()
    if pid is None:
        _kafka_pid_file().unlink(missing_ok=True)
        return "kafka: not running"
    result = _stop_pid(pid, "kafka")
    _kafka_pid_file().unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bindir(*, install: bool, quiet: bool) -> Path:
    def find() -> Path | None:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
            key=lambda p: int(re.sub(r"\D", "", Path(p).parent.parent.name) or 0),
        )
        if candidates:
            return Path(candidates[-1]).parent
        on_path = shutil.which("pg_ctl")
        return Path(on_path).parent if on_path and shutil.which("initdb") else None

    found = find()
    if found:
        return found
    if not install:
        raise DevStackError("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt:
        raise DevStackError(
            "PostgreSQL is not installed: install the server (Debian: "
            "sudo apt-get install -y postgresql) and run `tipstream dev up` again"
        )
    _say("postgres: not installed; installing Debian's postgresql with apt-get ...", quiet=quiet)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise DevStackError(
                f"`{' '.join(args)}` failed:\n" + "\n".join(proc.stderr.splitlines()[-15:])
            )
    found = find()
    if not found:
        raise DevStackError("apt-get installed postgresql but no pg_ctl was found")
    return found


def _as_root() -> bool:
    return os.geteuid() == 0


def _pg_user() -> pwd.struct_passwd | None:
    """The OS user that owns the cluster: ``postgres`` when we are root, else ourselves."""
    if not _as_root():
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(  # noqa: S603
            [
                useradd,
                "--system",
                "--home-dir",
                "/var/lib/postgresql",
                "--shell",
                "/bin/bash",
                "postgres",
            ],
            check=True,
        )
        return pwd.getpwnam("postgres")


def _reachable_by_others(path: Path) -> bool:
    """Whether every existing ancestor lets other users traverse it (o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def postgres_home() -> Path:
    """Where the cluster lives: ``var/postgres`` (a symlink when the repo is not reachable
    by the ``postgres`` user, e.g. a clone under /root: then the cluster is in /var/tmp)."""
    if POSTGRES_LINK.is_symlink():
        return POSTGRES_LINK.resolve()
    if POSTGRES_LINK.exists() or not _as_root() or _reachable_by_others(VAR_DIR):
        return POSTGRES_LINK
    digest = hashlib.sha256(str(VAR_DIR).encode()).hexdigest()[:10]
    outside = Path("/var/tmp") / f"tipstream-{digest}" / "postgres"  # noqa: S108
    outside.mkdir(parents=True, exist_ok=True)
    os.chmod(outside.parent, 0o755)  # noqa: S103
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    POSTGRES_LINK.symlink_to(outside, target_is_directory=True)
    return outside


def _socket_dir(home: Path) -> Path:
    run = home / "run"
    if len(str(run / f".s.PGSQL.{POSTGRES_PORT}.lock")) < 100:
        return run
    # Unix socket paths are limited to ~107 bytes: fall back to a short private directory.
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:10]
    return Path("/tmp") / f"tipstream-pg-{digest}"  # noqa: S108


def _pg_cmd(args: list[str]) -> list[str]:
    user = _pg_user()
    if user is None:
        return args
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", user.pw_name, "--", *args]


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(Path(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _pg_conf(socket_dir: Path) -> str:
    return "\n".join(
        [
            "# Written by streams/devstack.py on every `tipstream dev up`.",
            f"listen_addresses = '{HOST}'",
            f"port = {POSTGRES_PORT}",
            f"unix_socket_directories = '{socket_dir}'",
            "max_connections = 200",
            "shared_buffers = 128MB",
            # Dev data is disposable: commit without waiting for the WAL flush (no
            # corruption risk, at most the last few transactions lost on a machine crash).
            "synchronous_commit = off",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "",
        ]
    )


def _postgres_running(data: Path, bindir: Path) -> int | None:
    pid = _read_pid(data / "postmaster.pid")
    if pid and _pid_alive(pid):
        proc = subprocess.run(  # noqa: S603
            _pg_cmd([str(bindir / "pg_ctl"), "status", "-D", str(data)]),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return pid
    return None


def postgres_up(*, quiet: bool = False) -> str:
    """Start (and first create) the dev cluster, role and database; apply migrations."""
    home = postgres_home()
    data = home / "data"
    log_file = home / "postgres.log"

    if (data / "PG_VERSION").exists():
        pid = _read_pid(data / "postmaster.pid")
        if pid and _pid_alive(pid) and _run_async(postgres_ready):
            applied = _run_async(apply_migrations)
            note = f"; applied migrations {applied}" if applied else ""
            return f"postgres: already running at {HOST}:{POSTGRES_PORT} (pid {pid}){note}"

    bindir = _pg_bindir(install=True, quiet=quiet)
    user = _pg_user()
    running = _postgres_running(data, bindir) if (data / "PG_VERSION").exists() else None
    if running is None and _port_open(POSTGRES_PORT):
        if _run_async(postgres_ready):
            applied = _run_async(apply_migrations)
            return (
                f"postgres: using the server already listening at {HOST}:{POSTGRES_PORT} "
                f"(not started by tipstream dev); applied migrations {applied or 'none'}"
            )
        raise DevStackError(
            f"port {POSTGRES_PORT} is taken by another program: "
            f"{_port_owner(POSTGRES_PORT)}; stop it and run `tipstream dev up` again"
        )

    actions: list[str] = []
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    socket_dir = _socket_dir(home)
    socket_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        for path in (home, socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        log_file.touch()
        os.chown(log_file, user.pw_uid, user.pw_gid)

    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        # Local (socket) connections trust the OS user; TCP needs the password.
        proc = subprocess.run(  # noqa: S603
            _pg_cmd(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DevStackError(f"initdb failed:\n{proc.stdout}{proc.stderr}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'tipstream.conf'\n")
        actions.append(f"created cluster in {data}")

    conf_path = data / "tipstream.conf"
    conf_path.write_text(_pg_conf(socket_dir))
    _chown_tree(conf_path, user)
    _chown_tree(data / "postgresql.conf", user)

    if running is None:
        proc = subprocess.run(  # noqa: S603
            _pg_cmd(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT_S)),
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if proc.returncode != 0:
            raise DevStackError(
                f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n"
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        actions.append("started")

    _run_async(lambda: _bootstrap_database(socket_dir))
    applied = _run_async(apply_migrations)
    if applied:
        actions.append(f"applied migrations {applied}")
    pid = _read_pid(data / "postmaster.pid")
    return (
        f"postgres: {', '.join(actions) or 'checked'} at {HOST}:{POSTGRES_PORT} "
        f"(pid {pid}) in {time.monotonic() - started:.1f}s; log {log_file}"
    )


async def _bootstrap_database(socket_dir: Path) -> None:
    """Create the role and database (idempotent), over the superuser's trusted socket."""
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(
        host=str(socket_dir), port=POSTGRES_PORT, user="postgres", database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DB_USER):
            # DDL takes no bind parameters; the values are our own constants.
            await conn.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    finally:
        await conn.close()


def postgres_down() -> str:
    home = postgres_home()
    data = home / "data"
    pid = _read_pid(data / "postmaster.pid")
    if not pid or not _pid_alive(pid):
        return "postgres: not running"
    bindir = _pg_bindir(install=False, quiet=True)
    for mode in ("fast", "immediate"):
        proc = subprocess.run(  # noqa: S603
            _pg_cmd(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "30", "stop"]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return f"postgres: stopped (pid {pid}, {mode})"
    return _stop_pid(pid, "postgres")


# --------------------------------------------------------------------------------------
# the stack as a whole


@dataclass(frozen=True, slots=True)
class StackStatus:
    kafka_pid: int | None
    kafka_ok: bool
    postgres_pid: int | None
    postgres_ok: bool

    @property
    def up(self) -> bool:
        return self.kafka_ok and self.postgres_ok


def check(
    timeout_s: float = 5.0,
    *,
    bootstrap: str = KAFKA_BOOTSTRAP,
    database_url: str = DATABASE_URL,
    kafka_kwargs: Mapping[str, object] | None = None,
) -> StackStatus:
    """Probe both servers with real requests (a Kafka metadata request, ``SELECT 1``).

    By default the dev stack's addresses; tests pass their settings' (which may point at
    another broker and database, e.g. docker compose's).
    """

    async def probe() -> tuple[bool, bool]:
        k, p = await asyncio.gather(
            kafka_ready(bootstrap, timeout_s, kafka_kwargs),
            postgres_ready(database_url, timeout_s),
        )
        return k, p

    kafka_ok, postgres_ok = _run_async(probe)
    pg_pid = _read_pid(postgres_home() / "data" / "postmaster.pid")
    return StackStatus(
        kafka_pid=_kafka_pid(),
        kafka_ok=kafka_ok,
        postgres_pid=pg_pid if pg_pid and _pid_alive(pg_pid) else None,
        postgres_ok=postgres_ok,
    )


def ensure_up(*, quiet: bool = True) -> list[str]:
    """Start whatever is not running; return one line per server saying what was done.

    Raises :class:`DevStackError` with a hint when something cannot start.
    """
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    lock_path = VAR_DIR / "devstack.lock"
    import fcntl  # noqa: PLC0415

    # Serialise concurrent `up`s (two terminals, pytest-xdist workers).
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = [kafka_up(quiet=quiet)]
        _say(lines[-1], quiet=quiet)
        lines.append(postgres_up(quiet=quiet))
        _say(lines[-1], quiet=quiet)
    return lines


def ensure_down() -> list[str]:
    """Stop both servers (cleanly, killing only after a timeout)."""
    return [kafka_down(), postgres_down()]


def env_lines() -> list[str]:
    return [
        f"export TIPSTREAM_KAFKA_BOOTSTRAP={shlex.quote(KAFKA_BOOTSTRAP)}",
        f"export TIPSTREAM_DATABASE_URL={shlex.quote(DATABASE_URL)}",
    ]


# --------------------------------------------------------------------------------------
# CLI

dev_app = typer.Typer(
    help="Local Kafka + PostgreSQL on loopback (no Docker): up, down, env, status.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception) -> typer.Exit:
    print(f"dev: error: {err}", file=sys.stderr, flush=True)
    return typer.Exit(code=1)


@dev_app.command()
def up() -> None:
    """Start Kafka (127.0.0.1:19092) and PostgreSQL (127.0.0.1:15432); idempotent."""
    started = time.monotonic()
    try:
        ensure_up(quiet=False)
    except DevStackError as err:
        raise _fail(err) from None
    moved = (KAFKA_PORT, POSTGRES_PORT) != (DEV_KAFKA_PORT, DEV_POSTGRES_PORT)
    print(
        f'dev: up in {time.monotonic() - started:.1f}s; `eval "$(tipstream dev env)"` '
        + (
            "exports the settings (needed: TIPSTREAM_DEV_*_PORT moved the stack)"
            if moved
            else "exports the settings (they are also the defaults)"
        ),
        flush=True,
    )


@dev_app.command()
def down() -> None:
    """Stop both servers (data is kept under var/; delete it for a clean slate)."""
    try:
        for line in ensure_down():
            print(f"dev: {line}", flush=True)
    except DevStackError as err:
        raise _fail(err) from None


@dev_app.command()
def env() -> None:
    """Print `export TIPSTREAM_...` lines for a shell: eval "$(tipstream dev env)"."""
    for line in env_lines():
        print(line)


@dev_app.command()
def status() -> None:
    """Say whether each server answers; exit 1 unless both do."""
    st = check()
    print(
        f"kafka    {'up' if st.kafka_ok else 'down':4} {KAFKA_BOOTSTRAP}"
        f"{f' (pid {st.kafka_pid})' if st.kafka_pid else ''}"
    )
    print(
        f"postgres {'up' if st.postgres_ok else 'down':4} {HOST}:{POSTGRES_PORT}"
        f"{f' (pid {st.postgres_pid})' if st.postgres_pid else ''}"
    )
    if not st.up:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # `python -m streams.dev.devstack up` works without the main CLI
    dev_app()
