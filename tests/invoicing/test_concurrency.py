"""Period close and finalization under concurrency, against real PostgreSQL.

These tests commit for real (``transaction=True``): each thread has its own database
connection, as concurrent Celery workers do.
"""

from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.db import transaction

from invoicing import services
from invoicing.models import Invoice
from invoicing.services.period_close import document_number
from tests.accounts.factories import CustomerFactory
from tests.concurrency import in_threads
from tests.invoicing.factories import flat, plan_version, subscribe

pytestmark = pytest.mark.django_db(transaction=True)

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def test_eight_workers_closing_the_same_period_make_one_invoice():
    version = plan_version(components=[flat("99.00")])
    subscription = subscribe(CustomerFactory(), version, at=OCT)

    results = in_threads(
        8, lambda _: services.period_close(subscription_id=subscription.pk, now=NOV)
    )

    assert sum(1 for r in results if r is not None) == 1
    assert Invoice.objects.filter(subscription=subscription).count() == 1


def test_concurrent_runs_share_the_due_periods_and_bill_each_once(monkeypatch):
    """Runs claim chunks with SKIP LOCKED: a chunk another run holds is left to it."""
    # (The module, not the package's re-exported function of the same name.)
    monkeypatch.setattr(import_module("invoicing.services.period_close"), "CLOSE_CHUNK", 7)
    version = plan_version(components=[flat("99.00")])
    subscriptions = [subscribe(CustomerFactory(), version, at=OCT) for _ in range(40)]

    closed = in_threads(4, lambda _: services.periods_close_due(now=NOV))

    assert sum(closed) == 40
    assert Invoice.objects.count() == 40
    assert set(Invoice.objects.values_list("subscription_id", flat=True)) == {
        s.pk for s in subscriptions
    }


def test_concurrent_finalizations_number_without_gaps_or_repeats():
    version = plan_version(components=[flat("10.00")])
    drafts = []
    for _ in range(12):
        subscription = subscribe(CustomerFactory(), version, at=OCT)
        drafts.append(services.period_close(subscription_id=subscription.pk, now=NOV))
    # A finalization that takes a number and then fails gives it back (its transaction
    # rolls the counter back with it).
    with pytest.raises(RuntimeError), transaction.atomic():
        document_number("INV", NOV)
        raise RuntimeError("the finalization failed after numbering")

    in_threads(
        12,
        lambda i: services.invoice_finalize(
            actor=None, invoice=drafts[i], now=NOV + timedelta(hours=2)
        ),
    )

    numbers = sorted(Invoice.objects.values_list("number_seq", flat=True))
    assert numbers == list(range(1, 13))
    assert Invoice.objects.filter(number="INV-2026-000012").exists()
