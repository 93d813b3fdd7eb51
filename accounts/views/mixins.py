"""The portal's one choke point: who is asking, what their role allows, which rows they see.

Every portal page is a ``PortalView``. Before any handler runs it

1. requires a logged-in user (else the login page),
2. loads the user's accepted membership (staff without one go to the admin; anyone else
   gets a clear "no access" page),
3. checks the view's required ability with ``roles.role_allows`` (403 when the role lacks
   it). A view that handles an unsafe method must name an ability — a view without one
   is refused at once — so a role with no abilities (viewer) changes nothing; and
4. fetches the URL's object only through ``tenancy.get_scoped_or_404`` — another
   customer's object is not found (404), never forbidden and never shown.

Step 4 happens before the method is dispatched, so even a method the view does not allow
answers 404 for another tenant's object instead of revealing that it exists.
"""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse_lazy
from django.views import View

from ..models import Customer, Membership
from ..roles import Ability, role_allows
from ..tenancy import get_scoped_or_404

LOGIN_URL = reverse_lazy("portal:login")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# htmx swaps 2xx and (configured in base.html) 422 responses; 422 carries form errors.
FORM_INVALID = 422


def accepted_membership(user) -> Membership | None:
    """The user's accepted membership with its customer, cached on the user for the request."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.select_related("customer")
        .filter(user=user, accepted_at__isnull=False)
        .first()
    )
    if membership is not None:
        # Later reads of ``user.membership`` (layout, services) reuse this row.
        user.membership = membership
    return membership


def wants_partial(request: HttpRequest) -> bool:
    """htmx asked for a fragment (a boosted navigation still wants the whole page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted


class PortalView(LoginRequiredMixin, View):
    """Base for every portal page of a customer's member.

    ``required_ability``: what the member's role must allow, for every method of the view.
    ``object_kwarg`` names the URL kwarg holding the object's primary key;
    ``get_object_queryset()`` is the unscoped queryset it is looked up in.
    """

    login_url = LOGIN_URL
    required_ability: str | None = None
    object_kwarg: str | None = None

    membership: Membership
    customer: Customer
    object: Model | None = None

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        membership = accepted_membership(request.user)
        if membership is None:
            if request.user.is_staff:
                return redirect("admin:index")
            return render(request, "accounts/no_access.html", status=403)
        self.membership = membership
        self.customer = membership.customer
        self.check_ability(request.method)
        if self.object_kwarg is not None:
            self.object = get_scoped_or_404(
                self.get_object_queryset(), self.membership, pk=kwargs[self.object_kwarg]
            )
        # LoginRequiredMixin's own check has been made above; go straight to the handler.
        return View.dispatch(self, request, *args, **kwargs)

    def check_ability(self, method: str) -> None:
        writes = method not in SAFE_METHODS and hasattr(self, method.lower())
        if writes and self.required_ability is None:
            raise ImproperlyConfigured(f"{type(self).__name__} changes data but names no ability.")
        ability = self.required_ability
        if ability is not None and not role_allows(self.membership.role, ability):
            role = self.membership.get_role_display()
            raise PermissionDenied(f"Your role ({role}) cannot {Ability(ability).label}.")

    def get_object_queryset(self) -> QuerySet:
        raise NotImplementedError(f"{type(self).__name__} sets object_kwarg but no queryset.")

    # --- Rendering ----------------------------------------------------------------------

    def base_context(self) -> dict:
        """What every template of this view needs besides the layout's context processor."""
        return {}

    def render(
        self, template: str, context: dict | None = None, *, status: int = 200
    ) -> HttpResponse:
        return render(
            self.request, template, {**self.base_context(), **(context or {})}, status=status
        )

    def render_fragments(self, *parts: tuple[str, dict], status: int = 200) -> HttpResponse:
        """Several partials in one htmx answer: the first replaces the target, the rest swap
        out of band (each carries ``hx-swap-oob``). The target's fragment must come first:
        a ``<tr>`` after a ``<div>`` would be dropped by the HTML parser."""
        base = self.base_context()
        html = "".join(render_to_string(t, {**base, **c}, request=self.request) for t, c in parts)
        return HttpResponse(html, status=status)
