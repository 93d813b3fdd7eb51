from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Metering first: accounts.api.urls ends with the catch-all JSON 404.
    path("api/v1/", include("metering.api.urls")),
    path("api/v1/", include("invoicing.api.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("usage/", include("metering.urls")),
    path("", include("accounts.urls")),
]
