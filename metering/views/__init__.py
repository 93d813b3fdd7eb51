"""The customer portal's usage pages (namespace ``usage``): the dashboard and the events."""

from accounts.views.mixins import wants_partial


def wants_fragment(request) -> bool:
    """htmx asked for the page's live part. A history restore (back button after the cache
    dropped the page) asks with the htmx header too, but needs the whole page."""
    return wants_partial(request) and not request.htmx.history_restore_request
