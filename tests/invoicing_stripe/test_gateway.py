"""The Stripe gateway: settings, keys, and retries that never create a second invoice.

All through the real SDK over HTTP to the fault proxy in front of the fake Stripe.
"""

import functools

import pytest
import stripe
from django.core.exceptions import ImproperlyConfigured

from invoicing import stripe_gateway
from invoicing.stripe_gateway import StripeRejected, StripeUnavailable, call, idempotency_key

INVOICES = r"^/v1/invoices$"


@pytest.fixture
def sleeps():
    """An injected ``sleep`` that records the pauses instead of taking them."""
    return []


@pytest.fixture
def fast_timeouts(monkeypatch):
    # ~100x a loopback round trip; only the requests the proxy holds back wait this long.
    monkeypatch.setattr(stripe_gateway, "READ_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(stripe_gateway, "CONNECT_TIMEOUT_SECONDS", 1.0)


def create_invoice(sleeps, key="meterbook:invoice:42:create", **kwargs):
    client = stripe_gateway.client()
    return call(
        client.v1.invoices.create,
        params={
            "customer": "cus_meterbook",
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"meterbook_invoice": "42"},
        },
        idempotency_key=key,
        sleep=sleeps.append,
        rand=lambda: 0.5,
        **kwargs,
    )


def invoice_posts(env):
    return env.proxy.passages("POST", INVOICES)


def test_stripe_is_off_without_a_key(settings):
    settings.STRIPE_API_KEY = ""
    assert stripe_gateway.stripe_enabled() is False
    with pytest.raises(ImproperlyConfigured):
        stripe_gateway.client()


def test_client_is_built_from_settings(stripe_env):
    client = stripe_gateway.client()

    assert stripe_gateway.stripe_enabled() is True
    options = client._requestor._options  # the SDK keeps no public view of its options
    assert options.api_key == "sk_test_meterbook"
    assert options.base_addresses["api"] == stripe_env.proxy.url
    assert options.max_network_retries == stripe_gateway.MAX_NETWORK_RETRIES >= 1


def test_idempotency_keys_come_from_our_ids():
    assert idempotency_key("invoice", 42, "create") == "meterbook:invoice:42:create"
    assert idempotency_key("invoice", 42, "create") == idempotency_key("invoice", "42", "create")
    for bad in [(), ("invoice", ""), ("invoice", "4:2")]:
        with pytest.raises(ValueError):
            idempotency_key(*bad)
    with pytest.raises(ValueError):
        idempotency_key("x" * 260)


def test_a_successful_call_sends_our_key(stripe_env, sleeps):
    invoice = create_invoice(sleeps)

    assert invoice.id == stripe_env.fake.invoices[0]["id"]
    assert [r.idempotency_key for r in stripe_env.fake.requests] == ["meterbook:invoice:42:create"]
    assert sleeps == []


def test_a_500_then_success_creates_one_invoice(stripe_env, sleeps):
    stripe_env.proxy.on("POST", INVOICES).respond(500)

    invoice = create_invoice(sleeps)

    posts = invoice_posts(stripe_env)
    assert [p.status for p in posts] == [500, 200]  # the SDK retried by itself
    assert {p.idempotency_key for p in posts} == {"meterbook:invoice:42:create"}
    assert [i["id"] for i in stripe_env.fake.invoices] == [invoice.id]
    assert sleeps == []


def test_a_429_is_retried_after_the_advertised_delay(stripe_env, sleeps):
    stripe_env.proxy.on("POST", INVOICES).respond(
        429, headers={"Retry-After": "1"}, stripe_should_retry=False
    )

    invoice = create_invoice(sleeps)

    assert sleeps == [1.0]
    posts = invoice_posts(stripe_env)
    assert [p.status for p in posts] == [429, 200]
    assert {p.idempotency_key for p in posts} == {"meterbook:invoice:42:create"}
    assert [i["id"] for i in stripe_env.fake.invoices] == [invoice.id]


def test_retry_after_is_capped(stripe_env, sleeps):
    stripe_env.proxy.on("POST", INVOICES).respond(429, headers={"Retry-After": "86400"})

    create_invoice(sleeps)

    assert sleeps == [stripe_gateway.RETRY_AFTER_CAP_SECONDS]


def test_a_429_without_retry_after_backs_off_exponentially_with_jitter(stripe_env, sleeps):
    stripe_env.proxy.on("POST", INVOICES, times=3).respond(429)

    create_invoice(sleeps)

    base = stripe_gateway.BACKOFF_BASE_SECONDS
    assert sleeps == [0.75 * base, 1.5 * base, 3.0 * base]  # rand() = 0.5 -> x0.75
    assert len(stripe_env.fake.invoices) == 1


def test_a_read_timeout_after_creation_leaves_one_invoice(stripe_env, sleeps, fast_timeouts):
    stripe_env.proxy.on("POST", INVOICES).forward_then_hang(2)

    invoice = create_invoice(sleeps)

    posts = invoice_posts(stripe_env)
    assert [p.fault for p in posts] == ["forward_then_hang", None]
    assert {p.idempotency_key for p in posts} == {"meterbook:invoice:42:create"}
    assert [i["id"] for i in stripe_env.fake.invoices] == [invoice.id]
    assert [r.replayed for r in stripe_env.fake.requests] == [False, True]


def test_call_retries_a_timeout_itself_when_the_sdk_does_not(
    stripe_env, sleeps, fast_timeouts, monkeypatch
):
    monkeypatch.setattr(stripe_gateway, "MAX_NETWORK_RETRIES", 0)
    stripe_env.proxy.on("POST", INVOICES).forward_then_hang(2)

    invoice = create_invoice(sleeps)

    assert len(sleeps) == 1
    assert [i["id"] for i in stripe_env.fake.invoices] == [invoice.id]
    assert len(invoice_posts(stripe_env)) == 2


def test_a_dropped_connection_is_retried(stripe_env, sleeps):
    stripe_env.proxy.on("POST", INVOICES).drop_connection(forward=True)

    invoice = create_invoice(sleeps)

    assert [i["id"] for i in stripe_env.fake.invoices] == [invoice.id]
    assert len(invoice_posts(stripe_env)) == 2


def test_a_400_is_rejected_at_once(stripe_env, sleeps):
    client = stripe_gateway.client()

    with pytest.raises(StripeRejected) as caught:
        call(
            client.v1.invoices.create,
            params={"customer": "cus_meterbook", "collection_method": "send_invoice"},
            idempotency_key="meterbook:invoice:43:create",
            sleep=sleeps.append,
        )

    assert caught.value.code == "parameter_missing"
    assert caught.value.field == "days_until_due"
    assert caught.value.http_status == 400
    assert "days_until_due" in caught.value.message
    assert len(invoice_posts(stripe_env)) == 1
    assert sleeps == []


def test_a_404_is_rejected_with_stripes_code(stripe_env, sleeps):
    client = stripe_gateway.client()

    with pytest.raises(StripeRejected) as caught:
        call(
            functools.partial(client.v1.invoices.finalize_invoice, "in_unknown"),
            params={},
            idempotency_key="meterbook:invoice:44:finalize",
            sleep=sleeps.append,
        )

    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    assert len(stripe_env.proxy.log) == 1


def test_reusing_a_key_with_other_params_is_rejected(stripe_env, sleeps):
    create_invoice(sleeps)
    client = stripe_gateway.client()

    with pytest.raises(StripeRejected) as caught:
        call(
            client.v1.invoices.create,
            params={"customer": "cus_other", "collection_method": "send_invoice",
                    "days_until_due": 7},
            idempotency_key="meterbook:invoice:42:create",
            sleep=sleeps.append,
        )  # fmt: skip

    assert caught.value.code == "idempotency_error"
    assert len(stripe_env.fake.invoices) == 1


def test_stripe_unavailable_after_the_last_attempt(stripe_env, sleeps, monkeypatch):
    monkeypatch.setattr(stripe_gateway, "MAX_NETWORK_RETRIES", 1)
    stripe_env.proxy.on("POST", INVOICES, times=100).respond(503)

    with pytest.raises(StripeUnavailable) as caught:
        create_invoice(sleeps, attempts=3)

    assert caught.value.attempts == 3
    assert isinstance(caught.value.last_error, stripe.APIError)
    assert caught.value.last_error.http_status == 503
    assert caught.value.status == 503 and caught.value.code == "stripe_unavailable"
    assert len(sleeps) == 2
    posts = invoice_posts(stripe_env)
    assert len(posts) == 3 * 2  # each attempt: one request and one SDK retry
    assert {p.idempotency_key for p in posts} == {"meterbook:invoice:42:create"}
    assert stripe_env.fake.invoices == []


def test_reads_need_no_key(stripe_env, sleeps):
    created = create_invoice(sleeps)
    client = stripe_gateway.client()

    found = call(
        client.v1.invoices.list,
        params={"customer": "cus_meterbook"},
        idempotency_key=None,
        sleep=sleeps.append,
    )

    assert [i.id for i in found.data] == [created.id]
