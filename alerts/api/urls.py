from django.urls import path

from . import endpoints, history, rules
from .views import AuthorizeApi, CapDetailApi, CapListApi, ForecastApi

app_name = "alerts_api"

urlpatterns = [
    path("authorize", AuthorizeApi.as_view(), name="authorize"),
    path("caps", CapListApi.as_view(), name="caps"),
    path("caps/<int:cap_id>", CapDetailApi.as_view(), name="cap"),
    path("forecast", ForecastApi.as_view(), name="forecast"),
    *rules.urlpatterns,
    *history.urlpatterns,
    *endpoints.urlpatterns,
]
