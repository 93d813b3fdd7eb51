"""The events CSV: the filtered set, streamed out of PostgreSQL in chunks."""

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from types import GeneratorType

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from metering import services
from metering.views.events import CSV_COLUMNS
from tests.accounts.portal.helpers import member, signed_in
from tests.metering.factories import api_calls_meter, data_meter
from tests.metering.portal.helpers import at, send

pytestmark = pytest.mark.django_db

EXPORT = reverse("usage:events_export")
T0 = (timezone.now() - timedelta(days=20)).replace(hour=10, minute=0, second=0, microsecond=0)


def rows_of(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def sample(customer_a):
    api_calls_meter()
    data_meter()
    a = customer_a
    send(
        at(a, "call-1", "api_call", T0, endpoint="/v1/search", region="eu"),
        at(a, "call-2", "api_call", T0 + timedelta(hours=1), endpoint='/v1/x,"y"', region="us"),
        at(a, "gb-1", "data_processed", T0 + timedelta(hours=2, microseconds=250), gb=2.5),
    )
    return a


def test_csv_has_the_documented_columns_in_utc_oldest_first(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EXPORT)

    assert response.status_code == 200
    assert response.streaming is True
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="usage-events-alpha-')
    rows = rows_of(response)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["idempotency_key"] for r in rows] == ["call-1", "call-2", "gb-1"]
    first = rows[0]
    assert first["timestamp"] == T0.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert datetime.fromisoformat(first["received_at"]) > T0
    assert first["event_name"] == "api_call"
    assert json.loads(first["properties"]) == {"endpoint": "/v1/search", "region": "eu"}
    assert (first["late"], first["voided"]) == ("false", "false")
    # Quotes and commas in values survive the CSV round trip.
    assert json.loads(rows[1]["properties"])["endpoint"] == '/v1/x,"y"'
    assert rows[2]["timestamp"].endswith(".000250Z")


def test_csv_marks_void_and_late_events(client, owner_a, sample, customer_a):
    services.events_void(
        actor=None, customer=customer_a, idempotency_keys=["call-2"], reason="duplicate"
    )
    services.usage_close_through(
        actor=None, customer=customer_a, closed_through=T0 + timedelta(days=1)
    )
    send(at(customer_a, "late-1", "api_call", T0 + timedelta(hours=5), endpoint="/a", region="eu"))

    rows = {r["idempotency_key"]: r for r in rows_of(signed_in(client, owner_a).get(EXPORT))}

    assert (rows["call-2"]["late"], rows["call-2"]["voided"]) == ("false", "true")
    assert (rows["late-1"]["late"], rows["late-1"]["voided"]) == ("true", "false")
    assert (rows["call-1"]["late"], rows["call-1"]["voided"]) == ("false", "false")


def test_keys_a_spreadsheet_would_run_as_formulas_are_defused(client, owner_a, customer_a):
    api_calls_meter()
    keys = ['=HYPERLINK("http://evil.example")', "+1+1", "-2", "@SUM(A1)", "\tcmd", "plain-1"]
    send(
        *(at(customer_a, key, "api_call", T0 + timedelta(minutes=i)) for i, key in enumerate(keys))
    )

    rows = rows_of(signed_in(client, owner_a).get(EXPORT))

    assert [r["idempotency_key"] for r in rows] == [f"'{key}" for key in keys[:-1]] + ["plain-1"]


def test_csv_exports_exactly_the_filtered_set(client, owner_a, sample):
    signed_in(client, owner_a)

    by_meter = rows_of(client.get(EXPORT, {"meter": "api_call"}))
    by_property = rows_of(client.get(EXPORT, {"property": "gb=2.5"}))
    by_date = rows_of(client.get(EXPORT, {"start": (T0 + timedelta(days=1)).date().isoformat()}))

    assert [r["idempotency_key"] for r in by_meter] == ["call-1", "call-2"]
    assert [r["idempotency_key"] for r in by_property] == ["gb-1"]
    assert by_date == []


def test_the_page_links_the_csv_of_its_filters(client, owner_a, sample):
    page = signed_in(client, owner_a).get(reverse("usage:events"), {"meter": "api_call"})

    assert f'href="{EXPORT}?meter=api_call"' in page.content.decode()


def test_bad_filters_get_the_form_with_errors_not_a_file(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EXPORT, {"start": "2026-02-30"})

    assert response.status_code == 422
    assert not response.streaming
    assert b"Enter a date as YYYY-MM-DD." in response.content


@pytest.mark.parametrize("role", list(Role))
def test_every_member_role_may_export(client, customer_a, sample, role):
    response = signed_in(client, member(customer_a, role)).get(EXPORT)

    assert response.status_code == 200
    assert len(rows_of(response)) == 3


def test_csv_never_holds_another_customers_events(client, owner_a, sample, customer_b):
    send(at(customer_b, "beta-secret", "api_call", T0, endpoint="/v1/search", region="eu"))
    signed_in(client, owner_a)

    for params in ({}, {"meter": "api_call"}, {"property": "region=eu"}):
        keys = [r["idempotency_key"] for r in rows_of(client.get(EXPORT, params))]
        assert "beta-secret" not in keys


def test_export_works_with_query_logging_on_as_under_debug(client, owner_a, sample):
    signed_in(client, owner_a)

    with CaptureQueriesContext(connection) as queries:  # Django's debug cursor, as DEBUG=True
        rows = rows_of(client.get(EXPORT, {"meter": "api_call", "property": "region=eu"}))

    assert [r["idempotency_key"] for r in rows] == ["call-1"]
    assert any(q["sql"].lstrip().startswith("COPY") for q in queries.captured_queries)


# --- Large sets stream ---------------------------------------------------------------------

LARGE = 20_000


@pytest.fixture
def large(customer_a):
    api_calls_meter()
    for start in range(0, LARGE, 10_000):
        send(
            *(
                at(
                    customer_a,
                    f"bulk-{i:06d}",
                    "api_call",
                    T0 + timedelta(seconds=i),
                    endpoint=f"/v1/resource/{i % 50}",
                    region=("eu", "us", "ap")[i % 3],
                )
                for i in range(start, start + 10_000)
            )
        )
    return customer_a


def test_a_large_export_streams_in_chunks_without_holding_the_file(client, owner_a, large):
    response = signed_in(client, owner_a).get(EXPORT)

    assert response.streaming is True
    assert isinstance(response._iterator, GeneratorType)  # produced lazily, not a list
    tracemalloc.start()
    try:
        chunks = iter(response.streaming_content)
        first = next(chunks)
        # The first chunk is out while the rest is still in PostgreSQL: far from the whole file.
        assert first.startswith(b"timestamp,received_at,event_name,idempotency_key,")
        sizes, lines = [len(first)], first.count(b"\n")
        for chunk in chunks:
            sizes.append(len(chunk))
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    total = sum(sizes)
    assert lines == LARGE + 1  # the header and every event, once
    assert len(sizes) > 10 and max(sizes) < 200_000
    # Python never held more than a small fraction of the file at once.
    assert peak < total / 4, (peak, total)


def test_a_large_export_counts_every_event_in_order(client, owner_a, large):
    rows = rows_of(signed_in(client, owner_a).get(EXPORT))

    assert len(rows) == LARGE
    assert rows[0]["idempotency_key"] == "bulk-000000"
    assert rows[-1]["idempotency_key"] == f"bulk-{LARGE - 1:06d}"


@pytest.mark.django_db(transaction=True)
def test_a_client_that_stops_reading_leaves_the_connection_usable(client, owner_a, large):
    # Autocommit, as in production: the export runs in no transaction of its own.
    response = signed_in(client, owner_a).get(EXPORT)
    chunks = iter(response.streaming_content)
    next(chunks)

    response.close()  # what the server does when the client goes away: COPY is cancelled

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
