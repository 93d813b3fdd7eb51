"""Writes of the notification center: which alerts a portal user has seen.

Seeing an alert is the user's own read state, not a change to the customer's data, so it
is not audited (a page visit would otherwise write an audit row per alert shown). Each
write is one statement, and only ever marks alerts of the member's own customer, whatever
ids were sent.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.utils import timezone

from accounts.models import Membership

# Another request marking the same alert at the same time is fine: the constraint keeps
# one row and the other insert does nothing.
_MARK_SEEN = """
    INSERT INTO alerts_alertseen (alert_id, user_id, seen_at)
    SELECT a.id, %(user_id)s, %(now)s FROM alerts_alert a
    WHERE a.customer_id = %(customer_id)s {only}
    ON CONFLICT (alert_id, user_id) DO NOTHING
"""


def alerts_mark_seen(
    *,
    membership: Membership,
    alert_ids: Iterable[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Mark the given alerts (``None``: all of the customer's) seen by the member; the
    number newly marked."""
    params = {
        "user_id": membership.user_id,
        "customer_id": membership.customer_id,
        "now": now or timezone.now(),
    }
    only = ""
    if alert_ids is not None:
        params["ids"] = [int(pk) for pk in alert_ids]
        if not params["ids"]:
            return 0
        only = "AND a.id = ANY(%(ids)s)"
    with connection.cursor() as cursor:
        cursor.execute(_MARK_SEEN.format(only=only), params)
        return cursor.rowcount
