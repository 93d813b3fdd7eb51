"""Pieces the alerts admin modules share: the service-backed base class and display helpers."""

import json
from decimal import Decimal

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import Persona
from invoicing.admin._shared import ServiceAdmin, number

from ..models import AlertRule


def changelist_url(model) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


class AlertsServiceAdmin(ServiceAdmin):
    """invoicing's ``ServiceAdmin`` (read-only pages; "change" only unlocks the actions,
    which call services), with its pages pointing back at this app's changelists."""

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
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
        # Past ServiceAdmin's, which names invoicing's changelist.
        return admin.ModelAdmin.change_view(self, request, object_id, form_url, extra_context)


def pretty_json(value) -> str:
    """Evidence as indented JSON, keys sorted, escaped for the page."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="mb-evidence">{}</pre>', text)


def rule_levels(rule: AlertRule) -> str:
    """What makes the rule fire, in one line: its levels, or its kind's tuning."""
    Kind = AlertRule.Kind
    if rule.kind == Kind.VELOCITY:
        if rule.factor is None:
            return "—"
        return (
            f"{number(rule.factor)} times the rate: last {rule.recent_days} d "
            f"against {rule.baseline_days} d"
        )
    if rule.kind == Kind.ANOMALY:
        if rule.sensitivity is None:
            return "—"
        return f"{number(rule.sensitivity)} robust deviations"
    percent = "%" if rule.basis.startswith("percent") else ""
    text = ", ".join(f"{number(level)}{percent}" for level in rule.levels) or "—"
    if rule.kind == Kind.PREDICTIVE and rule.confidence is not None:
        likely = number(Decimal(rule.confidence) * 100)
        text += f" ({likely}% likely within {rule.within_days} d)"
    return text


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 subscriber', '3 subscribers'."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def personas(values) -> str:
    labels = dict(Persona.choices)
    return ", ".join(labels.get(value, value) for value in values) or "everyone"
