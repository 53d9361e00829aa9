"""The dev room's PostgreSQL: install the server, create and start the cluster, the role
and the database, apply the migrations, stop it; and probe it with a real query.

Debian's PostgreSQL (installed with apt-get when it is missing) with its own cluster under
``var/postgres``, listening on ``127.0.0.1:POSTGRES_PORT``; role, password and database
``tipstream``. When we are root the cluster runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import asyncpg

from schemas.migrations import migrate
from streams.dev import local
from streams.dev.local import (
    DATABASE_URL,
    DB_NAME,
    DB_PASSWORD,
    DB_USER,
    HOST,
    POSTGRES_PORT,
    START_TIMEOUT_S,
    VAR_DIR,
    DevStackError,
)

__all__ = [
    "POSTGRES_LINK",
    "apply_migrations",
    "postgres_down",
    "postgres_home",
    "postgres_pid",
    "postgres_ready",
    "postgres_up",
]

POSTGRES_LINK = VAR_DIR / "postgres"


async def postgres_ready(url: str = DATABASE_URL, timeout_s: float = 5.0) -> bool:
    """True when PostgreSQL answers a real query with the dev credentials."""
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
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


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
    local.say(
        "postgres: not installed; installing Debian's postgresql with apt-get ...", quiet=quiet
    )
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
            "# Written by streams/dev/postgres.py on every `tipstream dev up`.",
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
    pid = local.read_pid(data / "postmaster.pid")
    if pid and local.pid_alive(pid):
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
        pid = local.read_pid(data / "postmaster.pid")
        if pid and local.pid_alive(pid) and local.run_async(postgres_ready):
            applied = local.run_async(apply_migrations)
            note = f"; applied migrations {applied}" if applied else ""
            return f"postgres: already running at {HOST}:{POSTGRES_PORT} (pid {pid}){note}"

    bindir = _pg_bindir(install=True, quiet=quiet)
    user = _pg_user()
    running = _postgres_running(data, bindir) if (data / "PG_VERSION").exists() else None
    if running is None and local.port_open(POSTGRES_PORT):
        if local.run_async(postgres_ready):
            applied = local.run_async(apply_migrations)
            return (
                f"postgres: using the server already listening at {HOST}:{POSTGRES_PORT} "
                f"(not started by tipstream dev); applied migrations {applied or 'none'}"
            )
        raise DevStackError(
            f"port {POSTGRES_PORT} is taken by another program: "
            f"{local.port_owner(POSTGRES_PORT)}; stop it and run `tipstream dev up` again"
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
                f"last lines of {log_file}:\n{local.tail(log_file)}"
            )
        actions.append("started")

    local.run_async(lambda: _bootstrap_database(socket_dir))
    applied = local.run_async(apply_migrations)
    if applied:
        actions.append(f"applied migrations {applied}")
    pid = local.read_pid(data / "postmaster.pid")
    return (
        f"postgres: {', '.join(actions) or 'checked'} at {HOST}:{POSTGRES_PORT} "
        f"(pid {pid}) in {time.monotonic() - started:.1f}s; log {log_file}"
    )


async def _bootstrap_database(socket_dir: Path) -> None:
    """Create the role and database (idempotent), over the superuser's trusted socket."""
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
    pid = local.read_pid(data / "postmaster.pid")
    if not pid or not local.pid_alive(pid):
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
    return local.stop_pid(pid, "postgres")


def postgres_pid() -> int | None:
    """The postmaster's pid, if its pid file names a live process."""
    pid = local.read_pid(postgres_home() / "data" / "postmaster.pid")
    return pid if pid and local.pid_alive(pid) else None
