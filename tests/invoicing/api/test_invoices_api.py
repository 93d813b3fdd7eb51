"""/api/v1/invoices and credit notes: what customers may see, and finance's corrections."""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import AuditLog
from invoicing import services
from invoicing.models import CreditNote, Invoice
from metering.models import UsageRollup
from tests.accounts.api.support import assert_error
from tests.invoicing.factories import flat, ingest_usage, plan_version, subscribe
from tests.metering.factories import api_calls_meter

from . import CREDIT_NOTES, INVOICES, customer_client, forced_customer_client, operator

pytestmark = pytest.mark.django_db

SEP = datetime(2026, 9, 1, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
INGEST_NOW = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    # $50 flat; API calls graduated (1,000 free, then $0.10); 10% off.
    return plan_version(
        components=[
            flat("50.00"),
            {
                "kind": "usage",
                "meter": meter.code,
                "pricing_model": "graduated",
                "description": "API calls",
                "tiers": [
                    {"up_to": "1000", "unit_price": "0"},
                    {"up_to": None, "unit_price": "0.10"},
                ],
            },
            {"kind": "percent_discount", "percent": "10"},
        ]
    )


def _calls(start, count):
    return [start + timedelta(minutes=i) for i in range(count)]


@pytest.fixture
def september(customer_a, meter, growth):
    """A's September invoice, finalized: 50.00 + 300 x 0.10 = 80.00, less 10% = 72.00."""
    subscription = subscribe(customer_a, growth, at=SEP)
    ingest_usage(customer_a, meter, _calls(SEP, 1300), now=INGEST_NOW, prefix="sep")
    draft = services.period_close(subscription_id=subscription.pk, now=OCT)
    return services.invoice_finalize(actor=None, invoice=draft, now=OCT + timedelta(hours=2))


@pytest.fixture
def october(customer_a, meter, september):
    """A's October invoice, a draft (customers never see it)."""
    ingest_usage(customer_a, meter, _calls(OCT, 10), now=INGEST_NOW, prefix="oct")
    return services.period_close(subscription_id=september.subscription_id, now=NOV)


@pytest.fixture
def theirs(customer_b, growth):
    subscription = subscribe(customer_b, growth, at=SEP)
    draft = services.period_close(subscription_id=subscription.pk, now=OCT)
    return services.invoice_finalize(actor=None, invoice=draft, now=OCT + timedelta(hours=2))


def _line(invoice, kind):
    return invoice.lines.get(kind=kind)


# --- Reading ------------------------------------------------------------------------------


def test_an_invoice_reads_with_its_lines_tier_by_tier(customer_a, september):
    body = customer_client(customer_a).get(f"{INVOICES}/{september.pk}").json()

    assert body["number"] == september.number and body["status"] == "open"
    assert (body["customer"], body["currency"]) == ("alpha", "USD")
    assert (body["period_start"], body["period_end"]) == (
        "2026-09-01T00:00:00Z",
        "2026-10-01T00:00:00Z",
    )
    assert (body["subtotal_minor"], body["total_minor"], body["credited_minor"]) == (8000, 7200, 0)
    assert [(line["kind"], line["amount_minor"]) for line in body["lines"]] == [
        ("flat_fee", 5000),
        ("usage", 3000),
        ("discount", -800),
    ]
    usage = body["lines"][1]
    assert usage == {
        "position": usage["position"],
        "kind": "usage",
        "description": usage["description"],
        "meter": "api_call",
        "period_start": "2026-09-01T00:00:00Z",
        "period_end": "2026-10-01T00:00:00Z",
        "quantity": "1300",
        "included_units": "0",
        "unit_price": None,
        "amount_minor": 3000,
        "tiers": [
            {
                "tier": 1,
                "first_unit": "0",
                "up_to": "1000",
                "quantity": "1000",
                "unit_price": "0",
                "flat_fee": "0",
                "amount": usage["tiers"][0]["amount"],
            },
            {
                "tier": 2,
                "first_unit": "1000",
                "up_to": None,
                "quantity": "300",
                "unit_price": "0.10",
                "flat_fee": "0",
                "amount": usage["tiers"][1]["amount"],
            },
        ],
        "id": _line(september, "usage").pk,
        "credited_minor": 0,
    }
    # Customers never see the reconciliation evidence; operators do.
    assert "usage_checks" not in body
    checks = operator().get(f"{INVOICES}/{september.pk}").json()["usage_checks"]
    assert checks == [
        {
            "meter": "api_call",
            "period_start": "2026-09-01T00:00:00Z",
            "period_end": "2026-10-01T00:00:00Z",
            "batch_quantity": "1300",
            "realtime_quantity": "1300",
            "portal_quantity": "1300",
            "matches": True,
            "checked_at": checks[0]["checked_at"],
        }
    ]


def test_customers_never_see_drafts_or_held_invoices(customer_a, september, october):
    client = customer_client(customer_a)
    assert [i["id"] for i in client.get(INVOICES).json()["results"]] == [september.pk]
    assert_error(client.get(f"{INVOICES}/{october.pk}"), 404, "not_found")
    assert_error(client.get(f"{INVOICES}/{october.pk}/credit-notes"), 404, "not_found")
    assert client.get(INVOICES, {"status": "draft"}).json()["results"] == []

    Invoice.objects.filter(pk=october.pk).update(status="held")
    assert_error(client.get(f"{INVOICES}/{october.pk}"), 404, "not_found")
    body = operator().get(f"{INVOICES}/{october.pk}").json()
    assert (body["status"], body["number"]) == ("held", None)


def test_customers_never_see_another_customers_invoices(customer_a, september, theirs):
    client = customer_client(customer_a)
    assert [i["id"] for i in client.get(INVOICES).json()["results"]] == [september.pk]
    assert_error(client.get(f"{INVOICES}/{theirs.pk}"), 404, "not_found")
    assert_error(client.get(INVOICES, {"customer": "beta"}), 404, "not_found")


def test_operators_filter_by_customer_status_and_period(september, october, theirs):
    client = operator()

    def ids(**params):
        response = client.get(INVOICES, params)
        assert response.status_code == 200, response.content
        return [i["id"] for i in response.json()["results"]]

    assert set(ids()) == {september.pk, october.pk, theirs.pk}
    assert set(ids(customer="alpha")) == {september.pk, october.pk}
    assert ids(status="draft") == [october.pk]
    assert set(ids(start="2026-09-01T00:00:00Z", end="2026-10-01T00:00:00Z")) == {
        september.pk,
        theirs.pk,
    }
    assert ids(start="2026-10-01T00:00:00Z") == [october.pk]
    assert_error(client.get(INVOICES, {"status": "late"}), 400, "invalid_choice", field="status")
    assert_error(
        client.get(INVOICES, {"start": "2026-10-01T00:00:00Z", "end": "2026-09-01T00:00:00Z"}),
        400,
        "invalid_range",
        field="end",
    )
    assert_error(client.get(INVOICES, {"start": "yesterday"}), 400, "invalid", field="start")


# --- Finalize and void --------------------------------------------------------------------


def test_operator_finalizes_a_draft(customer_a, october):
    response = operator().post(f"{INVOICES}/{october.pk}/finalize", format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "open" and body["number"].startswith("INV-")
    assert body["finalized_at"] and body["due_at"]
    assert customer_client(customer_a).get(f"{INVOICES}/{october.pk}").status_code == 200
    again = operator().post(f"{INVOICES}/{october.pk}/finalize", {}, format="json")
    assert_error(again, 409, "invoice_finalized")


def test_a_held_invoice_does_not_finalize(customer_a, meter, september):
    ingest_usage(customer_a, meter, _calls(OCT, 20), now=INGEST_NOW, prefix="oct")
    rollup = UsageRollup.objects.filter(customer=customer_a, meter=meter, hour__gte=OCT).first()
    UsageRollup.objects.filter(pk=rollup.pk).update(event_count=rollup.event_count + 7)
    held = services.period_close(subscription_id=september.subscription_id, now=NOV)
    assert held.status == "held"

    response = operator().post(f"{INVOICES}/{held.pk}/finalize", format="json")

    assert_error(response, 409, "invoice_held")
    body = operator().get(f"{INVOICES}/{held.pk}").json()
    assert body["status"] == "held"
    assert [c["matches"] for c in body["usage_checks"]] == [False]
    assert_error(
        operator().post(f"{INVOICES}/{held.pk}/finalize", {"force": True}, format="json"),
        400,
        "unknown_field",
        field="force",
    )


def test_operator_voids_an_unpaid_invoice_with_a_matching_credit_note(september):
    url = f"{INVOICES}/{september.pk}/void"
    assert_error(operator().post(url, {}, format="json"), 400, "required", field="reason")

    response = operator().post(url, {"reason": "Sent twice"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["void_reason"], body["credited_minor"]) == (
        "void",
        "Sent twice",
        7200,
    )
    note = CreditNote.objects.get(invoice=september)
    assert (note.reason, note.total_minor) == ("invoice_voided", 7200)
    assert_error(
        operator().post(url, {"reason": "Again"}, format="json"), 409, "invoice_not_voidable"
    )


def test_only_operator_keys_finalize_void_and_credit(customer_a, september, october):
    client = customer_client(customer_a)
    forced = forced_customer_client(customer_a, ["invoices:write", "invoices:read"])
    for attempt, code in ((client, "insufficient_scope"), (forced, "operator_key_required")):
        assert_error(
            attempt.post(f"{INVOICES}/{september.pk}/void", {"reason": "x"}, format="json"),
            403,
            code,
        )
        assert_error(
            attempt.post(
                f"{INVOICES}/{september.pk}/credit-notes",
                {"reason": "goodwill", "memo": "x"},
                format="json",
            ),
            403,
            code,
        )
    # A draft is invisible to a customer key: 404 before any question of scope or kind.
    assert_error(forced.post(f"{INVOICES}/{october.pk}/finalize", format="json"), 404, "not_found")
    september.refresh_from_db()
    assert september.status == "open" and not CreditNote.objects.exists()


# --- Credit notes -------------------------------------------------------------------------


def test_a_partial_credit_note_by_line_then_the_rest(customer_a, september):
    url = f"{INVOICES}/{september.pk}/credit-notes"
    usage = _line(september, "usage")
    client = operator()

    response = client.post(
        url,
        {
            "reason": "billing_error",
            "memo": "Retried requests were counted",
            "lines": [{"line": usage.pk, "amount_minor": 1200}],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    note = response.json()
    assert note == {
        "id": note["id"],
        "number": note["number"],
        "invoice": september.pk,
        "invoice_number": september.number,
        "customer": "alpha",
        "currency": "USD",
        "reason": "billing_error",
        "memo": "Retried requests were counted",
        "total_minor": 1200,
        "issued_at": note["issued_at"],
        "lines": [
            {"invoice_line": usage.pk, "description": usage.description, "amount_minor": 1200}
        ],
    }
    assert note["number"].startswith("CN-")
    detail = client.get(f"{INVOICES}/{september.pk}").json()
    assert detail["credited_minor"] == 1200
    assert {line["kind"]: line["credited_minor"] for line in detail["lines"]}["usage"] == 1200

    # No lines: everything still creditable (7,200 - 1,200).
    rest = client.post(url, {"reason": "goodwill", "memo": "Sorry"}, format="json")
    assert rest.status_code == 201, rest.content
    assert rest.json()["total_minor"] == 6000
    again = client.post(url, {"reason": "goodwill", "memo": "More"}, format="json")
    assert_error(again, 409, "nothing_to_credit")

    # Customers read the credit notes of their invoices.
    mine = customer_client(customer_a)
    assert [n["total_minor"] for n in mine.get(url).json()["results"]] == [6000, 1200]
    assert [n["total_minor"] for n in mine.get(CREDIT_NOTES).json()["results"]] == [6000, 1200]
    assert AuditLog.objects.filter(action="credit_note.issued").count() == 2


def test_credit_note_bounds_are_400s_naming_the_lines(september):
    url = f"{INVOICES}/{september.pk}/credit-notes"
    flat_fee, usage = _line(september, "flat_fee"), _line(september, "usage")
    client = operator()

    def credit(*lines):
        body = {"reason": "billing_error", "memo": "Wrong", "lines": list(lines)}
        return client.post(url, body, format="json")

    over_line = credit({"line": usage.pk, "amount_minor": 3001})
    assert_error(over_line, 400, "credit_exceeds_line", field="lines")
    # Each line within its own charge, together past the invoice's 72.00 total.
    over_invoice = credit(
        {"line": flat_fee.pk, "amount_minor": 5000}, {"line": usage.pk, "amount_minor": 2500}
    )
    assert_error(over_invoice, 400, "credit_exceeds_invoice", field="lines")
    assert not CreditNote.objects.exists()


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"reason": "invoice_voided", "memo": "x"}, "invalid_choice", "reason"),
        ({"reason": "dispute_accepted", "memo": "x"}, "invalid_choice", "reason"),
        ({"reason": "goodwill", "memo": ""}, "blank", "memo"),
        ({"reason": "goodwill"}, "required", "memo"),
        ({"reason": "goodwill", "memo": "x", "lines": []}, "empty", "lines"),
        ({"reason": "goodwill", "memo": "x", "amount": 5}, "unknown_field", "amount"),
        (
            {"reason": "goodwill", "memo": "x", "lines": [{"line": 1, "amount_minor": 10.5}]},
            "invalid",
            "lines.0.amount_minor",
        ),
        (
            {"reason": "goodwill", "memo": "x", "lines": [{"line": 1, "amount_minor": "10"}]},
            "invalid",
            "lines.0.amount_minor",
        ),
        (
            {"reason": "goodwill", "memo": "x", "lines": [{"line": 1, "amount": 10}]},
            "unknown_field",
            "lines.0.amount",
        ),
        (
            {"reason": "goodwill", "memo": "x", "lines": [{"line": 999999, "amount_minor": 1}]},
            "invalid",
            "lines",
        ),
    ],
)
def test_bad_credit_notes_are_refused_by_name(september, body, code, field):
    response = operator().post(f"{INVOICES}/{september.pk}/credit-notes", body, format="json")
    assert_error(response, 400, code, field=field)
    assert not CreditNote.objects.exists()


def test_a_draft_cannot_be_credited(october):
    response = operator().post(
        f"{INVOICES}/{october.pk}/credit-notes", {"reason": "goodwill", "memo": "x"}, format="json"
    )
    assert_error(response, 409, "invoice_not_creditable")


def test_credit_notes_of_other_customers_stay_hidden(customer_a, customer_b, september, theirs):
    for invoice in (september, theirs):
        services.credit_note_issue(actor=None, invoice=invoice, reason="goodwill", memo="Sorry")
    client = customer_client(customer_a)

    assert [n["customer"] for n in client.get(CREDIT_NOTES).json()["results"]] == ["alpha"]
    assert_error(client.get(f"{INVOICES}/{theirs.pk}/credit-notes"), 404, "not_found")
    assert_error(client.get(CREDIT_NOTES, {"customer": "beta"}), 404, "not_found")
    every = operator().get(CREDIT_NOTES).json()["results"]
    assert {n["customer"] for n in every} == {"alpha", "beta"}
    only_b = operator().get(CREDIT_NOTES, {"customer": "beta"}).json()["results"]
    assert [n["invoice"] for n in only_b] == [theirs.pk]
