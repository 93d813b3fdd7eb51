from django.contrib import admin
from django.urls import include, path

from invoicing.webhooks import stripe_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    # Metering first: accounts.api.urls ends with the catch-all JSON 404.
    path("api/v1/", include("metering.api.urls")),
    path("api/v1/", include("invoicing.api.urls")),
    path("api/v1/", include("alerts.api.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("usage/", include("metering.urls")),
    path("billing/", include("invoicing.urls")),
    path("alerts/", include("alerts.urls")),
    path("webhooks/stripe/", stripe_webhook),
    path("", include("accounts.urls")),
]
