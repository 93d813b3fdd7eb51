"""The events page: verify usage down to single raw events, and export them as CSV.

The events table is partitioned by month and large, so pages are keyset-paginated on
(timestamp, id) — never OFFSET, which would read and discard every earlier row — and the
CSV export streams straight out of PostgreSQL (``COPY ... TO STDOUT``) in chunks, so a
million rows never sit in memory. Both start from ``selectors.event_list`` for the
member's own customer: the page and the file always show the same set.
"""

import re
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import BooleanField, F, Func, JSONField, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from accounts.views.mixins import FORM_INVALID, PortalView

from .. import selectors
from ..models import UsageEvent
from . import wants_fragment
from .forms import Cursor, EventFilterForm

PAGE = "metering/events.html"
PANEL = "metering/_events_panel.html"
PAGE_SIZE = 50
CSV_CHUNK_BYTES = 64 * 1024
CSV_COLUMNS = (
    "timestamp",
    "received_at",
    "event_name",
    "idempotency_key",
    "properties",
    "late",
    "voided",
)
# UTC, ISO 8601 with microseconds: 2026-11-02T10:15:00.000000Z
_ISO_UTC = """to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def filtered_events(form: EventFilterForm, *, membership) -> QuerySet[UsageEvent]:
    """The member's customer's events matching a valid filter form, newest first."""
    events = selectors.event_list(principal=membership, customer=membership.customer)
    meter = form.meter_selected()
    if meter is not None:
        events = events.filter(event_name=meter.code)
        if meter.filters:
            # The meter's own property filters, by the SQL function the rollups use, so
            # "this meter" lists exactly the events it counts.
            events = events.alias(
                counted=Func(
                    F("properties"),
                    Value(meter.filters, output_field=JSONField()),
                    function="metering_matches",
                    output_field=BooleanField(),
                )
            ).filter(counted=True)
    since, until = form.time_range()
    if since is not None:
        events = events.filter(timestamp__gte=since)
    if until is not None:
        events = events.filter(timestamp__lt=until)
    prop = form.cleaned_data.get("property")
    if prop is not None:
        name, value = prop
        # The property as text (->>), the way meter filters compare it: region=eu, gb=2.5.
        events = events.alias(property_text=KeyTextTransform(name, "properties")).filter(
            property_text=value
        )
    return events


def events_page(
    events: QuerySet[UsageEvent], *, after: Cursor | None, before: Cursor | None
) -> tuple[list[UsageEvent], bool, bool]:
    """One page of ``events`` (newest first) by keyset: (rows, has_newer, has_older)."""
    if before is not None:
        newer = events.filter(timestamp__gte=before.timestamp).exclude(
            timestamp=before.timestamp, id__lte=before.pk
        )
        rows = list(newer.order_by("timestamp", "id")[: PAGE_SIZE + 1])
        if len(rows) > PAGE_SIZE:
            return rows[:PAGE_SIZE][::-1], True, True
        # Back at the newest events: show a full first page rather than a short one.
        after = None
    if after is not None:
        events = events.filter(timestamp__lte=after.timestamp).exclude(
            timestamp=after.timestamp, id__gte=after.pk
        )
    rows = list(events.order_by("-timestamp", "-id")[: PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], after is not None, len(rows) > PAGE_SIZE


def page_of_events(
    events: QuerySet[UsageEvent], form, *, here: str, params: dict, export: str
) -> dict:
    """A page of ``events`` as template context: the rows, and links to the newest,
    newer and older pages and to the CSV export, all keeping the filters in ``params``."""
    rows, has_newer, has_older = events_page(
        events, after=form.cleaned_data["after"], before=form.cleaned_data["before"]
    )

    def link(**cursor) -> str:
        return f"{here}?{urlencode({**params, **cursor})}"

    return {
        "rows": rows,
        "filtered": bool(params),
        "newest_url": link() if has_newer else None,
        "newer_url": link(before=Cursor(rows[0].timestamp, rows[0].pk)) if has_newer else None,
        "older_url": link(after=Cursor(rows[-1].timestamp, rows[-1].pk)) if has_older else None,
        "export_url": f"{export}?{urlencode(params)}",
    }


def csv_copy_statement(events: QuerySet[UsageEvent]) -> tuple[str, tuple]:
    """``COPY (the filtered events, oldest first) TO STDOUT`` as CSV with a header."""
    inner = events.order_by().values_list(
        "id",
        "timestamp",
        "received_at",
        "event_name",
        "idempotency_key",
        "properties",
        "late",
        "voided_at",
    )
    sql, params = inner.query.sql_with_params()
    statement = f"""
        COPY (
            SELECT {_ISO_UTC.format(column='e."timestamp"')} AS "timestamp",
                   {_ISO_UTC.format(column="e.received_at")} AS received_at,
                   e.event_name,
                   -- The integrator's key is free text: one a spreadsheet would run as
                   -- a formula gets a leading quote (OWASP's CSV injection advice).
                   -- Event names start with a letter, properties with a brace.
                   CASE WHEN left(e.idempotency_key, 1)
                             IN ('=', '+', '-', '@', chr(9), chr(13))
                        THEN '''' || e.idempotency_key
                        ELSE e.idempotency_key END AS idempotency_key,
                   e.properties::text AS properties,
                   CASE WHEN e.late THEN 'true' ELSE 'false' END AS late,
                   CASE WHEN e.voided_at IS NULL THEN 'false' ELSE 'true' END AS voided
            FROM ({sql}) AS e
            ORDER BY e."timestamp", e.id
        ) TO STDOUT WITH (FORMAT csv, HEADER)
    """  # noqa: S608 - the inner query is Django's compiled, parametrized SQL
    return statement, params


def stream_csv(events: QuerySet[UsageEvent]):
    """Yield the CSV in chunks of about ``CSV_CHUNK_BYTES`` as PostgreSQL produces it.

    Closing the generator early (the client went away) leaves the ``with`` blocks with
    ``GeneratorExit``: psycopg cancels the COPY and the connection stays usable.
    """
    statement, params = csv_copy_statement(events)
    # Parameters merged by psycopg's own quoting (COPY takes no bound parameters, and
    # Django's debug cursor passes COPY the statement alone).
    statement = connection.ops.compose_sql(statement, params)
    buffer = bytearray()
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for data in copy:
            buffer += data
            if len(buffer) >= CSV_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


class EventsMixin(PortalView):
    """Every member may see their customer's events (viewers included): GET only."""

    def filter_form(self) -> EventFilterForm:
        return EventFilterForm(
            self.request.GET,
            meters=list(selectors.meter_list()),
            zone=ZoneInfo(self.customer.timezone),
        )


class EventsView(EventsMixin):
    def get(self, request):
        form = self.filter_form()
        here = reverse("usage:events")
        context = {
            "form": form,
            "customer_tz": self.customer.timezone,
            "rows": [],
            "page_size": PAGE_SIZE,
            "here": here,
        }
        status = 200
        if form.is_valid():
            context.update(
                page_of_events(
                    filtered_events(form, membership=self.membership),
                    form,
                    here=here,
                    params=form.filter_params(),
                    export=reverse("usage:events_export"),
                )
            )
        else:
            status = FORM_INVALID
        if wants_fragment(request):
            return self.render(PANEL, context, status=status)
        return self.render(PAGE, context, status=status)


class EventsExportView(EventsMixin):
    def get(self, request):
        form = self.filter_form()
        if not form.is_valid():
            context = {
                "form": form,
                "customer_tz": self.customer.timezone,
                "rows": [],
                "here": reverse("usage:events"),
            }
            return self.render(PAGE, context, status=FORM_INVALID)
        events = filtered_events(form, membership=self.membership)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.customer.external_id).strip("-") or "events"
        response = StreamingHttpResponse(stream_csv(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-events-{name}-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response
