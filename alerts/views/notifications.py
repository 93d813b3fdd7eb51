"""Portal pages for alerts everyone on the team sees: the notification center, the alert
history with each alert's deliveries, and the banner's "dismiss".

Every member may open them, and every member may mark alerts seen: that is the user's own
read state, not a change to the customer's data, so those posts name no ability (see
``SeenStateView``). Queries are bounded per page, never per alert or per delivery.
"""

import json
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django import forms
from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.views.mixins import FORM_INVALID, PortalView, wants_partial
from metering import selectors as metering
from metering.views.forms import DayRangeForm

from .. import selectors, services
from ..context_processors import forget_alerts_nav
from ..models import Alert, AlertRule

NOTIFICATIONS_PAGE = "alerts/notifications.html"
NOTIFICATIONS_LIST = "alerts/notifications_list.html"
HISTORY_PAGE = "alerts/history.html"
HISTORY_LIST = "alerts/history_list.html"
HISTORY_DETAIL = "alerts/history_detail.html"
HISTORY_DETAIL_PAGE = "alerts/history_alert.html"
BANNER = "alerts/_banner.html"
UNREAD_COUNT = "alerts/notifications_count.html"
FLASH = "accounts/_flash.html"

NOTIFICATIONS_PER_PAGE = 25
HISTORY_PER_PAGE = 25


class SeenStateView(PortalView):
    """A view whose posts only mark alerts seen by the member making them."""

    def check_ability(self, method: str) -> None:
        # Any member, viewers included, may say what they have read.
        if method == "POST":
            return
        super().check_ability(method)


def _page(paginator: Paginator, number) -> tuple:
    page = paginator.get_page(number)
    return page, list(page.object_list)


# --- Notification center ----------------------------------------------------------------


class NotificationsView(PortalView):
    def get(self, request):
        alerts = selectors.with_unread(
            selectors.alert_list(principal=self.membership), user=request.user
        )
        page, rows = _page(Paginator(alerts, NOTIFICATIONS_PER_PAGE), request.GET.get("page"))
        # Shown is seen: the rows keep their "unread" look this once; the badge and the
        # banner, read when the page renders, already count them as seen.
        services.alerts_mark_seen(
            membership=self.membership, alert_ids=[a.pk for a in rows if a.unread]
        )
        forget_alerts_nav(request)
        context = {"page": page, "alerts": rows}
        if wants_partial(request):
            return self.render_fragments(
                (NOTIFICATIONS_LIST, context), (UNREAD_COUNT, {"oob": True})
            )
        return self.render(NOTIFICATIONS_PAGE, context)


class MarkAllSeenView(SeenStateView):
    http_method_names = ["post"]

    def post(self, request):
        marked = services.alerts_mark_seen(membership=self.membership)
        forget_alerts_nav(request)
        if not wants_partial(request):
            return redirect("alerts:notifications")
        alerts = selectors.alert_list(principal=self.membership)
        page, rows = _page(Paginator(alerts, NOTIFICATIONS_PER_PAGE), request.GET.get("page"))
        text = (
            f"Marked {marked} alert{'s' if marked != 1 else ''} as read."
            if marked
            else ("Everything was already read.")
        )
        return self.render_fragments(
            (NOTIFICATIONS_LIST, {"page": page, "alerts": rows}),
            (UNREAD_COUNT, {"oob": True}),
            (BANNER, {"oob": True}),
            (FLASH, {"flash": [("success", text)]}),
        )


class AlertSeenView(SeenStateView):
    """The banner's "dismiss": this alert is seen; the banner shows the next one, if any."""

    http_method_names = ["post"]
    object_kwarg = "alert_id"

    def get_object_queryset(self):
        return Alert.objects.all()

    def post(self, request, alert_id):
        services.alerts_mark_seen(membership=self.membership, alert_ids=[self.object.pk])
        forget_alerts_nav(request)
        if wants_partial(request):
            return self.render_fragments((BANNER, {}), (UNREAD_COUNT, {"oob": True}))
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("alerts:notifications")
        return redirect(back)


# --- History ----------------------------------------------------------------------------


class HistoryFilterForm(DayRangeForm):
    field_order = ["status", "kind", "meter", "start", "end"]

    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Alert.Status.choices], label="Status"
    )
    kind = forms.ChoiceField(
        required=False, choices=[("", "Any kind"), *AlertRule.Kind.choices], label="Kind"
    )
    meter = forms.ChoiceField(required=False, label="Meter")

    def __init__(self, data, *, meters, zone: ZoneInfo):
        super().__init__(data, zone=zone)
        self.meters = {m.code: m for m in meters}
        self.fields["meter"].choices = [("", "Any meter")] + [
            (m.code, m.name) for m in self.meters.values()
        ]

    def filters(self) -> dict:
        """The selector's arguments: dates are whole days in the customer's time zone."""
        data = self.cleaned_data
        since, until = self.time_range()
        return {
            "status": data.get("status") or None,
            "kind": data.get("kind") or None,
            "meter": self.meters.get(data.get("meter") or ""),
            "since": since,
            "until": until,
        }

    def params(self) -> dict[str, str]:
        return {
            name: self.data[name]
            for name in ("status", "kind", "meter", "start", "end")
            if self.data.get(name)
        }


class HistoryView(PortalView):
    def get(self, request):
        meters = metering.meter_list(include_inactive=True).order_by("name")
        form = HistoryFilterForm(request.GET, meters=meters, zone=ZoneInfo(self.customer.timezone))
        context = {"form": form, "customer_tz": self.customer.timezone}
        status = 200
        if form.is_valid():
            alerts = selectors.alert_list(principal=self.membership, **form.filters())
            alerts = selectors.with_unread(alerts, user=request.user)
            page, rows = _page(Paginator(alerts, HISTORY_PER_PAGE), request.GET.get("page"))
            params = form.params()
            context.update(
                page=page,
                alerts=rows,
                filtered=bool(params),
                query=urlencode(params),
            )
        else:
            context.update(page=None, alerts=[], filtered=True, query="")
            status = FORM_INVALID
        if wants_partial(request) and not request.htmx.history_restore_request:
            return self.render(HISTORY_LIST, context, status=status)
        return self.render(HISTORY_PAGE, context, status=status)


def evidence_rows(evidence) -> list[tuple[str, str]]:
    """The figures behind an alert as (name, text): nested values as compact JSON."""
    if not isinstance(evidence, dict):
        return [("evidence", json.dumps(evidence, ensure_ascii=False))]
    return [
        (
            str(name).replace("_", " "),
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False),
        )
        for name, value in sorted(evidence.items())
    ]


class HistoryAlertView(PortalView):
    """One alert with its evidence and every delivery, attempt by attempt (htmx expands
    it in place in the history; a plain request gets a page)."""

    object_kwarg = "alert_id"

    def get_object_queryset(self):
        return selectors.with_deliveries(Alert.objects.select_related("meter"), attempts=True)

    def get(self, request, alert_id):
        alert = self.object
        services.alerts_mark_seen(membership=self.membership, alert_ids=[alert.pk])
        forget_alerts_nav(request)
        context = {
            "alert": alert,
            "evidence": evidence_rows(alert.evidence),
            "customer_tz": self.customer.timezone,
        }
        if wants_partial(request):
            return self.render(HISTORY_DETAIL, context)
        return self.render(HISTORY_DETAIL_PAGE, context)


urlpatterns = [
    path("notifications/", NotificationsView.as_view(), name="notifications"),
    path("notifications/read/", MarkAllSeenView.as_view(), name="notifications_read"),
    path("notifications/<int:alert_id>/seen/", AlertSeenView.as_view(), name="alert_seen"),
    path("history/", HistoryView.as_view(), name="history"),
    path("history/<int:alert_id>/", HistoryAlertView.as_view(), name="history_alert"),
]
