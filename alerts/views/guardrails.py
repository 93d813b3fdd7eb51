"""Portal page "Caps & alerts" (guardrails): the customer's hard caps and alert rules."""

from django.urls import path

from accounts.views.mixins import PortalView

PAGE = "alerts/guardrails.html"


class GuardrailsView(PortalView):
    def get(self, request):
        return self.render(PAGE)


urlpatterns: list = [
    path("", GuardrailsView.as_view(), name="guardrails"),
]
