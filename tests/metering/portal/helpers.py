"""Helpers for the usage pages' tests: events sent through the real ingest path, at times
inside the customer's current month."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from metering.ingest import events_ingest
from metering.selectors import month_start
from tests.metering.factories import event


def this_month(customer, fraction: float, now: datetime | None = None) -> datetime:
    """A moment ``fraction`` of the way from the start of the customer's month to now."""
    now = now or timezone.now()
    start = month_start(now, ZoneInfo(customer.timezone))
    return start + (now - start) * fraction


def last_month(customer, now: datetime | None = None) -> datetime:
    """Noon on the 10th of the customer's previous month."""
    now = now or timezone.now()
    start = month_start(now, ZoneInfo(customer.timezone), months_back=1)
    return start + timedelta(days=9, hours=12)


def send(*events: dict) -> None:
    result = events_ingest(events=list(events))
    assert result.accepted == len(events), [r.as_dict() for r in result.results]


def at(customer, key: str, name: str, moment: datetime, **properties) -> dict:
    return event(customer, key, name=name, ts=moment.isoformat(), **properties)
