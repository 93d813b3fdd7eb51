"""A line's drill-down: exactly the raw events the line counted, filterable like the usage
Events page (the same form and keyset pages), and their CSV streamed with the filter."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from invoicing import services
from invoicing.models import InvoiceLine
from tests.accounts.portal.helpers import HTMX, signed_in
from tests.invoicing.factories import ingest_usage
from tests.invoicing.portal.conftest import NOV, OCT

pytestmark = pytest.mark.django_db

OCTOBER_KEYS = {f"oct-eu-{i}" for i in range(40)} | {f"oct-us-{i}" for i in range(20)}


def events_url(line) -> str:
    return reverse("billing:line_events", args=[line.invoice_id, line.pk])


def export_url(line) -> str:
    return reverse("billing:line_events_export", args=[line.invoice_id, line.pk])


def keys_on(page: str) -> list[str]:
    return re.findall(r'<td class="key-cell"><code title="([^"]+)"', page)


def csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_drill_down_lists_exactly_the_events_the_line_counted(
    client, owner_a, billed_a, billed_b
):
    """Not the voided call, not the late one, not November's, not B's: the 60 billed."""
    line = billed_a.usage_line
    signed_in(client, owner_a)

    response = client.get(export_url(line))
    rows = csv_rows(response)

    assert {r["idempotency_key"] for r in rows} == OCTOBER_KEYS
    assert len(rows) == line.quantity == 60
    assert all(r["event_name"] == "api_call" and r["voided"] == "false" for r in rows)
    page = client.get(events_url(line)).content.decode()
    assert "Invoice INV-2026-000001" in page and "API calls" in page
    assert "Quantity 60 calls" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_pages_walk_the_lines_events_newest_first(client, owner_a, billed_a):
    line = billed_a.usage_line
    signed_in(client, owner_a)

    first = client.get(events_url(line)).content.decode()
    first_keys = keys_on(first)
    assert len(first_keys) == 50 and first_keys[0] == "oct-eu-39"
    older = re.search(r'href="([^"]+)" hx-get="[^"]+" [^>]*>Older', first).group(1)
    assert older.startswith(events_url(line) + "?after=")

    second_keys = keys_on(client.get(older.replace("&amp;", "&")).content.decode())
    assert len(second_keys) == 10
    assert set(first_keys) | set(second_keys) == OCTOBER_KEYS


def test_a_property_filter_narrows_the_page_and_its_csv(client, owner_a, billed_a):
    line = billed_a.usage_line
    signed_in(client, owner_a)

    page = client.get(events_url(line), {"property": "region=us"}).content.decode()
    assert sorted(keys_on(page)) == sorted(f"oct-us-{i}" for i in range(20))
    assert f"{export_url(line)}?property=region%3Dus" in page

    response = client.get(export_url(line), {"property": "region=us"})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.match(
        r'attachment; filename="INV-2026-000001-line-2-events-\d{8}-\d{6}\.csv"',
        response["Content-Disposition"],
    )
    rows = csv_rows(response)
    assert len(rows) == 20
    assert all('"region": "us"' in r["properties"] for r in rows)


def test_the_meter_cannot_be_swapped_and_dates_narrow_within_the_period(client, owner_a, billed_a):
    line = billed_a.usage_line
    signed_in(client, owner_a)

    # Another meter in the query string changes nothing: the line's meter stays.
    rows = csv_rows(client.get(export_url(line), {"meter": "data_processed"}))
    assert len(rows) == 60
    # Berlin dates: Oct 1-10 holds the first 13 eu calls (every 18.6 h) and 7 us calls.
    rows = csv_rows(client.get(export_url(line), {"start": "2026-10-01", "end": "2026-10-10"}))
    assert 0 < len(rows) < 60
    assert all(r["timestamp"] < "2026-10-11" for r in rows)


def test_htmx_filtering_returns_the_panel_only(client, owner_a, billed_a):
    response = signed_in(client, owner_a).get(
        events_url(billed_a.usage_line), {"property": "region=eu"}, headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="line-events-panel">')
    assert "<html" not in html and "Dispute" not in html
    assert len(keys_on(html)) == 40


def test_bad_filters_are_explained_not_exported(client, owner_a, billed_a):
    line = billed_a.usage_line
    signed_in(client, owner_a)

    page = client.get(events_url(line), {"property": "no equals sign"})
    assert page.status_code == 422
    assert "Write the property as name=value" in page.content.decode()
    export = client.get(export_url(line), {"end": "2026-10-01", "start": "2026-10-05"})
    assert export.status_code == 422
    assert not export.streaming
    assert "The end date is before the start date." in export.content.decode()


def test_a_line_without_events_has_no_drill_down(client, owner_a, billed_a):
    signed_in(client, owner_a)

    assert client.get(events_url(billed_a.flat_line)).status_code == 404
    assert client.get(export_url(billed_a.flat_line)).status_code == 404


def test_a_line_is_found_only_under_its_own_invoice(client, owner_a, billed_a, billed_b):
    signed_in(client, owner_a)
    a_line, b_line = billed_a.usage_line, billed_b.usage_line

    for name in ("line_events", "line_events_export", "line_dispute"):
        # B's line under A's invoice, A's line under B's invoice, B's line under B's invoice.
        for invoice_id, line_id in (
            (a_line.invoice_id, b_line.pk),
            (b_line.invoice_id, a_line.pk),
            (b_line.invoice_id, b_line.pk),
        ):
            url = reverse(f"billing:{name}", args=[invoice_id, line_id])
            assert client.get(url).status_code == 404, url
    assert b"beta-" not in client.get(export_url(a_line)).getvalue()


def test_late_usage_adjustment_lines_drill_down_to_the_late_events(
    client, owner_a, billed_a, meter
):
    """The late October call is billed on November's invoice, as an adjustment; one that
    arrives later still goes on December's, and each adjustment lists only its own."""
    december = NOV + timedelta(days=30)
    november = services.period_close(subscription_id=billed_a.subscription.pk, now=december)
    services.invoice_finalize(actor=None, invoice=november, now=december + timedelta(hours=2))
    ingest_usage(
        billed_a.customer,
        meter,
        [OCT + timedelta(days=25)],
        now=december + timedelta(days=1),
        prefix="later",
        region="eu",
    )
    january = december + timedelta(days=31)
    dec_invoice = services.period_close(subscription_id=billed_a.subscription.pk, now=january)
    services.invoice_finalize(actor=None, invoice=dec_invoice, now=january + timedelta(hours=2))
    signed_in(client, owner_a)

    first = november.lines.get(kind=InvoiceLine.Kind.LATE_USAGE)
    rows = csv_rows(client.get(export_url(first)))
    assert [r["idempotency_key"] for r in rows] == ["late-0"]
    assert [r["late"] for r in rows] == ["true"]
    second = dec_invoice.lines.get(kind=InvoiceLine.Kind.LATE_USAGE)
    assert second.quantity == 1
    assert [r["idempotency_key"] for r in csv_rows(client.get(export_url(second)))] == ["later-0"]
    november_usage = november.lines.get(kind=InvoiceLine.Kind.USAGE)
    assert [r["idempotency_key"] for r in csv_rows(client.get(export_url(november_usage)))] == [
        "nov-0"
    ]
