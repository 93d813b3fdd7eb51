"""Routes of the metering API (mounted at /api/v1/ before accounts.api.urls, whose last
pattern answers every other URL with a JSON 404). Resources have no trailing slash."""

from django.urls import path

from . import views

app_name = "metering_api"

urlpatterns = [
    path("events", views.EventsApi.as_view(), name="events"),
    path("events/void", views.EventVoidApi.as_view(), name="events-void"),
    path("meters", views.MeterListApi.as_view(), name="meter-list"),
    path("meters/<str:code>", views.MeterDetailApi.as_view(), name="meter-detail"),
    path("usage", views.UsageApi.as_view(), name="usage"),
]
