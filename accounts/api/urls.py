"""Routes of API v1 (mounted at /api/v1/). Resources have no trailing slash."""

from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import views
from .errors import api_not_found

app_name = "api"

# The schema and its docs page are public: anyone may learn how to call the API.
_public = {"authentication_classes": [], "permission_classes": [AllowAny]}

urlpatterns = [
    path("customers", views.CustomerListApi.as_view(), name="customer-list"),
    path("customers/<str:external_id>", views.CustomerDetailApi.as_view(), name="customer-detail"),
    path("contacts", views.ContactListApi.as_view(), name="contact-list"),
    path("contacts/<int:contact_id>", views.ContactDetailApi.as_view(), name="contact-detail"),
    path("me", views.MeApi.as_view(), name="me"),
    path("schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", **_public), name="docs"),
    # Last: anything else under /api/v1/ is a JSON 404, whatever the method (hence no CSRF).
    re_path(r"^.*$", csrf_exempt(api_not_found), name="not-found"),
]
