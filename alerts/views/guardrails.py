"""Portal page "Caps & alerts" (``/alerts/``): the customer's hard caps with what happens
past each one and how much of it this period has used, and its alert rules of every kind.

Everyone on the team sees the page; setting caps and rules needs MANAGE_GUARDRAILS (owner,
admin, finance). Each write answers an htmx request with the fragments to swap (a fresh
form, the lists out of band, a flash) and a plain form post with a redirect, or — when the
form or the service refuses — the form again with the errors on their fields (422).

The page reads a fixed number of queries whatever the number of meters, caps and rules;
only a cap with no window yet this period (set, and no usage or authorization since)
measures its meter's usage on its own.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone

from accounts.errors import DomainError
from accounts.forms import add_domain_error
from accounts.roles import Ability
from accounts.views.mixins import FORM_INVALID, PortalView, wants_partial
from invoicing import selectors as invoicing
from invoicing.currency import minor_unit_exponent
from metering import selectors as metering
from metering.models import Meter

from .. import services
from ..forms import TOTAL_SPEND, CapForm, RuleForm
from ..models import AlertRule, Cap, CapWindow

PAGE = "alerts/guardrails.html"
RULE_PAGE = "alerts/guardrails_rule.html"
CONFIRM_PAGE = "alerts/guardrails_confirm.html"
CAPS = "alerts/_caps.html"
CAP_FORM = "alerts/_cap_form.html"
RULES = "alerts/_rules.html"
RULE_FORM = "alerts/_rule_form.html"
FLASH = "accounts/_flash.html"

Kind, Basis = AlertRule.Kind, AlertRule.Basis


# --- What the page prints ---------------------------------------------------------------


def quantity(value: Decimal) -> str:
    """Exact, without trailing zeros: ``1234.500000000000`` -> ``1,234.5``."""
    value = Decimal(value).normalize()
    return f"{value:,.{max(0, -value.as_tuple().exponent)}f}"


def money(value: Decimal, currency: str) -> str:
    """At least the currency's minor digits: ``500`` -> ``500.00 USD``."""
    value = Decimal(value).normalize()
    places = max(minor_unit_exponent(currency), -value.as_tuple().exponent)
    return f"{value:,.{places}f} {currency}"


@dataclass
class CapRow:
    meter: Meter | None  # None: the total spend on usage
    cap: Cap | None = None
    limit: str = ""  # the cap as the customer set it
    used: str = ""  # this period's usage (total: spend) and reservations against it
    share: int = 0  # of the cap, for the bar (0-100)

    @property
    def cappable(self) -> bool:
        return self.meter is None or self.meter.is_additive

    @property
    def reached(self) -> bool:
        return self.cap is not None and self.share >= 100


@dataclass
class RuleRow:
    rule: AlertRule
    watches: str
    condition: str
    warning: str = ""


def rule_condition(rule: AlertRule, unit: str, currency: str) -> str:
    """When the rule fires, in a sentence."""
    if rule.kind in (Kind.THRESHOLD, Kind.PREDICTIVE):
        if rule.basis == Basis.UNITS:
            shown = [quantity(level) for level in rule.levels]
            suffix = f" {unit}"
        elif rule.basis == Basis.MONEY:
            shown = [money(level, currency) for level in rule.levels]
            suffix = " of spend"
        else:
            shown = [f"{quantity(level)}%" for level in rule.levels]
            suffix = {
                Basis.PERCENT_INCLUDED: " of the included units",
                Basis.PERCENT_COMMITMENT: " of the commitment",
                Basis.PERCENT_CAP: " of the hard cap",
            }[rule.basis]
        levels = " · ".join(shown) + suffix
        if rule.kind == Kind.THRESHOLD:
            return f"At {levels}"
        return (
            f"When passing {levels} within {rule.within_days} days is at least "
            f"{quantity(rule.confidence * 100)}% likely"
        )
    ignore = f"; days under {quantity(rule.min_volume)} {unit} ignored" if rule.min_volume else ""
    if rule.kind == Kind.VELOCITY:
        return (
            f"When the daily rate of the last {rule.recent_days} days is {quantity(rule.factor)} "
            f"times the previous {rule.baseline_days} days' rate, or 1/{quantity(rule.factor)} "
            f"of it{ignore}"
        )
    return (
        f"When a day is more than {quantity(rule.sensitivity)} robust deviations from its "
        f"usual weekday{ignore}"
    )


def cap_subject(cap: Cap) -> str:
    return "Total spend on usage" if cap.is_total else cap.meter.name


def rule_warning(rule: AlertRule, cap: Cap | None) -> str:
    """Why a rule saved earlier may not warn as meant, since the cap changed."""
    if rule.basis == Basis.PERCENT_CAP and cap is None:
        return "No hard cap on this meter any more: this rule cannot fire."
    if cap is not None and rule.basis == cap.measure and max(rule.levels, default=0) > cap.limit:
        return "A level is above the hard cap: it would only be reached past the cap."
    return ""


# --- The page ---------------------------------------------------------------------------


class GuardrailsMixin(PortalView):
    anchor = ""

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self._meters: list[Meter] | None = None
        self._caps: list[Cap] | None = None
        self._currency: str | None = None

    def meters(self) -> list[Meter]:
        if self._meters is None:
            self._meters = list(metering.meter_list().order_by("name"))
        return self._meters

    def caps(self) -> dict[int, Cap]:
        """The customer's caps by meter id."""
        if self._caps is None:
            self._caps = list(
                Cap.objects.filter(customer=self.customer).select_related("meter", "plan_default")
            )
        return {cap.meter_id: cap for cap in self._caps}

    def currency(self) -> str:
        """The plan's currency (money caps and levels count in it), else the customer's."""
        if self._currency is None:
            subscription = invoicing.subscription_current(customer=self.customer)
            self._currency = (
                subscription.plan_version.plan.currency if subscription else self.customer.currency
            )
        return self._currency

    def cap_rows(self) -> list[CapRow]:
        now = timezone.now()
        caps = self.caps()
        windows = {
            w.cap_id: w
            for w in CapWindow.objects.filter(
                cap__customer=self.customer, period_start__lte=now, period_end__gt=now
            )
        }
        # The total spend row first: it holds every meter's usage charges together.
        total = CapRow(meter=None, cap=caps.get(None))
        if total.cap is not None:
            total.limit, total.used, total.share = self._total_figures(total.cap, windows, now)
        rows = []
        for meter in self.meters():
            row = CapRow(meter=meter, cap=caps.get(meter.pk))
            if row.cap is not None:
                row.limit, row.used, row.share = self._cap_figures(row.cap, windows, now)
            rows.append(row)
        # Capped meters first, then the ones that could be, then the rest.
        return [total, *sorted(rows, key=lambda r: (r.cap is None, not r.cappable))]

    def cap_for(self, code: str | None) -> Cap | None:
        """The cap a query names by its meter's code; blank is the total spend cap (absent
        is none: an empty form)."""
        if code is None:
            return None
        if code == TOTAL_SPEND:
            return self.caps().get(None)
        return next((c for c in self.caps().values() if c.meter and c.meter.code == code), None)

    def cap_limit(self, cap: Cap) -> str:
        if cap.is_total:
            return f"{money(cap.limit, self.currency())} of usage spend"
        if cap.measure == Cap.Measure.MONEY:
            return f"{money(cap.limit, self.currency())} of spend"
        return f"{quantity(cap.limit)} {cap.meter.unit_label}"

    def _cap_figures(self, cap: Cap, windows: dict, now: datetime) -> tuple[str, str, int]:
        unit, limit = cap.meter.unit_label, self.cap_limit(cap)
        window = windows.get(cap.pk)
        if window is not None:
            taken, units = window.used + window.reserved, window.limit
        else:
            period = metering.current_period(self.customer, now)
            taken = metering.usage_total(
                customer=self.customer, meter=cap.meter, start=period.start, end=period.end
            )
            units = cap.limit if cap.measure == Cap.Measure.UNITS else services.cap_units(cap)
        if units >= services.MAX_QUANTITY - 1:
            return limit, f"{quantity(taken)} {unit}; your price never reaches the cap", 0
        used = f"{quantity(taken)} of {quantity(units)} {unit}"
        share = 100 if units <= 0 else min(100, int(taken * 100 / units))
        return limit, used, share

    def _total_figures(self, cap: Cap, windows: dict, now: datetime) -> tuple[str, str, int]:
        window = windows.get(cap.pk)
        if window is not None:
            taken, limit = window.used + window.reserved, window.limit
        else:
            taken = services.spend_so_far(self.customer, now=now) or Decimal(0)
            limit = cap.limit
        currency = self.currency()
        used = f"{money(taken, currency)} of {money(limit, currency)} spent on usage"
        share = 100 if limit <= 0 else min(100, int(taken * 100 / limit))
        return self.cap_limit(cap), used, share

    def rule_rows(self) -> list[RuleRow]:
        caps = self.caps()
        rules = AlertRule.objects.filter(customer=self.customer).select_related("meter")
        rows = []
        for rule in rules.order_by("meter__name", "kind", "id"):
            unit = rule.meter.unit_label if rule.meter_id else ""
            rows.append(
                RuleRow(
                    rule=rule,
                    watches=rule.meter.name if rule.meter_id else "Total spend",
                    condition=rule_condition(rule, unit, self.currency()),
                    warning=rule_warning(rule, caps.get(rule.meter_id)),
                )
            )
        return rows

    # --- Forms --------------------------------------------------------------------------

    def cap_form(self, *args, **kwargs) -> CapForm:
        return CapForm(*args, meters=self.meters(), **kwargs)

    def rule_form(self, *args, **kwargs) -> RuleForm:
        return RuleForm(*args, meters=self.meters(), **kwargs)

    def rule_form_context(self, form: RuleForm, rule: AlertRule | None = None) -> dict:
        action = (
            reverse("alerts:rule_edit", args=[rule.pk]) if rule else reverse("alerts:rule_create")
        )
        return {"rule_form": form, "rule_form_action": action, "editing": rule}

    def cap_form_context(self, form: CapForm, cap: Cap | None = None) -> dict:
        return {"cap_form": form, "editing_cap": cap}

    def render_page(self, *, status: int = 200, **overrides):
        context = {
            "cap_rows": self.cap_rows(),
            "rule_rows": self.rule_rows(),
            "currency": self.currency(),
            **self.cap_form_context(self.cap_form()),
            **self.rule_form_context(self.rule_form()),
            **overrides,
        }
        return self.render(PAGE, context, status=status)

    def caps_fragment(self, *, oob: bool = True) -> tuple[str, dict]:
        self._caps = None  # read again: the write changed them
        return CAPS, {"cap_rows": self.cap_rows(), "oob": oob}

    def rules_fragment(self, *, oob: bool = True) -> tuple[str, dict]:
        # A cap's change can make a rule's warning appear or go.
        return RULES, {"rule_rows": self.rule_rows(), "oob": oob}

    def done(self, text: str, *fragments: tuple[str, dict]):
        """Success: htmx gets the fragments plus a flash; a plain form post is redirected."""
        if wants_partial(self.request):
            return self.render_fragments(*fragments, (FLASH, {"flash": [("success", text)]}))
        messages.success(self.request, text)
        return redirect(reverse("alerts:guardrails") + self.anchor)


class GuardrailsView(GuardrailsMixin):
    def get(self, request):
        overrides = {}
        # Without JavaScript, "Change" on a cap opens the page with its form filled in.
        cap = self.cap_for(request.GET.get("cap"))
        if cap is not None:
            overrides = self.cap_form_context(self.cap_form(initial=CapForm.initial_from(cap)), cap)
        return self.render_page(**overrides)


# --- Caps -------------------------------------------------------------------------------


class CapSetView(GuardrailsMixin):
    required_ability = Ability.MANAGE_GUARDRAILS
    anchor = "#caps"

    def get(self, request):
        # htmx asks for the form, filled in for a meter's cap ("Change") or empty ("Cancel").
        if not wants_partial(request):
            return redirect(reverse("alerts:guardrails") + self.anchor)
        cap = self.cap_for(request.GET.get("meter"))
        initial = CapForm.initial_from(cap) if cap else None
        if cap is None and request.GET.get("meter") == TOTAL_SPEND:
            initial = {"meter": TOTAL_SPEND, "measure": Cap.Measure.MONEY}
        return self.render(CAP_FORM, self.cap_form_context(self.cap_form(initial=initial), cap))

    def post(self, request):
        form = self.cap_form(request.POST)
        if form.is_valid():
            try:
                cap = services.cap_set(
                    actor=request.user,
                    customer=self.customer,
                    meter=services.meter_lookup(form.cleaned_data["meter"]),
                    limit=form.cleaned_data["limit"],
                    measure=form.cleaned_data["measure"],
                    on_exceed=form.cleaned_data["on_exceed"],
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.done(
                    f"{cap_subject(cap)} is capped at {self.cap_limit(cap)} per billing period.",
                    (CAP_FORM, self.cap_form_context(self.cap_form())),
                    self.caps_fragment(),
                    self.rules_fragment(),
                )
        if wants_partial(request):
            return self.render(CAP_FORM, self.cap_form_context(form), status=FORM_INVALID)
        return self.render_page(status=FORM_INVALID, **self.cap_form_context(form))


class CapRemoveView(GuardrailsMixin):
    required_ability = Ability.MANAGE_GUARDRAILS
    object_kwarg = "cap_id"
    anchor = "#caps"

    def get_object_queryset(self):
        return Cap.objects.select_related("customer", "meter")

    def get(self, request, cap_id):
        return self.render(
            CONFIRM_PAGE,
            {
                "what": f"the hard cap on {cap_subject(self.object).lower()}",
                "consequence": "Usage of this meter will no longer be limited."
                if self.object.meter
                else "Spend on usage will no longer be limited.",
                "button": "Remove cap",
            },
        )

    def post(self, request, cap_id):
        name = cap_subject(self.object).lower() if self.object.is_total else self.object.meter.name
        services.cap_remove(actor=request.user, cap=self.object)
        return self.done(
            f"The cap on {name} is removed.",
            self.caps_fragment(oob=False),
            self.rules_fragment(),
        )


# --- Rules ------------------------------------------------------------------------------


def _form_initial(query) -> dict:
    """The rule form as the member left it, from an htmx refresh (the kind changed)."""
    initial = {name: value for name, value in query.items() if name in RuleForm.base_fields}
    initial["audience"] = query.getlist("audience")
    initial["enabled"] = query.get("enabled") == "on"
    return initial


class RuleFormMixin(GuardrailsMixin):
    required_ability = Ability.MANAGE_GUARDRAILS
    anchor = "#rules"

    def saved(self, text: str):
        return self.done(
            text, (RULE_FORM, self.rule_form_context(self.rule_form())), self.rules_fragment()
        )

    def invalid(self, form: RuleForm, rule: AlertRule | None = None):
        context = self.rule_form_context(form, rule)
        if wants_partial(self.request):
            return self.render(RULE_FORM, context, status=FORM_INVALID)
        if rule is not None:
            return self.render(RULE_PAGE, context, status=FORM_INVALID)
        return self.render_page(status=FORM_INVALID, **context)


class RuleCreateView(RuleFormMixin):
    def get(self, request):
        if not wants_partial(request):
            return redirect(reverse("alerts:guardrails") + self.anchor)
        initial = _form_initial(request.GET) if "kind" in request.GET else None
        return self.render(RULE_FORM, self.rule_form_context(self.rule_form(initial=initial)))

    def post(self, request):
        form = self.rule_form(request.POST)
        if form.is_valid():
            try:
                rule = services.rule_create(
                    actor=request.user, customer=self.customer, **form.service_fields()
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.saved(f"Alert rule “{rule}” added.")
        return self.invalid(form)


class RuleEditView(RuleFormMixin):
    object_kwarg = "rule_id"

    def get_object_queryset(self):
        return AlertRule.objects.select_related("meter")

    def get(self, request, rule_id):
        if "kind" in request.GET:
            initial = _form_initial(request.GET)
        else:
            initial = RuleForm.initial_from(self.object)
        context = self.rule_form_context(self.rule_form(initial=initial), self.object)
        return self.render(RULE_FORM if wants_partial(request) else RULE_PAGE, context)

    def post(self, request, rule_id):
        form = self.rule_form(request.POST)
        if form.is_valid():
            try:
                rule = services.rule_update(
                    actor=request.user, rule=self.object, **form.service_fields()
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                return self.saved(f"Alert rule “{rule}” saved.")
        return self.invalid(form, self.object)


class RuleDeleteView(RuleFormMixin):
    object_kwarg = "rule_id"

    def get_object_queryset(self):
        return AlertRule.objects.select_related("customer", "meter")

    def get(self, request, rule_id):
        return self.render(
            CONFIRM_PAGE,
            {
                "what": f"the alert rule “{self.object}”",
                "consequence": "Alerts it already raised stay in the history.",
                "button": "Delete rule",
            },
        )

    def post(self, request, rule_id):
        name = str(self.object)
        services.rule_delete(actor=request.user, rule=self.object)
        return self.done(f"Alert rule “{name}” deleted.", self.rules_fragment(oob=False))


urlpatterns = [
    path("", GuardrailsView.as_view(), name="guardrails"),
    path("caps/", CapSetView.as_view(), name="cap_set"),
    path("caps/<int:cap_id>/remove", CapRemoveView.as_view(), name="cap_remove"),
    path("rules/new", RuleCreateView.as_view(), name="rule_create"),
    path("rules/<int:rule_id>/edit", RuleEditView.as_view(), name="rule_edit"),
    path("rules/<int:rule_id>/delete", RuleDeleteView.as_view(), name="rule_delete"),
]
