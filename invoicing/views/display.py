"""What the billing pages print: amounts through ``currency.format_money``, exact
quantities and prices, tier breakdowns, and each line's disputes.

Nothing here reads the database: the views hand in rows they fetched in bulk.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.urls import reverse

from ..currency import format_money, minor_unit_exponent
from ..forms import DisputeForm
from ..models import Dispute, Invoice, InvoiceLine
from ..selectors import line_disputable

# Lines whose figure comes from raw events: they can be drilled down to them.
EVENT_KINDS = (InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE)


def format_quantity(value: Decimal) -> str:
    """Exact, without trailing zeros: ``1234.500000000000`` -> ``1,234.5``."""
    value = Decimal(value).normalize()
    places = max(0, -value.as_tuple().exponent)
    return f"{value:,.{places}f}"


def format_price(value: Decimal | str, currency: str) -> str:
    """A unit price or an unrounded amount, exact, with at least the currency's minor
    digits: ``0.002`` -> ``0.002 USD``, ``99`` -> ``99.00 USD``."""
    value = Decimal(value).normalize()
    places = max(minor_unit_exponent(currency), -value.as_tuple().exponent)
    return f"{value:,.{places}f} {currency}"


@dataclass(frozen=True)
class TierRow:
    units: str
    quantity: str
    unit_price: str
    flat_fee: str | None
    amount: str


def tier_rows(line: InvoiceLine, currency: str) -> list[TierRow]:
    rows = []
    for tier in line.tiers or []:
        first = Decimal(tier["first_unit"])
        up_to = tier.get("up_to")
        if up_to is None:
            units = "All billable units" if first == 0 else f"Above {format_quantity(first)}"
        else:
            units = f"{format_quantity(first + 1)} to {format_quantity(Decimal(up_to))}"
        flat_fee = Decimal(tier.get("flat_fee") or 0)
        rows.append(
            TierRow(
                units=units,
                quantity=format_quantity(Decimal(tier["quantity"])),
                unit_price=format_price(tier["unit_price"], currency),
                flat_fee=format_price(flat_fee, currency) if flat_fee else None,
                amount=format_price(tier["amount"], currency),
            )
        )
    return rows


@dataclass
class LineRow:
    """One invoice line as the pages show it."""

    line: InvoiceLine
    quantity: str
    included: str | None
    unit_price: str | None
    amount: str
    tiers: list[TierRow]
    events_url: str | None = None
    dispute_url: str | None = None
    disputes: list[Dispute] = field(default_factory=list)
    disputable: bool = False  # the invoice can be disputed and the member may
    form: DisputeForm | None = None

    @property
    def has_open_dispute(self) -> bool:
        return any(d.status == Dispute.Status.OPEN for d in self.disputes)

    @property
    def show_form(self) -> bool:
        return self.disputable and not self.has_open_dispute


def line_row(
    line: InvoiceLine,
    *,
    currency: str,
    invoice: Invoice | None = None,
    disputes: Iterable[Dispute] = (),
    can_dispute: bool = False,
    form: DisputeForm | None = None,
) -> LineRow:
    """``invoice`` given: a saved line with its links and dispute form; without it, an
    unsaved line of the upcoming invoice."""
    row = LineRow(
        line=line,
        quantity=format_quantity(line.quantity),
        included=format_quantity(line.included_units) if line.included_units else None,
        unit_price=format_price(line.unit_price, currency) if line.unit_price is not None else None,
        amount=format_money(line.amount_minor, currency),
        tiers=tier_rows(line, currency),
        disputes=list(disputes),
    )
    if invoice is not None:
        kwargs = {"invoice_id": invoice.pk, "line_id": line.pk}
        if line.kind in EVENT_KINDS and line.meter_id is not None:
            row.events_url = reverse("billing:line_events", kwargs=kwargs)
        row.dispute_url = reverse("billing:line_dispute", kwargs=kwargs)
        row.disputable = can_dispute and line_disputable(invoice, line)
        row.form = form or DisputeForm(line_id=line.pk)
    return row


def disputes_by_line(disputes: Iterable[Dispute]) -> dict[int, list[Dispute]]:
    grouped: dict[int, list[Dispute]] = defaultdict(list)
    for dispute in disputes:
        grouped[dispute.invoice_line_id].append(dispute)
    return grouped


@dataclass(frozen=True)
class InvoiceRow:
    invoice: Invoice
    total: str


def invoice_rows(invoices: Iterable[Invoice]) -> list[InvoiceRow]:
    return [InvoiceRow(i, format_money(i.total_minor, i.currency)) for i in invoices]


def format_money_or_none(minor: int, currency: str) -> str | None:
    """For a total that is shown only when there is one."""
    return format_money(minor, currency) if minor else None
