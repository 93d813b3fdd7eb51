"""Forms behind the invoicing admin's create pages and action confirmation pages.

They only collect input; the services validate it and do the work, and their domain
errors come back onto the form through ``add_domain_error``.
"""

from django import forms

from ..currency import format_money
from ..models import CreditNote, Interval, Invoice, Plan
from ..services import CreditRequest
from ..services.corrections import credited_by_line

COMPONENTS_HELP = (
    "A JSON list, one object per price, e.g. "
    '[{"kind": "flat_fee", "amount": "99.00", "description": "Platform fee"}, '
    '{"kind": "usage", "meter": "api_calls", "pricing_model": "graduated", '
    '"tiers": [{"up_to": "1000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]}]. '
    "Amounts are decimal strings in the plan's currency."
)


class PlanCreateForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ["code", "name", "currency", "description"]


class PlanVersionForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.order_by("name"))
    interval = forms.ChoiceField(choices=Interval.choices)
    components = forms.JSONField(
        help_text=COMPONENTS_HELP,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 100, "spellcheck": "false"}),
    )
    notes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 100}),
        help_text="What changed from the previous version.",
    )


class ConfirmForm(forms.Form):
    """No input: the confirmation page's button is the answer."""


class ReleaseForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="What you reviewed and why the batch figures are right (kept in the audit log).",
    )


class VoidForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Shown in the memo of the matching credit note.",
    )


# Reasons the system gives itself (a void, an accepted dispute) are not offered here.
MANUAL_CREDIT_REASONS = [
    choice
    for choice in CreditNote.Reason.choices
    if choice[0] not in (CreditNote.Reason.INVOICE_VOIDED, CreditNote.Reason.DISPUTE_ACCEPTED)
]


class CreditNoteForm(forms.Form):
    """Credit an invoice in full, or given amounts (minor units) of given lines."""

    FULL, LINES = "full", "lines"

    scope = forms.ChoiceField(
        choices=[(FULL, "Everything left to credit"), (LINES, "The amounts below, per line")],
        initial=FULL,
        widget=forms.RadioSelect,
    )
    reason = forms.ChoiceField(choices=MANUAL_CREDIT_REASONS)
    memo = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Shown to the customer on the credit note.",
    )

    def __init__(self, *args, invoice: Invoice, **kwargs):
        super().__init__(*args, **kwargs)
        self.invoice = invoice
        credited = credited_by_line(invoice)
        self.line_fields: list[str] = []
        # Only charges can be credited: discounts and drawdowns already lowered the total.
        for line in invoice.lines.filter(amount_minor__gt=0).order_by("position"):
            name = f"line_{line.pk}"
            left = line.amount_minor - credited.get(line.pk, 0)
            self.fields[name] = forms.IntegerField(
                required=False,
                min_value=1,
                label=f"Line {line.position}: {line.description}",
                help_text=(
                    f"Charged {format_money(line.amount_minor, invoice.currency)}, "
                    f"left to credit {format_money(max(left, 0), invoice.currency)}. "
                    f"In minor units of {invoice.currency}."
                ),
            )
            self.line_fields.append(name)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("scope") == self.LINES and not self.requests():
            raise forms.ValidationError("Give an amount for at least one line.")
        return cleaned

    def requests(self) -> list[CreditRequest] | None:
        """What to pass to ``credit_note_issue(lines=...)``: None credits in full."""
        if self.cleaned_data.get("scope") != self.LINES:
            return None
        return [
            CreditRequest(int(name.removeprefix("line_")), self.cleaned_data[name])
            for name in self.line_fields
            if self.cleaned_data.get(name)
        ]


class DisputeAcceptForm(forms.Form):
    amount_minor = forms.IntegerField(
        required=False,
        min_value=1,
        label="Amount to credit (minor units)",
        help_text="Leave empty to credit what is left of the line.",
    )
    resolution = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Shown to the customer, and the memo of the credit note.",
    )

    def __init__(self, *args, disputes: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.disputes = disputes

    def clean_amount_minor(self):
        amount = self.cleaned_data["amount_minor"]
        if amount is not None and self.disputes > 1:
            raise forms.ValidationError("Give an amount only when accepting one dispute.")
        return amount


class DisputeRejectForm(forms.Form):
    resolution = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Required: the customer sees it.",
    )
