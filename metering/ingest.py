"""Exactly-once ingestion of usage events: the heart of everything billed later.

One call takes a batch (up to ``MAX_BATCH_EVENTS``), validates each event on its own,
and in ONE transaction claims each new (customer, idempotency key) for good, stores the
raw events and adds them to the hourly rollups. A retry finds its keys claimed and counts
nothing twice; a crash rolls the whole batch back, keys included, so the retry counts it
once. Each event gets its own answer: accepted, duplicate, or rejected with a code.
"""

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import psycopg
from django.db import connection, transaction
from django.utils import timezone

from accounts.errors import TooLarge
from accounts.models import Customer

from . import hooks, sql
from .models import Meter
from .models.meters import EVENT_NAME_PATTERN

MAX_BATCH_EVENTS = 10_000
MAX_PROPERTIES_BYTES = 8 * 1024
MAX_KEY_LENGTH = 255
FUTURE_TOLERANCE = timedelta(minutes=5)
# Older events are almost certainly a client bug (an epoch of 0, a wrong unit); a
# backfill of real history stays well inside this.
MAX_EVENT_AGE = timedelta(days=3 * 366)
EVENT_FIELDS = frozenset({"idempotency_key", "customer", "event_name", "timestamp", "properties"})

_EVENT_NAME_RE = re.compile(EVENT_NAME_PATTERN)
# What SQL's metering_numeric() reads as a number (keep the two in step): ASCII blanks only
# (PostgreSQL's numeric cast refuses others), exponents of at most 4 digits, and values
# below 10^18 so sums fit the rollups' numeric(38, 12).
_NUMERIC_STRING_RE = re.compile(
    r"[ \t\n\r\f\v]*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,4})?[ \t\n\r\f\v]*"
)
MAX_QUANTITY = Decimal(10) ** 18


class Status:
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass
class EventResult:
    index: int
    idempotency_key: str | None
    status: str
    code: str | None = None
    message: str | None = None

    def as_dict(self) -> dict:
        data = {"index": self.index, "idempotency_key": self.idempotency_key, "status": self.status}
        if self.code:
            data["code"] = self.code
            data["message"] = self.message
        return data


@dataclass
class IngestResult:
    results: list[EventResult]
    changed: set[tuple[int, int]] = field(default_factory=set)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def accepted(self) -> int:
        return self.count(Status.ACCEPTED)

    @property
    def duplicates(self) -> int:
        return self.count(Status.DUPLICATE)

    @property
    def rejected(self) -> int:
        return self.count(Status.REJECTED)


@dataclass
class _Candidate:
    index: int
    key: str
    customer_id: int
    event_name: str
    timestamp: datetime
    properties: dict
    properties_json: str
    late: bool
    meter: Meter | None


class _Rejected(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message


def json_text(value) -> str | None:
    """A property as PostgreSQL's ``->>`` renders it (for matching meter filters)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def meter_matches(meter: Meter, properties: dict) -> bool:
    return all(json_text(properties.get(f["property"])) in f["values"] for f in meter.filters or ())


def event_quantity(meter: Meter, properties: dict) -> Decimal:
    """What one event adds to an additive meter (count or sum), the way the rollups count
    it: 1 per matching event, or its numeric value; 0 when it does not count."""
    if not meter_matches(meter, properties):
        return Decimal(0)
    if meter.aggregation == Meter.Aggregation.COUNT:
        return Decimal(1)
    value = properties.get(meter.value_property)
    if meter.aggregation != Meter.Aggregation.SUM or not is_numeric(value):
        return Decimal(0)
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value).strip(" \t\n\r\f\v"))


def is_numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < MAX_QUANTITY
    if isinstance(value, float):
        # As stored: JSON carries the float's shortest repr, which PostgreSQL reads exactly.
        return math.isfinite(value) and abs(Decimal(repr(value))) < MAX_QUANTITY
    if isinstance(value, str) and _NUMERIC_STRING_RE.fullmatch(value):
        return abs(Decimal(value.strip(" \t\n\r\f\v"))) < MAX_QUANTITY
    return False


@functools.lru_cache(maxsize=4096)
def _is_event_name(name: str) -> bool:
    # A batch repeats a handful of names thousands of times: match each once.
    # fullmatch: the pattern's "$" would also match before a trailing newline.
    return bool(_EVENT_NAME_RE.fullmatch(name))


def parse_timestamp(value) -> datetime:
    if not isinstance(value, str):
        raise _Rejected("invalid_timestamp", "timestamp must be an RFC 3339 string.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Rejected(
            "invalid_timestamp", f"timestamp {value[:40]!r} is not RFC 3339 (2026-01-31T12:00:00Z)."
        ) from None
    if parsed.tzinfo is None or ("T" not in value and "t" not in value and " " not in value):
        raise _Rejected(
            "invalid_timestamp", "timestamp needs a time and a UTC offset (e.g. Z or +02:00)."
        )
    return parsed.astimezone(UTC)


def _validate(
    index: int,
    raw,
    *,
    now: datetime,
    customers: dict[str, tuple[int, datetime | None]],
    meters: dict[str, Meter],
) -> _Candidate:
    if not isinstance(raw, dict):
        raise _Rejected("invalid_event", "Each event must be a JSON object.")
    if not EVENT_FIELDS.issuperset(raw):
        unknown = sorted(set(raw) - EVENT_FIELDS)
        raise _Rejected("unknown_field", f"{unknown[0]} is not an event field.")
    key = raw.get("idempotency_key")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise _Rejected(
            "invalid_idempotency_key",
            f"idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} characters.",
        )
    external_id = raw.get("customer")
    if not isinstance(external_id, str) or not external_id or "\x00" in external_id:
        raise _Rejected("invalid_customer", "customer must be the customer's external id.")
    if external_id not in customers:
        raise _Rejected("unknown_customer", f"No customer has external id {external_id[:128]!r}.")
    customer_id, closed_through = customers[external_id]
    event_name = raw.get("event_name")
    if not isinstance(event_name, str) or not _is_event_name(event_name):
        raise _Rejected(
            "invalid_event_name",
            "event_name must start with a letter and use letters, digits, _ . : - (max 128).",
        )
    timestamp = parse_timestamp(raw.get("timestamp"))
    if timestamp > now + FUTURE_TOLERANCE:
        raise _Rejected(
            "timestamp_in_future", "timestamp is more than 5 minutes ahead of Meterbook's clock."
        )
    if timestamp < now - MAX_EVENT_AGE:
        raise _Rejected("timestamp_too_old", "timestamp is more than three years in the past.")
    properties = raw.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _Rejected("invalid_properties", "properties must be a JSON object.")
    try:
        properties_blob = orjson.dumps(properties)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        raise _Rejected(
            "invalid_properties", "properties must be JSON with integers of at most 64 bits."
        ) from None
    if len(properties_blob) > MAX_PROPERTIES_BYTES:
        raise _Rejected(
            "properties_too_large", f"properties exceed {MAX_PROPERTIES_BYTES} bytes as JSON."
        )
    if b"\\u0000" in properties_blob:
        raise _Rejected("invalid_properties", "properties may not contain NUL characters.")
    properties_json = properties_blob.decode()
    meter = meters.get(event_name)
    if meter is not None and meter.needs_value and meter_matches(meter, properties):
        value = properties.get(meter.value_property)
        if meter.is_numeric and not is_numeric(value):
            raise _Rejected(
                "invalid_value",
                f"Meter {meter.code} needs a number in properties.{meter.value_property}.",
            )
        if not meter.is_numeric and (value is None or isinstance(value, dict | list)):
            raise _Rejected(
                "invalid_value",
                f"Meter {meter.code} needs a value in properties.{meter.value_property}.",
            )
    late = closed_through is not None and timestamp < closed_through
    return _Candidate(
        index, key, customer_id, event_name, timestamp, properties, properties_json, late, meter
    )


def _lookup_customers(raw_events: Sequence) -> dict[str, tuple[int, datetime | None]]:
    external_ids = {
        e.get("customer")
        for e in raw_events
        if isinstance(e, dict)
        and isinstance(e.get("customer"), str)
        and "\x00" not in e["customer"]
    }
    rows = Customer.objects.filter(external_id__in=external_ids).values_list(
        "external_id", "id", "usage_state__closed_through"
    )
    return {external_id: (pk, closed) for external_id, pk, closed in rows}


def _ensure_partitions(candidates: list[_Candidate]) -> None:
    months = sorted({date(c.timestamp.year, c.timestamp.month, 1) for c in candidates})
    if months:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT metering_ensure_month_partition(m) FROM unnest(%s::date[]) AS m", [months]
            )


def events_ingest(*, events: Sequence, now: datetime | None = None) -> IngestResult:
    """Store a batch of raw usage events exactly once and update the real-time track."""
    if len(events) > MAX_BATCH_EVENTS:
        raise TooLarge(
            f"A batch holds at most {MAX_BATCH_EVENTS:,} events; this one has {len(events):,}.",
            code="batch_too_large",
        )
    now = now or timezone.now()
    customers = _lookup_customers(events)
    meters = {m.code: m for m in Meter.objects.filter(is_active=True)}

    results: list[EventResult | None] = [None] * len(events)
    candidates: list[_Candidate] = []
    seen: set[tuple[int, str]] = set()
    for index, raw in enumerate(events):
        key = raw.get("idempotency_key") if isinstance(raw, dict) else None
        key = key if isinstance(key, str) else None
        try:
            candidate = _validate(index, raw, now=now, customers=customers, meters=meters)
        except _Rejected as rejection:
            results[index] = EventResult(
                index, key, Status.REJECTED, rejection.code, rejection.message
            )
            continue
        identity = (candidate.customer_id, candidate.key)
        if identity in seen:
            results[index] = EventResult(index, key, Status.DUPLICATE)
            continue
        seen.add(identity)
        candidates.append(candidate)

    changed: set[tuple[int, int]] = set()
    if candidates:
        _ensure_partitions(candidates)
        changed = _store(candidates, results, received_at=now)
    return IngestResult(results=results, changed=changed)


def _server_bound_cursor() -> psycopg.Cursor:
    """A plain psycopg cursor on Django's connection (same transaction), for COPY and
    server-side parameter binding, which Django's client-side binding cursors lack."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _claim_keys(cursor: psycopg.Cursor) -> set[tuple[int, str]] | None:
    """Claim the staged (customer, key) pairs; ``None`` when every one was new, else the
    pairs this batch claimed (the rest were claimed before, by this or another batch)."""
    try:
        with transaction.atomic():  # a savepoint: the failed attempt leaves nothing behind
            cursor.execute(sql.CLAIM_ALL_KEYS)
    except psycopg.errors.UniqueViolation:
        cursor.execute(sql.CLAIM_KEYS)
        return set(cursor.fetchall())
    return None


def _store(
    candidates: list[_Candidate], results: list[EventResult | None], *, received_at: datetime
) -> set[tuple[int, int]]:
    with transaction.atomic(), _server_bound_cursor() as cursor:
        # The batch travels once, by binary COPY into a per-connection temporary table
        # (emptied at commit or rollback); the statements below read it from there.
        cursor.execute(sql.STAGING_TABLE)
        # Emptied at commit; but a caller's enclosing transaction may ingest twice.
        cursor.execute(sql.STAGING_EMPTY)
        with cursor.copy(sql.STAGING_COPY) as copy:
            copy.set_types(sql.STAGING_TYPES)
            for c in candidates:
                copy.write_row(
                    (
                        c.index,
                        c.customer_id,
                        c.key,
                        c.event_name,
                        c.timestamp,
                        c.properties_json,
                        c.late,
                    )
                )
        claimed = _claim_keys(cursor)
        new: list[_Candidate] = []
        unstaged: list[int] = []
        for c in candidates:
            if claimed is None or (c.customer_id, c.key) in claimed:
                new.append(c)
            else:
                unstaged.append(c.index)
                results[c.index] = EventResult(c.index, c.key, Status.DUPLICATE)

        verdicts = {}
        if hooks.has_ingest_guards():
            verdicts = hooks.run_ingest_guards(
                [
                    hooks.NewEvent(
                        c.index,
                        c.customer_id,
                        c.event_name,
                        c.timestamp,
                        c.properties,
                        c.meter.pk if c.meter else None,
                        c.late,
                    )
                    for c in new
                ]
            )
        refused = {i: v for i, v in verdicts.items() if v.refuse}
        if refused:
            released = [c for c in new if c.index in refused]
            cursor.execute(
                sql.RELEASE_KEYS,
                {
                    "customer_ids": [c.customer_id for c in released],
                    "keys": [c.key for c in released],
                },
            )
            for c in released:
                verdict = refused[c.index]
                results[c.index] = EventResult(
                    c.index, c.key, Status.REJECTED, verdict.code, verdict.message
                )
                unstaged.append(c.index)
            new = [c for c in new if c.index not in refused]
        if unstaged:
            cursor.execute(sql.UNSTAGE, {"positions": unstaged})
        if not new:
            return set()

        meter_ids = sorted({c.meter.pk for c in new if c.meter is not None and not c.late})
        if meter_ids:
            cursor.execute(
                sql.LOCK_METERS_SHARED,
                {"lock_class": sql.ROLLUP_LOCK_CLASS, "meter_ids": meter_ids},
            )
        cursor.execute(sql.INGEST, {"received_at": received_at})
        for c in new:
            flag = verdicts.get(c.index)  # accepted, with what a guard noted
            results[c.index] = EventResult(
                c.index, c.key, Status.ACCEPTED, flag and flag.code, flag and flag.message
            )
        changed = {(c.customer_id, c.meter.pk) for c in new if c.meter is not None and not c.late}
        transaction.on_commit(lambda: hooks.notify_usage_recorded(changed))
    return changed
