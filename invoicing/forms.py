"""Portal forms for billing. They check the shape of input; the services decide the rest
(a second open dispute, an invoice that cannot be disputed) and their refusals are shown
on the form with ``accounts.forms.add_domain_error``."""

from django import forms


class DisputeForm(forms.Form):
    message = forms.CharField(
        label="What looks wrong?",
        max_length=5000,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": "e.g. These calls came from our staging system."}
        ),
        error_messages={"required": "Tell us what looks wrong."},
    )

    def __init__(self, *args, line_id: int, **kwargs):
        # Several lines' forms share the invoice page: ids must stay unique.
        kwargs.setdefault("auto_id", f"dispute-{line_id}-%s")
        super().__init__(*args, **kwargs)
