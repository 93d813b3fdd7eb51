"""The one entry point for running Meterbook locally (what ``make demo`` / ``make test`` call).

    python -m billing_project.launcher demo [--port 8000]   # migrate, seed, web + worker + beat
    python -m billing_project.launcher test [pytest args]   # the whole suite
    python -m billing_project.launcher run -- CMD [ARGS]    # any command with the services' env
    python -m billing_project.launcher stop                 # stop the embedded servers in ./var

``DATABASE_URL`` / ``CELERY_BROKER_URL`` from the environment are used as they are; whichever
is unset is provided by the embedded PostgreSQL / Redis under ``./var/`` (see ``embedded``),
started here and passed to the children through the environment. The launcher stops, on its
way out, only the embedded servers it owns, never servers it found running for someone else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from billing_project import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
QUEUES = ("default", "ingest", "alerts", "billing", "notifications")
SHUTDOWN_GRACE_SECONDS = 20


def _say(message: str) -> None:
    print(f"[meterbook] {message}", flush=True)


class _Signals:
    """Records SIGINT/SIGTERM/SIGHUP instead of dying, so shutdown runs in order.

    Installing a handler also undoes an inherited SIG_IGN for SIGINT (a non-interactive
    shell starts background jobs that way), and handlers reset to the default in children.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def services_env() -> Iterator[dict[str, str]]:
    """The environment for children, with DATABASE_URL and CELERY_BROKER_URL always set."""
    env = dict(os.environ)
    need_postgres = not env.get("DATABASE_URL")
    need_redis = not env.get("CELERY_BROKER_URL")
    services = None
    if need_postgres or need_redis:
        started_at = time.monotonic()
        services = embedded.start(postgres=need_postgres, redis=need_redis)
        if need_postgres:
            env["DATABASE_URL"] = services.database_url
        if need_redis:
            env["CELERY_BROKER_URL"] = services.broker_url
        names = [
            n for n, needed in (("PostgreSQL", need_postgres), ("Redis", need_redis)) if needed
        ]
        _say(
            f"embedded {' and '.join(names)} under {services.var_dir} ready in "
            f"{time.monotonic() - started_at:.1f}s"
        )
    if not need_postgres:
        _say("using DATABASE_URL from the environment")
    if not need_redis:
        _say("using CELERY_BROKER_URL from the environment")
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        yield env
    finally:
        if services is not None and (services.owns_postgres or services.owns_redis):
            embedded.release(services)
            _say("stopped the embedded servers this launcher owned")


# --- demo --------------------------------------------------------------------------------


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _groups_alive(pgids: set[int]) -> bool:
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) in pgids and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _signal_groups(pgids: set[int], signum: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _stop_groups(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each child's whole group (runserver's reloader, Celery's pool), wait, then kill."""
    pgids = {p.pid for p in processes.values()}
    _signal_groups(pgids, signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while time.monotonic() < deadline:
        for process in processes.values():
            process.poll()
        if all(p.returncode is not None for p in processes.values()) and not _groups_alive(pgids):
            return
        time.sleep(0.1)
    _say("some processes ignored SIGTERM; killing them")
    _signal_groups(pgids, signal.SIGKILL)
    for process in processes.values():
        process.wait()


def _die_with_launcher() -> None:
    """In the child before exec: get SIGTERM if the launcher itself is killed (kill -9),
    so web, worker and beat are not left running. Linux only; elsewhere a no-op."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _prepare(env: dict[str, str]) -> str | None:
    """Migrate, sync groups and schedules, seed; return the printed logins (or None)."""
    result = subprocess.run(
        [sys.executable, "-m", "billing_project.launcher", "prepare"],
        env=env,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        return None
    return result.stdout


def demo(port: int) -> int:
    if _port_is_open(port):
        _say(f"port {port} is already in use (another demo?); pass --port to use another")
        return 1
    with _Signals() as signals, services_env() as env:
        env.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings.development")
        started_at = time.monotonic()
        _say("preparing the database: migrate, sync_platform, seed_demo")
        logins = _prepare(env)
        if logins is None or signals.received:
            _say("preparing the database failed" if logins is None else "interrupted")
            return 1 if logins is None else 130
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}"],
            "worker": [
                python, "-m", "celery", "-A", "billing_project", "worker",
                "-Q", ",".join(QUEUES), "--concurrency", "2", "--loglevel", "INFO",
                "--hostname", "demo@%h", "--without-gossip", "--without-mingle",
            ],
            "beat": [
                python, "-m", "celery", "-A", "billing_project", "beat", "--loglevel", "INFO",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            ],
        }  # fmt: skip
        processes: dict[str, subprocess.Popen] = {}
        try:
            for name, command in commands.items():
                # Each in a session and process group of its own: Ctrl-C reaches only the
                # launcher, which then stops every group in order, grandchildren included.
                processes[name] = subprocess.Popen(  # noqa: S603 - fixed commands
                    command,
                    env=env,
                    cwd=BASE_DIR,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_launcher,  # the launcher is single-threaded
                )
            announced = False
            exit_code = 0
            while signals.received is None:
                crashed = [n for n, p in processes.items() if p.poll() is not None]
                if crashed:
                    _say(f"{', '.join(crashed)} exited unexpectedly; stopping the demo")
                    exit_code = 1
                    break
                if not announced and _port_is_open(port):
                    announced = True
                    elapsed = time.monotonic() - started_at
                    print(f"\n{logins.rstrip()}\n", flush=True)
                    _say(
                        f"demo is up at http://127.0.0.1:{port}/ after {elapsed:.1f}s "
                        f"(web, worker on {', '.join(QUEUES)}, beat); Ctrl-C stops everything"
                    )
                time.sleep(0.2)
            else:
                name = signal.Signals(signals.received).name
                _say(f"received {name}; stopping web, worker and beat")
                exit_code = 0
        finally:
            _stop_groups(processes)
        return exit_code


def prepare() -> int:
    """Runs inside a child with the services' env (never starts servers itself)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("sync_platform", verbosity=0)
    call_command("seed_demo")
    return 0


# --- test / run --------------------------------------------------------------------------


def run(command: list[str], *, test_settings: bool = False) -> int:
    """Run ``command`` in the foreground (Ctrl-C reaches it directly) and return its code."""
    with _Signals() as signals, services_env() as env:
        if test_settings:
            # The suite's settings module comes from pyproject.toml, not from a shell that
            # happens to export the development one.
            env.pop("DJANGO_SETTINGS_MODULE", None)
        child = subprocess.Popen(command, env=env, cwd=BASE_DIR)  # noqa: S603 - developer's command
        # Ctrl-C in a terminal reaches the child directly (same process group), so SIGINT is
        # only recorded here; forwarding it too would be a second, harsher interrupt.
        forwarded = None
        while child.poll() is None:
            if signals.received in (signal.SIGTERM, signal.SIGHUP) and forwarded is None:
                forwarded = signals.received
                child.send_signal(forwarded)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.2)
        return child.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_project.launcher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="seed and serve the demo with a worker and beat")
    demo_parser.add_argument("--port", type=int, default=8000)
    commands.add_parser("test", help="run pytest (extra arguments go to pytest)")
    commands.add_parser("run", help="run a command with DATABASE_URL and CELERY_BROKER_URL set")
    commands.add_parser("stop", help="stop the embedded servers under ./var")
    commands.add_parser("prepare", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)

    if args.command == "demo":
        return demo(args.port)
    if args.command == "test":
        return run([sys.executable, "-m", "pytest", *rest], test_settings=True)
    if args.command == "run":
        rest = rest[1:] if rest[:1] == ["--"] else rest
        if not rest:
            parser.error("run needs a command, e.g. run -- python manage.py shell")
        return run(rest)
    if args.command == "stop":
        embedded.stop()
        _say("embedded servers stopped")
        return 0
    return prepare()


if __name__ == "__main__":
    sys.exit(main())
