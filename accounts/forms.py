"""Portal forms. They check the shape of input; services decide what is allowed.

A ``DomainError`` raised by a service is put back on the form with ``add_domain_error`` so
it shows next to the field it concerns, the same way a form's own validation errors do.
"""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.forms import PasswordChangeForm as DjangoPasswordChangeForm

from .errors import DomainError
from .models import ApiKey, Membership, Persona
from .roles import Role
from .scopes import CUSTOMER_KEY_SCOPES, SCOPES

NO_PORTAL_ACCESS = (
    "This account is not a member of any customer, so it cannot use the portal. "
    "Ask your team's owner for an invitation."
)


def add_domain_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on the form: on the field it concerns when the form has
    it (``components[0].amount`` concerns ``components``), else on the whole form."""
    field = (exc.field or "").split("[", 1)[0].split(".", 1)[0]
    form.add_error(field if field in form.fields else None, exc.message)


def has_portal_access(user) -> bool:
    """Staff go to the admin; everyone else needs an accepted membership."""
    if user.is_staff:
        return True
    return Membership.objects.filter(user=user, accepted_at__isnull=False).exists()


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
        "no_portal_access": NO_PORTAL_ACCESS,
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email"
        self.fields["username"].widget.attrs.update({"autocomplete": "email", "type": "email"})

    def clean_username(self):
        # Accounts are stored with lower-case emails; people type them any way.
        return self.cleaned_data["username"].strip().lower()

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not has_portal_access(user):
            raise forms.ValidationError(
                self.error_messages["no_portal_access"], code="no_portal_access"
            )


class PasswordChangeForm(DjangoPasswordChangeForm):
    """Django's form; named here so the views import every portal form from one place."""


class PageForm(forms.Form):
    """A form that shares its page with others: its own id prefix keeps label ``for`` unique."""

    id_prefix = "id"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", f"{self.id_prefix}-%s")
        super().__init__(*args, **kwargs)


class InviteMemberForm(PageForm):
    id_prefix = "invite"
    email = forms.EmailField(max_length=get_user_model()._meta.get_field("email").max_length)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class ChangeRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ContactForm(PageForm):
    id_prefix = "contact"
    name = forms.CharField(max_length=200)
    persona = forms.ChoiceField(choices=Persona.choices)
    email = forms.EmailField(required=False)
    slack_webhook_url = forms.URLField(
        label="Slack webhook URL", required=False, max_length=500, assume_scheme="https"
    )
    teams_webhook_url = forms.URLField(
        label="Teams webhook URL", required=False, max_length=500, assume_scheme="https"
    )
    webhook_url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Any endpoint that accepts a JSON POST.",
    )

    CHANNEL_FIELDS = ("email", "slack_webhook_url", "teams_webhook_url", "webhook_url")

    @classmethod
    def initial_from(cls, contact) -> dict:
        return {name: getattr(contact, name) for name in ("name", "persona", *cls.CHANNEL_FIELDS)}


def _scope_choices():
    return [(name, SCOPES[name].description) for name in CUSTOMER_KEY_SCOPES]


class ApiKeyForm(PageForm):
    id_prefix = "key"
    name = forms.CharField(
        max_length=100, help_text="Where it is used, e.g. “billing sync (production)”."
    )
    environment = forms.ChoiceField(
        choices=ApiKey.Environment.choices,
        initial=ApiKey.Environment.LIVE,
        widget=forms.RadioSelect,
    )
    scopes = forms.MultipleChoiceField(
        choices=_scope_choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )


class InvitationAcceptForm(forms.Form):
    password = forms.CharField(
        label="Choose a password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_again = forms.CharField(
        label="Type it again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password"), cleaned.get("password_again")
        if first and second and first != second:
            self.add_error("password_again", "The two passwords differ.")
        return cleaned
