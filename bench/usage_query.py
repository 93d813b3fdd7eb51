"""Usage queries stay fast and flat as the event store grows.

Stores events for 13 months across many customers (one large customer holds a tenth of
them), builds the rollups with the batch track, then times the two queries the portal and
the alert engine run all the time — a customer's period total and its daily series — for
a billing period with non-hour-aligned edges (served from raw events). Measured at 1M and
again at 10M stored events.

    .venv/bin/python -m billing_project.launcher run -- .venv/bin/python bench/usage_query.py
    ... bench/usage_query.py --quick     (100k then 1M)

Events are generated in SQL for speed (the ingest path has its own benchmark); rollups are
built by the real batch track (metering.tracks.rollups_recompute), month by month.
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import (
    bench_database_url,
    create_meters,
    drop_database,
    fresh_database,
    percentile,
    setup_django,
)

MONTHS = 13
CUSTOMERS = 500


def month_starts(end: datetime, count: int) -> list[datetime]:
    year, month = end.year, end.month
    starts = []
    for _ in range(count):
        starts.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return sorted(starts)


def generate(
    cursor,
    *,
    count: int,
    offset: int,
    customer_ids: list[int],
    big: int,
    first: datetime,
    last: datetime,
):
    span = (last - first).total_seconds()
    cursor.execute(
        """
        INSERT INTO metering_usageevent
            (customer_id, idempotency_key, event_name, "timestamp", received_at, properties)
        SELECT CASE WHEN random() < 0.1 THEN %(big)s
                    ELSE (%(customers)s::bigint[])[1 + floor(random() * %(n)s)::int] END,
               'gen-' || g,
               CASE WHEN g %% 4 = 0 THEN 'data_processed' ELSE 'api_call' END,
               %(first)s + random() * %(span)s * interval '1 second',
               now(),
               CASE WHEN g %% 4 = 0
                    THEN jsonb_build_object('gb', round((random() * 4)::numeric, 3))
                    ELSE jsonb_build_object(
                        'endpoint',
                        (ARRAY['/v1/search', '/v1/embed', '/v1/chat', '/v1/files', '/v1/models'])
                            [1 + floor(random() * 5)::int],
                        'region',
                        (ARRAY['eu-west', 'us-east', 'ap-south'])[1 + floor(random() * 3)::int])
               END
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
        """,
        {
            "big": big,
            "customers": customer_ids,
            "n": len(customer_ids),
            "first": first,
            "span": span,
            "start": offset + 1,
            "stop": offset + count,
        },
    )


def time_queries(customer, meters, period_start, period_end, rounds: int) -> dict[str, list[float]]:
    from metering.selectors import usage_series, usage_total

    timings = {"total": [], "series": []}
    for _ in range(rounds):
        for meter in meters:
            started = time.perf_counter()
            usage_total(customer=customer, meter=meter, start=period_start, end=period_end)
            timings["total"].append(time.perf_counter() - started)
            started = time.perf_counter()
            usage_series(customer=customer, meter=meter, start=period_start, end=period_end)
            timings["series"].append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100k then 1M events")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large = 100_000, 1_000_000

    url = bench_database_url()
    fresh_database(url)
    setup_django(url)
    from django.db import connection

    from accounts import services as accounts
    from metering.models import Meter
    from metering.tracks import rollups_recompute

    customers = [
        accounts.customer_create(
            actor=None,
            name=f"Bench {i}",
            external_id=f"bench-{i}",
            billing_email=f"b{i}@bench.example",
            timezone="America/New_York" if i == 0 else "UTC",
        )
        for i in range(CUSTOMERS)
    ]
    big = customers[0]
    create_meters()
    meters = list(Meter.objects.order_by("code"))
    now = datetime.now(UTC).replace(microsecond=0)
    months = month_starts(now, MONTHS)
    first, last = months[0], now
    # A billing period with an anniversary at 14:37: its edges come from raw events.
    period_start = (now - timedelta(days=20)).replace(hour=14, minute=37, second=0)
    period_end = period_start + timedelta(days=30)

    results = {}
    stored = 0
    for target in (args.small, args.large):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT metering_ensure_month_partition(m::date) FROM unnest(%s::timestamptz[]) m",
                [months],
            )
            cursor.execute("SELECT setseed(0.42)")
            step = 1_000_000
            while stored < target:
                count = min(step, target - stored)
                generate(
                    cursor,
                    count=count,
                    offset=stored,
                    customer_ids=[c.pk for c in customers[1:]],
                    big=big.pk,
                    first=first,
                    last=last,
                )
                stored += count
            cursor.execute("ANALYZE metering_usageevent")
        generated = time.perf_counter() - started
        started = time.perf_counter()
        for month_start in months:
            month_end = (month_start + timedelta(days=32)).replace(day=1)
            rollups_recompute(meters=meters, start=month_start, end=month_end)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE metering_usagerollup")
        built = time.perf_counter() - started
        time_queries(big, meters, period_start, period_end, 5)  # warm caches
        timings = time_queries(big, meters, period_start, period_end, args.rounds)
        label = f"{stored / 1e6:g}M"
        results[label] = timings
        print(
            f"{label} events stored (generated in {generated:.0f}s, rollups built in {built:.0f}s):"
        )
        for name, values in timings.items():
            print(
                f"  {name:<7} p50 {percentile(values, 0.5) * 1000:6.2f} ms   "
                f"p99 {percentile(values, 0.99) * 1000:6.2f} ms   ({len(values)} queries)"
            )
    if not args.keep:
        drop_database(url)
    small, large = list(results)
    worst = {
        label: max(percentile(v, 0.99) for v in t.values()) * 1000 for label, t in results.items()
    }
    print(f"p99 ratio {large} / {small}: {worst[large] / worst[small]:.2f}")
    print(
        f"RESULT p99_ms_{small.lower()}={worst[small]:.1f} "
        f"p99_ms_{large.lower()}={worst[large]:.1f}"
    )


if __name__ == "__main__":
    main()
