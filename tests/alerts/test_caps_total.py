"""A hard cap on total spend: the period's usage charges across every priced meter, held
to a money limit by authorization and by ingestion."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.errors import InvalidInput
from alerts import services
from alerts.models import Cap, CapReservation, CapWindow
from alerts.services import rules as rule_services
from invoicing.rating import usage_amount
from invoicing.selectors import meter_price
from metering.ingest import events_ingest
from metering.selectors import usage_total
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import CustomerFactory
from tests.accounts.portal.helpers import HTMX, signed_in
from tests.concurrency import in_threads
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import MeterFactory, api_calls_meter, data_meter, event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
TS = "2026-11-20T10:15:00Z"
D = Decimal


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def data(db):
    return data_meter()


def subscribe_priced(customer, calls, data):
    # 0.01 USD a call, 0.50 USD a GB; the platform fee is not usage and never counts.
    version = plan_version(components=[flat("99"), per_unit(calls, "0.01"), per_unit(data, "0.5")])
    subscribe(customer, version, at=NOV)
    return customer


@pytest.fixture
def subscribed(customer_a, calls, data):
    return subscribe_priced(customer_a, calls, data)


def call_events(customer, prefix, count):
    return [event(customer, f"{prefix}-{i}", ts=TS) for i in range(count)]


def data_event(customer, key, gb):
    return event(customer, key, name="data_processed", ts=TS, gb=gb)


def ingest(events):
    return events_ingest(events=events, now=NOW)


def statuses(result):
    return [(r.status, r.code) for r in result.results]


def spend(customer, *meters):
    """The period's usage charges as invoicing rates them."""
    return sum(
        usage_amount(
            meter_price(customer=customer, meter=m).price,
            usage_total(customer=customer, meter=m, start=NOV, end=DEC),
        )
        for m in meters
    )


def total_window():
    return CapWindow.objects.get(cap__meter__isnull=True)


def test_a_total_cap_opens_its_window_with_the_spend_so_far(subscribed, calls, data):
    assert ingest([*call_events(subscribed, "a", 30), data_event(subscribed, "d", "0.4")]).accepted
    cap = services.cap_set(actor=None, customer=subscribed, meter=None, limit="10", measure="money")
    assert (cap.meter, cap.measure) == (None, "money")
    assert str(cap) == "Alpha Analytics (alpha): total spend capped at 10"

    answer = services.authorize(customer=subscribed, meter=calls, quantity="10", now=NOW)

    # 30 calls (0.30) and 0.4 GB (0.20) so far; the 10 calls reserve 0.10 more.
    assert (answer.allowed, answer.remaining, answer.spend_remaining) == (True, None, D("9.4"))
    assert answer.reservation is None and answer.spend_reservation.quantity == D("0.1")
    window = total_window()
    assert (window.limit, window.used, window.reserved) == (10, D("0.5"), D("0.1"))
    assert (window.period_start, window.period_end) == (NOV, DEC)


def test_a_batch_past_the_total_cap_is_refused_in_order(subscribed, calls, data):
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="0.1", measure="money")
    batch = [
        *call_events(subscribed, "a", 5),  # 0.05
        data_event(subscribed, "d1", "0.04"),  # 0.02 -> 0.07
        data_event(subscribed, "d2", "0.1"),  # 0.05 -> 0.12: past the cap
        *call_events(subscribed, "b", 3),  # 0.08, 0.09, 0.10: exactly the cap
        *call_events(subscribed, "c", 1),  # 0.11: past it
    ]

    result = ingest(batch)

    refused = ("rejected", "cap_exceeded")
    assert statuses(result) == [("accepted", None)] * 6 + [refused] + [("accepted", None)] * 3 + [
        refused
    ]
    assert "total spend cap of 0.1 USD" in result.results[-1].message
    assert total_window().used == D("0.1")
    assert spend(subscribed, calls, data) == D("0.1")
    # The cap stays shut for the rest of the period.
    assert statuses(ingest(call_events(subscribed, "later", 1))) == [refused]


def test_a_flagging_total_cap_accepts_and_flags_what_is_past_it(subscribed, calls, data):
    services.cap_set(
        actor=None,
        customer=subscribed,
        meter=None,
        limit="0.05",
        measure="money",
        on_exceed="flag",
    )

    result = ingest([*call_events(subscribed, "a", 4), data_event(subscribed, "d", "0.1")])

    assert statuses(result) == [("accepted", None)] * 4 + [("accepted", "cap_exceeded")]
    assert total_window().used == D("0.09")
    assert spend(subscribed, calls, data) == D("0.09")


def test_usage_of_unpriced_meters_costs_the_total_cap_nothing(subscribed):
    MeterFactory(code="exports")
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="0", measure="money")

    result = ingest(
        [event(subscribed, f"x-{i}", name="exports", ts=TS) for i in range(3)]
        + call_events(subscribed, "a", 1)
    )

    assert statuses(result) == [("accepted", None)] * 3 + [("rejected", "cap_exceeded")]
    assert total_window().used == 0


def test_included_units_cost_nothing_until_they_run_out(customer_a, calls):
    version = plan_version(code="starter", components=[per_unit(calls, "0.01", included="3")])
    subscribe(customer_a, version, at=NOV)
    services.cap_set(actor=None, customer=customer_a, meter=None, limit="0.02", measure="money")

    result = ingest(call_events(customer_a, "a", 6))

    assert [r.status for r in result.results] == ["accepted"] * 5 + ["rejected"]
    assert total_window().used == D("0.02")


def test_an_event_a_meter_cap_refuses_costs_the_total_cap_nothing(subscribed, calls, data):
    services.cap_set(actor=None, customer=subscribed, meter=calls, limit="3")
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="0.05", measure="money")

    # 3 calls fit the meter cap (0.03); the 2 it refuses would otherwise leave no room for
    # the 4 data events at 0.005 each, which bring the spend to exactly 0.05.
    result = ingest(
        [*call_events(subscribed, "a", 5)]
        + [data_event(subscribed, f"d-{i}", "0.01") for i in range(4)]
    )

    assert statuses(result) == (
        [("accepted", None)] * 3 + [("rejected", "cap_exceeded")] * 2 + [("accepted", None)] * 4
    )
    assert "api_call cap of 3 calls" in result.results[3].message
    assert total_window().used == D("0.05")
    assert CapWindow.objects.get(cap__meter=calls).used == 3
    assert spend(subscribed, calls, data) == D("0.05")


def test_authorize_holds_to_both_caps_and_ingestion_consumes_the_reservations(
    subscribed, calls, data
):
    services.cap_set(actor=None, customer=subscribed, meter=calls, limit="8")
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="0.1", measure="money")

    first = services.authorize(customer=subscribed, meter=calls, quantity="5", now=NOW)
    assert (first.allowed, first.remaining, first.spend_remaining) == (True, 3, D("0.05"))
    assert first.reservation.quantity == 5 and first.spend_reservation.quantity == D("0.05")

    # 0.2 GB costs 0.10: the total cap refuses (the data meter has no cap of its own).
    too_dear = services.authorize(customer=subscribed, meter=data, quantity="0.2", now=NOW)
    assert (too_dear.allowed, too_dear.remaining, too_dear.spend_remaining) == (
        False,
        None,
        D("0.05"),
    )
    # 4 calls: the meter cap refuses, and nothing is reserved in either window.
    too_many = services.authorize(customer=subscribed, meter=calls, quantity="4", now=NOW)
    assert (too_many.allowed, too_many.remaining) == (False, 3)
    assert services.authorize(customer=subscribed, meter=data, quantity="0.1", now=NOW).allowed

    # The meter cap has room for 1 call, the total cap none: neither window reserves it.
    one_more = services.authorize(customer=subscribed, meter=calls, quantity="1", now=NOW)
    assert (one_more.allowed, one_more.remaining, one_more.spend_remaining) == (False, 3, 0)
    meter_window = CapWindow.objects.get(cap__meter=calls)
    assert (meter_window.reserved, total_window().reserved) == (5, D("0.1"))
    assert CapReservation.objects.count() == 3

    result = ingest([*call_events(subscribed, "a", 5), data_event(subscribed, "d", "0.1")])

    assert result.accepted == 6
    meter_window.refresh_from_db()
    window = total_window()
    assert (meter_window.used, meter_window.reserved) == (5, 0)
    assert (window.used, window.reserved) == (D("0.1"), 0)
    assert not CapReservation.objects.filter(released_at__isnull=True).exists()
    assert statuses(ingest(call_events(subscribed, "b", 1))) == [("rejected", "cap_exceeded")]


def test_usage_beyond_the_reserved_spend_is_held_to_what_is_left(subscribed, calls):
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="0.1", measure="money")
    assert services.authorize(customer=subscribed, meter=calls, quantity="6", now=NOW).allowed

    # 6 reserved calls plus the 4 the cap leaves: 10 of 12.
    result = ingest(call_events(subscribed, "a", 12))

    assert [r.status for r in result.results] == ["accepted"] * 10 + ["rejected"] * 2
    window = total_window()
    assert (window.used, window.reserved) == (D("0.1"), 0)


@pytest.mark.django_db(transaction=True)
def test_16_concurrent_batches_never_spend_more_than_the_total_cap():
    customer = subscribe_priced(CustomerFactory(), api_calls_meter(), data_meter())
    services.cap_set(actor=None, customer=customer, meter=None, limit="1", measure="money")

    def batch(i):
        # 5 calls and 5 data events of 0.02 GB: 0.01 USD each, 0.10 a batch.
        return ingest(
            call_events(customer, f"t{i}", 5)
            + [data_event(customer, f"t{i}-d{j}", "0.02") for j in range(5)]
        )

    results = in_threads(16, batch)

    assert sum(r.accepted for r in results) == 100
    assert sum(r.rejected for r in results) == 60
    assert total_window().used == 1
    assert spend(customer, api_calls_meter(), data_meter()) == 1


def test_a_total_cap_is_money_and_needs_priced_usage(customer_a, customer_b, calls, data):
    with pytest.raises(InvalidInput) as refused:
        services.cap_set(actor=None, customer=customer_a, meter=None, limit="10")
    assert (refused.value.code, refused.value.field) == ("total_cap_is_money", "measure")
    with pytest.raises(InvalidInput) as refused:
        services.cap_set(actor=None, customer=customer_a, meter=None, limit="10", measure="money")
    assert (refused.value.code, refused.value.field) == ("nothing_priced", "meter")
    # A plan with only a platform fee prices no usage either.
    subscribe(customer_b, plan_version(code="flat", components=[flat("49")]), at=NOV)
    with pytest.raises(InvalidInput) as refused:
        services.cap_set(actor=None, customer=customer_b, meter=None, limit="10", measure="money")
    assert refused.value.code == "nothing_priced"
    assert not Cap.objects.exists()


def test_a_total_cap_is_one_per_customer_changed_and_removed(subscribed, calls):
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="1", measure="money")
    services.authorize(customer=subscribed, meter=calls, quantity="1", now=NOW)
    cap = services.cap_set(
        actor=None, customer=subscribed, meter=None, limit="2", measure="money", on_exceed="flag"
    )
    assert Cap.objects.get() == cap and (cap.limit, cap.on_exceed) == (2, "flag")
    assert total_window().limit == 2  # the open window takes the new limit at once
    assert services.cap_describe(cap) == "2 USD of usage spend"

    services.cap_remove(actor=None, cap=cap)
    assert not Cap.objects.exists() and not CapWindow.objects.exists()
    assert services.authorize(customer=subscribed, meter=calls, quantity="1000", now=NOW).allowed


CAPS = "/api/v1/caps"


def test_the_api_sets_and_lists_a_total_cap_with_a_null_meter(subscribed, calls, customer_a_token):
    client = api(customer_a_token)
    created = client.post(CAPS, {"meter": None, "limit": "250"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["meter"], body["measure"], body["limit"]) == (None, "money", "250")
    assert client.get(CAPS).json()["results"] == [body]
    # Left out, the meter is the total too (the same cap, changed); a PATCH keeps it money.
    again = client.post(CAPS, {"limit": "300"}, format="json")
    assert (again.status_code, again.json()["id"]) == (201, body["id"])
    changed = client.patch(f"{CAPS}/{body['id']}", {"on_exceed": "flag"}, format="json")
    assert changed.json()["measure"] == "money" and changed.json()["on_exceed"] == "flag"
    assert_error(
        client.post(CAPS, {"limit": "5", "measure": "units"}, format="json"),
        400,
        "total_cap_is_money",
        field="measure",
    )


def test_the_authorize_api_answers_the_spend_left(subscribed, operator_token):
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="1", measure="money")
    response = api(operator_token).post(
        "/api/v1/authorize",
        {"customer": "alpha", "meter": "api_call", "quantity": "30"},
        format="json",
    )
    body = response.json()
    assert (body["allowed"], body["remaining"], body["spend_remaining"]) == (True, None, "0.7")
    assert body["spend_reservation"]["quantity"] == "0.3"


def test_the_portal_form_sets_a_total_cap_and_the_page_shows_its_spend(
    client, owner_a, subscribed, calls
):
    owner = signed_in(client, owner_a)
    assert ingest(call_events(subscribed, "a", 30)).accepted == 30
    form = owner.get(reverse("alerts:guardrails")).content.decode()
    assert '<option value="">Total spend (all usage)</option>' in form

    # The "Cap on" choice is left on units: a total spend cap is money whatever it says.
    response = owner.post(
        reverse("alerts:cap_set"),
        {"meter": "", "measure": "units", "limit": "5", "on_exceed": "reject"},
        headers=HTMX,
    )

    body = response.content.decode()
    assert response.status_code == 200, body
    assert "Total spend on usage is capped at 5.00 USD of usage spend per billing" in body
    assert "0.30 USD of 5.00 USD spent on usage" in body  # no window yet: measured
    cap = Cap.objects.get()
    assert (cap.meter, cap.measure, cap.limit) == (None, "money", 5)
    services.authorize(customer=subscribed, meter=calls, quantity="20", now=NOW)
    page = owner.get(reverse("alerts:guardrails")).content.decode()
    assert 'id="cap-total-spend"' in page and "0.50 USD of 5.00 USD spent on usage" in page
    change = owner.get(reverse("alerts:cap_set"), {"meter": ""}, headers=HTMX).content.decode()
    assert "Change the cap on total spend" in change and 'value="5"' in change


def test_the_portal_refuses_a_total_cap_without_priced_usage(client, owner_a, calls):
    response = signed_in(client, owner_a).post(
        reverse("alerts:cap_set"),
        {"meter": "", "measure": "money", "limit": "5", "on_exceed": "reject"},
        headers=HTMX,
    )
    assert response.status_code == 422
    assert "prices no usage" in response.content.decode()
    assert not Cap.objects.exists()


def test_a_total_cap_is_not_a_meters_hard_cap_for_rules(subscribed, calls):
    services.cap_set(actor=None, customer=subscribed, meter=None, limit="10", measure="money")
    with pytest.raises(InvalidInput) as refused:
        rule_services.rule_create(
            actor=None, customer=subscribed, meter=calls, basis="percent_cap", levels=["80"]
        )
    assert refused.value.code == "no_hard_cap"
    # Rules on the meter's units and on total spend are untouched by it.
    rule_services.rule_create(
        actor=None, customer=subscribed, meter=calls, basis="units", levels=["5000"]
    )
    rule_services.rule_create(
        actor=None, customer=subscribed, meter=None, basis="money", levels=["8"]
    )
