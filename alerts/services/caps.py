"""Writes for caps: setting them, authorizing usage against them, releasing reservations."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
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
    plan no longer prices the meter)."""
    if cap.measure == Cap.Measure.UNITS:
        return cap.limit
    priced = invoicing.meter_price(customer=cap.customer, meter=cap.meter)
    units = None if priced is None else units_within(priced.price, cap.limit)
    return MAX_QUANTITY - 1 if units is None else units


def cap_describe(cap: Cap) -> str:
    """'50000 calls' or '500 EUR of spend', for messages."""
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
    meter: Meter,
    limit,
    on_exceed: str = Cap.OnExceed.REJECT,
    measure: str = Cap.Measure.UNITS,
) -> Cap:
    """Create or change the customer's cap on ``meter``, in units or in spend. The new
    limit goes onto the current and later windows in this transaction: every authorization
    that commits after it is held to it (both update the window row, so they queue on its
    lock). A customer's own change detaches the cap from its plan's default."""
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
        after={"meter": meter.code, **_cap_state(cap)},
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
        before={"meter": cap.meter.code, **_cap_state(cap)},
    )
    cap.delete()


# A window opens with the cap's limit read in the same statement (a money cap's, converted
# to units just before) and the period's usage so far; a concurrent opening waits for this
# one's row and uses it. (A cap change updates the windows it can see; one opened in the
# same instant by a transaction still in flight keeps the limit it read — the next change
# or period corrects it.)
_OPEN_WINDOW = """
    INSERT INTO alerts_capwindow (cap_id, period_start, period_end, "limit", used, reserved)
    SELECT id, %(start)s, %(end)s,
           CASE WHEN measure = 'units' THEN "limit" ELSE %(money_units)s END, %(used)s, 0
    FROM alerts_cap WHERE id = %(cap_id)s
    ON CONFLICT (cap_id, period_start) DO NOTHING
"""


def _window(cap: Cap, now: datetime) -> CapWindow:
    """The cap's window for the usage period at ``now``, opened if need be: a cap set
    mid-period counts the period's usage so far."""
    period = metering.current_period(cap.customer, now)
    window = CapWindow.objects.filter(cap=cap, period_start=period.start).first()
    if window is None:
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


def authorize(
    *, customer: Customer, meter: Meter, quantity, now: datetime | None = None
) -> Authorization:
    """Reserve ``quantity`` of ``meter`` for the customer if its cap allows it; the
    reservation holds the units until usage consumes it or it expires (``RESERVATION_TTL``)."""
    quantity = parse_quantity(quantity, field="quantity", allow_zero=False)
    now = now or timezone.now()
    cap = Cap.objects.select_related("customer").filter(customer=customer, meter=meter).first()
    if cap is None:
        return Authorization(allowed=True, remaining=None)
    window = _window(cap, now)
    params = {"quantity": quantity, "window_id": window.pk}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RESERVE, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_LEFT, params)
            return Authorization(allowed=False, remaining=cursor.fetchone()[0].normalize())
        reservation = CapReservation.objects.create(
            window=window,
            quantity=quantity,
            remaining=quantity,
            created_at=now,
            expires_at=now + RESERVATION_TTL,
        )
    return Authorization(allowed=True, remaining=row[0].normalize(), reservation=reservation)


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
    new usage to its cap. Usage an authorization reserved is let through (and consumes the
    reservation); beyond that, events fit in batch order while the allowance lasts, and the
    rest are refused, or accepted and flagged where the customer chose so. Batches for one
    capped meter take turns on its window's row lock; uncapped usage costs one query."""
    metered = [e for e in events if e.meter_id is not None and not e.late]
    if not metered:
        return {}
    pairs = {(e.customer_id, e.meter_id) for e in metered}
    caps = {
        (cap.customer_id, cap.meter_id): cap
        for cap in Cap.objects.select_related("customer", "meter").filter(
            customer_id__in={c for c, _ in pairs}, meter_id__in={m for _, m in pairs}
        )
        if (cap.customer_id, cap.meter_id) in pairs
    }
    if not caps:
        return {}
    now = timezone.now()
    # Each event counts in the window of the usage period it happened in.
    by_window: dict[int, list[tuple[int, Decimal]]] = {}
    latest: dict[int, CapWindow] = {}  # per cap: almost every event of a batch shares one
    for event in metered:
        cap = caps.get((event.customer_id, event.meter_id))
        if cap is None:
            continue
        quantity = event_quantity(cap.meter, event.properties)
        if not quantity:
            continue
        window = latest.get(cap.pk)
        if window is None or not window.period_start <= event.timestamp < window.period_end:
            window = latest[cap.pk] = _window(cap, event.timestamp)
        by_window.setdefault(window.pk, []).append((event.index, quantity))
    verdicts: dict[int, GuardVerdict] = {}
    descriptions: dict[int, str] = {}

    def describe(cap: Cap) -> str:
        if cap.pk not in descriptions:
            descriptions[cap.pk] = cap_describe(cap)
        return descriptions[cap.pk]

    # Locked in id order: two batches touching the same windows cannot deadlock.
    locked = CapWindow.objects.select_for_update().filter(pk__in=by_window).order_by("pk")
    for window in locked.select_related("cap__meter"):
        cap = window.cap
        reserved_left = window.reserved
        allowance = max(window.limit - window.used - window.reserved, Decimal(0))
        consumed = added = Decimal(0)
        for index, quantity in by_window[window.pk]:
            from_reserved = min(quantity, reserved_left)
            beyond = quantity - from_reserved
            if beyond > allowance - added:
                message = (
                    f"The {cap.meter.code} cap of {describe(cap)} for this billing period "
                    "is reached."
                )
                if cap.on_exceed == Cap.OnExceed.REJECT:
                    verdicts[index] = GuardVerdict("cap_exceeded", message)
                    continue
                verdicts[index] = GuardVerdict("cap_exceeded", message, refuse=False)
            reserved_left -= from_reserved
            consumed += from_reserved
            added += beyond
        if consumed or added:
            CapWindow.objects.filter(pk=window.pk).update(
                used=window.used + consumed + added, reserved=window.reserved - consumed
            )
            if consumed:
                with connection.cursor() as cursor:
                    cursor.execute(
                        _CONSUME_RESERVATIONS,
                        {"window_id": window.pk, "amount": consumed, "now": now},
                    )
    return verdicts
