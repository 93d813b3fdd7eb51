"""Period close at scale: thousands of subscriptions closed into draft invoices.

Stores ``--events-per-subscription`` events per subscription over one billing month on
three meters (API calls by endpoint and region, GB processed, jobs), builds the rollups
with the batch track, then times the real period-close job (``periods_close_due``: claim,
batch-track usage, reconciliation evidence, rating, draft) first for ``--small``
subscriptions, then for all ``--subscriptions`` (the small run's drafts are removed and
its periods reopened first), then for ``--small`` of them again over the large store.
Growth from the small run to the large one should be linear: the ratio of times close to
the ratio of subscriptions. The last run tells the two causes of any excess apart: the
number of subscriptions, or the size of the store (a month of events that no longer fits
PostgreSQL's shared buffers is read through the operating system's cache).

    .venv/bin/python -m billing_project.launcher run -- .venv/bin/python bench/period_close.py
    ... bench/period_close.py --quick     (100 then 1,000 subscriptions)

Fixtures (customers, subscriptions, events) are bulk-inserted for speed; the plan is
published and everything measured runs through the services.
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import bench_database_url, create_meters, drop_database, fresh_database, setup_django


def generate_events(cursor, *, customer_ids, per_customer, start, end, offset):
    """``per_customer`` events per customer, spread over [start, end): 2/4 API calls,
    1/4 data, 1/4 jobs."""
    cursor.execute(
        """
        INSERT INTO metering_usageevent
            (customer_id, idempotency_key, event_name, "timestamp", received_at, properties)
        SELECT id,
               'gen-' || id || '-' || g,
               CASE g %% 4 WHEN 0 THEN 'data_processed' WHEN 1 THEN 'job_run' ELSE 'api_call' END,
               -- Received within seconds of happening, as a live integration sends them.
               at, at + random() * interval '30 seconds',
               CASE g %% 4
                    WHEN 0 THEN jsonb_build_object('gb', round((random() * 4)::numeric, 3))
                    WHEN 1 THEN '{}'::jsonb
                    ELSE jsonb_build_object(
                        'endpoint',
                        (ARRAY['/v1/search', '/v1/embed', '/v1/chat'])
                            [1 + floor(random() * 3)::int],
                        'region', (ARRAY['eu-west', 'us-east'])[1 + floor(random() * 2)::int])
               END
        FROM (
            SELECT c.id, g, %(start)s + random() * %(span)s * interval '1 second' AS at
            FROM unnest(%(customers)s::bigint[]) AS c(id)
            CROSS JOIN generate_series(%(first)s::int, %(last)s::int) AS g
        ) AS generated
        -- Stored in arrival order, as live ingestion stores them: a customer's month is
        -- spread over the whole partition, not packed together.
        ORDER BY at
        """,
        {
            "customers": customer_ids,
            "start": start,
            "span": (end - start).total_seconds(),
            "first": offset + 1,
            "last": offset + per_customer,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--events-per-subscription", type=int, default=1_000)
    parser.add_argument("--quick", action="store_true", help="100 then 1,000 subscriptions")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    if args.quick:
        args.small, args.subscriptions = 100, 1_000

    url = bench_database_url()
    fresh_database(url)
    setup_django(url)
    from django.db import connection

    from accounts.models import Customer
    from invoicing import services
    from invoicing.models import Invoice, Plan, Subscription, SubscriptionPhase
    from metering import services as metering_services
    from metering.models import Meter
    from metering.tracks import rollups_recompute

    now = datetime.now(UTC)
    end = datetime(now.year, now.month, 1, tzinfo=UTC)
    start = (end - timedelta(days=1)).replace(day=1)
    create_meters()
    metering_services.meter_create(
        actor=None, code="job_run", name="Jobs", unit_label="jobs", aggregation="count"
    )
    meters = list(Meter.objects.order_by("code"))
    plan = services.plan_create(actor=None, code="bench", name="Bench", currency="USD")
    version = services.plan_version_create(
        actor=None,
        plan=plan,
        interval="month",
        components=[
            {"kind": "flat_fee", "amount": "49.00"},
            {
                "kind": "usage",
                "meter": "api_call",
                "pricing_model": "graduated",
                "included_units": "100",
                "tiers": [
                    {"up_to": "1000", "unit_price": "0.002"},
                    {"up_to": None, "unit_price": "0.001"},
                ],
            },
            {
                "kind": "usage",
                "meter": "data_processed",
                "pricing_model": "per_unit",
                "unit_price": "0.05",
            },
            {
                "kind": "usage",
                "meter": "job_run",
                "pricing_model": "package",
                "package_size": "100",
                "unit_price": "1.00",
            },
        ],
    )
    assert Plan.objects.count() == 1

    def add_subscriptions(first: int, count: int) -> list[int]:
        customers = Customer.objects.bulk_create(
            Customer(
                name=f"Bench {i}",
                external_id=f"bench-{i}",
                billing_email=f"b{i}@bench.example",
                currency="USD",
            )
            for i in range(first, first + count)
        )
        subscriptions = Subscription.objects.bulk_create(
            Subscription(
                customer=c,
                plan_version=version,
                started_at=start,
                billing_anchor=start,
                billed_through=start,
                current_period_end=end,
            )
            for c in customers
        )
        SubscriptionPhase.objects.bulk_create(
            SubscriptionPhase(subscription=s, plan_version=version, starts_at=start)
            for s in subscriptions
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT metering_ensure_month_partition(%s::date)", [start])
            generate_events(
                cursor,
                customer_ids=[c.pk for c in customers],
                per_customer=args.events_per_subscription,
                start=start,
                end=end,
                offset=0,
            )
        return [c.pk for c in customers]

    def close_due(count: int, *, stride: int = 1) -> float:
        """Reopen every period (the drafts of an earlier run removed), leave ``count``
        subscriptions due (every ``stride``-th), and time closing them."""
        Invoice.objects.all().delete()
        Subscription.objects.update(billed_through=start, current_period_end=end)
        due = list(Subscription.objects.order_by("pk").values_list("pk", flat=True))
        Subscription.objects.exclude(pk__in=due[::stride][:count]).update(
            current_period_end=end + timedelta(days=365)
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        started = time.perf_counter()
        closed = services.periods_close_due(now=end + timedelta(minutes=1))
        elapsed = time.perf_counter() - started
        assert closed == count, closed
        held = Invoice.objects.filter(status="held").count()
        assert held == 0, f"{held} invoices held: the tracks disagree"
        return elapsed

    print(
        f"scratch database; {args.events_per_subscription:,} events per subscription "
        f"on 3 meters, one billing month"
    )
    timings = {}
    stored = 0
    for target in (args.small, args.subscriptions):
        started = time.perf_counter()
        add_subscriptions(stored, target - stored)
        stored = target
        rollups_recompute(meters=meters, start=start, end=end)
        prepared = time.perf_counter() - started
        timings[target] = close_due(target)
        print(
            f"{target:>7,} subscriptions ({target * args.events_per_subscription / 1e6:g}M events,"
            f" prepared in {prepared:.0f}s): closed in {timings[target]:.1f}s, "
            f"{timings[target] / target * 1000:.1f} ms per subscription"
        )
    # The same small number of subscriptions over the large store (spread over it, as
    # anniversaries are): separates what the number of subscriptions costs from what the
    # size of the store costs (caches).
    same_store = close_due(args.small, stride=args.subscriptions // args.small)
    print(
        f"{args.small:>7,} of them on the {args.subscriptions:,} subscriptions' store: "
        f"closed in {same_store:.1f}s, {same_store / args.small * 1000:.1f} ms per subscription "
        f"(growth to {args.subscriptions:,} on one store: "
        f"{timings[args.subscriptions] / same_store:.1f}x)"
    )
    if not args.keep:
        drop_database(url)
    small, large = args.small, args.subscriptions
    growth = timings[large] / timings[small]
    print(
        f"growth {small:,} -> {large:,} subscriptions: {growth:.1f}x (linear: {large / small:g}x)"
    )

    def label(n: int) -> str:
        return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

    print(
        f"RESULT subscriptions={large} seconds={timings[large]:.0f} "
        f"per_subscription_ms={timings[large] / large * 1000:.1f} "
        f"growth_{label(small)}_to_{label(large)}={growth:.1f}"
    )


if __name__ == "__main__":
    main()
