"""A real Celery worker (not eager mode) against the real broker and the test database.

The worker is a separate process started with ``-Q notifications``; it reads the test
database (committed rows: a transactional test) and sends mail over SMTP to an aiosmtpd
server on a free loopback port. It uses a broker database of its own so stray messages left
by other tests or runs cannot reach it.
"""

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.controller import Controller
from celery.backends.redis import RedisBackend
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from accounts import services
from accounts.tasks import send_invitation
from billing_project.celery import app
from tests.accounts.factories import MembershipFactory

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

WORKER_BROKER_DB = 15  # the broker database only this test uses
PUBLIC_BASE_URL = "http://meterbook.test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dedicated_broker_url(url: str, db: int = WORKER_BROKER_DB) -> str:
    """The same Redis server, another database: ``redis://h:p/n`` or ``redis+socket://path``."""
    parts = urlsplit(url)
    if parts.scheme == "redis+socket":
        # Built by hand: urlunsplit would drop the empty host and one of the slashes.
        return f"redis+socket://{parts.path}?virtual_host={db}"
    if parts.scheme in ("redis", "rediss"):
        return urlunsplit(parts._replace(path=f"/{db}"))
    raise AssertionError(f"The worker test needs a Redis broker, not {parts.scheme}://")


def result_backend_for(url: str) -> RedisBackend:
    # Celery's backend class names a unix socket "socket://"; kombu's broker "redis+socket://".
    return RedisBackend(app=app, url=url.replace("redis+socket://", "socket://", 1))


def _test_database_url() -> str:
    """DATABASE_URL with the database name swapped for pytest-django's test database."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


class Inbox:
    def __init__(self, port: int):
        self.port = port
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox():
    # aiosmtpd cannot take port 0 (its start() connects to the given port).
    handler = Inbox(port=_free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture
def broker_url():
    url = dedicated_broker_url(settings.CELERY_BROKER_URL)
    with Connection(url) as conn:
        conn.default_channel.queue_purge("notifications")
    return url


@pytest.fixture
def worker(inbox, broker_url, tmp_path):
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings.development",
        "DEBUG": "false",
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(inbox.port),
        # Same signing key as this process, so the emailed token can be checked here.
        "SECRET_KEY": settings.SECRET_KEY,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "billing_project", "worker",
                "-Q", "notifications", "--pool", "solo", "--hostname", name, "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"The Celery worker did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def not_eager():
    # The test settings run tasks inline; here they must go through the broker.
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = previous


def wait_for_result(backend: RedisBackend, task_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = backend.get_task_meta(task_id)
        if meta["status"] in ("SUCCESS", "FAILURE"):
            assert meta["status"] == "SUCCESS", meta
            return meta["result"]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish within {timeout}s")


def test_worker_emails_the_invitation_once_even_when_the_task_runs_twice(
    inbox, broker_url, worker, not_eager, customer_a, owner_a
):
    invited = MembershipFactory(
        customer=customer_a,
        role="developer",
        user__email="new.dev@alpha.example.com",
        invited_by=owner_a.user,
        invited_at=timezone.now(),
        accepted_at=None,
    )
    backend = result_backend_for(broker_url)

    with Connection(broker_url) as conn:
        first = send_invitation.apply_async(args=[invited.pk], connection=conn)
        assert wait_for_result(backend, first.id) is True
        second = send_invitation.apply_async(args=[invited.pk], connection=conn)
        assert wait_for_result(backend, second.id) is False

    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message.rcpt_tos == ["new.dev@alpha.example.com"]
    body = message.content.decode()
    assert "Alpha Analytics" in body
    link = re.search(rf"{re.escape(PUBLIC_BASE_URL)}/invitations/(?P<token>[^/\s]+)/", body)
    assert link, body
    assert services.invitation_from_token(link["token"]).pk == invited.pk
    invited.refresh_from_db()
    assert invited.invitation_sent_at is not None


def test_the_invitation_task_is_routed_to_the_notifications_queue():
    route = app.amqp.router.route({}, send_invitation.name)
    assert route["queue"].name == "notifications"
