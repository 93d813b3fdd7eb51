"""The invoicing API in the OpenAPI schema, and lists that cost the same for 1 row or 20."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from invoicing import services
from tests.accounts.api.support import api
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

from . import CREDIT_NOTES, INVOICES, PLANS, SUBSCRIPTIONS, operator

pytestmark = pytest.mark.django_db

SEP = datetime(2026, 9, 1, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)


def test_the_schema_documents_every_invoicing_endpoint():
    response = api().get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200, response.content
    schema = json.loads(response.content)
    paths = schema["paths"]
    assert {
        "/api/v1/plans": {"get", "post"},
        "/api/v1/plans/{code}": {"get"},
        "/api/v1/plans/{code}/versions": {"get", "post"},
        "/api/v1/subscriptions": {"get", "post"},
        "/api/v1/subscriptions/{subscription_id}": {"get"},
        "/api/v1/subscriptions/{subscription_id}/change-plan": {"post"},
        "/api/v1/subscriptions/{subscription_id}/cancel": {"post"},
        "/api/v1/invoices": {"get"},
        "/api/v1/invoices/{invoice_id}": {"get"},
        "/api/v1/invoices/{invoice_id}/credit-notes": {"get", "post"},
        "/api/v1/invoices/{invoice_id}/finalize": {"post"},
        "/api/v1/invoices/{invoice_id}/void": {"post"},
        "/api/v1/credit-notes": {"get"},
        "/api/v1/customers/{external_id}/upcoming-invoice": {"get"},
    } == {path: set(paths[path]) for path in paths if not _older(path)}
    credit = paths["/api/v1/invoices/{invoice_id}/credit-notes"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409"} <= set(credit)
    components = schema["components"]["schemas"]
    assert "usage_checks" in components["InvoiceDetailOutput"]["properties"]
    assert components["InvoiceStatus"]["enum"] == [
        "draft",
        "held",
        "open",
        "paid",
        "payment_failed",
        "uncollectible",
        "void",
    ]


def _older(path: str) -> bool:
    """Another app's endpoint (accounts, metering, alerts)."""
    older = (
        "/api/v1/contacts",
        "/api/v1/me",
        "/api/v1/events",
        "/api/v1/meters",
        "/api/v1/usage",
        "/api/v1/authorize",
        "/api/v1/caps",
        "/api/v1/forecast",
        "/api/v1/alerts",
        "/api/v1/webhook-endpoints",
        "/api/v1/alert-rules",
        "/api/v1/plan-cap-defaults",
    )
    return path.startswith(older) or path in (
        "/api/v1/customers",
        "/api/v1/customers/{external_id}",
    )


def test_the_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/customers/{external_id}/upcoming-invoice" in out.read_text()


def _customers_billed(count: int, version) -> None:
    for _ in range(count):
        subscription = subscribe(CustomerFactory(), version, at=SEP)
        draft = services.period_close(subscription_id=subscription.pk, now=OCT)
        invoice = services.invoice_finalize(actor=None, invoice=draft, now=OCT + timedelta(hours=2))
        services.credit_note_issue(actor=None, invoice=invoice, reason="goodwill", memo="Sorry")
        plan_version(code=f"plan-{subscription.pk}", components=[flat("1"), flat("2")])


@pytest.mark.parametrize("url", [PLANS, SUBSCRIPTIONS, INVOICES, CREDIT_NOTES])
def test_a_list_costs_the_same_for_one_row_or_many(
    django_assert_max_num_queries, django_assert_num_queries, url
):
    version = plan_version(components=[flat("99"), per_unit(api_calls_meter(), "0.01")])
    client = operator()
    _customers_billed(1, version)
    client.get(url)  # the key's first use writes last_used_at
    with django_assert_max_num_queries(100) as one:
        assert client.get(url).status_code == 200
    _customers_billed(5, version)
    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(url)
    assert len(response.json()["results"]) >= 6
