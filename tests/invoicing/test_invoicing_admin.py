"""Invoicing in the Django admin: finance acts through the services, support only looks."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts import services as account_services
from accounts.models import AuditLog
from invoicing import services
from invoicing.models import (
    CreditNote,
    Dispute,
    Invoice,
    Plan,
    PlanVersion,
    Subscription,
)
from metering.models import UsageRollup
from tests.accounts.factories import CustomerFactory, MembershipFactory, UserFactory
from tests.invoicing.factories import flat, ingest_usage, plan_version, subscribe
from tests.metering.factories import api_calls_meter

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
INGEST_NOW = datetime(2026, 11, 21, tzinfo=UTC)
MODELS = ["plan", "planversion", "subscription", "invoice", "creditnote", "dispute"]


def url(model, view="changelist", *args):
    return reverse(f"admin:invoicing_{model}_{view}", args=args)


def staff_client(client, group_name):
    account_services.staff_groups_sync()
    user = UserFactory(is_staff=True, email=f"{group_name}@vendor.example.com")
    user.groups.add(Group.objects.get(name=group_name))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def finance(client):
    return staff_client(client, "finance")


@pytest.fixture
def support(client):
    return staff_client(client, "support")


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def act(client, model, action, objects, **data):
    """Run an admin action on ``objects``; ``data`` answers its confirmation page."""
    post = {"action": action, "_selected_action": [o.pk for o in objects], **data}
    if data:
        post["apply"] = "1"
    return client.post(url(model), post)


def message_texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- The world under test ------------------------------------------------------------------


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    # $99 a month; API calls graduated: the first 100 free, then $0.02.
    return plan_version(
        components=[
            flat("99.00"),
            {
                "kind": "usage",
                "meter": meter.code,
                "pricing_model": "graduated",
                "description": "API calls",
                "tiers": [
                    {"up_to": "100", "unit_price": "0"},
                    {"up_to": None, "unit_price": "0.02"},
                ],
            },
        ]
    )


def october_calls(count):
    step = (NOV - OCT) / count
    return [OCT + step * i for i in range(count)]


def closed_period(customer, version, meter, *, calls=150, drift=0, prefix="e"):
    """A subscription from October with ``calls`` October calls, its period closed."""
    subscription = subscribe(customer, version, at=OCT)
    ingest_usage(customer, meter, october_calls(calls), now=INGEST_NOW, prefix=prefix)
    if drift:
        rollup = UsageRollup.objects.filter(customer=customer, meter=meter).first()
        UsageRollup.objects.filter(pk=rollup.pk).update(event_count=rollup.event_count + drift)
    return services.period_close(subscription_id=subscription.pk, now=NOV)


@pytest.fixture
def draft(customer_a, growth, meter):
    invoice = closed_period(customer_a, growth, meter)
    assert invoice.status == "draft"
    return invoice


@pytest.fixture
def held(customer_b, growth, meter):
    invoice = closed_period(customer_b, growth, meter, calls=120, drift=7, prefix="b")
    assert invoice.status == "held"
    return invoice


@pytest.fixture
def final(draft):
    # 150 calls: 50 x $0.02 = $1.00, plus $99: 10,000 cents.
    return services.invoice_finalize(actor=None, invoice=draft, now=NOV + timedelta(hours=2))


def lines(invoice):
    return {line.kind: line for line in invoice.lines.all()}


@pytest.fixture
def dispute(final, customer_a):
    person = MembershipFactory(customer=customer_a, role="finance").user
    return services.dispute_open(
        actor=person,
        invoice_line=lines(final)["usage"],
        message="We were down on Oct 12; these calls were retries.",
    )


# --- Pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_every_list_and_detail_renders_for_finance_staff(finance, final, held, dispute, model):
    services.credit_note_issue(
        actor=None, invoice=final, reason="goodwill", memo="Sorry", lines=None
    )
    objects = {
        "plan": Plan.objects.first(),
        "planversion": PlanVersion.objects.first(),
        "subscription": Subscription.objects.first(),
        "invoice": final,
        "creditnote": CreditNote.objects.first(),
        "dispute": dispute,
    }
    assert finance.get(url(model)).status_code == 200
    assert finance.get(url(model), {"q": "alpha"}).status_code == 200
    detail = finance.get(url(model, "change", objects[model].pk))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.text  # every detail page is read-only


def test_the_invoice_list_shows_money_status_and_stripe_state(finance, final, held):
    Invoice.objects.filter(pk=final.pk).update(stripe_last_error="card_declined: do not honor")
    html = finance.get(url("invoice")).text
    assert final.number in html and "100.00 USD" in html
    assert "card_declined: do not honor" in html
    assert f"Draft #{held.pk}" in html and "Held for review (1)" in html


def test_the_invoice_list_filters_by_status_period_and_searches_number_and_customer(
    finance, final, held
):
    def shown(**params):
        html = finance.get(url("invoice"), params).text
        return {label for label in (final.number, f"Draft #{held.pk}") if label in html}

    assert shown(status__exact="held") == {f"Draft #{held.pk}"}
    assert shown(status__exact="open") == {final.number}
    assert shown(q=final.number) == {final.number}
    assert shown(q="beta") == {f"Draft #{held.pk}"}
    assert shown(period_start__year=2026, period_start__month=10) == {
        final.number,
        f"Draft #{held.pk}",
    }
    assert shown(period_start__year=2026, period_start__month=9) == set()
    assert shown(stripe="error") == set()


def test_the_invoice_list_runs_the_same_queries_for_many_invoices(
    finance, growth, meter, django_assert_max_num_queries
):
    def count_queries():
        with CaptureQueriesContext(connection) as captured:
            assert finance.get(url("invoice")).status_code == 200
        return len(captured)

    for i in range(2):
        closed_period(CustomerFactory(), growth, meter, calls=10, prefix=f"c{i}")
    few = count_queries()
    for i in range(2, 12):
        closed_period(CustomerFactory(), growth, meter, calls=10, prefix=f"c{i}")
    assert Invoice.objects.count() == 12
    with django_assert_max_num_queries(few):
        assert finance.get(url("invoice")).status_code == 200
    assert few <= 12


def test_the_invoice_detail_explains_tiers_and_highlights_mismatches(finance, held):
    html = finance.get(url("invoice", "change", held.pk)).text
    # 120 calls graduated: 100 free, 20 at $0.02.
    assert "Tier 1: units 0&ndash;100: 100 &times; 0 = 0" in html
    assert "Tier 2: units 100&ndash;∞: 20 &times; 0.02 = 0.4" in html
    assert "✗ mismatch" in html and '<strong class="mb-mismatch">127</strong>' in html
    assert "99.40 USD" in html


def test_the_held_page_lists_held_invoices_with_their_discrepancies(finance, held, draft):
    html = finance.get(reverse("admin:invoicing_invoice_held")).text
    assert f"Draft #{held.pk}" in html and f"Draft #{draft.pk}" not in html
    assert "mb-mismatch-row" in html and "<td>120</td>" in html  # batch, billed
    assert 'class="mb-mismatch">127</td>' in html  # real-time, highlighted
    assert "Review and release" in html


# --- Invoice actions ------------------------------------------------------------------------


def test_finalize_numbers_the_draft(finance, draft):
    response = act(finance, "invoice", "finalize", [draft])

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "open" and draft.number.startswith("INV-")
    assert f"Finalized: {draft.number}." in message_texts(response)


def test_release_shows_the_discrepancies_then_requires_a_note(finance, held):
    confirm = act(finance, "invoice", "release", [held])
    assert confirm.status_code == 200
    assert "127" in confirm.text and "✗ mismatch" in confirm.text
    assert 'name="note"' in confirm.text

    no_note = act(finance, "invoice", "release", [held], note="  ")
    assert no_note.status_code == 200 and "This field is required" in no_note.text
    assert Invoice.objects.get(pk=held.pk).status == "held"

    done = act(finance, "invoice", "release", [held], note="Rollup drift; batch is right")
    assert done.status_code == 302
    held.refresh_from_db()
    assert (held.status, held.released_by) == ("draft", finance.user)
    entry = AuditLog.objects.get(action="invoice.released", object_id=str(held.pk))
    assert entry.after["note"] == "Rollup drift; batch is right"


def test_a_held_invoice_cannot_be_finalized_and_says_why(finance, held):
    response = act(finance, "invoice", "finalize", [held])
    assert response.status_code == 302
    assert Invoice.objects.get(pk=held.pk).status == "held"
    assert any("None of the selected items is a draft" in m for m in message_texts(response))


def test_void_states_the_credit_note_then_voids_with_it(finance, final):
    confirm = act(finance, "invoice", "void", [final])
    assert "matching credit" in confirm.text and "100.00 USD" in confirm.text

    response = act(finance, "invoice", "void", [final], reason="Sent to the wrong entity")

    assert response.status_code == 302
    final.refresh_from_db()
    assert final.status == "void"
    note = CreditNote.objects.get(invoice=final)
    assert (note.reason, note.total_minor) == ("invoice_voided", 10000)
    assert "Sent to the wrong entity" in note.memo


def test_void_needs_a_reason(finance, final):
    response = act(finance, "invoice", "void", [final], reason="")
    assert response.status_code == 200 and "This field is required" in response.text
    assert Invoice.objects.get(pk=final.pk).status == "open"


def test_a_full_credit_note(finance, final):
    response = act(
        finance,
        "invoice",
        "issue_credit_note",
        [final],
        scope="full",
        reason="goodwill",
        memo="Outage in October",
    )

    assert response.status_code == 302
    note = CreditNote.objects.get(invoice=final)
    assert (note.total_minor, note.reason, note.memo) == (10000, "goodwill", "Outage in October")
    assert f"Credit note {note.number} issued on {final.number}: 100.00 USD." in (
        message_texts(response)
    )


def test_a_partial_credit_note_per_line_and_its_bound_as_a_message(finance, final):
    usage = lines(final)["usage"]
    form = act(finance, "invoice", "issue_credit_note", [final])
    assert form.status_code == 200 and f'name="line_{usage.pk}"' in form.text
    assert "left to credit 1.00 USD" in form.text

    partial = act(
        finance,
        "invoice",
        "issue_credit_note",
        [final],
        scope="lines",
        reason="billing_error",
        memo="Retries counted",
        **{f"line_{usage.pk}": "60"},
    )
    assert partial.status_code == 302
    assert CreditNote.objects.get(invoice=final).total_minor == 60

    too_much = act(
        finance,
        "invoice",
        "issue_credit_note",
        [final],
        scope="lines",
        reason="billing_error",
        memo="Again",
        **{f"line_{usage.pk}": "41"},
    )
    assert too_much.status_code == 200  # the form again, with the service's refusal
    assert "has 40 minor units left to credit; 41 asked" in too_much.text
    assert any("41 asked" in m for m in message_texts(too_much))  # as an error message
    assert CreditNote.objects.filter(invoice=final).count() == 1


def test_the_credit_note_form_needs_amounts_for_a_per_line_credit(finance, final):
    response = act(
        finance,
        "invoice",
        "issue_credit_note",
        [final],
        scope="lines",
        reason="goodwill",
        memo="x",
    )
    assert response.status_code == 200 and "Give an amount for at least one line" in response.text
    assert not CreditNote.objects.exists()


def test_a_button_on_the_detail_page_runs_the_action_and_comes_back(finance, final):
    detail_url = url("invoice", "change", final.pk)
    detail = finance.get(detail_url).text
    assert 'value="void"' in detail and 'value="issue_credit_note"' in detail
    assert 'value="finalize"' not in detail and 'value="resync_stripe"' in detail

    response = finance.post(
        url("invoice"),
        {
            "action": "void",
            "_selected_action": [final.pk],
            "_return_to": detail_url,
            "apply": "1",
            "reason": "Duplicate of another invoice",
        },
    )

    assert response.status_code == 302 and response["Location"] == detail_url
    assert Invoice.objects.get(pk=final.pk).status == "void"


def test_resync_to_stripe_enqueues_the_sync_task_for_finalized_invoices(
    finance, final, held, monkeypatch
):
    from invoicing import tasks

    queued = []
    monkeypatch.setattr(tasks.invoice_stripe_sync, "delay", queued.append)

    response = act(finance, "invoice", "resync_stripe", [final, held])

    assert response.status_code == 302 and queued == [final.pk]
    texts = message_texts(response)
    assert f"Stripe sync queued: {final.number}." in texts
    assert any("Not finalized, left out" in m for m in texts)


def test_resync_to_stripe_enqueues_credit_notes_not_in_stripe_yet(finance, final, monkeypatch):
    from invoicing import tasks

    fee = lines(final)["flat_fee"]
    pushed, refused = (
        services.credit_note_issue(
            actor=None,
            invoice=final,
            reason="goodwill",
            memo=memo,
            lines=[services.CreditRequest(fee.pk, 100)],
        )
        for memo in ("pushed", "refused by Stripe")
    )
    CreditNote.objects.filter(pk=pushed.pk).update(stripe_credit_note_id="cn_1")
    CreditNote.objects.filter(pk=refused.pk).update(
        stripe_last_error="StripeRejected (stripe_rejected): invoice is uncollectible"
    )
    queued = []
    monkeypatch.setattr(tasks.credit_note_stripe_sync, "delay", queued.append)

    page = finance.get(url("creditnote", "change", refused.pk)).text
    assert "invoice is uncollectible" in page
    response = act(finance, "creditnote", "resync_stripe", [pushed, refused])

    assert response.status_code == 302 and queued == [refused.pk]
    assert f"Stripe sync queued: {refused.number}." in message_texts(response)


# --- Disputes -----------------------------------------------------------------------------


def test_the_dispute_page_shows_the_message_the_line_and_its_events(finance, dispute):
    html = finance.get(url("dispute", "change", dispute.pk)).text
    assert "these calls were retries" in html
    assert "API calls" in html and "1.00 USD for 150 units" in html
    events_url = reverse("admin:metering_usageevent_changelist")
    link = f'href="{events_url}?customer__id__exact={dispute.customer_id}'
    assert link in html
    query = html.split(link, 1)[1].split('"', 1)[0].replace("&amp;", "&")
    events = finance.get(f"{events_url}?customer__id__exact={dispute.customer_id}{query}")
    assert events.status_code == 200
    assert "e-149" in events.text  # the period's latest event, newest first


def test_open_disputes_are_listed_first(finance, dispute, final, customer_a):
    services.dispute_reject(actor=None, dispute=dispute, resolution="Calls were real")
    person = MembershipFactory(customer=customer_a, role="finance").user
    newer_open = services.dispute_open(
        actor=person, invoice_line=lines(final)["flat_fee"], message="Why a fee?"
    )
    Dispute.objects.filter(pk=newer_open.pk).update(created_at=OCT)  # older, yet open
    html = finance.get(url("dispute")).text
    assert html.index(url("dispute", "change", newer_open.pk)) < html.index(
        url("dispute", "change", dispute.pk)
    )


def test_accepting_a_dispute_credits_the_line(finance, dispute, final):
    confirm = act(finance, "dispute", "accept", [dispute])
    assert "these calls were retries" in confirm.text

    response = act(
        finance, "dispute", "accept", [dispute], amount_minor="30", resolution="Retries refunded"
    )

    assert response.status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolution) == ("accepted", "Retries refunded")
    assert (dispute.credit_note.total_minor, dispute.credit_note.reason) == (30, "dispute_accepted")
    assert dispute.resolved_by == finance.user.email


def test_accepting_more_than_the_line_is_an_error_message_not_a_crash(finance, dispute):
    response = act(
        finance, "dispute", "accept", [dispute], amount_minor="101", resolution="All of it"
    )
    assert response.status_code == 302
    assert any("left to credit; 101 asked" in m for m in message_texts(response))
    assert Dispute.objects.get(pk=dispute.pk).status == "open"


def test_rejecting_a_dispute_needs_a_resolution_and_stores_it(finance, dispute):
    empty = act(finance, "dispute", "reject", [dispute], resolution="")
    assert empty.status_code == 200 and "This field is required" in empty.text

    response = act(
        finance, "dispute", "reject", [dispute], resolution="Each call was a distinct request."
    )

    assert response.status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolution) == ("rejected", "Each call was a distinct request.")
    assert not CreditNote.objects.exists()


# --- Catalog and subscriptions ------------------------------------------------------------


def test_a_plan_and_its_first_version_are_created_through_the_services(finance, meter):
    response = finance.post(
        url("plan", "add"),
        {"code": "scale", "name": "Scale", "currency": "EUR", "description": ""},
    )
    plan = Plan.objects.get(code="scale")
    assert response.status_code == 302 and f"?plan={plan.pk}" in response["Location"]
    assert AuditLog.objects.filter(action="plan.created", object_id=str(plan.pk)).exists()

    form = finance.get(response["Location"])
    assert form.status_code == 200 and f'<option value="{plan.pk}" selected>' in form.text

    unknown = finance.post(
        url("planversion", "add"),
        {
            "plan": plan.pk,
            "interval": "month",
            "components": '[{"kind": "usage", "meter": "nope", "pricing_model": "per_unit",'
            ' "unit_price": "0.01"}]',
        },
    )
    assert unknown.status_code == 200 and "No meter has code" in unknown.text
    assert not plan.versions.exists()

    published = finance.post(
        url("planversion", "add"),
        {
            "plan": plan.pk,
            "interval": "month",
            "components": '[{"kind": "flat_fee", "amount": "49.00"}, {"kind": "usage", '
            f'"meter": "{meter.code}", "pricing_model": "per_unit", "unit_price": "0.01"}}]',
            "notes": "Launch prices",
        },
    )
    version = plan.versions.get()
    assert published.status_code == 302
    assert (version.version, version.components.count()) == (1, 2)
    detail = finance.get(url("planversion", "change", version.pk)).text
    assert "Launch prices" in detail and "0.01" in detail


def test_a_duplicate_plan_code_is_a_form_error(finance, growth):
    response = finance.post(
        url("plan", "add"), {"code": "growth", "name": "Again", "currency": "USD"}
    )
    assert response.status_code == 200 and "already exists" in response.text
    assert Plan.objects.count() == 1


def test_subscriptions_cancel_at_period_end_or_now(finance, customer_a, customer_b, growth):
    now = datetime.now(UTC)
    later = subscribe(customer_a, growth, at=now - timedelta(days=3))
    at_once = subscribe(customer_b, growth, at=now - timedelta(days=3))
    assert finance.get(url("subscription"), {"q": "alpha"}).status_code == 200

    confirm = act(finance, "subscription", "cancel_now", [at_once])
    assert confirm.status_code == 200 and "cut short" in confirm.text

    act(finance, "subscription", "cancel_at_period_end", [later], apply="1")
    act(finance, "subscription", "cancel_now", [at_once], apply="1")

    later.refresh_from_db()
    at_once.refresh_from_db()
    assert later.status == "active" and later.ends_at > now + timedelta(days=20)
    assert at_once.status == "canceled" and at_once.ends_at <= datetime.now(UTC)


# --- Who may do what ----------------------------------------------------------------------


def test_support_sees_everything_and_can_run_no_action(
    support, final, held, dispute, growth, meter
):
    draft = closed_period(CustomerFactory(), growth, meter, calls=10, prefix="s")
    for model in MODELS:
        assert support.get(url(model)).status_code == 200
    html = support.get(url("invoice")).text
    assert 'name="action"' not in html

    act(support, "invoice", "finalize", [draft])
    act(support, "invoice", "release", [held], note="looks fine")
    act(support, "invoice", "void", [final], reason="no")
    act(support, "dispute", "reject", [dispute], resolution="no")
    assert Invoice.objects.get(pk=draft.pk).status == "draft"
    assert Invoice.objects.get(pk=held.pk).status == "held"
    assert Invoice.objects.get(pk=final.pk).status == "open"
    assert Dispute.objects.get(pk=dispute.pk).status == "open"

    assert 'value="finalize"' not in support.get(url("invoice", "change", draft.pk)).text
    assert 'value="reject"' not in support.get(url("dispute", "change", dispute.pk)).text
    assert "Review and release" not in support.get(reverse("admin:invoicing_invoice_held")).text
    assert support.get(url("plan", "add")).status_code == 403
    assert support.get(url("planversion", "add")).status_code == 403


def test_a_finalized_invoice_has_no_editable_field_and_no_delete(superuser_client, final):
    change = url("invoice", "change", final.pk)
    html = superuser_client.get(change).text
    assert 'name="status"' not in html and 'name="total_minor"' not in html
    assert 'name="_save"' not in html and "deletelink" not in html
    assert superuser_client.post(change, {"status": "paid"}).status_code == 403
    assert superuser_client.get(url("invoice", "delete", final.pk)).status_code == 403
    assert superuser_client.get(url("invoice", "add")).status_code == 403
    assert "delete_selected" not in superuser_client.get(url("invoice")).text
    final.refresh_from_db()
    assert final.status == "open"


def test_the_groups_hold_the_invoicing_permissions():
    account_services.staff_groups_sync()
    finance = set(Group.objects.get(name="finance").permissions.values_list("codename", flat=True))
    support = set(Group.objects.get(name="support").permissions.values_list("codename", flat=True))
    assert {"change_invoice", "change_dispute", "change_subscription", "add_plan"} <= finance
    assert {"view_invoice", "view_dispute", "view_creditnote"} <= support
    invoicing = {c for c in support if c.split("_", 1)[1] in {"invoice", "dispute", "plan"}}
    assert all(c.startswith("view_") for c in invoicing)
