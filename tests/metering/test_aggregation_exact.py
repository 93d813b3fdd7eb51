"""Every aggregation is exact: the selectors against a brute force over the raw events.

Hypothesis draws customers (in time zones with DST and with half-hour offsets), meters of
every aggregation with filters and group-bys (created before the events, or after them and
rebuilt), events over a few days around a DST change with messy properties, batch splits
with duplicates, a closed period and some voids. Then for random ``[start, end)`` ranges,
hour-aligned or not, totals, breakdowns and daily series must equal what plain Python
computes from the stored raw rows. The brute force shares no code with the SQL.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering import services
from metering.ingest import events_ingest
from metering.models import UsageEvent
from metering.selectors import usage_breakdown, usage_series, usage_total
from tests.accounts.factories import CustomerFactory

BASE = datetime(2026, 10, 31, tzinfo=UTC)  # US clocks go back on 1 November 2026
SPAN_HOURS = 72
NOW = BASE + timedelta(days=4)
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Adelaide"]
AGGREGATIONS = ["count", "sum", "max", "unique_count", "latest"]
DIMENSIONS = ["region", "model"]

# --- The brute force ---------------------------------------------------------------------

_NUMBER = re.compile(
    r"[ \t\n\r\f\v]*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,4})?[ \t\n\r\f\v]*"
)
TWELVE_PLACES = Decimal("1e-12")


def as_text(value):
    """A JSON property as text, the way PostgreSQL's ->> shows it (scalars, flat lists)."""
    if value is None:
        return None
    if isinstance(value, list):
        return "[" + ", ".join(as_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)), "f")


def as_quantity(value):
    """A property as a billable number: kept to 12 places, below 10^18, or nothing."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = Decimal(repr(value))
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        number = Decimal(value.strip())
    else:
        return None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 18:
        return None
    return number.quantize(TWELVE_PLACES, rounding=ROUND_HALF_UP)


def counted(meter, rows, customer):
    """(event, dimensions, value) for each stored event the meter counts."""
    for row in rows:
        if row.customer_id != customer.pk or row.event_name != meter.code:
            continue
        if row.late or row.voided_at is not None:
            continue
        props = row.properties
        if not all(as_text(props.get(f["property"])) in f["values"] for f in meter.filters):
            continue
        dims = tuple(as_text(props.get(name)) or "" for name in meter.group_by)
        if meter.aggregation == "count":
            value = None
        elif meter.aggregation == "unique_count":
            value = as_text(props.get(meter.value_property))
            if value is None:
                continue
        else:
            value = as_quantity(props.get(meter.value_property))
            if value is None:
                continue
        yield row, dims, value


def aggregate(aggregation, items):
    """items: (row, dims, value). None when nothing counts."""
    if not items:
        return None
    if aggregation == "count":
        return Decimal(len(items))
    if aggregation == "sum":
        return sum((v for _, _, v in items), Decimal(0))
    if aggregation == "max":
        return max(v for _, _, v in items)
    if aggregation == "unique_count":
        return Decimal(len({v for _, _, v in items}))
    latest_per_dims = {}
    for row, dims, value in items:
        key = (row.timestamp, row.pk)
        if dims not in latest_per_dims or key > latest_per_dims[dims][0]:
            latest_per_dims[dims] = (key, value)
    return sum((v for _, v in latest_per_dims.values()), Decimal(0))


def within(items, start, end):
    return [item for item in items if start <= item[0].timestamp < end]


def local_days(start, end, zone):
    """(day start, next day start) of each local day that begins before ``end``."""
    day = start.astimezone(zone).date()
    while (first := datetime(day.year, day.month, day.day, tzinfo=zone)) < end:
        following = day + timedelta(days=1)
        yield first, datetime(following.year, following.month, following.day, tzinfo=zone)
        day = following


def local_months(start, end, zone):
    local = start.astimezone(zone)
    year, month = local.year, local.month
    while (first := datetime(year, month, 1, tzinfo=zone)) < end:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        yield first, datetime(year, month, 1, tzinfo=zone)


def local_hours(start, end, zone):
    """Local hours (they start at :30 UTC in a +05:30 zone); a DST fall-back has two 01:00s."""
    hour = start.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    while hour < end:
        yield hour.astimezone(zone), (hour + timedelta(hours=1)).astimezone(zone)
        hour += timedelta(hours=1)


BUCKETS = {"hour": local_hours, "day": local_days, "month": local_months}


# --- What Hypothesis draws ------------------------------------------------------------------

# The bulk (events and their properties) comes from a Random that Hypothesis seeds: its
# strategies favour first and boundary choices, which would pile every event onto one
# customer, one meter and one instant.
NUMBERS = [0, 1, 3, -5, 42, 100, "12.5", "0.333333333333333333", " 7 ", "1e3", "-0.5", 0.1, 2.675]
JUNK = [None, "abc", "", True, "5\u00a0", [1, 2]]
UNIQUE_IDS = ["u1", "u2", "u3", 4, 5]
DIMENSION_VALUES = ["eu", "us", "eu", "us", "", 1, True, None]


def random_properties(rnd, aggregation):
    """Mostly what the meter needs (so most events count), sometimes junk or nothing."""
    fitting = UNIQUE_IDS if aggregation == "unique_count" else NUMBERS
    roll = rnd.random()
    props = {}
    if roll < 0.75:
        props["v"] = rnd.choice(fitting)
    elif roll < 0.85:
        props["v"] = rnd.choice(NUMBERS + UNIQUE_IDS)
    elif roll < 0.95:
        props["v"] = rnd.choice(JUNK)
    if rnd.random() < 0.2:
        props["v"] = round(rnd.uniform(-100, 100), rnd.randrange(0, 14))
    for name, values in [
        ("tier", ["free", "paid", "paid", 1]),
        ("region", DIMENSION_VALUES),
        ("model", DIMENSION_VALUES),
    ]:
        if rnd.random() < 0.8:
            props[name] = rnd.choice(values)
    return props


def random_events(rnd, customers, specs, count):
    aggregation_of = {s["code"]: s["aggregation"] for s in specs} | {"other": "count"}
    codes = [s["code"] for s in specs] * 4 + ["other"]
    events = []
    for i in range(count):
        code = rnd.choice(codes)
        # About one in eight reuses an earlier key: a duplicate (possibly with other content).
        key = f"k{rnd.randrange(i)}" if i and rnd.random() > 7 / 8 else f"k{i}"
        moment = BASE + timedelta(seconds=rnd.randrange(SPAN_HOURS * 3600))
        if rnd.random() < 0.1:  # same instant as another event: ties broken by id
            moment = BASE + timedelta(hours=rnd.randrange(SPAN_HOURS))
        events.append(
            {
                "idempotency_key": key,
                "customer": rnd.choice(customers).external_id,
                "event_name": code,
                "timestamp": moment.isoformat(),
                "properties": random_properties(rnd, aggregation_of[code]),
            }
        )
    return events


@st.composite
def meters(draw, index):
    aggregation = draw(st.sampled_from(AGGREGATIONS))
    filters = []
    if draw(st.integers(0, 2)) == 0:
        filters = [
            {
                "property": "tier",
                "in": draw(
                    st.lists(
                        st.sampled_from(["free", "paid", "1"]), min_size=1, max_size=2, unique=True
                    )
                ),
            }
        ]
    return {
        "code": f"m{index}",
        "name": f"Meter {index}",
        "unit_label": "units",
        "aggregation": aggregation,
        "value_property": "" if aggregation == "count" else "v",
        "filters": filters,
        "group_by": draw(st.lists(st.sampled_from(DIMENSIONS), max_size=2, unique=True)),
        "created_after_events": draw(st.booleans()),
    }


moments = st.integers(0, SPAN_HOURS * 3600 - 1).map(lambda s: BASE + timedelta(seconds=s))


@st.composite
def ranges(draw):
    if draw(st.integers(0, 3)) == 0:  # everything, and then some
        return BASE - timedelta(hours=2), BASE + timedelta(hours=SPAN_HOURS + 2)
    start = draw(st.integers(-2 * 60, SPAN_HOURS * 60))
    length = draw(st.integers(30, (SPAN_HOURS + 2) * 60))
    if draw(st.booleans()):  # whole hours: served by the rollups alone
        start, length = start - start % 60, max(60, length - length % 60)
    return BASE + timedelta(minutes=start), BASE + timedelta(minutes=start + length)


# --- The property ---------------------------------------------------------------------------


def _create_meter(spec):
    fields = {k: v for k, v in spec.items() if k != "created_after_events"}
    meter = services.meter_create(actor=None, **fields)
    assert services.meter_rebuild(meter_id=meter.pk, version=meter.definition_version)
    meter.refresh_from_db()
    return meter


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_usage_equals_a_brute_force_over_the_raw_events(data):
    with transaction.atomic():
        _check(data)
        transaction.set_rollback(True)


def _check(data):
    draw = data.draw
    customers = [
        CustomerFactory(external_id=f"h{i}", timezone=draw(st.sampled_from(ZONES)))
        for i in range(2)
    ]
    specs = [draw(meters(i)) for i in range(draw(st.integers(1, 3)))]
    meter_objects = [_create_meter(s) for s in specs if not s["created_after_events"]]

    closed = draw(st.one_of(st.none(), st.none(), moments))
    if closed is not None:
        services.usage_close_through(actor=None, customer=customers[0], closed_through=closed)

    rnd = draw(st.randoms(use_true_random=False))
    events = random_events(rnd, customers, specs, draw(st.integers(20, 150)))
    position = 0
    while position < len(events):  # random batch splits; repeated keys are duplicates
        size = rnd.randint(1, 30)
        events_ingest(events=events[position : position + size], now=NOW)
        position += size

    meter_objects += [_create_meter(s) for s in specs if s["created_after_events"]]

    stored = list(UsageEvent.objects.all())
    if stored and draw(st.booleans()):
        voided = rnd.sample(stored, min(len(stored), rnd.randint(1, 4)))
        for customer in customers:
            keys = [e.idempotency_key for e in voided if e.customer_id == customer.pk]
            if keys:
                services.events_void(
                    actor=None, customer=customer, idempotency_keys=keys, reason="test"
                )
        stored = list(UsageEvent.objects.all())

    for _ in range(draw(st.integers(1, 2))):
        start, end = draw(ranges())
        for customer in customers:
            for meter in meter_objects:
                _compare(meter, customer, stored, start, end)


def _compare(meter, customer, stored, start, end):
    items = within(list(counted(meter, stored, customer)), start, end)
    context = f"{meter.aggregation} {meter.group_by} {meter.filters} [{start}, {end})"

    expected_total = aggregate(meter.aggregation, items) or Decimal(0)
    got = usage_total(customer=customer, meter=meter, start=start, end=end)
    assert got == expected_total, context

    for position, dimension in enumerate(meter.group_by):
        groups = {dims[position] for _, dims, _ in items}
        expected = {
            group: aggregate(meter.aggregation, [i for i in items if i[1][position] == group])
            for group in groups
        }
        points = usage_breakdown(
            customer=customer, meter=meter, start=start, end=end, dimension=dimension
        )
        assert {p.group: p.value for p in points} == expected, f"{context} by {dimension}"
        values = [p.value for p in points]
        assert values == sorted(values, reverse=True), "largest first"

    zone = ZoneInfo(customer.timezone)
    empty = None if meter.aggregation in ("max", "latest") else Decimal(0)
    for granularity in ("hour", "day", "month"):
        expected = []
        for bucket, following in BUCKETS[granularity](start, end, zone):
            value = aggregate(
                meter.aggregation, within(items, max(bucket, start), min(following, end))
            )
            expected.append((*instant(bucket), empty if value is None else value))
        series = usage_series(
            customer=customer, meter=meter, start=start, end=end, granularity=granularity
        )
        got = [(*instant(p.bucket), p.value) for p in series]
        assert got == expected, f"{context} {zone} {granularity}"


def instant(moment):
    """Compare buckets as instants with their offset: aware datetimes in one zone compare
    by wall time, so the two 01:00s of a DST fall-back would look equal."""
    return moment.astimezone(UTC), moment.utcoffset()


# --- The brute force's own ground truth -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, Decimal(3)),
        ("12.5", Decimal("12.5")),
        (" 7 ", Decimal(7)),
        ("1e3", Decimal(1000)),
        ("0.0000000000005", Decimal("0.000000000001")),
        ("-0.0000000000005", Decimal("-0.000000000001")),
        (0.1, Decimal("0.1")),
        ("abc", None),
        (True, None),
        ("5\u2003", None),
        (10**18, None),
    ],
)
def test_the_brute_force_reads_numbers_as_documented(value, expected):
    assert as_quantity(value) == expected


def test_the_brute_force_days_follow_the_wall_clock_across_dst():
    zone = ZoneInfo("America/New_York")
    days = list(local_days(BASE, BASE + timedelta(days=3), zone))
    assert [d.date() for d, _ in days] == [
        date(2026, 10, 30),
        date(2026, 10, 31),
        date(2026, 11, 1),
        date(2026, 11, 2),
    ]
    assert days[2][1].astimezone(UTC) - days[2][0].astimezone(UTC) == timedelta(hours=25)


# --- Cases Hypothesis found, kept as plain examples -------------------------------------------


@pytest.mark.django_db
def test_an_hourly_series_keeps_both_hours_of_a_dst_fall_back():
    from tests.metering.factories import api_calls_meter, event

    customer = CustomerFactory(timezone="America/New_York")
    meter = api_calls_meter()
    # 05:30Z is 01:30 EDT; 06:30Z is 01:30 EST, the repeated hour.
    events_ingest(
        events=[
            event(customer, "edt", ts="2026-11-01T05:30:00Z"),
            event(customer, "est-1", ts="2026-11-01T06:30:00Z"),
            event(customer, "est-2", ts="2026-11-01T06:40:00Z"),
        ],
        now=NOW,
    )
    series = usage_series(
        customer=customer,
        meter=meter,
        start=datetime(2026, 11, 1, 4, tzinfo=UTC),
        end=datetime(2026, 11, 1, 8, tzinfo=UTC),
        granularity="hour",
    )
    assert [(p.bucket.strftime("%H:%M %Z"), p.value) for p in series] == [
        ("00:00 EDT", 0),
        ("01:00 EDT", 1),
        ("01:00 EST", 2),
        ("02:00 EST", 0),
    ]


@pytest.mark.django_db
def test_a_range_inside_an_hour_cut_by_a_half_hour_zone_counts_only_its_own_events():
    from tests.metering.factories import api_calls_meter, event

    customer = CustomerFactory(timezone="Asia/Kolkata")  # local hours start at :30 UTC
    meter = api_calls_meter()
    events_ingest(
        events=[
            event(customer, "inside", ts="2026-10-31T00:10:00Z"),
            event(customer, "after-end", ts="2026-10-31T00:40:00Z"),
        ],
        now=NOW,
    )
    start, end = datetime(2026, 10, 31, 0, 1, tzinfo=UTC), datetime(2026, 10, 31, 0, 31, tzinfo=UTC)
    for granularity in ("hour", "day", "month"):
        series = usage_series(
            customer=customer, meter=meter, start=start, end=end, granularity=granularity
        )
        assert sum(p.value for p in series) == 1, granularity
