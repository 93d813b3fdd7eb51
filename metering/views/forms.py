"""The events page's filter form: meter, date range in the customer's time zone, one
property, and the keyset cursor of the page being shown."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django import forms

from ..models.meters import PROPERTY_PATTERN

PROPERTY_FILTER_RE = re.compile(rf"^\s*({PROPERTY_PATTERN[1:-1]})\s*=(.*)$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_YEAR, MAX_YEAR = 2000, 2100


class Cursor:
    """A position in the (timestamp, id) order, written ``<microseconds since epoch>.<id>``."""

    def __init__(self, timestamp: datetime, pk: int):
        self.timestamp = timestamp
        self.pk = pk

    def __str__(self):
        return f"{(self.timestamp - EPOCH) // timedelta(microseconds=1)}.{self.pk}"

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        micros, _, pk = text.partition(".")
        if not (micros.lstrip("-").isdigit() and pk.isdigit()):
            raise ValueError(text)
        return cls(EPOCH + timedelta(microseconds=int(micros)), int(pk))


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


class DayRangeForm(forms.Form):
    """A From/To pair of days in the customer's time zone, as portal filters ask for them
    (the events page, the alert history): checked, and turned into ``[since, until)``."""

    start = forms.DateField(
        required=False,
        label="From",
        widget=DateInput(),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    end = forms.DateField(
        required=False,
        label="To",
        widget=DateInput(),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )

    def __init__(self, data, *, zone: ZoneInfo):
        super().__init__(data)
        self.zone = zone

    def _clean_date(self, name: str):
        value = self.cleaned_data[name]
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            raise forms.ValidationError(f"Enter a date between {MIN_YEAR} and {MAX_YEAR}.")
        return value

    def clean_start(self):
        return self._clean_date("start")

    def clean_end(self):
        return self._clean_date("end")

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", "The end date is before the start date.")
        return data

    def time_range(self) -> tuple[datetime | None, datetime | None]:
        """``[since, until)``: from midnight of the first day to midnight after the last,
        both in the customer's time zone."""
        start, end = self.cleaned_data.get("start"), self.cleaned_data.get("end")
        since = datetime(start.year, start.month, start.day, tzinfo=self.zone) if start else None
        until = None
        if end:
            next_day = end + timedelta(days=1)
            until = datetime(next_day.year, next_day.month, next_day.day, tzinfo=self.zone)
        return since, until


class EventFilterForm(DayRangeForm):
    field_order = ["meter", "start", "end", "property"]

    meter = forms.ChoiceField(required=False, label="Meter")
    property = forms.CharField(
        required=False,
        label="Property",
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "region=eu-west", "spellcheck": "false"}),
    )
    after = forms.CharField(required=False, widget=forms.HiddenInput)
    before = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data, *, meters, zone: ZoneInfo):
        super().__init__(data, zone=zone)
        self.meters = {m.code: m for m in meters}
        self.fields["meter"].choices = [("", "All events")] + [
            (m.code, f"{m.name} ({m.code})") for m in meters
        ]

    def clean_property(self) -> tuple[str, str] | None:
        text = self.cleaned_data["property"]
        if not text.strip():
            return None
        match = PROPERTY_FILTER_RE.match(text)
        if match is None:
            raise forms.ValidationError(
                "Write the property as name=value, e.g. region=eu-west (the name uses "
                "letters, digits and _ . : -)."
            )
        return match.group(1), match.group(2).strip()

    def _clean_cursor(self, name: str) -> Cursor | None:
        text = self.cleaned_data[name]
        if not text:
            return None
        try:
            return Cursor.parse(text)
        except (ValueError, OverflowError):
            raise forms.ValidationError(
                "That page link is broken; start again from the newest events."
            ) from None

    def clean_after(self):
        return self._clean_cursor("after")

    def clean_before(self):
        return self._clean_cursor("before")

    # --- What the form asks for, once valid -------------------------------------------

    def meter_selected(self):
        return self.meters.get(self.cleaned_data.get("meter") or "")

    def filter_params(self) -> dict[str, str]:
        """The filters as query parameters, without the page cursor (for links and CSV)."""
        return {
            name: self.data.get(name, "")
            for name in ("meter", "start", "end", "property")
            if self.data.get(name)
        }
