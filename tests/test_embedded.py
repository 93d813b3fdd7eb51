"""The embedded PostgreSQL and Redis the launcher starts when no servers are configured.

These start real servers in a temporary folder of their own (never ``./var``), so they run
alongside a suite that itself uses the embedded servers.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from django.conf import settings

from billing_project import embedded


def _connect_pg(url: str) -> psycopg.Connection:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return psycopg.connect(
        host=query["host"], port=query["port"], user="postgres", dbname=parts.path.lstrip("/")
    )


def _redis(url: str) -> redis.Redis:
    assert url.startswith("redis+socket://")
    return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def var_dir():
    # Not pytest's tmp_path: every pytest session resets /tmp/pytest-of-<user> to 0700,
    # which locks out the `pgserver` system user that PostgreSQL runs as under root.
    # Also short: unix socket names are limited to ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="mb-embedded-"))
    root.chmod(0o755)
    yield root / "var"
    embedded.stop(root / "var")
    shutil.rmtree(root, ignore_errors=True)


def test_start_serves_postgres_and_redis_and_a_second_start_reuses_them(var_dir):
    first = embedded.start(var_dir)

    with _connect_pg(first.database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("meterbook",)
        assert conn.execute("SHOW server_version_num").fetchone()[0] >= "160000"
    client = _redis(first.broker_url)
    assert client.ping()
    client.set("greeting", "hello")
    assert first.owns_postgres and first.owns_redis

    again = embedded.start(var_dir)

    assert again.postgres_pid == first.postgres_pid
    assert again.redis_pid == first.redis_pid
    assert again.database_url == first.database_url
    assert _redis(again.broker_url).get("greeting") == b"hello"

    embedded.stop(var_dir)

    assert _wait_gone(first.postgres_pid)
    assert _wait_gone(first.redis_pid)
    assert not embedded.redis_ping(embedded.redis_socket_path(var_dir))


def test_data_survives_a_restart(var_dir):
    services = embedded.start(var_dir)
    with _connect_pg(services.database_url) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    embedded.stop(var_dir)

    restarted = embedded.start(var_dir)

    assert restarted.postgres_pid != services.postgres_pid
    with _connect_pg(restarted.database_url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchone() == ("still here",)


def test_start_recovers_after_both_servers_were_killed_hard(var_dir):
    services = embedded.start(var_dir)
    os.kill(services.postgres_pid, signal.SIGKILL)
    os.kill(services.redis_pid, signal.SIGKILL)
    assert _wait_gone(services.postgres_pid) and _wait_gone(services.redis_pid)
    # The stale postmaster.pid and socket files are still there.
    assert (var_dir / "pgdata" / "postmaster.pid").exists()

    recovered = embedded.start(var_dir)

    assert recovered.postgres_pid != services.postgres_pid
    with _connect_pg(recovered.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert _redis(recovered.broker_url).ping()


def test_release_stops_only_what_this_process_owns(var_dir):
    # Another process (still alive) started the servers: we only borrow them.
    starter = subprocess.Popen(
        [sys.executable, "-c", "import sys; from billing_project import embedded;"
         f" embedded.start({str(var_dir)!r}); print('up', flush=True); sys.stdin.read()"],
        cwd=settings.BASE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert starter.stdout.readline().strip() == "up"
        borrowed = embedded.start(var_dir)
        assert not borrowed.owns_postgres and not borrowed.owns_redis

        embedded.release(borrowed)

        assert psutil.pid_exists(borrowed.postgres_pid)
        assert _redis(borrowed.broker_url).ping()
    finally:
        starter.communicate("", timeout=30)

    # The owner is gone without cleaning up: the next starter adopts the servers.
    adopted = embedded.start(var_dir)
    assert adopted.postgres_pid == borrowed.postgres_pid
    assert adopted.owns_postgres and adopted.owns_redis
    embedded.release(adopted)
    assert _wait_gone(adopted.postgres_pid) and _wait_gone(adopted.redis_pid)


def test_concurrent_starters_share_one_postgres_and_one_redis(var_dir):
    code = (
        "from billing_project import embedded;"
        f" s = embedded.start({str(var_dir)!r}); print(s.postgres_pid, s.redis_pid)"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    pids = {starter.communicate(timeout=60)[0].strip() for starter in starters}

    assert all(starter.returncode == 0 for starter in starters)
    assert len(pids) == 1


def test_a_long_folder_gets_a_short_redis_socket(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "var"

    path = embedded.redis_socket_path(deep)

    assert len(os.fsencode(path)) <= embedded.MAX_SOCKET_PATH
    assert path == embedded.redis_socket_path(deep)  # stable: the same folder every time
    assert embedded.redis_socket_path(Path("/tmp/x/var")) == Path("/tmp/x/var/redis.sock")


def test_launcher_uses_configured_servers_and_passes_the_exit_code_through():
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://someone@db.example:5432/theirs",
        "CELERY_BROKER_URL": "redis://broker.example:6379/4",
    }
    child = (
        "import os, sys; print(os.environ['DATABASE_URL'], os.environ['CELERY_BROKER_URL']);"
        " sys.exit(7)"
    )

    launcher = [sys.executable, "-m", "billing_project.launcher", "run", "--"]

    result = subprocess.run(
        [*launcher, sys.executable, "-c", child],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 7
    assert (
        "postgres://someone@db.example:5432/theirs redis://broker.example:6379/4" in result.stdout
    )
    assert "embedded" not in result.stdout  # nothing was started
