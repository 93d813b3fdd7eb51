"""The sync under faults injected between the SDK and Stripe: still exactly one of each.

Every fault goes through the proxy in front of the fake Stripe, which honours idempotency
keys like Stripe does; ``fake.invoices`` is what Stripe would hold afterwards.
"""

import pytest

from invoicing import services, stripe_gateway
from invoicing.services import stripe_sync
from invoicing.stripe_gateway import StripeRejected, StripeUnavailable
from tests.invoicing_stripe.test_sync import finalized_invoice

pytestmark = pytest.mark.django_db

CREATE = r"^/v1/invoices$"


@pytest.fixture
def invoice(customer_a):
    return finalized_invoice(customer_a)


@pytest.fixture
def sleeps():
    """An injected ``sleep`` that records the pauses instead of taking them."""
    return []


@pytest.fixture
def fast_timeouts(monkeypatch):
    # ~100x a loopback round trip; only the requests the proxy holds back wait this long.
    monkeypatch.setattr(stripe_gateway, "READ_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(stripe_gateway, "CONNECT_TIMEOUT_SECONDS", 1.0)


def sync(invoice, sleeps):
    return services.invoice_stripe_sync(invoice_id=invoice.pk, sleep=sleeps.append)


def assert_one_finalized_stripe_invoice(env, invoice):
    [remote] = env.fake.invoices
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == remote["id"]
    assert invoice.stripe_synced_at is not None and invoice.stripe_last_error == ""
    assert remote["status"] == "open" and remote["total"] == invoice.total_minor == 7200
    assert len(env.fake.invoice_items) == 3
    return remote


def test_a_500_on_create_then_success(stripe_env, invoice, sleeps):
    stripe_env.proxy.on("POST", CREATE).respond(500)

    sync(invoice, sleeps)

    assert [p.status for p in stripe_env.proxy.passages("POST", CREATE)] == [500, 200]
    assert_one_finalized_stripe_invoice(stripe_env, invoice)
    assert sleeps == []  # the SDK retried at once, with the same key


def test_a_429_waits_for_retry_after(stripe_env, invoice, sleeps):
    stripe_env.proxy.on("POST", CREATE).respond(
        429, headers={"Retry-After": "7"}, stripe_should_retry=False
    )

    sync(invoice, sleeps)

    assert sleeps == [7.0]
    creates = stripe_env.proxy.passages("POST", CREATE)
    assert [p.status for p in creates] == [429, 200]
    assert {p.idempotency_key for p in creates} == {f"meterbook:invoice:{invoice.pk}:create"}
    assert_one_finalized_stripe_invoice(stripe_env, invoice)


def test_a_read_timeout_after_stripe_created_the_invoice(
    stripe_env, invoice, sleeps, fast_timeouts
):
    stripe_env.proxy.on("POST", CREATE).forward_then_hang(2)

    sync(invoice, sleeps)

    creates = [
        r for r in stripe_env.fake.requests if r.method == "POST" and r.path == "/v1/invoices"
    ]
    assert [r.replayed for r in creates] == [False, True]  # the retry got the same invoice
    remote = assert_one_finalized_stripe_invoice(stripe_env, invoice)
    assert invoice.stripe_invoice_id == remote["id"]


def test_a_crash_between_creating_and_storing_the_id(stripe_env, invoice, sleeps, monkeypatch):
    real_store = stripe_sync._invoice_store_stripe_id
    crashes = []

    def crash_once(invoice_id, stripe_invoice_id):
        if not crashes:
            crashes.append(stripe_invoice_id)
            raise RuntimeError("worker lost")
        real_store(invoice_id, stripe_invoice_id)

    monkeypatch.setattr(stripe_sync, "_invoice_store_stripe_id", crash_once)

    with pytest.raises(RuntimeError):
        sync(invoice, sleeps)
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == ""
    assert [i["id"] for i in stripe_env.fake.invoices] == crashes

    sync(invoice, sleeps)

    remote = assert_one_finalized_stripe_invoice(stripe_env, invoice)
    assert remote["id"] == crashes[0]
    assert invoice.stripe_sync_attempts == 2


def test_a_crash_before_storing_replays_the_key_when_stripe_lists_nothing(
    stripe_env, invoice, sleeps, monkeypatch
):
    # Were the lookup by metadata to miss it, the create key still replays the same invoice.
    real_store = stripe_sync._invoice_store_stripe_id
    calls = []

    def crash_once(invoice_id, stripe_invoice_id):
        calls.append(stripe_invoice_id)
        if len(calls) == 1:
            raise RuntimeError("worker lost")
        real_store(invoice_id, stripe_invoice_id)

    monkeypatch.setattr(stripe_sync, "_invoice_store_stripe_id", crash_once)
    monkeypatch.setattr(stripe_sync, "_invoice_find", lambda *args: None)

    with pytest.raises(RuntimeError):
        sync(invoice, sleeps)
    sync(invoice, sleeps)

    assert calls[0] == calls[1]
    assert_one_finalized_stripe_invoice(stripe_env, invoice)
    creates = [
        r for r in stripe_env.fake.requests if r.method == "POST" and r.path == "/v1/invoices"
    ]
    assert [r.replayed for r in creates] == [False, True]


def test_stripe_refusing_finalize_is_recorded_then_a_rerun_resumes_without_duplicates(
    stripe_env, invoice, sleeps
):
    stripe_env.proxy.on("POST", r"/finalize$").respond(400)

    with pytest.raises(StripeRejected):
        sync(invoice, sleeps)

    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id and invoice.stripe_synced_at is None
    assert invoice.stripe_last_error.startswith(
        "StripeRejected (invalid_request_error): Injected HTTP 400"
    )
    assert stripe_env.fake.invoices[0]["status"] == "draft"
    assert services.stripe_sync_pending() == ([], [])  # refused: the sweep leaves it to a person

    sync(invoice, sleeps)

    assert_one_finalized_stripe_invoice(stripe_env, invoice)
    assert invoice.stripe_sync_attempts == 2
    item_posts = stripe_env.proxy.passages("POST", r"^/v1/invoiceitems$")
    assert len(item_posts) == 3  # the rerun saw the items on the Stripe invoice


def test_a_timeout_on_an_item_does_not_duplicate_it(stripe_env, invoice, sleeps, fast_timeouts):
    stripe_env.proxy.on("POST", r"^/v1/invoiceitems$").forward_then_hang(2)

    sync(invoice, sleeps)

    assert_one_finalized_stripe_invoice(stripe_env, invoice)
    assert len(stripe_env.proxy.passages("POST", r"^/v1/invoiceitems$")) == 4


def test_a_dropped_connection_after_finalize_is_replayed(stripe_env, invoice, sleeps):
    stripe_env.proxy.on("POST", r"/finalize$").drop_connection(forward=True)

    sync(invoice, sleeps)

    assert_one_finalized_stripe_invoice(stripe_env, invoice)
    finals = [r for r in stripe_env.fake.requests if r.path.endswith("/finalize")]
    assert [r.replayed for r in finals] == [False, True]


def test_stripe_down_is_recorded_and_raised_for_the_task_to_retry(
    stripe_env, invoice, sleeps, monkeypatch
):
    monkeypatch.setattr(stripe_gateway, "MAX_NETWORK_RETRIES", 0)
    stripe_env.proxy.on("POST", CREATE, times=100).respond(503)

    with pytest.raises(StripeUnavailable):
        sync(invoice, sleeps)

    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == "" and invoice.stripe_synced_at is None
    assert invoice.stripe_sync_attempts == 1
    assert invoice.stripe_last_error.startswith("StripeUnavailable (stripe_unavailable): ")
    assert len(sleeps) == stripe_gateway.CALL_ATTEMPTS - 1
    assert stripe_env.fake.invoices == []
    assert services.stripe_sync_pending() == ([invoice.pk], [])  # the sweep will retry it

    stripe_env.proxy.clear_faults()
    sync(invoice, sleeps)
    assert_one_finalized_stripe_invoice(stripe_env, invoice)


def test_a_failed_credit_note_push_is_replayed_once(stripe_env, invoice, sleeps, fast_timeouts):
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    note = services.credit_note_issue(
        actor=None, invoice=invoice, reason="duplicate", memo="Charged twice"
    )
    stripe_env.proxy.on("POST", r"^/v1/credit_notes$").forward_then_hang(2)

    synced = services.credit_note_stripe_sync(credit_note_id=note.pk, sleep=sleeps.append)

    [remote] = stripe_env.fake.credit_notes
    assert synced.stripe_credit_note_id == remote["id"]
    assert (remote["amount"], remote["reason"]) == (7200, "duplicate")
