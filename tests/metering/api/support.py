"""Helpers for the metering API tests: sending batches, times relative to now, walking pages."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from django.utils import timezone

from tests.accounts.api.support import api
from tests.accounts.factories import make_api_key

EVENTS = "/api/v1/events"
VOID = "/api/v1/events/void"
METERS = "/api/v1/meters"
USAGE = "/api/v1/usage"


def operator():
    """A client holding a fresh operator key with every scope."""
    return api(make_api_key()[1])


def send(client, body, **extra):
    """POST a batch as raw JSON bytes (a list, an object, or already-encoded bytes)."""
    data = body if isinstance(body, bytes | str) else orjson.dumps(body)
    return client.post(EVENTS, data, content_type="application/json", **extra)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def ago(**delta) -> str:
    """An RFC 3339 time this long before now (events must be recent enough to be taken)."""
    return iso(timezone.now() - timedelta(**delta))


def month_start(months_back: int, zone: str = "UTC") -> datetime:
    """Midnight on the first of the month ``months_back`` months before this one, in ``zone``."""
    today = timezone.now().astimezone(ZoneInfo(zone))
    year, month = today.year, today.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=ZoneInfo(zone))


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def walk(client, url: str, params: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Every row of a list by following ``next``; also the pages as returned."""
    pages, rows = [], []
    response = client.get(url, params or {})
    while True:
        assert response.status_code == 200, response.content
        page = response.json()
        pages.append(page)
        rows.extend(page["results"])
        if page["next"] is None:
            return rows, pages
        response = client.get(page["next"])
