"""Demo usage: meters and months of usage through the real ingest path, idempotent."""

import io
import random
import zlib
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.management.commands.seed_demo import demo_plan
from metering import demo, selectors
from metering.models import EventKey, Meter, UsageEvent
from metering.selectors import month_start
from tests.accounts.factories import CustomerFactory

pytestmark = pytest.mark.django_db

SEEDED = []


def recording_seeder(stdout, rng):
    """Stands in for the real seeders in DEMO_SEEDERS: records how seed_demo called it."""
    SEEDED.append((stdout, rng.random()))


@pytest.fixture
def two_customers(db):
    return [
        CustomerFactory(external_id="acct-northwind-traders", timezone="America/New_York"),
        CustomerFactory(external_id="acct-fjord-analytics", timezone="Asia/Tokyo"),
    ]


def seed(customers, now, months=2, rng_seed=11):
    out = io.StringIO()
    counts = demo.seed_usage(
        out, random.Random(rng_seed), customers=customers, months=months, now=now
    )
    return counts, out.getvalue()


def test_seeding_creates_the_four_meters_and_usage_for_each(two_customers):
    now = timezone.now()

    counts, out = seed(two_customers, now)

    meters = {m.code: m for m in Meter.objects.all()}
    assert set(meters) == {"api_call", "data_processed", "active_seats", "user_active"}
    assert meters["api_call"].group_by == ["endpoint", "region"]
    assert meters["data_processed"].aggregation == "sum"
    assert meters["data_processed"].value_property == "gb"
    assert meters["active_seats"].aggregation == "latest"
    assert meters["user_active"].aggregation == "unique_count"
    assert all(m.rebuild_status == "idle" for m in meters.values())
    assert counts["accepted"] > 1000 and counts["rejected"] == 0
    assert "new usage events for 2 customers" in out
    for customer in two_customers:
        zone = ZoneInfo(customer.timezone)
        start = month_start(now, zone, months_back=1)
        for meter in meters.values():
            total = selectors.usage_total(customer=customer, meter=meter, start=start, end=now)
            assert total > 0, (customer, meter.code)
        breakdown = selectors.usage_breakdown(
            customer=customer, meter=meters["api_call"], start=start, end=now, dimension="region"
        )
        assert len(breakdown) >= 3


def test_events_cover_the_months_asked_for_and_nothing_in_the_future(two_customers):
    now = timezone.now()

    seed(two_customers, now, months=3)

    for customer in two_customers:
        first = month_start(now, ZoneInfo(customer.timezone), months_back=2)
        events = UsageEvent.objects.filter(customer=customer)
        assert events.filter(timestamp__lt=first).count() == 0
        assert events.filter(timestamp__gt=now).count() == 0
        assert events.filter(timestamp__lt=first + timedelta(days=2)).exists()
        assert events.filter(timestamp__gt=now - timedelta(days=2)).exists()


def test_seeding_again_creates_nothing_and_only_rereads_the_last_day(two_customers):
    now = timezone.now()
    first, _ = seed(two_customers, now)
    stored = EventKey.objects.count()

    again, out = seed(two_customers, now)

    assert again["accepted"] == 0
    assert EventKey.objects.count() == stored == first["accepted"]
    assert again["meters"] == 0
    # Resumed from each customer's latest seeded day, not from the start.
    assert 0 < again["duplicates"] < first["accepted"] / 10
    assert "2 already seeded" in out


def test_a_later_run_adds_only_the_time_since(two_customers):
    earlier = timezone.now() - timedelta(days=3)
    first, _ = seed(two_customers, earlier)

    later, _ = seed(two_customers, earlier + timedelta(days=3))

    assert later["accepted"] > 0
    assert later["accepted"] < first["accepted"] / 5
    assert not UsageEvent.objects.filter(timestamp__gt=earlier + timedelta(days=3)).exists()


def test_the_same_seed_draws_the_same_events(two_customers):
    now = timezone.now()
    seed(two_customers[:1], now)
    drawn = list(
        UsageEvent.objects.order_by("idempotency_key").values_list("idempotency_key", "properties")
    )
    UsageEvent.objects.all().delete()
    EventKey.objects.all().delete()

    seed(two_customers[:1], now)

    again = list(
        UsageEvent.objects.order_by("idempotency_key").values_list("idempotency_key", "properties")
    )
    assert again == drawn


def test_profiles_are_fixed_per_customer_and_all_five_are_in_the_demo():
    profiles = [
        demo.PROFILES[zlib.crc32(f"{demo.PROFILE_SALT}:{p.external_id}".encode()) % 5]
        for p in demo_plan()
    ]

    assert set(Counter(profiles)) == set(demo.PROFILES)
    assert min(Counter(profiles).values()) >= 3
    assert profiles[0] == "growing"  # the demo login's customer


@pytest.mark.parametrize(
    ("profile", "rises"),
    [("growing", True), ("declining", False)],
)
def test_growing_accounts_grow_and_declining_ones_decline(profile, rises):
    day = timezone.now().date()
    start, end = demo.trend(profile, 0, day), demo.trend(profile, 1, day)

    assert (end > 2 * start) if rises else (start > 2 * end)


def test_seed_demo_calls_each_configured_seeder_after_its_own(settings):
    settings.DEMO_SEEDERS = [
        "tests.metering.portal.test_demo_usage.recording_seeder",
        "tests.metering.portal.test_demo_usage.recording_seeder",
    ]
    SEEDED.clear()

    call_command("seed_demo", stdout=io.StringIO())

    assert len(SEEDED) == 2
    # Each seeder gets a fresh generator with the demo's seed: adding one changes no other.
    assert SEEDED[0][1] == SEEDED[1][1]
