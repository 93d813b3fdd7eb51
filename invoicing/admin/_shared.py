"""Pieces the invoicing admin modules share: the read-only base classes and display helpers."""

from collections.abc import Callable, Iterable
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from accounts.errors import DomainError

# --- Shared pieces -------------------------------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def changelist_url(model) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


class ServiceAdmin(admin.ModelAdmin):
    """Read-only pages; "change" permission only unlocks the actions (which call services)."""

    # Set where ``add_view`` is a form calling the create service.
    creates_through_service = False

    def has_add_permission(self, request):
        return self.creates_through_service and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        # No change form ever saves: for an object the page is view-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def page(self, request, template: str, **context) -> TemplateResponse:
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, **context},
        )

    def form_page(self, request, form, *, title: str, action: str = "", objects=(), **extra):
        """A form page; for an action, the form posts back to the changelist action."""
        return self.page(
            request,
            extra.pop("template", "admin/invoicing/form.html"),
            title=title,
            form=form,
            action=action,
            objects=list(objects),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            return_to=request.POST.get("_return_to", ""),
            changelist_url=changelist_url(self.model),
            **extra,
        )

    def done(self, request):
        """After an action: back to the page it was started from, else the changelist."""
        url = request.POST.get("_return_to", "")
        if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
            return HttpResponseRedirect(url)
        return None

    def run_each(
        self, request, objects: Iterable, call: Callable, *, done: str, describe=str
    ) -> None:
        """Call the service per object; domain errors become error messages."""
        succeeded = []
        for obj in objects:
            try:
                result = call(obj)
            except DomainError as exc:
                messages.error(request, f"{obj}: {exc.message}")
            else:
                succeeded.append(describe(result if result is not None else obj))
        if succeeded:
            messages.success(request, f"{done}: {', '.join(succeeded)}.")

    def eligible(self, request, queryset, statuses, *, what: str) -> list:
        chosen = list(queryset)
        ok = [obj for obj in chosen if obj.status in statuses]
        skipped = [str(obj) for obj in chosen if obj.status not in statuses]
        if skipped and "apply" not in request.POST:
            messages.warning(request, f"Not {what}, left out: {', '.join(skipped)}.")
        if not ok:
            messages.error(request, f"None of the selected items is {what}.")
        return ok

    def object_actions(self, request, obj) -> list[tuple[str, str]]:
        """(action, label) buttons for the change page."""
        return []

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        buttons = []
        if obj is not None and self.has_change_permission(request):
            actions = self.get_actions(request)
            buttons = [(n, label) for n, label in self.object_actions(request, obj) if n in actions]
        extra_context = {
            **(extra_context or {}),
            "object_buttons": buttons,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": changelist_url(self.model),
        }
        return super().change_view(request, object_id, form_url, extra_context)


BR = mark_safe("<br>")


def admin_link(obj, text=None):
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or obj)


def span(start, end) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def number(value) -> str:
    """A Decimal (or its text) without trailing zeros, grouped: 1,234.5."""
    value = Decimal(str(value))
    if value == value.to_integral_value():
        return f"{value.quantize(Decimal(1)):,}"
    return f"{value.normalize():,f}"
