"""Shared fixtures for the whole suite: tenants A and B, their people, keys and clients."""

import os

import pytest
from rest_framework.test import APIClient

from tests.accounts.factories import CustomerFactory, MembershipFactory, make_api_key

# Playwright's sync API runs an event loop in the test thread; Django's async-safety check
# would otherwise refuse ORM calls from the same thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/lib/chromium/chromium"


@pytest.fixture
def customer_a(db):
    return CustomerFactory(name="Alpha Analytics", external_id="alpha")


@pytest.fixture
def customer_b(db):
    return CustomerFactory(name="Beta Bakery", external_id="beta")


@pytest.fixture
def owner_a(customer_a):
    """An accepted owner membership in customer A."""
    return MembershipFactory(
        customer=customer_a, role="owner", user__email="owner@alpha.example.com"
    )


@pytest.fixture
def owner_b(customer_b):
    return MembershipFactory(
        customer=customer_b, role="owner", user__email="owner@beta.example.com"
    )


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def operator_token(db):
    return make_api_key()[1]


@pytest.fixture
def customer_a_token(customer_a):
    return make_api_key(customer=customer_a)[1]


def bearer(client: APIClient, token: str) -> APIClient:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- Browser (system Chromium through Playwright; never a downloaded browser) -------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs the Debian chromium package.")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--disable-extensions",
        ],
    }


# Stripe on loopback: localstripe, the fake Stripe, the fault proxy (tests/stripe_servers).
from tests.stripe_servers.fixtures import *  # noqa: E402, F403
