"""Writes for caps: setting them, authorizing usage against them, releasing reservations.

A total spend cap (a cap without a meter) holds the period's usage charges: the sum, over
the additive meters the customer's current plan version prices, of what the period's usage
of each costs. Flat fees, commitments and discounts are fixed amounts, not usage, and do
not count. Its window counts money; an event's cost is what its quantity adds to its
meter's charge after the period's usage so far (rounded up to 12 decimals, never below
zero: a volume price that falls past a tier bound gives nothing back to the cap).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import InvalidInput
from accounts.models import Customer
from accounts.services import Actor, audit_record, exact_decimal
from invoicing import selectors as invoicing
from invoicing.rating import units_within
from metering import selectors as metering
from metering.hooks import GuardVerdict, NewEvent
from metering.ingest import event_quantity
from metering.models import Meter

from ..models import Cap, CapReservation, CapWindow
from .spend import SpendTerms, spend_terms, usage_charges, usage_cost

MAX_QUANTITY = Decimal("1e24")  # the column holds 26 digits before the point
# The usage of an authorized request follows within seconds; this covers its retries.
RESERVATION_TTL = timedelta(minutes=10)


def parse_quantity(value, *, field: str, allow_zero: bool = False) -> Decimal:
    """An exact, finite, non-negative quantity (strings or integers: a float is not exact)."""
    quantity = exact_decimal(value, field=field)
    if not quantity.is_finite() or quantity < 0 or (quantity == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise InvalidInput(f"{field} must be {least}.", field=field)
    if quantity >= MAX_QUANTITY or quantity != quantity.quantize(Decimal("1e-12")):
        raise InvalidInput(f"{field} has too many digits (at most 12 decimals).", field=field)
    return quantity


def cap_units(cap: Cap) -> Decimal:
    """The cap as units of its meter: a money cap buys as many units as the customer's
    current price gives for its amount (unbounded when the price never reaches it, or the
    plan no longer prices the meter). A total spend cap stays in money."""
    if cap.measure == Cap.Measure.UNITS or cap.is_total:
        return cap.limit
    priced = invoicing.meter_price(customer=cap.customer, meter=cap.meter)
    units = None if priced is None else units_within(priced.price, cap.limit)
    return MAX_QUANTITY - 1 if units is None else units


def cap_describe(cap: Cap) -> str:
    """'50000 calls', '500 EUR of spend' or '900 EUR of usage spend', for messages."""
    if cap.is_total:
        terms = spend_terms(cap.customer)
        currency = f" {terms.currency}" if terms else ""
        return f"{cap.limit.normalize():f}{currency} of usage spend"
    if cap.measure == Cap.Measure.MONEY:
        priced = invoicing.meter_price(customer=cap.customer, meter=cap.meter)
        currency = f" {priced.currency}" if priced else ""
        return f"{cap.limit.normalize():f}{currency} of spend"
    return f"{cap.limit.normalize():f} {cap.meter.unit_label}"


@transaction.atomic
def cap_set(
    *,
    actor: Actor,
    customer: Customer,
    meter: Meter | None,
    limit,
    on_exceed: str = Cap.OnExceed.REJECT,
    measure: str = Cap.Measure.UNITS,
) -> Cap:
    """Create or change the customer's cap on ``meter``, in units or in spend, or with no
    meter its cap on the total spend of all usage (in money). The new limit goes onto the
    current and later windows in this transaction: every authorization that commits after
    it is held to it (both update the window row, so they queue on its lock). A customer's
    own change detaches the cap from its plan's default."""
    if meter is None:
        return _total_cap_set(
            actor=actor, customer=customer, limit=limit, on_exceed=on_exceed, measure=measure
        )
    if not meter.is_additive:
        raise InvalidInput(
            f"Meter {meter.code} {meter.get_aggregation_display().lower()}s: only count and "
            "sum meters can be capped.",
            field="meter",
            code="meter_not_cappable",
        )
    limit = parse_quantity(limit, field="limit", allow_zero=True)
    if on_exceed not in Cap.OnExceed.values:
        raise InvalidInput(
            f"on_exceed must be one of: {', '.join(Cap.OnExceed.values)}.", field="on_exceed"
        )
    if measure not in Cap.Measure.values:
        raise InvalidInput(
            f"measure must be one of: {', '.join(Cap.Measure.values)}.", field="measure"
        )
    if (
        measure == Cap.Measure.MONEY
        and invoicing.meter_price(customer=customer, meter=meter) is None
    ):
        raise InvalidInput(
            f"The customer's plan does not price {meter.code}, so a spend cap on it has "
            "nothing to count; cap its units instead.",
            field="measure",
            code="meter_not_priced",
        )
    return _cap_save(
        actor=actor,
        customer=customer,
        meter=meter,
        limit=limit,
        on_exceed=on_exceed,
        measure=measure,
    )


def _total_cap_set(*, actor, customer, limit, on_exceed, measure) -> Cap:
    if measure != Cap.Measure.MONEY:
        raise InvalidInput(
            "A cap on total spend is in money: set measure to money, or choose a meter to "
            "cap its units.",
            field="measure",
            code="total_cap_is_money",
        )
    limit = parse_quantity(limit, field="limit", allow_zero=True)
    if on_exceed not in Cap.OnExceed.values:
        raise InvalidInput(
            f"on_exceed must be one of: {', '.join(Cap.OnExceed.values)}.", field="on_exceed"
        )
    if spend_terms(customer) is None:
        raise InvalidInput(
            "The customer's plan prices no usage, so a cap on total usage spend has nothing "
            "to count.",
            field="meter",
            code="nothing_priced",
        )
    return _cap_save(
        actor=actor,
        customer=customer,
        meter=None,
        limit=limit,
        on_exceed=on_exceed,
        measure=measure,
    )


def _cap_save(*, actor, customer, meter, limit, on_exceed, measure) -> Cap:
    cap = Cap.objects.select_for_update().filter(customer=customer, meter=meter).first()
    before = None if cap is None else _cap_state(cap)
    if cap is None:
        cap = Cap(customer=customer, meter=meter)
    cap.limit, cap.on_exceed, cap.measure = limit, on_exceed, measure
    if actor is not None:  # the customer's or operator's own choice, not the plan's
        cap.plan_default = None
    cap.save()
    CapWindow.objects.filter(cap=cap, period_end__gt=timezone.now()).update(limit=cap_units(cap))
    audit_record(
        actor=actor,
        action="cap.set",
        obj=cap,
        customer=customer,
        before=before,
        after={"meter": meter.code if meter else None, **_cap_state(cap)},
    )
    return cap


def _cap_state(cap: Cap) -> dict:
    return {"limit": str(cap.limit), "measure": cap.measure, "on_exceed": cap.on_exceed}


@transaction.atomic
def cap_remove(*, actor: Actor, cap: Cap) -> None:
    audit_record(
        actor=actor,
        action="cap.removed",
        obj=cap,
        customer=cap.customer,
        # plan_default: a copy of a plan's default that a person removed stays removed.
        before={
            "meter": cap.meter.code if cap.meter else None,
            **_cap_state(cap),
            "plan_default": cap.plan_default_id,
        },
    )
    cap.delete()


# A window opens with the cap's limit read in the same statement (a money cap's on a meter,
# converted to units just before) and the period's usage (a total cap's: spend) so far; a
# concurrent opening waits for this one's row and uses it. (A cap change updates the
# windows it can see; one opened in the same instant by a transaction still in flight keeps
# the limit it read — the next change or period corrects it.)
_OPEN_WINDOW = """
    INSERT INTO alerts_capwindow (cap_id, period_start, period_end, "limit", used, reserved)
    SELECT id, %(start)s, %(end)s,
           CASE WHEN measure = 'units' OR meter_id IS NULL THEN "limit"
                ELSE %(money_units)s END,
           %(used)s, 0
    FROM alerts_cap WHERE id = %(cap_id)s
    ON CONFLICT (cap_id, period_start) DO NOTHING
"""


def _window(cap: Cap, now: datetime) -> CapWindow:
    """The cap's window for the usage period at ``now``, opened if need be: a cap set
    mid-period counts the period's usage (a total cap: its usage spend) so far."""
    period = metering.current_period(cap.customer, now)
    window = CapWindow.objects.filter(cap=cap, period_start=period.start).first()
    if window is None:
        if cap.is_total:
            terms = spend_terms(cap.customer)
            used = (
                Decimal(0)
                if terms is None
                else usage_charges(cap.customer, terms, period.start, period.end)
            )
        else:
            used = metering.usage_total(
                customer=cap.customer, meter=cap.meter, start=period.start, end=period.end
            )
        with connection.cursor() as cursor:
            cursor.execute(
                _OPEN_WINDOW,
                {
                    "cap_id": cap.pk,
                    "start": period.start,
                    "end": period.end,
                    "used": used,
                    "money_units": cap_units(cap),
                },
            )
        window = CapWindow.objects.get(cap=cap, period_start=period.start)
    return window


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    remaining: Decimal | None  # after this request; None: the meter is not capped
    reservation: CapReservation | None = None
    # The total spend cap's money left after this request (None: no total cap), and the
    # money reserved in it for this request (None when it costs nothing).
    spend_remaining: Decimal | None = None
    spend_reservation: CapReservation | None = None


# One statement decides: it reserves only if the window stays within its limit. A request
# waiting for the row (behind another request or a cap change) re-checks the condition on
# the row as committed, so no interleaving lets more through than the limit in force.
_RESERVE = """
    UPDATE alerts_capwindow
    SET reserved = reserved + %(quantity)s
    WHERE id = %(window_id)s AND used + reserved + %(quantity)s <= "limit"
    RETURNING "limit" - used - reserved
"""
_LEFT = """
    SELECT greatest("limit" - used - reserved, 0) FROM alerts_capwindow WHERE id = %(window_id)s
"""
_LOCK_WINDOWS = """
    SELECT id FROM alerts_capwindow WHERE id = ANY(%(window_ids)s) ORDER BY id FOR UPDATE
"""


def _reserve(cursor, window: CapWindow, quantity: Decimal) -> Decimal | None:
    """Reserve in the window: what is left after it, or ``None`` when it does not fit."""
    cursor.execute(_RESERVE, {"quantity": quantity, "window_id": window.pk})
    row = cursor.fetchone()
    return None if row is None else row[0].normalize()


def _left(cursor, window: CapWindow) -> Decimal:
    cursor.execute(_LEFT, {"window_id": window.pk})
    return cursor.fetchone()[0].normalize()


def authorize(
    *, customer: Customer, meter: Meter, quantity, now: datetime | None = None
) -> Authorization:
    """Reserve ``quantity`` of ``meter`` for the customer if its caps allow it: the meter's
    cap (in its units) and the total spend cap (the quantity's cost after the period's usage
    so far). Both reserve in one transaction or neither does; a reservation holds until
    usage consumes it or it expires (``RESERVATION_TTL``)."""
    quantity = parse_quantity(quantity, field="quantity", allow_zero=False)
    now = now or timezone.now()
    caps = Cap.objects.select_related("customer").filter(
        Q(meter=meter) | Q(meter__isnull=True), customer=customer
    )
    cap = total = None
    for found in caps:
        if found.is_total:
            total = found
        else:
            cap = found
    window = None if cap is None else _window(cap, now)
    spend_window, cost = None, Decimal(0)
    if total is not None:
        spend_window = _window(total, now)
        terms = spend_terms(customer)
        price = None if terms is None else terms.prices.get(meter.pk)
        if price is not None:
            before = metering.usage_total(
                customer=customer,
                meter=meter,
                start=spend_window.period_start,
                end=spend_window.period_end,
            )
            cost = usage_cost(price, before, quantity)
    if window is None and spend_window is None:
        return Authorization(allowed=True, remaining=None)
    reservation = spend_reservation = remaining = spend_remaining = None
    with transaction.atomic(), connection.cursor() as cursor:
        # Both rows locked in id order first, as ingestion locks them: never a deadlock.
        cursor.execute(_LOCK_WINDOWS, {"window_ids": [w.pk for w in (window, spend_window) if w]})
        if window is not None:
            remaining = _reserve(cursor, window, quantity)
            if remaining is None:
                spend_left = None if spend_window is None else _left(cursor, spend_window)
                return Authorization(
                    allowed=False, remaining=_left(cursor, window), spend_remaining=spend_left
                )
        if spend_window is not None:
            spend_remaining = (
                _reserve(cursor, spend_window, cost) if cost else _left(cursor, spend_window)
            )
            if spend_remaining is None:
                spend_left = _left(cursor, spend_window)
                if window is not None:  # the meter's units were reserved: give them back
                    transaction.set_rollback(True)
                    remaining = (remaining + quantity).normalize()
                return Authorization(allowed=False, remaining=remaining, spend_remaining=spend_left)
        if window is not None:
            reservation = _reservation(window, quantity, now)
        if cost:
            spend_reservation = _reservation(spend_window, cost, now)
    return Authorization(
        allowed=True,
        remaining=remaining,
        reservation=reservation,
        spend_remaining=spend_remaining,
        spend_reservation=spend_reservation,
    )


def _reservation(window: CapWindow, quantity: Decimal, now: datetime) -> CapReservation:
    return CapReservation.objects.create(
        window=window,
        quantity=quantity,
        remaining=quantity,
        created_at=now,
        expires_at=now + RESERVATION_TTL,
    )


# Every writer of a window's reservations holds the window's row lock first (authorize
# and ingestion update the window, then its reservations): the release does the same, so
# it never deadlocks with a batch, and a reservation is released once even when two
# releases run together (the second finds it released).
_LOCK_WINDOWS_WITH_EXPIRED = """
    SELECT id FROM alerts_capwindow
    WHERE id IN (
        SELECT window_id FROM alerts_capreservation
        WHERE released_at IS NULL AND expires_at <= %(now)s
    )
    ORDER BY id
    FOR UPDATE
"""
_RELEASE_EXPIRED = """
    WITH released AS (
        UPDATE alerts_capreservation r SET released_at = %(now)s, remaining = 0
        FROM (
            SELECT id, remaining FROM alerts_capreservation
            WHERE window_id = ANY(%(window_ids)s) AND released_at IS NULL
              AND expires_at <= %(now)s
        ) AS due
        WHERE r.id = due.id
        RETURNING r.window_id, due.remaining
    ), per_window AS (
        SELECT window_id, sum(remaining) AS amount FROM released GROUP BY window_id
    )
    UPDATE alerts_capwindow w SET reserved = w.reserved - p.amount
    FROM per_window p WHERE w.id = p.window_id
    RETURNING w.id
"""


def reservations_release_expired(*, now: datetime | None = None) -> int:
    """Give back the units of reservations no usage consumed in time; the number of
    windows that got units back. Idempotent."""
    params = {"now": now or timezone.now()}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_WINDOWS_WITH_EXPIRED, params)
        params["window_ids"] = [pk for (pk,) in cursor.fetchall()]
        if not params["window_ids"]:
            return 0
        cursor.execute(_RELEASE_EXPIRED, params)
        return len(cursor.fetchall())


# --- Ingestion against caps -----------------------------------------------------------------


# Takes an amount off a window's live reservations, oldest first, in one statement (an
# authorized burst leaves one reservation per request). The caller holds the window's row
# lock, which every writer of its reservations takes first.
_CONSUME_RESERVATIONS = """
    WITH live AS (
        SELECT id, remaining,
               sum(remaining) OVER (ORDER BY id) - remaining AS before_it
        FROM alerts_capreservation
        WHERE window_id = %(window_id)s AND released_at IS NULL
    )
    UPDATE alerts_capreservation r
    SET remaining = r.remaining - least(r.remaining, %(amount)s - live.before_it),
        released_at = CASE WHEN r.remaining <= %(amount)s - live.before_it
                           THEN %(now)s END
    FROM live
    WHERE r.id = live.id AND live.before_it < %(amount)s
"""


def caps_guard(events: list[NewEvent]) -> dict[int, GuardVerdict]:
    """Metering's ingest guard: inside the ingest transaction, hold each capped meter's
    new usage to its cap, then each customer's usage spend to its total spend cap. Usage an
    authorization reserved is let through (and consumes the reservation); beyond that,
    events fit in batch order while the allowance lasts, and the rest are refused, or
    accepted and flagged where the customer chose so. An event a meter cap refuses costs
    the total cap nothing. Batches take turns on the windows' row locks (all of a batch's,
    in id order); uncapped usage costs one query."""
    metered = [e for e in events if e.meter_id is not None and not e.late]
    if not metered:
        return {}
    pairs = {(e.customer_id, e.meter_id) for e in metered}
    meter_caps: dict[tuple[int, int], Cap] = {}
    total_caps: dict[int, Cap] = {}
    for cap in Cap.objects.select_related("customer", "meter").filter(
        Q(meter_id__in={m for _, m in pairs}) | Q(meter__isnull=True),
        customer_id__in={c for c, _ in pairs},
    ):
        if cap.is_total:
            total_caps[cap.customer_id] = cap
        elif (cap.customer_id, cap.meter_id) in pairs:
            meter_caps[(cap.customer_id, cap.meter_id)] = cap
    if not meter_caps and not total_caps:
        return {}
    now = timezone.now()
    # Each event counts in the window of the usage period it happened in.
    by_window: dict[int, list[tuple[int, Decimal]]] = {}
    latest: dict[int, CapWindow] = {}  # per cap: almost every event of a batch shares one

    def window_of(cap: Cap, event: NewEvent) -> CapWindow:
        window = latest.get(cap.pk)
        if window is None or not window.period_start <= event.timestamp < window.period_end:
            window = latest[cap.pk] = _window(cap, event.timestamp)
        return window

    for event in metered:
        cap = meter_caps.get((event.customer_id, event.meter_id))
        if cap is None:
            continue
        quantity = event_quantity(cap.meter, event.properties)
        if quantity:
            by_window.setdefault(window_of(cap, event).pk, []).append((event.index, quantity))
    # Total spend: the priced meters' events, with their quantities.
    spend_by_window: dict[int, list[tuple[int, int, Decimal]]] = {}
    terms_of: dict[int, SpendTerms] = {}  # per total window
    terms_by_customer = {c: spend_terms(cap.customer) for c, cap in total_caps.items()}
    for event in metered:
        terms = terms_by_customer.get(event.customer_id)
        if terms is None or event.meter_id not in terms.prices:
            continue  # no total cap, or the meter costs nothing
        quantity = event_quantity(terms.meters[event.meter_id], event.properties)
        if quantity:
            window = window_of(total_caps[event.customer_id], event)
            terms_of[window.pk] = terms
            spend_by_window.setdefault(window.pk, []).append(
                (event.index, event.meter_id, quantity)
            )

    verdicts: dict[int, GuardVerdict] = {}
    # Locked in id order: two batches touching the same windows cannot deadlock. The meter
    # windows are held first; a total window's usage is read after its lock, so a batch
    # that committed before this one is counted.
    locked = list(
        CapWindow.objects.select_for_update(of=("self",))
        .filter(pk__in=by_window.keys() | spend_by_window.keys())
        .order_by("pk")
        .select_related("cap__meter", "cap__customer")
    )
    for window in locked:
        if window.pk not in by_window:
            continue
        cap = window.cap
        message = (
            f"The {cap.meter.code} cap of {cap_describe(cap)} for this billing period is reached."
        )
        hold = _Hold(window)
        for index, quantity in by_window[window.pk]:
            if not hold.take(quantity):
                verdicts[index] = GuardVerdict(
                    "cap_exceeded", message, refuse=cap.on_exceed == Cap.OnExceed.REJECT
                )
                if cap.on_exceed == Cap.OnExceed.REJECT:
                    continue
                hold.take(quantity, force=True)
        hold.record(now)
    for window in locked:
        if window.pk not in spend_by_window:
            continue
        cap, terms = window.cap, terms_of[window.pk]
        message = (
            f"The total spend cap of {cap.limit.normalize():f} {terms.currency} of usage "
            "charges for this billing period is reached."
        )
        usage: dict[int, Decimal] = {}  # per meter: the period's usage before this event
        hold = _Hold(window)
        for index, meter_id, quantity in spend_by_window[window.pk]:
            if index in verdicts and verdicts[index].refuse:
                continue  # a meter cap refused it: it is not usage
            if meter_id not in usage:
                usage[meter_id] = metering.usage_total(
                    customer=cap.customer,
                    meter=terms.meters[meter_id],
                    start=window.period_start,
                    end=window.period_end,
                )
            cost = usage_cost(terms.prices[meter_id], usage[meter_id], quantity)
            if not hold.take(cost):
                if cap.on_exceed == Cap.OnExceed.REJECT:
                    verdicts[index] = GuardVerdict("cap_exceeded", message)
                    continue
                verdicts.setdefault(index, GuardVerdict("cap_exceeded", message, refuse=False))
                hold.take(cost, force=True)
            usage[meter_id] += quantity
        hold.record(now)
    return verdicts


class _Hold:
    """One locked window's allowance through a batch: reserved amounts go first (the
    usage an authorization reserved), then what the limit leaves."""

    def __init__(self, window: CapWindow):
        self.window = window
        self.reserved_left = window.reserved
        self.allowance = max(window.limit - window.used - window.reserved, Decimal(0))
        self.consumed = self.added = Decimal(0)

    def take(self, amount: Decimal, *, force: bool = False) -> bool:
        """Count ``amount`` if it fits (or regardless, with ``force``); whether it did."""
        from_reserved = min(amount, self.reserved_left)
        beyond = amount - from_reserved
        if beyond > self.allowance - self.added and not force:
            return False
        self.reserved_left -= from_reserved
        self.consumed += from_reserved
        self.added += beyond
        return True

    def record(self, now: datetime) -> None:
        window, consumed = self.window, self.consumed
        if not consumed and not self.added:
            return
        CapWindow.objects.filter(pk=window.pk).update(
            used=window.used + consumed + self.added, reserved=window.reserved - consumed
        )
        if consumed:
            with connection.cursor() as cursor:
                cursor.execute(
                    _CONSUME_RESERVATIONS,
                    {"window_id": window.pk, "amount": consumed, "now": now},
                )
