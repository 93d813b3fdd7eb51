"""The customer portal's usage pages, under ``/usage/`` (namespace ``usage``)."""

from django.urls import path

from .views import dashboard, events

app_name = "usage"

urlpatterns = [
    path("", dashboard.UsageDashboardView.as_view(), name="dashboard"),
    path("spend/", dashboard.UsageSpendView.as_view(), name="spend"),
    path("events/", events.EventsView.as_view(), name="events"),
    path("events/export.csv", events.EventsExportView.as_view(), name="events_export"),
]
