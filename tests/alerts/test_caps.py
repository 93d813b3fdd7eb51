"""Hard caps: setting them, and authorizing usage against them with atomic reservations."""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse

from accounts import services as account_services
from accounts.errors import InvalidInput
from accounts.models import AuditLog
from alerts import services
from alerts.models import Cap, CapReservation, CapWindow
from tests.accounts.factories import CustomerFactory, UserFactory
from tests.concurrency import in_threads
from tests.metering.factories import api_calls_meter, data_meter, users_meter

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def calls(db):
    return api_calls_meter()


def cap(customer, meter, limit, **kwargs):
    return services.cap_set(actor=None, customer=customer, meter=meter, limit=limit, **kwargs)


def authorize(customer, meter, quantity, now=NOW):
    return services.authorize(customer=customer, meter=meter, quantity=quantity, now=now)


def window_of(capped: Cap) -> CapWindow:
    return capped.windows.get()


@pytest.mark.django_db
def test_an_uncapped_meter_is_always_allowed_and_reserves_nothing(customer_a, calls):
    answer = authorize(customer_a, calls, "1000000")
    assert (answer.allowed, answer.remaining, answer.reservation) == (True, None, None)
    assert not CapReservation.objects.exists()


@pytest.mark.django_db
def test_reservations_count_against_the_cap_until_it_is_reached(customer_a, calls):
    capped = cap(customer_a, calls, "100")

    first = authorize(customer_a, calls, "60")
    too_much = authorize(customer_a, calls, "41")
    rest = authorize(customer_a, calls, "40")
    nothing_left = authorize(customer_a, calls, "1")

    assert (first.allowed, first.remaining) == (True, Decimal(40))
    assert (too_much.allowed, too_much.remaining, too_much.reservation) == (
        False,
        Decimal(40),
        None,
    )
    assert (rest.allowed, rest.remaining) == (True, Decimal(0))
    assert (nothing_left.allowed, nothing_left.remaining) == (False, Decimal(0))
    window = window_of(capped)
    assert (window.used, window.reserved) == (0, 100)
    # The window is the customer's usage period: without a subscription, the calendar
    # month in the customer's time zone.
    assert window.period_start == datetime(2026, 11, 1, tzinfo=ZoneInfo(customer_a.timezone))
    assert first.reservation.expires_at == NOW + services.RESERVATION_TTL


@pytest.mark.django_db
def test_each_customer_has_its_own_allowance(customer_a, customer_b, calls):
    cap(customer_a, calls, "10")
    assert authorize(customer_a, calls, "10").allowed
    assert not authorize(customer_a, calls, "1").allowed
    assert authorize(customer_b, calls, "10").remaining is None  # B is not capped


@pytest.mark.django_db
def test_a_new_billing_period_starts_a_new_allowance(customer_a, calls):
    capped = cap(customer_a, calls, "10")
    assert authorize(customer_a, calls, "10").allowed
    assert authorize(customer_a, calls, "10", now=datetime(2026, 12, 1, tzinfo=UTC)).allowed
    assert capped.windows.count() == 2


@pytest.mark.django_db
def test_expired_reservations_give_their_units_back_once(customer_a, calls):
    capped = cap(customer_a, calls, "100")
    authorize(customer_a, calls, "70")
    later = NOW + services.RESERVATION_TTL
    authorize(customer_a, calls, "30", now=later - timedelta(seconds=1))

    assert services.reservations_release_expired(now=later) == 1
    assert services.reservations_release_expired(now=later) == 0  # idempotent

    assert window_of(capped).reserved == 30
    released = CapReservation.objects.get(quantity=70)
    assert (released.remaining, released.released_at) == (0, later)
    assert authorize(customer_a, calls, "70", now=later).allowed


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (0, "more than zero"),
        ("-5", "more than zero"),
        (1.5, "string or integer"),
        ("abc", "must be a number"),
        ("NaN", "more than zero"),
        ("1e30", "too many digits"),
        ("0.0000000000001", "too many digits"),
        (True, "string or integer"),
    ],
)
def test_a_bad_quantity_is_refused_by_name_and_reserves_nothing(
    customer_a, calls, quantity, message
):
    cap(customer_a, calls, "100")
    with pytest.raises(InvalidInput, match=message) as refused:
        authorize(customer_a, calls, quantity)
    assert refused.value.field == "quantity"
    assert not CapReservation.objects.exists()


@pytest.mark.django_db
def test_setting_a_cap_again_changes_it_and_every_change_is_audited(customer_a, calls):
    first = cap(customer_a, calls, "100")
    second = cap(customer_a, calls, "50", on_exceed="flag")

    assert first.pk == second.pk
    assert (second.limit, second.on_exceed) == (50, "flag")
    audits = AuditLog.objects.filter(action="cap.set").order_by("pk")
    assert [a.after["limit"] for a in audits] == ["100", "50"]
    assert audits.last().before == {
        "limit": "100.000000000000",
        "measure": "units",
        "on_exceed": "reject",
    }


@pytest.mark.django_db
def test_only_count_and_sum_meters_can_be_capped(customer_a):
    assert cap(customer_a, data_meter(), "10").limit == 10
    with pytest.raises(InvalidInput) as refused:
        cap(customer_a, users_meter(), "10")
    assert refused.value.code == "meter_not_cappable"
    with pytest.raises(InvalidInput) as refused:
        cap(customer_a, api_calls_meter(), "-1")
    assert refused.value.field == "limit"


# --- Under concurrency (real transactions, one connection per thread) ---------------------


@pytest.mark.django_db(transaction=True)
def test_64_concurrent_requests_never_reserve_more_than_the_cap():
    customer, meter = CustomerFactory(), api_calls_meter()
    capped = cap(customer, meter, "500")  # room for 50 of the 64 requests of 10

    answers = in_threads(64, lambda _: authorize(customer, meter, "10"))

    allowed = [a for a in answers if a.allowed]
    assert len(allowed) == 50
    assert window_of(capped).reserved == 500
    assert sum(r.quantity for r in CapReservation.objects.all()) == 500
    assert min(a.remaining for a in answers) == 0


@pytest.mark.django_db(transaction=True)
def test_a_lowered_cap_holds_for_every_request_after_the_change():
    customer, meter = CustomerFactory(), api_calls_meter()
    cap(customer, meter, "100000")
    assert authorize(customer, meter, "500").allowed  # already past the cap it will get
    changed_at: list[float] = []
    stop = threading.Event()

    def traffic(i):
        seen = []
        while not stop.is_set():
            started = time.monotonic()
            seen.append((started, authorize(customer, meter, "1").allowed))
        return seen

    def lower_midway():
        try:
            time.sleep(0.3)
            cap(customer, meter, "100")
            changed_at.append(time.monotonic())
            time.sleep(0.3)
        finally:
            stop.set()
            connection.close()

    lowering = threading.Thread(target=lower_midway)
    lowering.start()
    seen = [s for thread in in_threads(16, traffic) for s in thread]
    lowering.join()

    assert any(allowed for _, allowed in seen)  # traffic got through before the change
    after = [allowed for started, allowed in seen if started > changed_at[0]]
    assert after and not any(after)
    window = CapWindow.objects.get()
    assert window.reserved == 500 + sum(allowed for _, allowed in seen)


@pytest.mark.django_db
def test_finance_staff_see_caps_with_their_windows_read_only(client, customer_a, calls):
    account_services.staff_groups_sync()
    capped = cap(customer_a, calls, "100")
    authorize(customer_a, calls, "60")
    finance = UserFactory(is_staff=True)
    finance.groups.add(Group.objects.get(name="finance"))
    client.force_login(finance)

    listing = client.get(reverse("admin:alerts_cap_changelist"))
    page = client.get(reverse("admin:alerts_cap_change", args=[capped.pk]))

    assert listing.status_code == 200 and "Alpha Analytics" in listing.text
    assert page.status_code == 200 and "60.000000000000" in page.text
    assert 'name="_save"' not in page.text


@pytest.mark.django_db(transaction=True)
def test_concurrent_releases_and_usage_give_expired_units_back_once():
    customer, meter = CustomerFactory(), api_calls_meter()
    capped = cap(customer, meter, "100")
    for _ in range(10):
        authorize(customer, meter, "5")
    later = NOW + services.RESERVATION_TTL

    def work(i):
        if i % 2:
            return services.reservations_release_expired(now=later)
        return authorize(customer, meter, "1", now=later).allowed

    results = in_threads(8, work)

    assert all(results[0::2])  # every request was authorized alongside the releases
    window = window_of(capped)
    assert window.reserved == 4  # the 50 expired units came back exactly once
    assert sum(results[1::2]) == 1  # one release found them; the others found none
