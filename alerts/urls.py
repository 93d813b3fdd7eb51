"""The customer portal's alert pages, under ``/alerts/`` (namespace ``alerts``)."""

from .views import guardrails, notifications, webhooks

app_name = "alerts"

urlpatterns = [
    *guardrails.urlpatterns,
    *notifications.urlpatterns,
    *webhooks.urlpatterns,
]
