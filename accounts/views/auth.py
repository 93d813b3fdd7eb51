"""Signing in and out, changing the password, accepting an invitation, and the front door."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views import View

from .. import services
from ..errors import DomainError
from ..forms import InvitationAcceptForm, LoginForm, PasswordChangeForm, add_domain_error
from .mixins import FORM_INVALID, LOGIN_URL, accepted_membership


def landing_url(user) -> str:
    """Where a signed-in user belongs: members on their usage dashboard, staff in the admin."""
    if accepted_membership(user) is not None:
        return reverse_lazy("usage:dashboard")
    if user.is_staff:
        return reverse_lazy("admin:index")
    return reverse_lazy("portal:no_access")


class HomeView(View):
    """``/``: the login page for strangers, otherwise wherever the user belongs."""

    def get(self, request):
        if not request.user.is_authenticated:
            return redirect(LOGIN_URL)
        return redirect(landing_url(request.user))


class NoAccessView(LoginRequiredMixin, View):
    login_url = LOGIN_URL

    def get(self, request):
        if accepted_membership(request.user) is not None:
            return redirect("portal:team")
        return render(request, "accounts/no_access.html", status=403)


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return str(landing_url(self.request.user))


class LogoutView(auth_views.LogoutView):
    next_page = LOGIN_URL

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


class PasswordChangeView(LoginRequiredMixin, auth_views.PasswordChangeView):
    # LoginRequiredMixin comes first so anonymous visitors reach the portal's login page.
    login_url = LOGIN_URL
    form_class = PasswordChangeForm
    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("portal:password_change_done")


class PasswordChangeDoneView(LoginRequiredMixin, auth_views.PasswordChangeDoneView):
    login_url = LOGIN_URL
    template_name = "registration/password_change_done.html"


class InvitationAcceptView(View):
    """Set a password for an invited member; the signed token in the URL is the credential.

    The token is not a tenant object: whoever holds the emailed link may accept it, so
    this view is public and reads the membership only through ``invitation_from_token``.
    """

    template_name = "accounts/invitation_accept.html"

    def dispatch(self, request, *args, token: str, **kwargs):
        try:
            self.invitation = services.invitation_from_token(token)
        except DomainError as exc:
            context = {"error": exc, "already_accepted": exc.code == "already_accepted"}
            return render(request, "accounts/invitation_invalid.html", context, status=exc.status)
        self.token = token
        return super().dispatch(request, *args, **kwargs)

    def get(self, request):
        return self.render_form(InvitationAcceptForm())

    def post(self, request):
        form = InvitationAcceptForm(request.POST)
        if form.is_valid():
            try:
                membership = services.invitation_accept(
                    token=self.token, password=form.cleaned_data["password"]
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, f"Welcome to {membership.customer.name} on Meterbook.")
                return redirect("portal:team")
        return self.render_form(form, status=FORM_INVALID)

    def render_form(self, form, *, status: int = 200):
        context = {"form": form, "invitation": self.invitation}
        return render(self.request, self.template_name, context, status=status)
