"""Team & contacts: the members of the customer and the stakeholders alerts will reach.

Each write answers an htmx request with the fragments to swap (the edited row, the list,
a fresh form, a flash message out of band) and a plain form post with a redirect, or —
when the service refuses — the page again with the error where it belongs (status 422).
"""

from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from .. import selectors, services
from ..errors import DomainError
from ..forms import ChangeRoleForm, ContactForm, InviteMemberForm, add_domain_error
from ..models import Contact, Membership
from ..roles import Ability, Role
from .mixins import FORM_INVALID, PortalView, wants_partial

PAGE = "accounts/team/page.html"
MEMBERS = "accounts/team/_members.html"
MEMBER_ROW = "accounts/team/_member_row.html"
INVITE_FORM = "accounts/team/_invite_form.html"
CONTACTS = "accounts/team/_contacts.html"
CONTACT_FORM = "accounts/team/_contact_form.html"
CONTACT_EDIT_PAGE = "accounts/team/contact_edit.html"
FLASH = "accounts/_flash.html"
EMPTY = "accounts/_empty.html"


class TeamPageMixin(PortalView):
    """The team page and the writes on it; any write can re-render the page with its errors."""

    anchor = ""

    def base_context(self) -> dict:
        return {"role_choices": Role.choices}

    def members(self, *, row_errors: dict | None = None) -> list[Membership]:
        members = list(selectors.member_list(principal=self.membership))
        for member in members:
            member.row_error = (row_errors or {}).get(member.pk, "")
        return members

    def render_team(self, *, status: int = 200, row_errors: dict | None = None, **overrides):
        context = {
            "members": self.members(row_errors=row_errors),
            "contacts": selectors.contact_list(principal=self.membership),
            "invite_form": InviteMemberForm(),
            "contact_form": ContactForm(),
            "contact_form_action": reverse("portal:contact_create"),
            **overrides,
        }
        return self.render(PAGE, context, status=status)

    def done(self, text: str, *fragments: tuple[str, dict]):
        """Success: htmx gets the fragments plus a flash; a plain form post is redirected."""
        if wants_partial(self.request):
            return self.render_fragments(*fragments, (FLASH, {"flash": [("success", text)]}))
        messages.success(self.request, text)
        return redirect(reverse("portal:team") + self.anchor)


class TeamView(TeamPageMixin):
    def get(self, request):
        return self.render_team()


# --- Members ----------------------------------------------------------------------------


class MemberInviteView(TeamPageMixin):
    required_ability = Ability.MANAGE_TEAM
    http_method_names = ["post"]
    anchor = "#members"

    def post(self, request):
        form = InviteMemberForm(request.POST)
        if form.is_valid():
            try:
                membership = services.member_invite(
                    actor=request.user, customer=self.customer, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.done(
                    f"Invitation sent to {membership.user.email}.",
                    (INVITE_FORM, {"invite_form": InviteMemberForm()}),
                    (MEMBERS, {"members": self.members(), "oob": True}),
                )
        if wants_partial(request):
            return self.render(INVITE_FORM, {"invite_form": form}, status=FORM_INVALID)
        return self.render_team(invite_form=form, status=FORM_INVALID)


class MemberObjectView(TeamPageMixin):
    required_ability = Ability.MANAGE_TEAM
    object_kwarg = "membership_id"
    anchor = "#members"

    def get_object_queryset(self):
        return Membership.objects.select_related("user", "invited_by")

    def row(self, member: Membership, *, error: str = "", note: str = "") -> tuple[str, dict]:
        member.row_error, member.row_note = error, note
        return MEMBER_ROW, {"m": member}

    def refused(self, message: str):
        """The service said no: show why on the member's row; nothing changed."""
        if wants_partial(self.request):
            return self.render(*self.row(self.object, error=message), status=FORM_INVALID)
        return self.render_team(row_errors={self.object.pk: message}, status=FORM_INVALID)

    def fresh(self, member: Membership) -> Membership:
        return self.get_object_queryset().get(pk=member.pk)


class MemberRoleView(MemberObjectView):
    http_method_names = ["post"]

    def post(self, request, membership_id):
        form = ChangeRoleForm(request.POST)
        if not form.is_valid():
            return self.refused(form.errors["role"][0])
        try:
            member = services.member_change_role(
                actor=request.user, membership=self.object, role=form.cleaned_data["role"]
            )
        except DomainError as exc:
            return self.refused(exc.message)
        text = f"{member.user.email} is now {member.get_role_display().lower()}."
        if member.pk == self.membership.pk:
            # Your own role changed: the navigation and every action on the page may differ.
            messages.success(request, text)
            if wants_partial(request):
                return HttpResponseClientRefresh()
            return redirect(reverse("portal:team") + self.anchor)
        return self.done(text, self.row(self.fresh(member)))


class MemberRemoveView(MemberObjectView):
    def get(self, request, membership_id):
        return self.render("accounts/team/member_confirm_remove.html", {"m": self.object})

    def post(self, request, membership_id):
        email, removing_self = self.object.user.email, self.object.pk == self.membership.pk
        try:
            services.member_remove(actor=request.user, membership=self.object)
        except DomainError as exc:
            return self.refused(exc.message)
        if removing_self:
            # The service has just disabled this very account; end its session too.
            logout(request)
            messages.info(request, "You left the team; your account is closed.")
            if wants_partial(request):
                return HttpResponseClientRedirect(reverse("portal:login"))
            return redirect("portal:login")
        # The empty fragment swapped over the row removes it.
        return self.done(f"{email} was removed from the team.", (EMPTY, {}))


class MemberResendView(MemberObjectView):
    http_method_names = ["post"]

    def post(self, request, membership_id):
        try:
            member = services.member_resend_invitation(actor=request.user, membership=self.object)
        except DomainError as exc:
            return self.refused(exc.message)
        text = (
            f"A new invitation is on its way to {member.user.email}; the old link no longer works."
        )
        return self.done(text, self.row(self.fresh(member), note="Invitation re-sent."))


# --- Contacts ---------------------------------------------------------------------------


class ContactFormMixin(TeamPageMixin):
    required_ability = Ability.MANAGE_CONTACTS
    anchor = "#contacts"

    def form_context(self, form, contact: Contact | None = None) -> dict:
        action = self.request.path if contact else reverse("portal:contact_create")
        return {"contact_form": form, "contact_form_action": action, "editing": contact}

    def saved(self, text: str):
        return self.done(
            text,
            (CONTACT_FORM, self.form_context(ContactForm())),
            (
                CONTACTS,
                {"contacts": selectors.contact_list(principal=self.membership), "oob": True},
            ),
        )

    def invalid(self, form, contact: Contact | None = None):
        context = self.form_context(form, contact)
        if wants_partial(self.request):
            return self.render(CONTACT_FORM, context, status=FORM_INVALID)
        if contact is not None:
            return self.render(CONTACT_EDIT_PAGE, context, status=FORM_INVALID)
        return self.render_team(status=FORM_INVALID, **context)


class ContactCreateView(ContactFormMixin):
    def get(self, request):
        # htmx asks for an empty form (the "cancel" of an edit); a browser gets the page.
        if wants_partial(request):
            return self.render(CONTACT_FORM, self.form_context(ContactForm()))
        return redirect(reverse("portal:team") + self.anchor)

    def post(self, request):
        form = ContactForm(request.POST)
        if form.is_valid():
            try:
                contact = services.contact_create(
                    actor=request.user, customer=self.customer, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.saved(f"Contact {contact.name} added.")
        return self.invalid(form)


class ContactEditView(ContactFormMixin):
    object_kwarg = "contact_id"

    def get_object_queryset(self):
        return Contact.objects.all()

    def get(self, request, contact_id):
        form = ContactForm(initial=ContactForm.initial_from(self.object))
        template = CONTACT_FORM if wants_partial(request) else CONTACT_EDIT_PAGE
        return self.render(template, self.form_context(form, self.object))

    def post(self, request, contact_id):
        form = ContactForm(request.POST)
        if form.is_valid():
            try:
                contact = services.contact_update(
                    actor=request.user, contact=self.object, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.saved(f"Contact {contact.name} saved.")
        return self.invalid(form, self.object)


class ContactDeleteView(ContactFormMixin):
    object_kwarg = "contact_id"

    def get_object_queryset(self):
        return Contact.objects.select_related("customer")

    def get(self, request, contact_id):
        return self.render("accounts/team/contact_confirm_delete.html", {"contact": self.object})

    def post(self, request, contact_id):
        name = self.object.name
        services.contact_delete(actor=request.user, contact=self.object)
        # The whole list, so the last deletion shows the "no contacts" row.
        contacts = selectors.contact_list(principal=self.membership)
        return self.done(f"Contact {name} deleted.", (CONTACTS, {"contacts": contacts}))
