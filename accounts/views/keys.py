"""API keys of the member's own customer: list, create (token shown once), revoke.

The full token exists only in the response to the create request: it is rendered into that
response and nowhere else — not stored in the session, not in a message, not in a redirect.
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from .. import selectors, services
from ..errors import DomainError
from ..forms import ApiKeyForm, add_domain_error
from ..models import ApiKey
from ..roles import Ability
from .mixins import FORM_INVALID, PortalView, wants_partial

PAGE = "accounts/keys/page.html"
KEYS = "accounts/keys/_keys.html"
KEY_FORM = "accounts/keys/_key_form.html"
KEY_CREATED = "accounts/keys/_key_created.html"
KEY_ROW = "accounts/keys/_key_row.html"
FLASH = "accounts/_flash.html"


class KeysPageMixin(PortalView):
    required_ability = Ability.MANAGE_KEYS

    def keys(self):
        return selectors.api_key_list(principal=self.membership)

    def page(self, *, status: int = 200, **overrides):
        context = {"keys": self.keys(), "key_form": ApiKeyForm(), "created": None, **overrides}
        return self.render(PAGE, context, status=status)


class KeysView(KeysPageMixin):
    def get(self, request):
        # htmx asks for a fresh form after the one-time token was dismissed.
        if wants_partial(request) and request.GET.get("fragment") == "form":
            return self.render(KEY_FORM, {"key_form": ApiKeyForm()})
        return self.page()

    def post(self, request):
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            try:
                # The portal only ever makes customer keys, for the member's own customer.
                key, token = services.api_key_create(
                    actor=request.user,
                    kind=ApiKey.Kind.CUSTOMER,
                    customer=self.customer,
                    name=form.cleaned_data["name"],
                    environment=form.cleaned_data["environment"],
                    scopes=form.cleaned_data["scopes"],
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                created = {"key": key, "token": token}
                if wants_partial(request):
                    response = self.render_fragments(
                        (KEY_CREATED, {"created": created}),
                        (KEYS, {"keys": self.keys(), "oob": True}),
                    )
                else:
                    # Rendered, not redirected: a redirect would need the token kept somewhere.
                    response = self.page(created=created, status=201)
                # The one response that holds the secret must not sit in any cache.
                add_never_cache_headers(response)
                return response
        if wants_partial(request):
            return self.render(KEY_FORM, {"key_form": form}, status=FORM_INVALID)
        return self.page(key_form=form, status=FORM_INVALID)


class KeyRevokeView(KeysPageMixin):
    object_kwarg = "key_id"

    def get_object_queryset(self):
        # Only customer keys: an operator key never belongs to a customer, but say so anyway.
        return ApiKey.objects.filter(kind=ApiKey.Kind.CUSTOMER).select_related(
            "created_by", "revoked_by"
        )

    def get(self, request, key_id):
        return self.render("accounts/keys/key_confirm_revoke.html", {"key": self.object})

    def post(self, request, key_id):
        key = services.api_key_revoke(actor=request.user, api_key=self.object)
        if wants_partial(request):
            key = self.get_object_queryset().get(pk=key.pk)
            text = f"Key {key.name} ({key.prefix}…) is revoked; requests with it now fail."
            return self.render_fragments(
                (KEY_ROW, {"k": key}), (FLASH, {"flash": [("success", text)]})
            )
        messages.success(request, f"Key {key.name} ({key.prefix}…) is revoked.")
        return redirect(reverse("portal:keys"))
