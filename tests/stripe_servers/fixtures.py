"""Fixtures: localstripe, the fake and the fault proxy for the session; ``stripe_env`` per test.

``stripe_env`` starts each test from empty servers and no queued faults, and points the
Django settings the gateway reads at the proxy, so the SDK never leaves loopback::

    def test_something(stripe_env):
        stripe_env.proxy.on("POST", r"^/v1/invoices$").respond(500)
        ...  # code under test builds its client from settings
        assert len(stripe_env.fake.invoices) == 1
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import stripe

from tests.stripe_servers.fake_stripe import FakeStripe, WebhookReceiver
from tests.stripe_servers.fault_proxy import FaultProxy
from tests.stripe_servers.localstripe_server import LocalStripe

__all__ = [
    "StripeEnv",
    "fake_stripe_server",
    "localstripe_server",
    "stripe_env",
    "stripe_proxy",
    "webhook_receiver",
]

API_KEY = "sk_test_meterbook"
WEBHOOK_SECRET = "whsec_test"
# What the proxy sends to localstripe; the rest goes to the fake.
LOCALSTRIPE_PATHS = r"^/v1/customers(/|$)"


@dataclass(frozen=True)
class StripeEnv:
    fake: FakeStripe
    localstripe: LocalStripe
    localstripe_url: str
    proxy: FaultProxy
    api_key: str = API_KEY
    webhook_secret: str = WEBHOOK_SECRET

    @property
    def api_base(self) -> str:
        return self.proxy.url

    def client(self, **kwargs) -> stripe.StripeClient:
        """A plain SDK client on the proxy (no retries unless asked), for set-up and checks."""
        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(self.api_key, base_addresses={"api": self.proxy.url}, **kwargs)


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[LocalStripe]:
    server = LocalStripe()
    yield server
    server.close()


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture(scope="session")
def stripe_proxy(localstripe_server, fake_stripe_server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(
        routes=[(LOCALSTRIPE_PATHS, localstripe_server.url), ("", fake_stripe_server.url)]
    )
    yield proxy
    proxy.close()


@pytest.fixture
def stripe_env(
    localstripe_server, fake_stripe_server, stripe_proxy, settings, monkeypatch
) -> Iterator[StripeEnv]:
    localstripe_server.reset()
    fake_stripe_server.reset()
    stripe_proxy.reset()
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_API_BASE = stripe_proxy.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    # The SDK's own retry pause (0.5 s doubling, with jitter) made short: same retries, same
    # keys, no waiting. Only timing changes.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.02)
    yield StripeEnv(
        fake=fake_stripe_server,
        localstripe=localstripe_server,
        localstripe_url=localstripe_server.url,
        proxy=stripe_proxy,
    )
    stripe_proxy.clear_faults()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
