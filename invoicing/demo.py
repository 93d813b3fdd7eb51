"""Demo billing: a plan catalog, a subscription per demo customer and a year of invoices.

Called by ``manage.py seed_demo`` through the ``DEMO_SEEDERS`` setting, after
``metering.demo.seed_usage`` (it prices that seeder's four meters and bills its usage).
Everything goes through the real services: plans and versions through the catalog
services, subscriptions and the plan changes through the subscription services, invoices
by replaying the year with ``periods_close_due(now=...)`` at every anniversary and
``invoices_finalize_due(now=...)`` once each grace period is over, corrections through
``credit_note_issue``, ``invoice_void`` and ``dispute_open``. Nothing writes an invoice.

The catalog has Self-serve, Growth (two versions: a price change) and Enterprise (a
prepaid annual commitment drawn down month by month) in every currency the demo
customers bill in, converted from the USD price book at fixed rates and rounded to local
price points. Each customer gets the plan its usage profile and size call for (the same
draw as ``metering.demo``), an anniversary of its own about a year back (never before its
first usage), and a few Growth customers moved to the new Growth version mid-period, so
proration shows. The current period stays open: the upcoming invoice.

Deterministic and idempotent: every choice comes from ``random.Random`` seeded from the
caller's ``rng`` and the customer, and a rerun looks everything up by natural key (plan
codes and version numbers, the customer's subscription, the invoice per period, the
credit note memos, the dispute message), so it creates nothing twice; a rerun on a later
day closes and finalizes the periods that ended since.

One invoice is held by the reconciliation gate on purpose: before its period closes, one
hourly rollup of that customer (the real-time track) is nudged by a few API calls, as a
drift would, so finance can see the gate's evidence and release it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min
from django.utils import timezone

from accounts.models import Customer, Membership, User
from accounts.roles import Role
from metering.demo import account_for
from metering.models import EventKey, Meter, UsageRollup
from metering.tracks import ceil_hour, floor_hour

from . import services
from .models import CreditNote, Dispute, Invoice, InvoiceLine, Plan, PlanVersion, Subscription
from .periods import period_bounds, period_index_at
from .services import CreditRequest

METER_CODES = ("api_call", "data_processed", "active_seats", "user_active")
NORTHWIND = "acct-northwind-traders"
FINANCE_EMAIL = "finance@meterbook.local"

# Local prices: USD price x rate; flat amounts rounded (half-up) to the price point.
# currency: (rate to USD, price point for flat amounts)
PRICE_BOOK: dict[str, tuple[str, str]] = {
    "USD": ("1", "1"),
    "EUR": ("0.92", "1"),
    "GBP": ("0.79", "1"),
    "CHF": ("0.88", "1"),
    "CAD": ("1.37", "1"),
    "AUD": ("1.52", "1"),
    "SGD": ("1.35", "1"),
    "BRL": ("5", "5"),
    "SEK": ("10.5", "10"),
    "INR": ("83", "100"),
    "JPY": ("150", "100"),
}

TIERS = ("self-serve", "growth", "enterprise")
TIER_NAMES = {"self-serve": "Self-serve", "growth": "Growth", "enterprise": "Enterprise"}
TIER_DESCRIPTIONS = {
    "self-serve": "Card-billed monthly plan for small teams: a platform fee, then pay as you go.",
    "growth": "For scaling teams: graduated API pricing, data and active users.",
    "enterprise": "A prepaid annual commitment drawn down monthly; volume API pricing, "
    "data and seats.",
}
GROWTH_V2_NOTES = (
    "Price change: platform fee $299 -> $349; in exchange 250 API calls included "
    "(was 100) and lower API, data and per-user prices."
)

# A few Growth customers (besides Northwind) moved to the new Growth version mid-period.
MOVERS = 3

# Corrections, found again by their memo (or message) on a rerun.
PARTIAL_MEMO = (
    "Goodwill: the export pipeline re-ran after an outage and processed the same data "
    "twice; we credit half of this period's data processed."
)
FULL_MEMO = (
    "Billing error: this period was billed at the wrong rates during the catalog "
    "migration; the whole invoice is credited and the corrected charges were re-billed."
)
VOID_REASON = "Issued by mistake: the account was billed for this period by the legacy system."
DISPUTE_MESSAGE = (
    "This line bills more active users than we have people on the account: are service "
    "accounts, or the people we removed mid-period, counted? Please check before we pay."
)
HELD_NUDGE_CALLS = 3
REPLAY_STEP = timedelta(days=7)


@dataclass
class Placement:
    """Which plan a customer is on, since when, and whether it moved to Growth v2."""

    customer: Customer
    tier: str
    started_at: datetime
    moves: bool


def _money(usd: str, currency: str, *, flat: bool = False) -> str:
    rate, point = (Decimal(v) for v in PRICE_BOOK[currency])
    value = Decimal(usd) * rate
    if flat:
        value = (value / point).quantize(Decimal(1), rounding=ROUND_HALF_UP) * point
    return format(value.normalize(), "f")


def _usage(meter: str, description: str, currency: str, *, model: str, included="0", **price):
    component = {
        "kind": "usage",
        "meter": meter,
        "description": description,
        "pricing_model": model,
        "included_units": included,
    }
    if "unit_price" in price:
        component["unit_price"] = _money(price["unit_price"], currency)
    else:
        component["tiers"] = [
            {"up_to": up_to, "unit_price": _money(unit, currency)} for up_to, unit in price["tiers"]
        ]
    return component


def _flat(usd: str, description: str, currency: str, kind: str = "flat_fee") -> dict:
    return {"kind": kind, "description": description, "amount": _money(usd, currency, flat=True)}


def plan_versions(tier: str, currency: str) -> list[list[dict]]:
    """The components of each version of ``tier`` in ``currency``, oldest first.

    Prices are realistic; volumes are the demo's (a hundred to a thousand API calls, a few
    hundred to three thousand GB, 10 to 80 users or seats per customer-month), so tier
    bounds and included units sit where the demo customers reach them, and the API lines
    come to cents or a few dollars beside the fees, data, users and seats."""
    c = currency
    if tier == "self-serve":
        return [
            [
                _flat("49", "Self-serve platform fee", c),
                _usage(
                    "api_call", "API calls", c, model="per_unit", included="100", unit_price="0.002"
                ),
                _usage(
                    "data_processed",
                    "Data processed (GB)",
                    c,
                    model="per_unit",
                    included="50",
                    unit_price="0.10",
                ),
            ]
        ]
    if tier == "growth":
        return [
            [
                _flat("299", "Growth platform fee", c),
                _usage(
                    "api_call",
                    "API calls (graduated)",
                    c,
                    model="graduated",
                    included="100",
                    tiers=[("400", "0.002"), ("1500", "0.0015"), (None, "0.001")],
                ),
                _usage(
                    "data_processed",
                    "Data processed (GB)",
                    c,
                    model="per_unit",
                    unit_price="0.08",
                ),
                _usage("user_active", "Active users", c, model="per_unit", unit_price="9"),
            ],
            [
                _flat("349", "Growth platform fee", c),
                _usage(
                    "api_call",
                    "API calls (graduated)",
                    c,
                    model="graduated",
                    included="250",
                    tiers=[("400", "0.0018"), ("1500", "0.0012"), (None, "0.0008")],
                ),
                _usage(
                    "data_processed",
                    "Data processed (GB)",
                    c,
                    model="per_unit",
                    unit_price="0.075",
                ),
                _usage("user_active", "Active users", c, model="per_unit", unit_price="8"),
            ],
        ]
    return [
        [
            {
                **_flat("15000", "Annual prepaid commitment", c, kind="commitment"),
                "commitment_months": 12,
            },
            _usage(
                "api_call",
                "API calls (volume)",
                c,
                model="volume",
                tiers=[("500", "0.0015"), ("1000", "0.001"), (None, "0.0008")],
            ),
            _usage("data_processed", "Data processed (GB)", c, model="per_unit", unit_price="0.06"),
            _usage("active_seats", "Seats", c, model="per_unit", unit_price="28"),
        ]
    ]


def _plan_code(tier: str, currency: str) -> str:
    return f"{tier}-{currency.lower()}"


def _ensure_catalog(currencies: Iterable[str], counts: dict) -> dict[str, list[PlanVersion]]:
    """Every tier in every currency, with all its versions; keyed by plan code."""
    wanted = {_plan_code(t, c): (t, c) for c in sorted(currencies) for t in TIERS}
    plans = {p.code: p for p in Plan.objects.filter(code__in=wanted)}
    catalog: dict[str, list[PlanVersion]] = {}
    for code, (tier, currency) in wanted.items():
        with transaction.atomic():
            plan = plans.get(code)
            if plan is None:
                plan = services.plan_create(
                    actor=None,
                    code=code,
                    name=TIER_NAMES[tier],
                    currency=currency,
                    description=TIER_DESCRIPTIONS[tier],
                )
                counts["plans"] += 1
            versions = list(plan.versions.order_by("version"))
            for number, components in enumerate(plan_versions(tier, currency), start=1):
                if number <= len(versions):
                    continue
                versions.append(
                    services.plan_version_create(
                        actor=None,
                        plan=plan,
                        interval="month",
                        components=components,
                        notes=GROWTH_V2_NOTES if number == 2 else "Launch prices.",
                    )
                )
                counts["plan versions"] += 1
        catalog[code] = versions
    return catalog


def _tier_for(account) -> str:
    """Big established accounts commit annually, mid-sized ones grow on Growth, small ones
    (growing ones included: they start small) pay as they go."""
    if account.size >= 1.6 and account.profile != "growing":
        return "enterprise"
    if account.size >= 1.0:
        return "growth"
    return "self-serve"


def _month_start_back(now: datetime, months: int) -> tuple[int, int]:
    index = now.year * 12 + now.month - 1 - months
    return index // 12, index % 12 + 1


def _placements(
    customers: list[Customer], rng: random.Random, *, now: datetime, months: int
) -> list[Placement]:
    base_seed = rng.getrandbits(64)  # the same draw as metering.demo: same profile and size
    first_usage = dict(
        EventKey.objects.filter(customer__in=customers)
        .values("customer_id")
        .annotate(first=Min("event_timestamp"))
        .values_list("customer_id", "first")
    )
    year, month = _month_start_back(now, max(months - 1, 0))
    placements = []
    for customer in customers:
        account = account_for(customer, base_seed)
        draw = random.Random(f"{account.seed}:billing")  # noqa: S311 - demo data
        anniversary = datetime(year, month, draw.randint(2, 28), draw.randrange(24), tzinfo=UTC)
        started_at = anniversary
        if customer.pk in first_usage:
            started_at = max(started_at, ceil_hour(first_usage[customer.pk]))
        started_at = min(started_at, floor_hour(now) - timedelta(hours=1))
        tier = _tier_for(account)
        moves = tier == "growth" and (customer.external_id == NORTHWIND or draw.random() < 0.25)
        placements.append(Placement(customer, tier, started_at, moves))
    # Keep the movers few: Northwind and the first MOVERS others.
    others = [p for p in placements if p.moves and p.customer.external_id != NORTHWIND]
    for placement in others[MOVERS:]:
        placement.moves = False
    return placements


def _change_moment(subscription: Subscription, now: datetime) -> datetime | None:
    """Mid-period, three periods before the current one (or in the first)."""
    anchor = subscription.billing_anchor
    current = period_index_at(anchor, "month", now)
    start, end = period_bounds(anchor, "month", max(0, current - 3))
    start = max(start, subscription.started_at)
    at = start + timedelta(days=11, hours=7)
    return at if start < at < min(end, now) else None


def _subscribe(
    placements: list[Placement], catalog: dict[str, list[PlanVersion]], now: datetime, counts
) -> dict[int, Subscription]:
    existing = {
        s.customer_id: s
        for s in Subscription.objects.filter(customer__in=[p.customer for p in placements])
        .select_related("plan_version")
        .order_by("customer", "started_at")  # the latest one wins
    }
    moved = set(
        Subscription.objects.filter(
            customer__in=[p.customer for p in placements],
            phases__plan_version__version=2,
            phases__plan_version__plan__code__startswith="growth-",
        ).values_list("customer_id", flat=True)
    )
    subscriptions = {}
    for placement in placements:
        customer = placement.customer
        versions = catalog.get(_plan_code(placement.tier, customer.currency))
        if versions is None:
            continue
        with transaction.atomic():
            subscription = existing.get(customer.pk)
            if subscription is None:
                subscription = services.subscription_create(
                    actor=None,
                    customer=customer,
                    plan_version=versions[0],
                    started_at=placement.started_at,
                    billing_anchor=placement.started_at,
                )
                counts["subscriptions"] += 1
            if placement.moves and customer.pk not in moved and len(versions) > 1:
                at = _change_moment(subscription, now)
                if at is not None and at >= subscription.billed_through:
                    subscription = services.subscription_change_plan(
                        actor=None, subscription=subscription, plan_version=versions[1], at=at
                    )
                    counts["plan changes"] += 1
        subscriptions[customer.pk] = subscription
    return subscriptions


def _held_target(placements: list[Placement]) -> Placement | None:
    """A Growth customer (not Northwind, not a mover) whose latest closed period is held."""
    for placement in placements:
        if (
            placement.tier == "growth"
            and not placement.moves
            and placement.customer.external_id != NORTHWIND
            and placement.customer.status == Customer.Status.ACTIVE
        ):
            return placement
    return None


def _nudge_rollup(subscription: Subscription, start: datetime, end: datetime) -> bool:
    """Drift the real-time track: a few API calls more in one hour of [start, end)."""
    meter = Meter.objects.get(code="api_call")
    middle = start + (end - start) / 2
    rollup = (
        UsageRollup.objects.filter(
            customer=subscription.customer_id, meter=meter, hour__gte=middle, hour__lt=end
        )
        .order_by("hour", "dimensions")
        .first()
    )
    if rollup is None:
        return False
    UsageRollup.objects.filter(pk=rollup.pk).update(event_count=F("event_count") + HELD_NUDGE_CALLS)
    return True


def _close_and_finalize(
    subscriptions: dict[int, Subscription], held: Subscription | None, now: datetime, counts
) -> None:
    """Replay the past: close each period at its end, finalize it once its grace is over."""
    grace = timedelta(minutes=settings.INVOICING_FINALIZE_GRACE_MINUTES)
    moments: set[datetime] = set()
    held_end = None
    for subscription in Subscription.objects.filter(pk__in=[s.pk for s in subscriptions.values()]):
        end = subscription.current_period_end
        anchor = subscription.billing_anchor
        while end is not None and end <= now:
            moments.add(end)
            if subscription.pk == getattr(held, "pk", None):
                held_end = end
            _, end = period_bounds(anchor, "month", period_index_at(anchor, "month", end))
    if held is not None and (
        Invoice.objects.filter(subscription=held, status=Invoice.Status.HELD).exists()
        or Invoice.objects.filter(subscription=held, released_at__isnull=False).exists()
    ):
        held_end = None  # held once already (and maybe released): never again
    # The close job runs every few minutes in production; the replay runs it once a
    # week of demo time, so each run closes (and measures) many customers' periods at once.
    steps: list[datetime] = []
    if moments:
        step = min(moments)
        while step < max(moments):
            steps.append(step)
            step += REPLAY_STEP
        steps.append(max(moments))
    nudged = False
    for moment in steps:
        if held is not None and held_end is not None and not nudged and held_end <= moment:
            start = period_bounds(
                held.billing_anchor,
                "month",
                period_index_at(held.billing_anchor, "month", held_end - timedelta(seconds=1)),
            )[0]
            _nudge_rollup(held, max(start, held.started_at), held_end)
            nudged = True
        counts["periods closed"] += services.periods_close_due(now=moment)
        if moment + grace <= now:
            counts["invoices finalized"] += services.invoices_finalize_due(now=moment + grace)
    # Drafts left by an earlier run whose grace is over by now.
    counts["invoices finalized"] += services.invoices_finalize_due(now=now)


def _finance_actor() -> User | None:
    return User.objects.filter(email=FINANCE_EMAIL).first()


def _final_invoices(customer: Customer):
    return Invoice.objects.filter(customer=customer, status__in=Invoice.BILLED).order_by(
        "-period_start"
    )


def _second_latest(customer: Customer) -> Invoice | None:
    invoices = list(_final_invoices(customer)[:2])
    return invoices[-1] if invoices else None


def _corrections(placements: list[Placement], counts) -> None:
    """One partial (per-line) and one full credit note, one void, one open dispute."""
    customers = {p.customer.external_id: p for p in placements}
    actor = _finance_actor()
    pool = [p for p in placements if p.customer.external_id != NORTHWIND]
    taken: set[int] = set()

    def pick(tiers: tuple[str, ...]) -> Customer | None:
        for placement in pool:
            if placement.tier in tiers and placement.customer.pk not in taken:
                taken.add(placement.customer.pk)
                return placement.customer
        return None

    held = _held_target(placements)
    if held is not None:
        taken.add(held.customer.pk)

    customer = pick(("growth", "enterprise"))
    if (
        customer is not None
        and not CreditNote.objects.filter(customer=customer, memo=PARTIAL_MEMO).exists()
    ):
        invoice = _second_latest(customer)
        line = (
            invoice.lines.filter(meter__code="data_processed", amount_minor__gt=1).first()
            if invoice
            else None
        )
        if line is not None:
            services.credit_note_issue(
                actor=actor,
                invoice=invoice,
                reason=CreditNote.Reason.GOODWILL,
                memo=PARTIAL_MEMO,
                lines=[CreditRequest(line.pk, line.amount_minor // 2)],
            )
            counts["credit notes"] += 1

    customer = pick(("self-serve", "growth"))
    if (
        customer is not None
        and not CreditNote.objects.filter(customer=customer, memo=FULL_MEMO).exists()
    ):
        invoice = _second_latest(customer)
        if invoice is not None and invoice.total_minor > 0:
            services.credit_note_issue(
                actor=actor,
                invoice=invoice,
                reason=CreditNote.Reason.BILLING_ERROR,
                memo=FULL_MEMO,
            )
            counts["credit notes"] += 1

    customer = pick(("self-serve", "growth"))
    if (
        customer is not None
        and not Invoice.objects.filter(customer=customer, status=Invoice.Status.VOID).exists()
    ):
        invoice = _second_latest(customer)
        if invoice is not None and invoice.status == Invoice.Status.OPEN:
            services.invoice_void(actor=actor, invoice=invoice, reason=VOID_REASON)
            counts["invoices voided"] += 1

    northwind = customers.get(NORTHWIND)
    if northwind is None:
        return
    owner = (
        Membership.objects.filter(customer=northwind.customer, role=Role.OWNER)
        .select_related("user")
        .first()
    )
    if (
        owner is None
        or Dispute.objects.filter(customer=northwind.customer, message=DISPUTE_MESSAGE).exists()
    ):
        return
    latest = _final_invoices(northwind.customer).first()
    usage = (
        list(latest.lines.filter(kind=InvoiceLine.Kind.USAGE).select_related("meter"))
        if latest
        else []
    )
    # The active users line (what the message is about), else the dearest usage line.
    usage.sort(key=lambda line: (line.meter.code != "user_active", -line.amount_minor))
    line = usage[0] if usage else None
    if line is not None:
        services.dispute_open(actor=owner.user, invoice_line=line, message=DISPUTE_MESSAGE)
        counts["disputes opened"] += 1


def seed_billing(
    stdout,
    rng: random.Random,
    *,
    customers: Iterable[Customer] | None = None,
    months: int = 13,
    now: datetime | None = None,
) -> dict[str, int]:
    """Seed the catalog, subscribe ``customers`` (default: every customer) about
    ``months - 1`` months back, and invoice every period that ended before ``now``.
    Returns the counts of what it created."""
    started = time.monotonic()
    now = now or timezone.now()
    counts = dict.fromkeys(
        (
            "plans",
            "plan versions",
            "subscriptions",
            "plan changes",
            "periods closed",
            "invoices finalized",
            "credit notes",
            "invoices voided",
            "disputes opened",
        ),
        0,
    )
    if Meter.objects.filter(code__in=METER_CODES).count() < len(METER_CODES):
        stdout.write("seed_billing: skipped: the demo meters are missing (seed usage first)")
        return counts
    customers = sorted(
        customers if customers is not None else Customer.objects.all(),
        key=lambda customer: customer.external_id,
    )
    currencies = {c.currency for c in customers}
    unpriced = sorted(currencies - set(PRICE_BOOK))
    if unpriced:
        stdout.write(f"seed_billing: no demo prices in {', '.join(unpriced)}; not subscribed")
    catalog = _ensure_catalog(currencies & set(PRICE_BOOK), counts)
    placements = _placements(customers, rng, now=now, months=months)
    subscriptions = _subscribe(placements, catalog, now, counts)
    held = _held_target(placements)
    held_subscription = subscriptions.get(held.customer.pk) if held else None
    _close_and_finalize(subscriptions, held_subscription, now, counts)
    _corrections(placements, counts)

    created = ", ".join(f"{n:,} {what}" for what, n in counts.items() if n) or "nothing new"
    final = Invoice.objects.filter(customer__in=customers, status__in=Invoice.BILLED).count()
    held_count = Invoice.objects.filter(customer__in=customers, status=Invoice.Status.HELD).count()
    stdout.write(
        f"seed_billing: {created}; {len(subscriptions)} customers subscribed, {final:,} "
        f"finalized invoices, {held_count} held for review "
        f"({time.monotonic() - started:.1f}s)"
    )
    return counts
