"""Writes for metering: meters, voids, the closed-through time, reconciliation runs.

Ingestion itself lives in ``metering.ingest`` (it is the hot path and has its own
transaction shape); everything else that changes usage data is here.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from accounts.errors import Conflict, InvalidInput, NotFound
from accounts.models import Customer
from accounts.services import (
    Actor,
    audit_record,
    reject_unknown_fields,
    snapshot,
    validate_model,
)

from . import hooks
from .models import CustomerUsageState, EventKey, Meter
from .tracks import ceil_hour, floor_hour, rollups_recompute

MAX_GROUP_BY = 3
MAX_VOID_KEYS = 1_000
DEFINITION_FIELDS = ("code", "aggregation", "value_property", "filters", "group_by", "is_active")
METER_FIELDS = ("name", "unit_label", *DEFINITION_FIELDS)


# --- Meters -----------------------------------------------------------------------------


def normalize_filters(filters) -> list[dict]:
    """Accept ``{"property", "equals": v}`` or ``{"property", "in": [..]}`` (or the stored
    ``values`` form) and store ``{"property", "values": [text, ...]}``."""
    if filters in (None, ""):
        return []
    if not isinstance(filters, list):
        raise InvalidInput("filters must be a list.", field="filters")
    normalized = []
    for i, item in enumerate(filters):
        if not isinstance(item, dict) or not isinstance(item.get("property"), str):
            raise InvalidInput(f"filters[{i}] needs a property.", field="filters")
        operators = {"equals", "in", "values"} & set(item)
        if len(operators) != 1 or set(item) - {"property", *operators}:
            raise InvalidInput(f"filters[{i}] takes exactly one of equals or in.", field="filters")
        (operator,) = operators
        values = [item[operator]] if operator == "equals" else item[operator]
        if not isinstance(values, list) or not values:
            raise InvalidInput(
                f"filters[{i}].{operator} needs at least one value.", field="filters"
            )
        texts = []
        for value in values:
            if isinstance(value, bool):
                texts.append("true" if value else "false")
            elif isinstance(value, str | int | float):
                texts.append(str(value))
            else:
                raise InvalidInput(f"filters[{i}] values must be scalars.", field="filters")
        normalized.append({"property": item["property"], "values": sorted(set(texts))})
    return normalized


def _validate_meter(meter: Meter) -> None:
    if meter.aggregation not in Meter.Aggregation.values:
        raise InvalidInput(f"{meter.aggregation!r} is not an aggregation.", field="aggregation")
    if meter.needs_value and not meter.value_property:
        raise InvalidInput(
            f"A {meter.aggregation} meter needs the value_property that carries its value.",
            field="value_property",
        )
    if not meter.needs_value:
        meter.value_property = ""
    group_by = list(meter.group_by or [])
    if len(group_by) > MAX_GROUP_BY or len(set(group_by)) != len(group_by):
        raise InvalidInput(
            f"group_by takes up to {MAX_GROUP_BY} distinct properties.", field="group_by"
        )
    meter.filters = normalize_filters(meter.filters)
    validate_model(meter)


def _queue_rebuild(meter: Meter) -> None:
    from .tasks import meter_rebuild  # tasks import services

    version = meter.definition_version
    transaction.on_commit(lambda: meter_rebuild.delay(meter.pk, version))


@transaction.atomic
def meter_create(*, actor: Actor, **fields) -> Meter:
    reject_unknown_fields(fields, METER_FIELDS, what="meter")
    meter = Meter(**fields)
    _validate_meter(meter)
    if Meter.objects.filter(code=meter.code).exists():
        raise Conflict(
            f"A meter with code {meter.code!r} exists.", code="meter_code_conflict", field="code"
        )
    # Events may already have arrived for this code: build its rollups from them.
    meter.rebuild_status, meter.rebuild_progress = Meter.RebuildStatus.QUEUED, 0
    meter.save()
    audit_record(
        actor=actor,
        action="meter.created",
        obj=meter,
        customer=None,
        after=snapshot(meter, METER_FIELDS),
    )
    _queue_rebuild(meter)
    return meter


@transaction.atomic
def meter_update(*, actor: Actor, meter: Meter, **changes) -> Meter:
    reject_unknown_fields(changes, METER_FIELDS, what="meter")
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    before = snapshot(meter, METER_FIELDS)
    for name, value in changes.items():
        setattr(meter, name, value)
    _validate_meter(meter)
    after = snapshot(meter, METER_FIELDS)
    changed = {k for k in after if before[k] != after[k]}
    if not changed:
        return meter
    if "code" in changed and Meter.objects.filter(code=meter.code).exclude(pk=meter.pk).exists():
        raise Conflict(
            f"A meter with code {meter.code!r} exists.", code="meter_code_conflict", field="code"
        )
    if changed & set(DEFINITION_FIELDS):
        meter.definition_version += 1
        meter.rebuild_status, meter.rebuild_progress = Meter.RebuildStatus.QUEUED, 0
    meter.save()
    audit_record(
        actor=actor,
        action="meter.updated",
        obj=meter,
        customer=None,
        before={k: before[k] for k in changed},
        after={k: after[k] for k in changed},
    )
    if changed & set(DEFINITION_FIELDS):
        _queue_rebuild(meter)
    return meter


def _event_months() -> list[datetime]:
    """Month starts of the event partitions that exist (each holds one month)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT to_date(substring(c.relname FROM '(\\d{4}_\\d{2})$'), 'YYYY_MM')
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'metering_usageevent'::regclass ORDER BY 1
            """
        )
        return [datetime(d.year, d.month, 1, tzinfo=UTC) for (d,) in cursor.fetchall()]


def meter_rebuild(*, meter_id: int, version: int) -> bool:
    """Rebuild a meter's rollups from the raw events, month by month, reporting progress.

    Safe to run twice and to race a newer definition: it claims the rebuild of exactly
    ``version`` and stops as soon as a newer version is queued. Returns whether it ran.
    """
    claimed = Meter.objects.filter(
        pk=meter_id,
        definition_version=version,
        rebuild_status__in=[Meter.RebuildStatus.QUEUED, Meter.RebuildStatus.FAILED],
    ).update(
        rebuild_status=Meter.RebuildStatus.RUNNING,
        rebuild_progress=0,
        rebuild_started_at=timezone.now(),
        rebuild_error="",
    )
    if not claimed:
        return False
    meter = Meter.objects.get(pk=meter_id)
    months = _event_months()
    try:
        for done, month_start in enumerate(months, start=1):
            if not Meter.objects.filter(pk=meter_id, definition_version=version).exists():
                return False  # superseded; the newer rebuild owns the rollups now
            month_end = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
            rollups_recompute(meters=[meter], start=month_start, end=month_end)
            Meter.objects.filter(pk=meter_id, definition_version=version).update(
                rebuild_progress=int(done * 100 / len(months))
            )
    except Exception as exc:
        Meter.objects.filter(pk=meter_id, definition_version=version).update(
            rebuild_status=Meter.RebuildStatus.FAILED, rebuild_error=str(exc)[:2000]
        )
        raise
    Meter.objects.filter(pk=meter_id, definition_version=version).update(
        rebuild_status=Meter.RebuildStatus.IDLE,
        rebuild_progress=100,
        rebuilt_version=version,
        rebuild_finished_at=timezone.now(),
    )
    return True


# --- Voids ------------------------------------------------------------------------------


class VoidStatus:
    VOIDED = "voided"
    ALREADY_VOID = "already_void"
    NOT_FOUND = "not_found"
    PERIOD_CLOSED = "period_closed"


@transaction.atomic
def events_void(
    *, actor: Actor, customer: Customer, idempotency_keys: list[str], reason: str
) -> dict[str, str]:
    """Take events out of usage at once (raw rows stay, marked void). Per key: voided,
    already_void, not_found, or period_closed (invoiced usage is corrected by a credit
    note, never by editing a closed period)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why these events are voided.", field="reason")
    keys = list(dict.fromkeys(idempotency_keys))
    if not keys:
        raise InvalidInput("Give at least one idempotency key.", field="idempotency_keys")
    if len(keys) > MAX_VOID_KEYS:
        raise InvalidInput(
            f"Void at most {MAX_VOID_KEYS} events per request.", field="idempotency_keys"
        )
    now = timezone.now()
    state = CustomerUsageState.objects.filter(customer=customer).first()
    closed_through = state.closed_through if state else None
    found = dict(
        EventKey.objects.filter(customer=customer, idempotency_key__in=keys).values_list(
            "idempotency_key", "event_timestamp"
        )
    )
    outcome = {key: VoidStatus.NOT_FOUND for key in keys if key not in found}
    open_keys = []
    for key, moment in found.items():
        if closed_through is not None and moment < closed_through:
            outcome[key] = VoidStatus.PERIOD_CLOSED
        else:
            open_keys.append(key)
    voided = []
    if open_keys:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE metering_usageevent e SET voided_at = %(now)s, void_reason = %(reason)s
                FROM unnest(%(keys)s::text[], %(timestamps)s::timestamptz[]) AS k(key, ts)
                WHERE e.customer_id = %(customer_id)s AND e."timestamp" = k.ts
                  AND e.idempotency_key = k.key AND e.voided_at IS NULL
                RETURNING e.idempotency_key, e.event_name, e."timestamp", e.late
                """,
                {
                    "now": now,
                    "reason": reason[:500],
                    "customer_id": customer.pk,
                    "keys": open_keys,
                    "timestamps": [found[k] for k in open_keys],
                },
            )
            voided = cursor.fetchall()
    voided_keys = {row[0] for row in voided}
    for key in open_keys:
        outcome[key] = VoidStatus.VOIDED if key in voided_keys else VoidStatus.ALREADY_VOID

    counted = [row for row in voided if not row[3]]  # late events were never in the rollups
    meters = list(Meter.objects.filter(code__in={row[1] for row in counted}, is_active=True))
    if meters:
        hours = sorted({floor_hour(row[2]) for row in counted})
        rollups_recompute(
            meters=meters,
            start=hours[0],
            end=ceil_hour(hours[-1] + timedelta(seconds=1)),
            customer_ids=[customer.pk],
            hours=hours,
        )
        changed = {(customer.pk, m.pk) for m in meters}
        transaction.on_commit(lambda: hooks.notify_usage_recorded(changed))
    if voided_keys:
        audit_record(
            actor=actor,
            action="usage.events_voided",
            obj=customer,
            customer=customer,
            after={"idempotency_keys": sorted(voided_keys), "reason": reason[:500]},
        )
    return outcome


# --- Periods ----------------------------------------------------------------------------


@transaction.atomic
def usage_close_through(
    *, actor: Actor, customer: Customer, closed_through: datetime
) -> CustomerUsageState:
    """Advance the customer's closed-through time (invoicing calls this at period close).

    It never moves backwards: a closed period stays closed.
    """
    if closed_through.tzinfo is None:
        raise InvalidInput("closed_through must be timezone-aware.", field="closed_through")
    state, _ = CustomerUsageState.objects.select_for_update().get_or_create(customer=customer)
    if state.closed_through is not None and closed_through <= state.closed_through:
        return state
    before = state.closed_through
    state.closed_through = closed_through
    state.save(update_fields=["closed_through", "updated_at"])
    audit_record(
        actor=actor,
        action="usage.closed_through",
        obj=state,
        customer=customer,
        before={"closed_through": before.isoformat() if before else None},
        after={"closed_through": closed_through.isoformat()},
    )
    return state


def meter_get(*, code: str) -> Meter:
    meter = Meter.objects.filter(code=code).first()
    if meter is None:
        raise NotFound(f"No meter has code {code!r}.", code="unknown_meter", field="meter")
    return meter
