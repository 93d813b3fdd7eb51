"""The alert banner and the unread count every portal page shows.

Both are lazy and read once per request: a page that never shows them (an htmx fragment,
the login page) pays nothing, and a page that does pays one query for each. Anonymous
users and staff without a membership get nothing, without a query (the membership lookup
is the one ``accounts.context_processors.portal`` already made, cached on the user).
"""

from django.http import HttpRequest

from . import selectors
from .selectors.history import UNREAD_COUNT_LIMIT


class _Once:
    """A value computed on first use in a template, then kept for the request (the
    template engine calls callables it finds in the context)."""

    def __init__(self, request: HttpRequest, name: str, compute):
        self.request, self.name, self.compute = request, name, compute

    def __call__(self):
        cache = self.request.__dict__.setdefault("_alerts_nav", {})
        if self.name not in cache:
            cache[self.name] = self.compute()
        return cache[self.name]


def unread_label(count: int) -> str:
    return f"{UNREAD_COUNT_LIMIT - 1}+" if count >= UNREAD_COUNT_LIMIT else str(count)


def alerts(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = getattr(user, "membership", None)
    if membership is None or membership.accepted_at is None:
        return {}
    count = _Once(request, "unread", lambda: selectors.unread_alert_count(membership=membership))
    return {
        "alert_banner": _Once(
            request, "banner", lambda: selectors.banner_alert(membership=membership)
        ),
        "unread_alerts": count,
        "unread_alerts_label": lambda: unread_label(count()),
    }


def forget_alerts_nav(request: HttpRequest) -> None:
    """After marking alerts seen: the banner and the count are read afresh."""
    request.__dict__.pop("_alerts_nav", None)
