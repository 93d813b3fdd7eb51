"""The customer portal's billing pages, under ``/billing/`` (namespace ``billing``)."""

from django.urls import path

from .views import billing, invoices, lines

app_name = "billing"

LINE = "invoices/<int:invoice_id>/lines/<int:line_id>"

urlpatterns = [
    path("", billing.BillingHomeView.as_view(), name="home"),
    path("invoices/<int:invoice_id>/", invoices.InvoiceDetailView.as_view(), name="invoice"),
    path(f"{LINE}/events/", lines.LineEventsView.as_view(), name="line_events"),
    path(
        f"{LINE}/events/export.csv",
        lines.LineEventsExportView.as_view(),
        name="line_events_export",
    ),
    path(f"{LINE}/dispute/", lines.LineDisputeView.as_view(), name="line_dispute"),
]
