import pytest
from aiosmtpd.controller import Controller

from tests.alerts.receivers import Inbox, free_port


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback, and Django's SMTP backend pointed at it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "alerts@meterbook.example"
    yield inbox
    controller.stop()


@pytest.fixture
def broker_down():
    """Celery publishes to a port nothing listens on (a real connection attempt, refused):
    what an outage of the broker looks like to the code that enqueues."""
    from kombu import Connection

    from billing_project.celery import app

    def dead(*args, **kwargs):
        return Connection(
            "redis://127.0.0.1:9/0", transport_options=app.conf.broker_transport_options
        )

    app.conf.task_always_eager = False
    app.connection_for_write = dead
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        del app.connection_for_write  # back to the class's method
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.task_always_eager = True
