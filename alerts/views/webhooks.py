"""Portal page "Webhooks": the customer's endpoints that receive every alert as a signed
Standard Webhook, with their signing secrets.

Every member sees the endpoints (status, why one is disabled); members whose role has
``MANAGE_WEBHOOKS`` add, edit, remove them and rotate or reveal their secrets. A secret is
never in the page until asked for: it is shown masked, and "Reveal" fetches it (for those
who may rotate it anyway) in a response no cache keeps.
"""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import path
from django.utils.cache import add_never_cache_headers

from accounts.errors import DomainError
from accounts.forms import PageForm, add_domain_error
from accounts.models import Persona
from accounts.roles import Ability, role_allows
from accounts.views.mixins import FORM_INVALID, PortalView, wants_partial

from .. import selectors, services
from ..models import WebhookEndpoint
from ..services.endpoints import DEFAULT_OVERLAP

PAGE = "alerts/webhooks.html"
LIST = "alerts/webhooks_list.html"
FORM = "alerts/webhooks_form.html"
CREATED = "alerts/webhooks_created.html"
REVEAL = "alerts/webhooks_secret.html"
EDIT_PAGE = "alerts/webhooks_edit.html"
CONFIRM_DELETE = "alerts/webhooks_confirm_delete.html"
CONFIRM_ROTATE = "alerts/webhooks_confirm_rotate.html"
FLASH = "accounts/_flash.html"
SECRET_HINT_CHARS = 10  # "whsec_" and 4 characters: enough to tell two secrets apart
OVERLAP_CHOICES = [(0, "End the old secret now"), (1, "1 hour"), (24, "24 hours"), (168, "7 days")]


class EndpointForm(PageForm):
    id_prefix = "endpoint"
    # Text, not a URLField: the service checks the URL and says exactly what is wrong
    # (an internal address, a scheme, credentials), in the words the API uses.
    url = forms.CharField(
        label="URL",
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/meterbook"}),
        help_text="Receives a JSON POST per alert, signed per the Standard Webhooks spec.",
    )
    description = forms.CharField(required=False, max_length=200)
    personas = forms.MultipleChoiceField(
        required=False,
        choices=Persona.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Only alerts for",
        help_text="Leave all unticked to receive every alert.",
    )

    @classmethod
    def initial_from(cls, endpoint: WebhookEndpoint) -> dict:
        return {
            "url": endpoint.url,
            "description": endpoint.description,
            "personas": endpoint.personas,
            "enabled": endpoint.enabled,
        }


class EndpointEditForm(EndpointForm):
    enabled = forms.BooleanField(
        required=False,
        label="Send alerts to this endpoint",
        help_text="Turning it back on clears why it was disabled.",
    )


class RotateForm(forms.Form):
    overlap_hours = forms.TypedChoiceField(
        choices=OVERLAP_CHOICES,
        coerce=int,
        initial=int(DEFAULT_OVERLAP / timedelta(hours=1)),
        label="Keep the old secret signing for",
    )


class WebhooksPage(PortalView):
    """The page and the writes on it."""

    def base_context(self) -> dict:
        return {"can_manage": role_allows(self.membership.role, Ability.MANAGE_WEBHOOKS)}

    def endpoints(self) -> list[WebhookEndpoint]:
        """The endpoints with their secrets' masks and overlap (one prefetch for all)."""
        endpoints = list(selectors.endpoint_list(principal=self.membership))
        for endpoint in endpoints:
            current = selectors.endpoint_current_secret(endpoint)
            endpoint.secret_hint = current.secret[:SECRET_HINT_CHARS] if current else ""
            endpoint.previous_secret = selectors.endpoint_previous_secret(endpoint)
        return endpoints

    def page(self, *, status: int = 200, **overrides):
        context = {
            "endpoints": self.endpoints(),
            "endpoint_form": EndpointForm(),
            "created": None,
            **overrides,
        }
        return self.render(PAGE, context, status=status)

    def done(self, text: str, *fragments: tuple[str, dict]):
        """Success: htmx gets the fragments and a flash; a plain post goes back to the page."""
        if wants_partial(self.request):
            return self.render_fragments(*fragments, (FLASH, {"flash": [("success", text)]}))
        messages.success(self.request, text)
        return redirect("alerts:webhooks")

    def fresh_list(self) -> tuple[str, dict]:
        return LIST, {"endpoints": self.endpoints(), "oob": True}


class WebhooksView(WebhooksPage):
    def get(self, request):
        # htmx asks for an empty form (after a secret was shown, or "cancel" of an edit).
        if wants_partial(request) and request.GET.get("fragment") == "form":
            return self.render(FORM, {"endpoint_form": EndpointForm()})
        return self.page()


class EndpointCreateView(WebhooksPage):
    required_ability = Ability.MANAGE_WEBHOOKS
    http_method_names = ["post"]

    def post(self, request):
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                endpoint = services.endpoint_create(
                    actor=request.user, customer=self.customer, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                created = {"endpoint": endpoint, "secret": endpoint.secrets.get().secret}
                if wants_partial(request):
                    response = self.render_fragments(
                        (CREATED, {"created": created}), self.fresh_list()
                    )
                else:
                    # Rendered, not redirected: a redirect would need the secret kept somewhere.
                    response = self.page(created=created, status=201)
                add_never_cache_headers(response)
                return response
        if wants_partial(request):
            return self.render(FORM, {"endpoint_form": form}, status=FORM_INVALID)
        return self.page(endpoint_form=form, status=FORM_INVALID)


class EndpointObjectView(WebhooksPage):
    required_ability = Ability.MANAGE_WEBHOOKS
    object_kwarg = "endpoint_id"

    def get_object_queryset(self):
        return WebhookEndpoint.objects.select_related("customer")


class EndpointEditView(EndpointObjectView):
    def form_context(self, form) -> dict:
        return {"endpoint_form": form, "editing": self.object}

    def get(self, request, endpoint_id):
        form = EndpointEditForm(initial=EndpointForm.initial_from(self.object))
        template = FORM if wants_partial(request) else EDIT_PAGE
        return self.render(template, self.form_context(form))

    def post(self, request, endpoint_id):
        form = EndpointEditForm(request.POST)
        if form.is_valid():
            try:
                endpoint = services.endpoint_update(
                    actor=request.user, endpoint=self.object, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.done(
                    f"Endpoint {endpoint.url} saved.",
                    (FORM, {"endpoint_form": EndpointForm()}),
                    self.fresh_list(),
                )
        template = FORM if wants_partial(request) else EDIT_PAGE
        return self.render(template, self.form_context(form), status=FORM_INVALID)


class EndpointDeleteView(EndpointObjectView):
    def get(self, request, endpoint_id):
        return self.render(CONFIRM_DELETE, {"endpoint": self.object})

    def post(self, request, endpoint_id):
        url = self.object.url
        services.endpoint_delete(actor=request.user, endpoint=self.object)
        # The whole list, so removing the last one shows the empty state.
        return self.done(f"Endpoint {url} removed.", (LIST, {"endpoints": self.endpoints()}))


class EndpointRotateView(EndpointObjectView):
    def get(self, request, endpoint_id):
        return self.render(CONFIRM_ROTATE, {"endpoint": self.object, "rotate_form": RotateForm()})

    def post(self, request, endpoint_id):
        form = RotateForm(request.POST)
        if not form.is_valid():
            context = {"endpoint": self.object, "rotate_form": form}
            return self.render(CONFIRM_ROTATE, context, status=FORM_INVALID)
        hours = form.cleaned_data["overlap_hours"]
        fresh = services.endpoint_rotate_secret(
            actor=request.user, endpoint=self.object, overlap=timedelta(hours=hours)
        )
        created = {"endpoint": self.object, "secret": fresh.secret, "rotated": True}
        if wants_partial(request):
            response = self.render_fragments((CREATED, {"created": created}), self.fresh_list())
        else:
            response = self.page(created=created)
        add_never_cache_headers(response)
        return response


class EndpointSecretView(EndpointObjectView):
    """ "Reveal": the current secret in place of its mask (htmx); "Hide" asks for the mask."""

    def get(self, request, endpoint_id):
        current = selectors.endpoint_current_secret(self.object)
        reveal = request.GET.get("hide") is None
        context = {
            "e": self.object,
            "secret": current.secret if current and reveal else "",
            "hint": current.secret[:SECRET_HINT_CHARS] if current else "",
            "revealed": reveal,
        }
        response = self.render(REVEAL, context)
        add_never_cache_headers(response)
        return response


urlpatterns = [
    path("webhooks/", WebhooksView.as_view(), name="webhooks"),
    path("webhooks/new/", EndpointCreateView.as_view(), name="webhook_create"),
    path("webhooks/<int:endpoint_id>/edit/", EndpointEditView.as_view(), name="webhook_edit"),
    path("webhooks/<int:endpoint_id>/delete/", EndpointDeleteView.as_view(), name="webhook_delete"),
    path("webhooks/<int:endpoint_id>/rotate/", EndpointRotateView.as_view(), name="webhook_rotate"),
    path("webhooks/<int:endpoint_id>/secret/", EndpointSecretView.as_view(), name="webhook_secret"),
]
