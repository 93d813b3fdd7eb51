"""A plan version's price components as the rating engine's ``PeriodPricing``.

The one translation between what the catalog stores and what ``invoicing.rating`` rates;
references (``ref``) are price component ids, so every rated line traces back to the
component that priced it. Usage is keyed by the component id too.
"""

from decimal import Decimal

from .models import PriceComponent
from .rating import PeriodPricing, Tier, UsagePrice

Kind = PriceComponent.Kind


def _decimal(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def usage_price(component: PriceComponent) -> UsagePrice:
    return UsagePrice(
        model=component.pricing_model,
        unit_price=component.unit_price if component.unit_price is not None else Decimal(0),
        tiers=tuple(
            Tier(
                up_to=_decimal(tier.get("up_to")),
                unit_price=Decimal(str(tier.get("unit_price", "0"))),
                flat_fee=Decimal(str(tier.get("flat_fee") or "0")),
            )
            for tier in component.tiers or ()
        ),
        package_size=component.package_size,
        included_units=component.included_units or Decimal(0),
    )


def period_pricing(currency: str, components: list[PriceComponent]) -> PeriodPricing:
    """Raises ValueError (with the engine's message) for prices the engine refuses."""
    single: dict[str, Decimal] = {}
    for component in components:
        if component.kind in (Kind.FLAT_FEE, Kind.USAGE):
            continue
        if component.kind in single:
            raise ValueError(f"a plan version has at most one {component.get_kind_display()}")
        value = component.percent if component.kind == Kind.PERCENT_DISCOUNT else component.amount
        if value is None:
            field = "percent" if component.kind == Kind.PERCENT_DISCOUNT else "amount"
            raise ValueError(f"{component.get_kind_display()} needs its {field}")
        single[component.kind] = value
    return PeriodPricing(
        currency=currency,
        flat_fees=tuple(
            (str(c.pk), c.amount if c.amount is not None else Decimal(0))
            for c in components
            if c.kind == Kind.FLAT_FEE
        ),
        usage=tuple((str(c.pk), usage_price(c)) for c in components if c.kind == Kind.USAGE),
        minimum_spend=single.get(Kind.MINIMUM_SPEND),
        commitment=single.get(Kind.COMMITMENT),
        percent_discount=single.get(Kind.PERCENT_DISCOUNT),
        fixed_discount=single.get(Kind.FIXED_DISCOUNT),
        maximum=single.get(Kind.MAXIMUM),
    )
