"""Demo usage: four meters and 13 months of realistic usage for every demo customer.

Called by ``manage.py seed_demo`` through the ``DEMO_SEEDERS`` setting (accounts never
imports metering). Everything goes through the real paths: meters through
``services.meter_create``, events through ``ingest.events_ingest`` in batches of up to
10,000, so the dashboard shows exactly what the product computes.

Deterministic and idempotent: each customer-day draws from its own ``random.Random``
seeded from the caller's ``rng``, the customer and the date, and every event's
idempotency key names its meter, day and number. A rerun regenerates only from each
customer's latest seeded day on (the ingest counts those duplicates once), so it creates
nothing new for time already seeded and takes seconds; a rerun on a later day adds the
days since, keeping the demo current.

Each customer follows one profile — steady, growing, seasonal, spiky or declining —
chosen from its external id, with a size of its own. Volume is bounded (about 30 events
per customer-day) so a cold seed of the whole demo takes well under a minute.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Max
from django.utils import timezone

from accounts.models import Customer

from . import services
from .ingest import MAX_BATCH_EVENTS, events_ingest
from .models import EventKey, Meter

KEY_PREFIX = "demo:"
PROFILES = ("steady", "growing", "seasonal", "spiky", "declining")
# Profiles come from crc32(salt:external_id); this salt gives every profile several
# customers and the demo login's customer (Northwind Traders) a growing one.
PROFILE_SALT = "usage-2"

METERS = (
    {
        "code": "api_call",
        "name": "API calls",
        "unit_label": "calls",
        "aggregation": Meter.Aggregation.COUNT,
        "group_by": ["endpoint", "region"],
    },
    {
        "code": "data_processed",
        "name": "Data processed",
        "unit_label": "GB",
        "aggregation": Meter.Aggregation.SUM,
        "value_property": "gb",
    },
    {
        "code": "active_seats",
        "name": "Active seats",
        "unit_label": "seats",
        "aggregation": Meter.Aggregation.LATEST,
        "value_property": "seats",
    },
    {
        "code": "user_active",
        "name": "Unique users",
        "unit_label": "users",
        "aggregation": Meter.Aggregation.UNIQUE_COUNT,
        "value_property": "user_id",
    },
)

ENDPOINTS = (
    ("/v1/search", 34),
    ("/v1/orders", 22),
    ("/v1/customers", 16),
    ("/v1/webhooks", 12),
    ("/v1/reports", 9),
    ("/v1/auth/token", 7),
)
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-northeast", "ap-southeast")
PIPELINES = ("nightly-etl", "warehouse-sync", "export", "ml-features")
# Share of a day's traffic per local hour: quiet nights, a working-day hump.
HOURLY = (
    2, 1, 1, 1, 1, 2, 3, 6, 10, 13, 14, 13, 11, 12, 13, 13, 12, 10, 8, 6, 5, 4, 3, 2,
)  # fmt: skip
WEEKDAY = (1.0, 1.05, 1.05, 1.0, 0.92, 0.42, 0.33)  # Monday .. Sunday

API_CALLS_PER_DAY = 14  # at size 1 and level 1
GB_PER_DAY = 38.0
MAX_DAILY_USERS = 24


@dataclass(frozen=True)
class Account:
    """How one customer uses the product (drawn once, the same on every run)."""

    customer: Customer
    zone: ZoneInfo
    profile: str
    size: float
    home_region: str
    seats: int
    seed: str


def _home_region(zone_name: str) -> str:
    if zone_name.startswith("America/"):
        return (
            "us-west" if zone_name.endswith(("Los_Angeles", "Vancouver", "Denver")) else "us-east"
        )
    if zone_name.startswith(("Asia/Tokyo", "Asia/Seoul")):
        return "ap-northeast"
    if zone_name.startswith(("Asia/", "Australia/")):
        return "ap-southeast"
    if zone_name.endswith(("Berlin", "Zurich", "Stockholm", "Amsterdam")):
        return "eu-central"
    return "eu-west"


def account_for(customer: Customer, base_seed: int) -> Account:
    seed = f"{base_seed}:{customer.external_id}"
    draw = random.Random(seed)  # noqa: S311 - demo data, not secrets
    size = round(draw.uniform(0.5, 2.2), 2)
    checksum = zlib.crc32(f"{PROFILE_SALT}:{customer.external_id}".encode())
    return Account(
        customer=customer,
        zone=ZoneInfo(customer.timezone),
        profile=PROFILES[checksum % len(PROFILES)],
        size=size,
        home_region=_home_region(customer.timezone),
        seats=round(8 + 22 * size + draw.uniform(-3, 3)),
        seed=seed,
    )


def trend(profile: str, progress: float, day: date) -> float:
    """The account's level on ``day``; ``progress`` runs from 0 (first day) to 1 (today)."""
    if profile == "growing":
        return 0.3 * 5.5**progress
    if profile == "declining":
        return 1.7 * 0.2**progress
    if profile == "seasonal":
        # Retail-like: peaks in early December, quiet in June.
        return 1 + 0.55 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 340) / 365.25)
    return 1.0  # steady and spiky (spikes are drawn per day)


def seat_trend(profile: str, progress: float, day: date) -> float:
    """Seats move slowly: a softer version of the usage trend."""
    if profile == "growing":
        return 0.45 + 0.95 * progress
    if profile == "declining":
        return 1.35 - 0.7 * progress
    if profile == "seasonal":
        return 1 + 0.12 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 340) / 365.25)
    return 1.0


def _moment(rng: random.Random, day: date, zone: ZoneInfo, hours=None) -> datetime:
    hour = rng.choices(hours or range(24), weights=None if hours else HOURLY)[0]
    local = datetime(
        day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60),
        rng.randrange(1_000_000), tzinfo=zone,
    )  # fmt: skip
    return local.astimezone(UTC)


def day_events(account: Account, day: date, progress: float) -> list[tuple[str, datetime, dict]]:
    """One customer-day of usage as (meter code, timestamp, properties), always the same."""
    rng = random.Random(f"{account.seed}:{day.isoformat()}")  # noqa: S311 - demo data
    weekday = WEEKDAY[day.weekday()]
    level = trend(account.profile, progress, day) * weekday * max(0.3, rng.gauss(1, 0.12))
    if account.profile == "spiky" and rng.random() < 0.07:
        level *= rng.uniform(3, 7)  # a launch, a batch import, a retry storm
    events: list[tuple[str, datetime, dict]] = []

    endpoints, endpoint_weights = zip(*ENDPOINTS, strict=True)
    others = [r for r in REGIONS if r != account.home_region]
    for _ in range(round(API_CALLS_PER_DAY * account.size * level)):
        region = account.home_region if rng.random() < 0.72 else rng.choice(others)
        status = 200 if rng.random() < 0.95 else rng.choice((400, 404, 429, 500))
        properties = {
            "endpoint": rng.choices(endpoints, endpoint_weights)[0],
            "region": region,
            "status": status,
        }
        events.append(("api_call", _moment(rng, day, account.zone), properties))

    jobs = max(1, round(rng.uniform(1.5, 4.5) * min(weekday, 1)))
    daily_gb = GB_PER_DAY * account.size * level
    shares = [rng.uniform(0.5, 1.5) for _ in range(jobs)]
    for share in shares:
        gb = round(daily_gb * share / sum(shares), 3)
        if gb > 0:
            properties = {"gb": gb, "pipeline": rng.choice(PIPELINES)}
            events.append(("data_processed", _moment(rng, day, account.zone), properties))

    seats = max(1, round(account.seats * seat_trend(account.profile, progress, day)))
    events.append(("active_seats", _moment(rng, day, account.zone, hours=(8,)), {"seats": seats}))

    pool = max(2, round(seats * 1.15))  # a few people without a seat log in too
    daily_users = min(
        pool, MAX_DAILY_USERS, max(1, round(seats * 0.42 * weekday * rng.uniform(0.8, 1.2)))
    )
    for user in sorted(rng.sample(range(pool), daily_users)):
        properties = {"user_id": f"user-{user:03d}", "app": rng.choice(("web", "web", "mobile"))}
        events.append(("user_active", _moment(rng, day, account.zone), properties))
    return events


def _ensure_meters(stdout) -> int:
    created = 0
    existing = set(
        Meter.objects.filter(code__in=[m["code"] for m in METERS]).values_list("code", flat=True)
    )
    for spec in METERS:
        if spec["code"] in existing:
            continue
        meter = services.meter_create(actor=None, **spec)
        # No demo events exist for it yet, so its rebuild is quick: run it now instead of
        # leaving the meter "queued" until a worker starts (the queued task then no-ops).
        services.meter_rebuild(meter_id=meter.pk, version=meter.definition_version)
        created += 1
    if created:
        stdout.write(f"seed_usage: created {created} meters")
    return created


def _seeded_through(customers: list[Customer]) -> dict[int, datetime]:
    """Per customer, the time of its latest demo event (one query)."""
    rows = (
        EventKey.objects.filter(customer__in=customers, idempotency_key__startswith=KEY_PREFIX)
        .values("customer_id")
        .annotate(latest=Max("event_timestamp"))
    )
    return {row["customer_id"]: row["latest"] for row in rows}


def _first_day(now: datetime, zone: ZoneInfo, months: int) -> date:
    local = now.astimezone(zone)
    index = local.year * 12 + local.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)


def _customer_events(
    account: Account, *, now: datetime, months: int, resume: datetime | None
) -> Iterator[dict]:
    first = _first_day(now, account.zone, months)
    last = now.astimezone(account.zone).date()
    span = max(1, (last - first).days)
    day = first if resume is None else max(first, resume.astimezone(account.zone).date())
    external_id = account.customer.external_id
    while day <= last:
        progress = (day - first).days / span
        numbers: dict[str, int] = {}
        for code, moment, properties in day_events(account, day, progress):
            number = numbers[code] = numbers.get(code, 0) + 1
            if moment > now:
                continue  # later today: a rerun after it happened adds it
            yield {
                "idempotency_key": f"{KEY_PREFIX}{code}:{day:%Y%m%d}:{number}",
                "customer": external_id,
                "event_name": code,
                "timestamp": moment.isoformat(),
                "properties": properties,
            }
        day += timedelta(days=1)


def _batches(events: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_usage(
    stdout,
    rng: random.Random,
    *,
    customers: Iterable[Customer] | None = None,
    months: int = 13,
    now: datetime | None = None,
    batch_size: int = MAX_BATCH_EVENTS,
) -> dict[str, int]:
    """Seed the demo meters and ``months`` calendar months of usage (the current one up to
    ``now``) for ``customers`` (default: every customer). Returns the counts."""
    started = time.monotonic()
    now = now or timezone.now()
    base_seed = rng.getrandbits(64)
    meters_created = _ensure_meters(stdout)
    customers = list(
        customers if customers is not None else Customer.objects.order_by("external_id")
    )
    seeded = _seeded_through(customers)
    accounts = [account_for(c, base_seed) for c in customers]
    events = (
        event
        for account in accounts
        for event in _customer_events(
            account, now=now, months=months, resume=seeded.get(account.customer.pk)
        )
    )
    counts = {"meters": meters_created, "accepted": 0, "duplicates": 0, "rejected": 0}
    for batch in _batches(events, min(batch_size, MAX_BATCH_EVENTS)):
        result = events_ingest(events=batch, now=now)
        counts["accepted"] += result.accepted
        counts["duplicates"] += result.duplicates
        counts["rejected"] += result.rejected
        for rejected in (r for r in result.results if r.status == "rejected"):
            stdout.write(f"seed_usage: rejected {rejected.idempotency_key}: {rejected.message}")
            break
    resumed = sum(1 for a in accounts if a.customer.pk in seeded)
    stdout.write(
        f"seed_usage: {counts['accepted']:,} new usage events for {len(accounts)} customers "
        f"({resumed} already seeded, {counts['duplicates']:,} duplicates skipped) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return counts
