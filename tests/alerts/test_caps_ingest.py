"""Hard caps inside ingestion: metering's guard, registered by alerts, holds new usage to
the cap (refusing or flagging what is past it) and consumes authorizations' reservations."""

from datetime import UTC, datetime, timedelta

import pytest

from alerts import services
from alerts.models import CapReservation, CapWindow
from metering import services as metering_services
from metering.ingest import events_ingest
from metering.selectors import usage_total
from tests.accounts.api.support import api
from tests.accounts.factories import CustomerFactory
from tests.concurrency import in_threads
from tests.metering.factories import api_calls_meter, data_meter, event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TS = "2026-11-20T10:15:00Z"
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def calls(customer, prefix, count, ts=TS):
    return [event(customer, f"{prefix}-{i}", ts=ts) for i in range(count)]


def ingest(events):
    return events_ingest(events=events, now=NOW)


def statuses(result):
    return [(r.status, r.code) for r in result.results]


@pytest.fixture
def meter(db):
    return api_calls_meter()


@pytest.mark.django_db
def test_events_past_a_rejecting_cap_are_refused_and_their_keys_stay_free(customer_a, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="5")

    result = ingest(calls(customer_a, "a", 8))

    assert statuses(result) == [("accepted", None)] * 5 + [("rejected", "cap_exceeded")] * 3
    assert "cap of 5 calls" in result.results[-1].message
    assert CapWindow.objects.get().used == 5
    assert usage_total(customer=customer_a, meter=meter, start=NOV, end=NOW) == 5
    # Once the cap is raised, the refused events can be sent again under the same keys.
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="8")
    again = ingest(calls(customer_a, "a", 8))
    assert [r.status for r in again.results] == ["duplicate"] * 5 + ["accepted"] * 3


@pytest.mark.django_db
def test_a_flagging_cap_accepts_everything_and_flags_what_is_past_it(customer_a, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="5", on_exceed="flag")

    result = ingest(calls(customer_a, "a", 8))

    assert statuses(result) == [("accepted", None)] * 5 + [("accepted", "cap_exceeded")] * 3
    assert result.results[-1].as_dict()["code"] == "cap_exceeded"
    assert CapWindow.objects.get().used == 8
    assert usage_total(customer=customer_a, meter=meter, start=NOV, end=NOW) == 8


@pytest.mark.django_db
def test_authorized_usage_goes_through_and_consumes_its_reservation(customer_a, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="10")
    reservation = services.authorize(customer=customer_a, meter=meter, quantity="6", now=NOW)
    assert reservation.allowed and reservation.remaining == 4

    first = ingest(calls(customer_a, "a", 6))
    window = CapWindow.objects.get()
    assert first.accepted == 6
    assert (window.used, window.reserved) == (6, 0)
    spent = CapReservation.objects.get()
    assert spent.remaining == 0 and spent.released_at is not None

    second = ingest(calls(customer_a, "b", 5))
    assert [r.status for r in second.results] == ["accepted"] * 4 + ["rejected"]
    # Nothing comes back at expiry: the reservation was used.
    assert services.reservations_release_expired(now=NOW + timedelta(hours=1)) == 0
    assert CapWindow.objects.get().reserved == 0


@pytest.mark.django_db
def test_usage_beyond_live_reservations_is_held_to_what_they_leave(customer_a, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="10")
    services.authorize(customer=customer_a, meter=meter, quantity="8", now=NOW)

    # 3 events: 3 of the 8 reserved units; the 5 left stay reserved for their request.
    assert ingest(calls(customer_a, "a", 3)).accepted == 3
    window = CapWindow.objects.get()
    assert (window.used, window.reserved) == (3, 5)
    assert CapReservation.objects.get().remaining == 5
    # 7 more: 5 from the reservation, 2 within the cap, nothing past it.
    assert ingest(calls(customer_a, "b", 7)).accepted == 7
    assert ingest(calls(customer_a, "c", 1)).rejected == 1


@pytest.mark.django_db
def test_a_sum_meter_is_capped_in_its_own_units(customer_a):
    gb = data_meter()
    services.cap_set(actor=None, customer=customer_a, meter=gb, limit="10")

    result = ingest(
        [event(customer_a, f"d{i}", name="data_processed", ts=TS, gb=value) for i, value in
         enumerate(["4.5", 4, 1.5, "0.5", "0"])]
    )  # fmt: skip

    assert [r.status for r in result.results] == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
        "accepted",  # adds nothing, so nothing to cap
    ]
    assert CapWindow.objects.get().used == 10


@pytest.mark.django_db
def test_uncapped_customers_and_late_events_are_not_held(customer_a, customer_b, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="1")
    metering_services.usage_close_through(actor=None, customer=customer_a, closed_through=NOV)

    result = ingest(
        calls(customer_b, "b", 3) + calls(customer_a, "late", 2, ts="2026-10-30T10:00:00Z")
    )

    assert result.accepted == 5
    assert not CapWindow.objects.exists() or CapWindow.objects.get().used == 0


@pytest.mark.django_db
def test_the_events_api_answers_cap_exceeded_per_event(customer_a, meter, operator_token):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="1")
    ts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    response = api(operator_token).post(
        "/api/v1/events", {"events": calls(customer_a, "x", 2, ts=ts)}, format="json"
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert results[1]["code"] == "cap_exceeded"


@pytest.mark.django_db(transaction=True)
def test_64_concurrent_batches_never_take_more_than_the_cap():
    customer, meter = CustomerFactory(), api_calls_meter()
    services.cap_set(actor=None, customer=customer, meter=meter, limit="500")

    results = in_threads(64, lambda i: ingest(calls(customer, f"t{i}", 10)))

    assert sum(r.accepted for r in results) == 500
    assert sum(r.rejected for r in results) == 140
    assert CapWindow.objects.get().used == 500
    assert usage_total(customer=customer, meter=meter, start=NOV, end=NOW) == 500


@pytest.mark.django_db
def test_a_cap_set_mid_period_counts_the_usage_so_far(customer_a, meter):
    assert ingest(calls(customer_a, "before", 7)).accepted == 7
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="10")

    answer = services.authorize(customer=customer_a, meter=meter, quantity="4", now=NOW)
    assert (answer.allowed, answer.remaining) == (False, 3)
    assert ingest(calls(customer_a, "after", 4)).accepted == 3
    assert CapWindow.objects.get().used == 10


@pytest.mark.django_db
def test_usage_consumes_many_reservations_oldest_first(customer_a, meter):
    services.cap_set(actor=None, customer=customer_a, meter=meter, limit="100")
    for _ in range(3):
        services.authorize(customer=customer_a, meter=meter, quantity="3", now=NOW)

    assert ingest(calls(customer_a, "a", 4)).accepted == 4

    left = list(CapReservation.objects.order_by("pk").values_list("remaining", "released_at"))
    assert [remaining for remaining, _ in left] == [0, 2, 3]
    assert [released is not None for _, released in left] == [True, False, False]
    assert (CapWindow.objects.get().used, CapWindow.objects.get().reserved) == (4, 5)
