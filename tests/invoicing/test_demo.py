"""Demo billing: a catalog, a subscription per customer and months of invoices through the
real services, deterministic and idempotent.

The seed runs on a handful of the demo's customers (the real accounts seed, so the real
Northwind owner) with three months of usage, at a fixed ``now``: quick, and every
invoice is the same on every run.
"""

import io
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Min, Sum

from accounts.management.commands.seed_demo import SEED
from accounts.models import Customer
from invoicing import demo
from invoicing.models import (
    CreditNote,
    Dispute,
    Invoice,
    InvoiceLine,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionPhase,
)
from metering.demo import seed_usage
from metering.models import EventKey

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 20, 15, 30, tzinfo=UTC)
MONTHS = 3
# Northwind (the demo login, Growth, moved to Growth v2), an Enterprise account in INR,
# Self-serve in SEK and EUR, Growth in USD, AUD and JPY.
CUSTOMERS = [
    "acct-northwind-traders",
    "acct-alder-finch",
    "acct-bluebird-payments",
    "acct-brightwater-studios",
    "acct-cobalt-manufacturing",
    "acct-fjord-analytics",
    "acct-sakura-devices",
]
MODELS = (Plan, PlanVersion, Subscription, SubscriptionPhase, Invoice, InvoiceLine, CreditNote)


@pytest.fixture
def customers():
    call_command("seed_demo", stdout=io.StringIO())  # accounts only: DEMO_SEEDERS is empty
    chosen = list(Customer.objects.filter(external_id__in=CUSTOMERS).order_by("external_id"))
    assert len(chosen) == len(CUSTOMERS)
    seed_usage(io.StringIO(), random.Random(SEED), customers=chosen, months=MONTHS, now=NOW)
    return chosen


def seed(customers, now=NOW):
    out = io.StringIO()
    counts = demo.seed_billing(
        out, random.Random(SEED), customers=customers, months=MONTHS, now=now
    )
    return counts, out.getvalue()


def snapshot():
    return {model.__name__: model.objects.count() for model in MODELS} | {
        "Dispute": Dispute.objects.count(),
        "held": Invoice.objects.filter(status=Invoice.Status.HELD).count(),
        "final": Invoice.objects.filter(status__in=Invoice.BILLED).count(),
    }


def test_the_catalog_covers_every_currency_with_growth_repriced(customers):
    seed(customers)

    currencies = {c.currency for c in customers}
    codes = set(Plan.objects.values_list("code", flat=True))
    assert codes == {f"{tier}-{cur.lower()}" for tier in demo.TIERS for cur in currencies}
    for plan in Plan.objects.annotate(n=Count("versions")):
        assert plan.n == (2 if plan.code.startswith("growth-") else 1), plan.code
    enterprise = PlanVersion.objects.get(plan__code="enterprise-usd")
    kinds = {c.kind: c for c in enterprise.components.all()}
    assert kinds["commitment"].commitment_months == 12
    assert {c.meter.code for c in enterprise.components.exclude(meter=None)} == {
        "api_call",
        "data_processed",
        "active_seats",
    }
    api = enterprise.components.get(meter__code="api_call")
    assert api.pricing_model == "volume"
    assert api.tiers[0]["unit_price"] == "0.0015"
    # Local price points: $299 is 44,900 yen (x150, to the nearest 100).
    growth_jpy = PlanVersion.objects.get(plan__code="growth-jpy", version=1)
    assert growth_jpy.components.get(kind="flat_fee").amount == 44900


def test_every_customer_is_subscribed_and_billed_a_finalized_history(customers):
    counts, out = seed(customers)

    first_usage = dict(
        EventKey.objects.values("customer_id")
        .annotate(first=Min("event_timestamp"))
        .values_list("customer_id", "first")
    )
    anchors = set()
    for customer in customers:
        subscription = Subscription.objects.select_related("plan_version__plan").get(
            customer=customer
        )
        assert subscription.plan_version.plan.currency == customer.currency
        assert subscription.started_at >= first_usage[customer.pk], customer
        assert subscription.started_at <= NOW - timedelta(days=45), customer
        # The current period is open: its invoice is still to come.
        assert subscription.billed_through <= NOW < subscription.current_period_end
        anchors.add(subscription.billing_anchor.day)
        assert customer.invoices.exists(), customer
    assert len(anchors) >= 4

    finalized = Invoice.objects.filter(status__in=(*Invoice.BILLED, "void"))
    assert finalized.count() == counts["invoices finalized"] >= len(customers)
    numbers = list(finalized.values_list("number", flat=True))
    assert all(n and n.startswith("INV-2026-") for n in numbers)
    assert len(set(numbers)) == len(numbers)
    for invoice in Invoice.objects.annotate(lines_total=Sum("lines__amount_minor")):
        assert invoice.total_minor >= 0
        assert invoice.total_minor == invoice.lines_total, invoice
        assert invoice.period_end <= NOW
    assert "seed_billing:" in out and "finalized invoices" in out


def test_proration_commitment_and_yen_show_on_the_invoices(customers):
    seed(customers)

    northwind = Customer.objects.get(external_id="acct-northwind-traders")
    phases = list(
        SubscriptionPhase.objects.filter(subscription__customer=northwind).order_by("starts_at")
    )
    assert [p.plan_version.version for p in phases] == [1, 2]
    split = Invoice.objects.get(
        customer=northwind, period_start__lt=phases[1].starts_at, period_end__gt=phases[1].starts_at
    )
    fees = split.lines.filter(kind="flat_fee").order_by("period_start")
    assert [f.period_end for f in fees][:1] == [phases[1].starts_at]
    assert 0 < fees[0].amount_minor < 29900 and 0 < fees[1].amount_minor < 34900

    alder = Invoice.objects.filter(customer__external_id="acct-alder-finch").order_by(
        "period_start"
    )
    first = alder.first()
    assert first.lines.filter(kind="commitment_fee", amount_minor=15000 * 83 * 100).exists()
    assert first.lines.filter(kind="commitment_drawdown").exists()
    assert first.commitment_balance_after_minor > 0

    sakura = Invoice.objects.filter(customer__external_id="acct-sakura-devices").first()
    assert sakura.currency == "JPY"
    assert sakura.lines.get(kind="flat_fee", period_start=sakura.period_start).amount_minor in (
        44900,
        52400,
    )


def test_corrections_and_the_held_invoice_are_in_the_demo(customers):
    seed(customers)

    partial = CreditNote.objects.get(memo=demo.PARTIAL_MEMO)
    line = partial.lines.get().invoice_line
    assert line.meter.code == "data_processed"
    assert partial.total_minor == line.amount_minor // 2 < partial.invoice.total_minor
    assert partial.issued_by == "finance@meterbook.local"

    full = CreditNote.objects.get(memo=demo.FULL_MEMO)
    assert full.total_minor == full.invoice.total_minor
    assert full.invoice.status == Invoice.Status.OPEN

    void = Invoice.objects.get(status=Invoice.Status.VOID)
    assert void.void_reason == demo.VOID_REASON
    voided = void.credit_notes.get()
    assert (voided.reason, voided.total_minor) == ("invoice_voided", void.total_minor)
    assert len({partial.customer_id, full.customer_id, void.customer_id}) == 3

    dispute = Dispute.objects.get()
    northwind = Customer.objects.get(external_id="acct-northwind-traders")
    latest = northwind.invoices.filter(status__in=Invoice.BILLED).order_by("-period_start").first()
    assert dispute.status == Dispute.Status.OPEN
    assert dispute.opened_by.email == "lukas.haddad@northwind-traders.example"
    assert dispute.invoice_line.invoice == latest
    assert dispute.invoice_line.kind == InvoiceLine.Kind.USAGE

    # The reconciliation gate holds one invoice: its real-time figure was nudged.
    held = Invoice.objects.get(status=Invoice.Status.HELD)
    assert held.number is None
    mismatched = [c for c in held.usage_checks.all() if not c.matches]
    assert [c.meter.code for c in mismatched] == ["api_call"]
    assert mismatched[0].realtime_quantity == mismatched[0].batch_quantity + demo.HELD_NUDGE_CALLS
    # It is that customer's latest closed period: nothing after it waits behind it.
    assert not Invoice.objects.filter(
        subscription=held.subscription, period_start__gt=held.period_start
    ).exists()


def test_seeding_again_creates_nothing(customers):
    seed(customers)
    first = snapshot()

    again, out = seed(customers)

    assert snapshot() == first
    assert not any(again.values()), again
    assert "nothing new" in out


def test_a_later_run_bills_only_the_periods_ended_since(customers):
    earlier = NOW - timedelta(days=40)
    seed(customers, now=earlier)
    before = snapshot()
    invoices = dict(Invoice.objects.values_list("pk", "total_minor"))

    later, _ = seed(customers, now=NOW)

    after = snapshot()
    assert later["subscriptions"] == later["plans"] == later["credit notes"] == 0
    assert after["Subscription"] == before["Subscription"]
    assert after["Invoice"] > before["Invoice"]
    assert after["held"] == 1  # the gate's demo is not repeated on newer periods
    # Nothing already billed changed.
    assert {
        pk: total
        for pk, total in Invoice.objects.values_list("pk", "total_minor")
        if pk in invoices
    } == invoices
    # Every subscription still has exactly one invoice per closed period.
    for subscription in Subscription.objects.all():
        starts = list(subscription.invoices.values_list("period_start", flat=True))
        assert len(starts) == len(set(starts))


def test_the_demo_runs_the_billing_seeder_after_the_usage_seeder():
    from billing_project.settings import base

    assert base.DEMO_SEEDERS[:2] == ["metering.demo.seed_usage", "invoicing.demo.seed_billing"]
