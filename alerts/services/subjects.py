"""Where a rule's subject stands: a customer's billing period, its plan's terms, usage,
spend and hard cap, each read once per evaluation pass for all of the customer's rules."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from accounts.models import Customer
from invoicing import selectors as invoicing
from invoicing.currency import from_minor
from invoicing.rating import UsagePrice, units_within, usage_amount
from metering import selectors as metering
from metering.ingest import FUTURE_TOLERANCE
from metering.models import Meter

from ..models import AlertRule
from .caps import cap_units

Basis = AlertRule.Basis
PERCENT = Decimal(100)


@dataclass
class Terms:
    """What a customer's plan says about a meter this period: its price and allowances."""

    currency: str | None = None
    prices: dict[int, UsagePrice] = field(default_factory=dict)
    commitment: Decimal | None = None


@dataclass
class Position:
    """Where a rule's subject stands this period, in its own basis."""

    value: Decimal  # in the rule's basis: units, money (major units) or percent
    usage: Decimal | None  # the meter's units this period (None: total spend)
    spend: Decimal | None  # money, where the plan prices it
    reference: Decimal | None  # the 100% of a percent basis, in units or money
    currency: str | None


class Subjects:
    """Reads each customer's period, terms, usage and spend once for all of its rules."""

    def __init__(self, now: datetime):
        self.now = now
        self._periods: dict[int, metering.Period] = {}
        self._terms: dict[int, Terms] = {}
        self._usage: dict[tuple[int, int], Decimal] = {}
        self._spend: dict[int, Decimal] = {}
        self._caps: dict[tuple[int, int], Decimal | None] = {}

    def period(self, customer: Customer) -> metering.Period:
        if customer.pk not in self._periods:
            self._periods[customer.pk] = metering.current_period(customer, self.now)
        return self._periods[customer.pk]

    def terms(self, customer: Customer) -> Terms:
        if customer.pk not in self._terms:
            self._terms[customer.pk] = _terms(customer)
        return self._terms[customer.pk]

    def usage(self, customer: Customer, meter: Meter) -> Decimal:
        """The period's usage as of ``now`` (with the few minutes of clock skew ingestion
        accepts), so evaluating at a past moment sees only what had happened by then."""
        key = (customer.pk, meter.pk)
        if key not in self._usage:
            period = self.period(customer)
            self._usage[key] = metering.usage_total(
                customer=customer,
                meter=meter,
                start=period.start,
                end=min(period.end, self.now + FUTURE_TOLERANCE),
            )
        return self._usage[key]

    def total_spend(self, customer: Customer) -> Decimal | None:
        if customer.pk not in self._spend:
            upcoming = invoicing.upcoming_invoice(customer=customer, now=self.now)
            self._spend[customer.pk] = (
                None if upcoming is None else from_minor(upcoming.total_minor, upcoming.currency)
            )
        return self._spend[customer.pk]

    def usage_today(self, customer: Customer, meter: Meter) -> Decimal:
        zone = ZoneInfo(customer.timezone)
        today = self.now.astimezone(zone).date()
        midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
        return metering.usage_total(customer=customer, meter=meter, start=midnight, end=self.now)

    def cap(self, customer: Customer, meter: Meter) -> tuple[Decimal, str] | None:
        """The hard cap on the meter this period, in units, and what happens past it."""
        key = (customer.pk, meter.pk)
        if key not in self._caps:
            cap = customer.caps.filter(meter=meter).first()
            if cap is None:
                self._caps[key] = None
            else:
                window = cap.windows.filter(period_start=self.period(customer).start).first()
                limit = window.limit if window is not None else cap_units(cap)
                self._caps[key] = (limit, cap.on_exceed)
        return self._caps[key]

    def cap_units(self, customer: Customer, meter: Meter) -> Decimal | None:
        cap = self.cap(customer, meter)
        return None if cap is None else cap[0]

    def position(self, rule: AlertRule) -> Position | None:
        """The rule's subject now, or ``None`` when the basis has nothing to measure
        against (no price, no allowance, no commitment, no cap)."""
        customer, meter = rule.customer, rule.meter
        terms = self.terms(customer)
        price = terms.prices.get(meter.pk) if meter else None
        usage = self.usage(customer, meter) if meter else None
        if meter is None:
            spend = self.total_spend(customer)
        else:
            spend = None if price is None else usage_amount(price, usage)
        if rule.basis == Basis.UNITS:
            return Position(usage, usage, spend, None, terms.currency)
        if rule.basis == Basis.MONEY:
            if spend is None:
                return None
            return Position(spend, usage, spend, None, terms.currency)
        if rule.basis == Basis.PERCENT_INCLUDED:
            included = price.included_units if price else Decimal(0)
            if not included:
                return None
            return Position(usage * PERCENT / included, usage, spend, included, terms.currency)
        if rule.basis == Basis.PERCENT_COMMITMENT:
            if not terms.commitment or spend is None:
                return None
            value = spend * PERCENT / terms.commitment
            return Position(value, usage, spend, terms.commitment, terms.currency)
        limit = self.cap_units(customer, meter)  # percent of the hard cap
        if not limit:
            return None
        return Position(usage * PERCENT / limit, usage, spend, limit, terms.currency)

    def level_in_units(self, rule: AlertRule, level: Decimal) -> Decimal | None:
        """A level of a meter rule as units of the meter (what a forecast predicts)."""
        customer, meter = rule.customer, rule.meter
        if rule.basis == Basis.UNITS:
            return level
        price = self.terms(customer).prices.get(meter.pk)
        if rule.basis == Basis.MONEY:
            return None if price is None else units_within(price, level)
        if rule.basis == Basis.PERCENT_INCLUDED:
            included = price.included_units if price else Decimal(0)
            return included * level / PERCENT if included else None
        if rule.basis == Basis.PERCENT_CAP:
            limit = self.cap_units(customer, meter)
            return limit * level / PERCENT if limit else None
        commitment = self.terms(customer).commitment  # percent of commitment, one meter
        if price is None or not commitment:
            return None
        return units_within(price, commitment * level / PERCENT)


def _terms(customer: Customer) -> Terms:
    subscription = invoicing.subscription_current(customer=customer)
    if subscription is None:
        return Terms()
    version = subscription.plan_version
    terms = invoicing.plan_version_terms(version)
    return Terms(currency=version.plan.currency, prices=terms.prices, commitment=terms.commitment)
