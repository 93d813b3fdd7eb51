"""Forecast one meter's usage: level, trend and weekday pattern, with honest bands.

Pure numpy, no database: the caller passes the daily series and rates the quantities.

The model works on ``log(usage + offset)`` (growth is multiplicative, and the offset keeps
zero days finite), fitted on recent days only:

* weekday effects: the median residual per weekday against a robust trend, shrunk toward
  no pattern while there are few weeks, and only with two weeks of history or more;
* level and trend: a Theil-Sen line (median of pairwise slopes) through the deseasonalized
  recent days, so a spike moves neither the level nor the slope;
* uncertainty: every simulated path draws its own level and slope (Student-t around the fit,
  scaled by the residuals and their autocorrelation), a damped trend, and residual blocks
  resampled from the history (a moving-block bootstrap keeps runs and spikes as they were).

All paths are simulated at once, so a forecast is a few array operations (~1 ms).

Crossing probabilities are then recalibrated: the share of paths that cross is mapped through
a fixed monotone curve (CALIBRATION_RAW -> CALIBRATION_OBSERVED). The curve is a post-hoc
calibration map, NOT part of the model: it was fitted once on the backtest's generated cases
(bench/forecast_calibration.py --fit-calibration, seeds 3, 5, 7, 9, 11 and 13, 30,000 cases;
never the reported seed 1) as the observed crossing frequency at each raw share (local linear
fit, made monotone), and is stored here as constants. It says the simulated paths are too
sure in the tails (when 2% of paths cross, ~8% of such cases did) and slightly low in the
middle. Bands and quantiles are the paths themselves, uncalibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import numpy as np

PATHS = 2000
TREND_WINDOW = 28  # days the level and trend are fitted on: recent behaviour wins
SEASON_WINDOW = 56  # days the weekday pattern is estimated on (8 weeks)
MIN_DAYS_FOR_WEEKDAYS = 14  # two of each weekday before we believe a pattern
DAMPING = 0.99  # trend damping per day: far days get less than a straight-line trend
SPIKE_SIGMAS = 3.0  # a residual this many robust sigmas out is a spike, not the level
SPIKE_PRIOR_DAYS = 14  # spike rate = spikes / (days + this): shrunk toward "no spikes"
PERSISTENCE_PRIOR = 0.5  # day-to-day persistence assumed before the history shows its own
PERSISTENCE_PRIOR_DAYS = 7  # ... weighted like this many days of residuals
MIN_LOG_NOISE = 0.05  # floor on the log-scale noise: no history is that certain
NEW_ACCOUNT_NOISE = 0.3  # prior noise for very short histories, faded out by ~3 weeks
SPREAD = 2.0  # multiplier on parameter uncertainty (calibrated in bench/forecast_calibration)
# Prior on the log growth per day: few meters sustain more than ~4%/day for weeks, so a short
# history's wild slope is pulled toward "flat" (precision-weighted, as a normal prior does).
GROWTH_PRIOR = 0.04
# Post-hoc calibration map for crossing probabilities (see the module docstring): the share of
# paths crossing -> the probability reported, linear in between. 0 and 1 stay exact (nothing or
# everything simulated crosses, e.g. a level already passed).
CALIBRATION_RAW = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
CALIBRATION_OBSERVED = (
    0.0, 0.082, 0.137, 0.19, 0.263, 0.33, 0.419, 0.513, 0.65, 0.729, 0.779, 0.852, 0.88, 0.918, 1.0
)  # fmt: skip

Number = Decimal | float | int


@dataclass(frozen=True)
class Quantiles:
    """Cumulative usage at one day. Rating is monotone in quantity, so rating each quantile
    gives the same quantile of cost."""

    p10: Decimal
    p50: Decimal
    p90: Decimal


@dataclass(frozen=True)
class BandPoint:
    """One day of the cumulative band, for the dashboard chart (floats: display only)."""

    day: date
    p10: float
    p50: float
    p90: float


@dataclass(frozen=True)
class ModelFit:
    """What the model believes, for explaining a forecast."""

    history_days: int
    level: float  # deseasonalized daily usage at the last complete day
    daily_growth: float  # fraction per day (0.02 = +2%/day), before damping
    weekday_factors: tuple[float, ...] | None  # Monday..Sunday multipliers; None: no pattern
    log_noise: float  # robust day-to-day spread on the log scale


@dataclass(frozen=True)
class UsageForecast:
    """Simulated cumulative usage for the days after ``last_day``.

    Cumulative means ``usage_to_date`` plus the forecast days, so levels are compared with
    the same number the portal shows for the period.
    """

    last_day: date
    period_end: date
    usage_to_date: float
    fit: ModelFit
    cumulative: np.ndarray  # (paths, horizon days), read-only, monotone along days

    @property
    def horizon_days(self) -> int:
        return self.cumulative.shape[1]

    def day(self, offset: int) -> date:
        """Date of forecast day ``offset`` (0 = the day after ``last_day``)."""
        return self.last_day + timedelta(days=offset + 1)

    def band(self) -> tuple[BandPoint, ...]:
        low, mid, high = np.quantile(self.cumulative, [0.1, 0.5, 0.9], axis=0)
        return tuple(
            BandPoint(self.day(i), float(low[i]), float(mid[i]), float(high[i]))
            for i in range(self.horizon_days)
        )

    def quantiles_on(self, day: date) -> Quantiles:
        offset = (day - self.last_day).days - 1
        if not 0 <= offset < self.horizon_days:
            raise ValueError(f"{day} is outside the forecast ({self.day(0)} to {self.day(-1)})")
        low, mid, high = np.quantile(self.cumulative[:, offset], [0.1, 0.5, 0.9])
        return Quantiles(_quantity(low), _quantity(mid), _quantity(high))

    def period_end_quantiles(self) -> Quantiles:
        if self.period_end <= self.last_day:
            total = _quantity(self.usage_to_date)
            return Quantiles(total, total, total)
        return self.quantiles_on(self.period_end)

    def probability_of_crossing(
        self, level: Number, *, within_days: int, calibrated: bool = True
    ) -> float:
        """P(cumulative usage reaches ``level`` within the next ``within_days`` days).

        ``calibrated=False`` gives the raw share of simulated paths (what the calibration map
        is fitted on); the default maps it through CALIBRATION_RAW -> CALIBRATION_OBSERVED."""
        level = _finite(level, "level")
        if not 1 <= within_days <= self.horizon_days:
            raise ValueError(f"within_days must be 1..{self.horizon_days}, got {within_days}")
        if level <= self.usage_to_date:
            return 1.0
        # Usage never goes down, so reaching the level by day N is being at it on day N.
        raw = float(np.mean(self.cumulative[:, within_days - 1] >= level))
        return float(calibrate(raw)) if calibrated else raw

    def expected_crossing_date(self, level: Number) -> date | None:
        """The day by which crossing ``level`` is more likely than not (by the calibrated
        probability, so it agrees with ``probability_of_crossing``); None if not within the
        horizon."""
        level = _finite(level, "level")
        if level <= self.usage_to_date:
            return self.last_day
        crossed = calibrate(np.mean(self.cumulative >= level, axis=0))
        days = np.flatnonzero(crossed >= 0.5)
        return self.day(int(days[0])) if days.size else None


def forecast_usage(
    daily_usage: Sequence[Number],
    *,
    last_day: date,
    period_end: date,
    rng: np.random.Generator,
    usage_to_date: Number = 0,
    usage_today: Number | None = None,
    horizon_days: int | None = None,
    paths: int = PATHS,
) -> UsageForecast:
    """Forecast one meter from its daily usage.

    ``daily_usage``: one value per day, oldest first, ending with ``last_day`` (the last
    complete day); it may reach back before the current period. ``usage_to_date``: the
    period's usage through ``last_day`` (where the cumulative starts). ``usage_today``:
    counted so far on the day after ``last_day``, a floor for that day. The horizon runs to
    ``period_end`` (inclusive) unless ``horizon_days`` says otherwise; beyond the period the
    cumulative simply keeps adding (use it for rolling windows with ``usage_to_date=0``).
    """
    history = _history(daily_usage)
    base = _finite(usage_to_date, "usage_to_date")
    if base < 0:
        raise ValueError("usage_to_date must not be negative")
    floor_today = None if usage_today is None else _finite(usage_today, "usage_today")
    if floor_today is not None and floor_today < 0:
        raise ValueError("usage_today must not be negative")
    horizon = (period_end - last_day).days if horizon_days is None else horizon_days
    if horizon < 1:
        raise ValueError(f"nothing to forecast: horizon of {horizon} days")
    if paths < 10:
        raise ValueError("paths must be at least 10")

    fit, daily = _simulate(history, last_day, horizon, paths, rng)
    if floor_today is not None:
        daily[:, 0] = np.maximum(daily[:, 0], floor_today)
    cumulative = base + np.cumsum(daily, axis=1)
    cumulative.setflags(write=False)
    return UsageForecast(last_day, period_end, base, fit, cumulative)


def calibrate(raw: np.ndarray | float) -> np.ndarray:
    """Map shares of crossing paths to calibrated probabilities (monotone; 0 and 1 fixed)."""
    return np.interp(raw, CALIBRATION_RAW, CALIBRATION_OBSERVED)


# --- the model -------------------------------------------------------------------------


def _simulate(
    history: np.ndarray, last_day: date, horizon: int, paths: int, rng: np.random.Generator
) -> tuple[ModelFit, np.ndarray]:
    n = history.size
    positive = history[history > 0]
    if positive.size == 0:
        # Nothing was ever used: nothing in the history says it will start.
        return ModelFit(n, 0.0, 0.0, None, 0.0), np.zeros((paths, horizon))

    recent = history[-SEASON_WINDOW:]
    # The offset keeps zero days finite on the log scale without letting them dominate.
    offset = 0.5 * float(np.quantile(positive[-TREND_WINDOW:], 0.1))
    z_all = np.log(recent + offset)
    weekdays_all = _weekdays(last_day, recent.size)

    season = np.zeros(7)
    if n >= MIN_DAYS_FOR_WEEKDAYS:
        t = np.arange(recent.size, dtype=float)
        slope, intercept = _theil_sen(t, z_all)
        resid = z_all - intercept - slope * t
        for w in range(7):
            on_day = resid[weekdays_all == w]
            weeks = on_day.size
            season[w] = np.median(on_day) * weeks / (weeks + 0.5)  # shrink a thin pattern
        season -= season.mean()

    m = min(n, TREND_WINDOW)
    z = z_all[-m:] - season[weekdays_all[-m:]]
    t = np.arange(m, dtype=float)
    slope, intercept = _theil_sen(t, z) if m >= 3 else (0.0, float(np.median(z)))
    resid = z - intercept - slope * t
    end_level = intercept + slope * (m - 1)

    # Robust noise, floored, with a prior that fades as history builds up.
    centred = resid - np.median(resid)
    # MAD alone collapses to zero on small counts (mostly equal days): take the larger of
    # it and the mean absolute deviation of the central 90%.
    deviations = np.abs(centred)
    central = deviations[deviations <= np.quantile(deviations, 0.9)]
    sigma = max(1.4826 * float(np.median(deviations)), 1.2533 * float(central.mean()))
    if m > 2:
        sigma *= np.sqrt(m / (m - 2))  # two parameters were fitted on these residuals
    prior_weight = max(0.0, 1.0 - n / 21)
    sigma = max(sigma, MIN_LOG_NOISE, NEW_ACCOUNT_NOISE * prior_weight)

    # Spikes are one-day events: kept apart, replayed at their rate, never persistent.
    spiky = np.abs(centred) > SPIKE_SIGMAS * sigma if m >= 10 else np.zeros(m, dtype=bool)
    calm = np.where(spiky, 0.0, np.clip(centred, -3 * sigma, 3 * sigma))
    # Usage wanders: today's deviation from the line fades over days, not overnight.
    rho = _persistence(calm)
    inflate = np.sqrt((1 + rho) / (1 - rho))  # correlated days carry less information

    sxx = float(np.sum((t - t.mean()) ** 2)) or 1.0
    se_level = SPREAD * inflate * sigma * np.sqrt(1 / m + (m - 1 - t.mean()) ** 2 / sxx)
    se_slope = SPREAD * inflate * sigma / np.sqrt(sxx)
    slope_fitted = slope
    shrink = GROWTH_PRIOR**2 / (GROWTH_PRIOR**2 + se_slope**2)
    slope, se_slope = slope * shrink, se_slope * np.sqrt(shrink)
    dof = max(m - 2, 2)
    levels = end_level + se_level * rng.standard_t(dof, size=(paths, 1))
    slopes = slope + se_slope * rng.standard_normal(size=(paths, 1))

    steps = np.arange(1, horizon + 1)
    damped = np.cumsum(DAMPING**steps)  # sum of phi^j: the trend fades instead of running on
    future_weekdays = (last_day.weekday() + steps) % 7
    noise = _wander(calm, rho, sigma, horizon, paths, rng)
    # Spike rate and sizes from the longer window (the line carried back): spikes are rare.
    if m >= 10:
        back = np.arange(m - recent.size, m, dtype=float)
        long = z_all - season[weekdays_all] - intercept - slope_fitted * back - np.median(resid)
        spikes = long[np.abs(long) > SPIKE_SIGMAS * sigma]
        if spikes.size:
            # Shrunk toward "no spikes": a lone incident in two months may not recur.
            rate = spikes.size / (recent.size + SPIKE_PRIOR_DAYS)
            hits = rng.random((paths, horizon)) < rate
            noise += np.where(hits, rng.choice(spikes, size=(paths, horizon)), 0.0)
    log_rate = levels + slopes * damped + season[future_weekdays] + noise
    daily = np.maximum(np.exp(log_rate) - offset, 0.0)

    factors = tuple(float(f) for f in np.exp(season)) if n >= MIN_DAYS_FOR_WEEKDAYS else None
    fit = ModelFit(
        history_days=n,
        level=max(float(np.exp(end_level) - offset), 0.0),
        daily_growth=float(np.expm1(slope)),
        weekday_factors=factors,
        log_noise=sigma,
    )
    return fit, daily


def _theil_sen(t: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Median of pairwise slopes, and the median intercept: spikes move neither."""
    i, j = np.triu_indices(t.size, k=1)
    slope = float(np.median((z[j] - z[i]) / (t[j] - t[i])))
    return slope, float(np.median(z - slope * t))


def _persistence(calm: np.ndarray) -> float:
    """Lag-1 autocorrelation of the residuals, bias-corrected and pulled toward a prior
    while the history is short (a handful of days says little about it)."""
    m = calm.size
    estimate, weight = 0.0, 0.0
    denominator = float(np.sum(calm**2))
    if m >= 5 and denominator > 0:
        raw = float(np.sum(calm[1:] * calm[:-1]) / denominator)
        estimate = raw + (1 + 3 * raw) / m  # Kendall's small-sample bias correction
        weight = m / (m + PERSISTENCE_PRIOR_DAYS)
    rho = weight * estimate + (1 - weight) * PERSISTENCE_PRIOR
    return min(max(rho, 0.0), 0.95)


def _wander(
    calm: np.ndarray, rho: float, sigma: float, horizon: int, paths: int, rng: np.random.Generator
) -> np.ndarray:
    """AR(1) log-deviations from the line, starting at today's. The shocks are the history's
    own (resampled), which keeps their skew: on small counts a zero day is a big dip."""
    scale = sigma * np.sqrt(1 - rho**2)
    if calm.size >= 8:
        innovations = calm[1:] - rho * calm[:-1]
        spread = float(innovations.std())
        if spread > 0:
            innovations = innovations * max(1.0, scale / spread)
        shocks = rng.choice(innovations, size=(paths, horizon))
    else:
        shocks = scale * np.sqrt(3 / 5) * rng.standard_t(5, size=(paths, horizon))
    state = calm[-1]
    out = np.empty((paths, horizon))
    current = np.full(paths, state)
    for day in range(horizon):
        current = rho * current + shocks[:, day]
        out[:, day] = current
    return out


# --- input -----------------------------------------------------------------------------


def _weekdays(last_day: date, count: int) -> np.ndarray:
    """Weekday (Monday = 0) of each of the ``count`` days ending with ``last_day``."""
    return (last_day.weekday() - np.arange(count - 1, -1, -1)) % 7


def _finite(value: Number, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _history(daily_usage: Sequence[Number]) -> np.ndarray:
    if len(daily_usage) == 0:
        raise ValueError("daily usage is empty: at least one complete day is needed")
    try:
        history = np.array([float(v) for v in daily_usage], dtype=float)
    except (TypeError, ValueError):
        raise ValueError("daily usage must be numbers") from None
    bad = np.flatnonzero(~np.isfinite(history))
    if bad.size:
        raise ValueError(f"daily usage must be finite: day {int(bad[0])} is {history[bad[0]]}")
    negative = np.flatnonzero(history < 0)
    if negative.size:
        raise ValueError(
            f"daily usage must not be negative: day {int(negative[0])} is {history[negative[0]]}"
        )
    return history


def _quantity(value: float) -> Decimal:
    """A forecast quantity for rating: six decimal places is finer than any meter counts."""
    return Decimal(f"{float(value):.6f}")
