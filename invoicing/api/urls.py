"""Routes of the invoicing API (mounted at /api/v1/ before accounts.api.urls, whose last
pattern answers every other URL with a JSON 404). Resources have no trailing slash."""

from django.urls import path

from . import views

app_name = "invoicing_api"

urlpatterns = [
    path("plans", views.PlanListApi.as_view(), name="plan-list"),
    path("plans/<str:code>", views.PlanDetailApi.as_view(), name="plan-detail"),
    path("plans/<str:code>/versions", views.PlanVersionListApi.as_view(), name="plan-versions"),
    path("subscriptions", views.SubscriptionListApi.as_view(), name="subscription-list"),
    path(
        "subscriptions/<int:subscription_id>",
        views.SubscriptionDetailApi.as_view(),
        name="subscription-detail",
    ),
    path(
        "subscriptions/<int:subscription_id>/change-plan",
        views.SubscriptionChangePlanApi.as_view(),
        name="subscription-change-plan",
    ),
    path(
        "subscriptions/<int:subscription_id>/cancel",
        views.SubscriptionCancelApi.as_view(),
        name="subscription-cancel",
    ),
    path("invoices", views.InvoiceListApi.as_view(), name="invoice-list"),
    path("invoices/<int:invoice_id>", views.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path(
        "invoices/<int:invoice_id>/credit-notes",
        views.InvoiceCreditNoteListApi.as_view(),
        name="invoice-credit-notes",
    ),
    path(
        "invoices/<int:invoice_id>/finalize",
        views.InvoiceFinalizeApi.as_view(),
        name="invoice-finalize",
    ),
    path("invoices/<int:invoice_id>/void", views.InvoiceVoidApi.as_view(), name="invoice-void"),
    path("credit-notes", views.CreditNoteListApi.as_view(), name="credit-note-list"),
    path(
        "customers/<str:external_id>/upcoming-invoice",
        views.UpcomingInvoiceApi.as_view(),
        name="upcoming-invoice",
    ),
]
