"""Forecast one meter's usage: level, trend and weekday pattern, with honest bands.

Pure numpy, no database: the caller passes the daily series and rates the quantities.

The model works on ``log(usage)`` (growth is multiplicative), fitted on the last eight weeks:

* weekday effects: the median residual per weekday against a robust trend, believed only as
  far as they stand out from the noise (empirical Bayes), and only with two weeks or more;
* spikes: a day far from its neighbours is a one-day event (a runaway job, an outage): it is
  taken out of the fit and replayed at its rate, never carried forward;
* level, damped trend and wander: a straight line plus day-to-day variation that is partly
  persistent (an AR(1) wander: a busy week stays busy for a while) and partly day noise that
  does not persist (counting noise: on a meter of a few units a day, a zero day is a big dip
  that says nothing about tomorrow). How persistent, and how much is day noise, is weighed
  per meter over a small grid by the marginal likelihood of the history, with the level and
  slope integrated out (a normal prior on the growth per day, GROWTH_PRIOR) and a weak prior
  on the noise scale. Given each grid point, the forecast days are the exact conditional
  (kriging) distribution given the history, so the uncertainty of the level, the slope and
  today's state of the wander all come from the data, without a fudge factor;
* paths: every path draws its grid point by its weight, a noise scale (Student-t), the latent
  days, day noise resampled from the history's own deviations (keeping their skew), and the
  replayed spikes. Back from logs, each path's days average what the history's days did
  around the line (Duan's smearing).

A meter with zero days needs an offset to have a logarithm (half its least positive day);
paths cut off at zero are rescaled so that cutting adds no usage. A meter without zero days
gets none (an offset bends growth: log(y + c) grows slower than log y).

All paths are simulated at once, so a forecast is a few array operations (a few ms).

Crossing probabilities are then recalibrated: the share of paths that cross is mapped through
a fixed monotone curve (CALIBRATION_RAW -> CALIBRATION_OBSERVED). The curve is a post-hoc
calibration map, NOT part of the model: it was fitted once on the backtest's generated cases
(bench/forecast_calibration.py --fit-calibration on seeds 3, 5, 7, 9, 11 and 13, never the
reported seed 1) as the observed crossing frequency at each raw share (local linear fit, made
monotone), and is stored here as constants. Bands and quantiles are the paths themselves,
uncalibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np

PATHS = 2000
HISTORY_WINDOW = 56  # days the model is fitted on (8 weeks): recent behaviour wins
MIN_DAYS_FOR_WEEKDAYS = 14  # two of each weekday before we believe a pattern
DAMPING = 0.99  # trend damping per day: far days get less than a straight-line trend
SPIKE_SIGMAS = 3.0  # a day this many robust sigmas from its neighbours is a spike
MIN_SPIKE_DAYS = 10  # fewer days than this cannot tell a spike from the noise
SPIKE_PRIOR_DAYS = 7  # spike rate = spikes / (days + this): shrunk toward "no spikes"
# Prior on the log growth per day: few meters sustain more than ~4%/day (two sigmas) for
# weeks, so a short or noisy history's slope is pulled toward "flat".
GROWTH_PRIOR = 0.02
MIN_LOG_NOISE = 0.05  # floor on the log-scale noise: no history is that certain
# Weak prior on the log-scale noise: worth NOISE_PRIOR_DAYS days of this much noise.
PRIOR_LOG_NOISE = 0.1
NOISE_PRIOR_DAYS = 3
# The grid the persistence of the wander (phi) and the share of day noise are weighed over;
# the point "all day noise" is added. Each share is a priori alike, and each phi within it.
PHI_GRID = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
DAY_NOISE_GRID = (0.0, 0.25, 0.5, 0.75)
MIN_GRID_WEIGHT = 0.01  # grid points less likely than this are dropped (the rest rescaled)
# Post-hoc calibration map for crossing probabilities (see the module docstring): the share of
# paths crossing -> the probability reported, linear in between. 0 and 1 stay exact (nothing or
# everything simulated crosses, e.g. a level already passed).
CALIBRATION_RAW = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
CALIBRATION_OBSERVED = (
    0.0, 0.079, 0.139, 0.207, 0.31, 0.402, 0.467, 0.547, 0.611, 0.679, 0.763, 0.85, 0.89, 0.939, 1.0
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
    log_noise: float  # day-to-day spread on the log scale (wander and day noise together)


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
    if not np.any(history > 0):
        # Nothing was ever used: nothing in the history says it will start.
        return ModelFit(n, 0.0, 0.0, None, 0.0), np.zeros((paths, horizon))

    recent = history[-HISTORY_WINDOW:]
    m = recent.size
    # Zero days need an offset to have a logarithm; only they get one (it bends growth).
    offset = 0.5 * float(recent[recent > 0].min()) if np.any(recent == 0) else 0.0
    logs = np.log(recent + offset)
    weekdays = _weekdays(last_day, m)
    t = np.arange(m, dtype=float)
    season = _weekday_pattern(logs, weekdays) if n >= MIN_DAYS_FOR_WEEKDAYS else None
    z = logs - (0.0 if season is None else season[weekdays])
    slope, intercept = _theil_sen(t, z) if m >= 3 else (0.0, float(np.median(z)))
    resid = z - intercept - slope * t
    centred = resid - np.median(resid)

    # Spikes are one-day events: a day far from its neighbours (not from the line: a wander
    # that lasts is no spike). Taken out of the fit, replayed at their rate, never persistent.
    spiky = np.zeros(m, dtype=bool)
    calm = centred
    if m >= MIN_SPIKE_DAYS:
        local = _neighbours(centred)
        jumps = centred - local
        spiky = np.abs(jumps) > SPIKE_SIGMAS * max(_robust_sd(jumps), MIN_LOG_NOISE)
        calm = np.where(spiky, local, centred)
    clean = z - centred + calm  # the days with spikes replaced by their neighbours

    fit, latent, white_sd, latent_var = _latent_paths(
        clean, horizon, paths, rng, _robust_sd(centred)
    )

    # Day noise, resampled from the history's own deviations (keeping their skew), scaled to
    # each path's share of day noise.
    deviations = calm - calm.mean()
    spread = float(deviations.std())
    if spread > 0 and m >= 8:
        shape = deviations / spread
    else:
        shape = np.sqrt(3 / 5) * rng.standard_t(5, size=64)
    day_noise = shape[rng.integers(0, shape.size, size=(paths, horizon), dtype=np.int32)]
    noise = latent + white_sd[:, None] * day_noise
    # Back from logs: on every path the days should average what the history's days did
    # around the line (Duan's smearing), whatever the path's noise scale; symmetric log noise,
    # or a skewed one scaled up, would otherwise inflate the mean.
    target = float(np.log(np.mean(np.exp(spread * shape)))) if spread > 0 else 0.0
    scales = np.linspace(0.0, float(white_sd.max()), 33)
    generating = np.log(np.mean(np.exp(np.outer(scales, shape)), axis=1))
    noise += (target - np.interp(white_sd, scales, generating) - latent_var / 2)[:, None]

    if spiky.any():
        # Shrunk toward "no spikes": a lone incident in two months may not recur.
        rate = spiky.sum() / (m + SPIKE_PRIOR_DAYS)
        hits = rng.integers(0, paths * horizon, size=rng.binomial(paths * horizon, rate))
        noise.flat[hits] += rng.choice(jumps[spiky], size=hits.size)

    steps = np.arange(1, horizon + 1)
    if season is not None:
        noise += season[(last_day.weekday() + steps) % 7]
    daily = np.exp(noise) - offset
    if offset > 0:
        # Usage is never negative, but cutting the paths off at zero would add usage: scale
        # what is left so that each day keeps the mean the model gives it.
        expected = np.maximum(daily.mean(axis=0), 0.0)
        daily = np.maximum(daily, 0.0)
        kept = daily.mean(axis=0)
        daily *= np.divide(expected, kept, out=np.zeros_like(kept), where=kept > 0)

    level, growth, log_noise = fit
    fit = ModelFit(
        history_days=n,
        level=max(float(np.exp(level) - offset), 0.0),
        daily_growth=float(np.expm1(growth)),
        weekday_factors=None if season is None else tuple(float(f) for f in np.exp(season)),
        log_noise=log_noise,
    )
    return fit, daily


def _weekday_pattern(z: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    """Log effect of each weekday (Monday = 0), centred: the median residual per weekday
    against a robust line, believed as far as it stands out from the noise (empirical
    Bayes): on a meter of a few units a day, the weekday medians are mostly noise."""
    t = np.arange(z.size, dtype=float)
    slope, intercept = _theil_sen(t, z)
    resid = z - intercept - slope * t
    raw = np.array([np.median(resid[weekdays == w]) for w in range(7)])
    weeks = np.bincount(weekdays, minlength=7)
    noise = (np.pi / 2) * _robust_sd(resid - raw[weekdays]) ** 2 / weeks  # of a median
    between = max(float(np.var(raw)) - float(noise.mean()), 0.0)
    season = raw * between / (between + noise) if between > 0 else np.zeros(7)
    return season - season.mean()


def _latent_paths(
    clean: np.ndarray,
    horizon: int,
    paths: int,
    rng: np.random.Generator,
    sigma: float,
) -> tuple[tuple[float, float, float], np.ndarray, np.ndarray, np.ndarray]:
    """Level, trend and wander of the forecast days on the log scale, path by path.

    Returns the fit (level at the last day, slope, noise scale: over the grid), the latent log
    rates (paths, horizon), and per path the scale of its day noise and the variance of its
    persistent wander (for the smearing)."""
    m = clean.size
    phis, whites = _grid()
    kr = _correlations(m)
    kinv, x = kr["kinv"], kr["x"]
    dof = max(m - 1, 1)
    prior_q = NOISE_PRIOR_DAYS * PRIOR_LOG_NOISE**2
    noise_dof = dof + NOISE_PRIOR_DAYS
    xz = (x.T @ kinv) @ clean  # (grid, 2)
    zkz = (kinv @ clean) @ clean
    # The growth prior is in log units per day; in the grid's units (noise variance 1) its
    # weight depends on the noise scale: once with a first guess, once with the estimate.
    s2 = np.full(phis.size, max(sigma, PRIOR_LOG_NOISE) ** 2)
    for _ in range(2):
        a = kr["xkx"] + (s2 / GROWTH_PRIOR**2)[:, None, None] * np.diag([0.0, 1.0])
        a_inv = _inverse_2x2(a)
        beta = (a_inv @ xz[:, :, None])[:, :, 0]
        q = np.maximum(zkz - np.sum(beta * xz, axis=1), 1e-12 * (1.0 + clean @ clean))
        s2 = np.maximum((q + prior_q) / noise_dof, MIN_LOG_NOISE**2)
    # Marginal likelihood of each grid point (level and slope integrated out, the noise
    # scale under its conjugate prior), times the grid's prior.
    log_det_a = np.log(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0])
    log_like = (
        -0.5 * kr["logdet"]
        - 0.5 * log_det_a
        - 0.5 * noise_dof * np.log(q + prior_q)
        + 0.5 * np.log(s2 / GROWTH_PRIOR**2)
        + np.log(kr["prior"])
    )
    weight = np.exp(log_like - log_like.max())
    weight /= weight.sum()
    weight = np.where(weight >= MIN_GRID_WEIGHT, weight, 0.0)
    weight /= weight.sum()
    counts = rng.multinomial(paths, weight)
    sel = np.flatnonzero(counts)

    # Given each grid point: the forecast days' conditional mean and covariance (kriging
    # with a linear, damped trend whose coefficients are uncertain).
    t = np.arange(m, dtype=float)
    steps = np.arange(1, horizon + 1)
    phi = phis[sel, None, None]
    persistent = (1 - whites[sel])[:, None, None]
    c = persistent * phi ** ((m - 1) + steps[None, :] - t[:, None])  # history vs forecast
    kct = np.swapaxes(kinv[sel] @ c, 1, 2)  # how history deviations carry into the forecast
    xf = np.column_stack([np.ones(horizon), (m - 1) + np.cumsum(DAMPING**steps)])
    resid = clean - beta[sel] @ x.T
    mean = beta[sel] @ xf.T + (kct @ resid[:, :, None])[..., 0]
    u = xf - kct @ x  # what the trend adds beyond the history's deviations
    cov = persistent * phi ** np.abs(np.subtract.outer(steps, steps)) - kct @ c
    cov += u @ a_inv[sel] @ np.swapaxes(u, 1, 2)
    cov *= s2[sel, None, None]
    jitter = 1e-9 + 1e-7 * np.trace(cov, axis1=1, axis2=2) / horizon
    root = np.linalg.cholesky(cov + jitter[:, None, None] * np.eye(horizon))

    which = np.repeat(np.arange(sel.size), counts[sel])
    scale = np.sqrt(noise_dof / rng.chisquare(noise_dof, size=paths))  # Student-t scale
    latent = rng.standard_normal((paths, horizon))
    starts = np.concatenate([[0], np.cumsum(counts[sel])])
    for i in range(sel.size):
        # In blocks small enough that BLAS keeps to one thread (it would spin up others).
        for row in range(starts[i], starts[i + 1], 256):
            block = slice(row, min(row + 256, starts[i + 1]))
            latent[block] = latent[block] @ root[i].T * scale[block, None] + mean[i]
    white_sd = np.sqrt(whites[sel] * s2[sel])[which] * scale
    latent_var = ((1 - whites[sel]) * s2[sel])[which] * scale**2

    # The level at the last day: the line there plus today's wander (one day's trend back
    # from the first forecast day).
    level = counts[sel] @ (mean[:, 0] - DAMPING * beta[sel, 1]) / paths
    fit = (float(level), float(weight @ beta[:, 1]), float(np.sqrt(weight @ s2)))
    return fit, latent, white_sd, latent_var


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray]:
    """(phi, share of day noise) of each grid point; the last is "all day noise"."""
    phis = [p for _ in DAY_NOISE_GRID for p in PHI_GRID] + [0.0]
    whites = [w for w in DAY_NOISE_GRID for _ in PHI_GRID] + [1.0]
    return np.array(phis), np.array(whites)


@lru_cache(maxsize=64)
def _correlations(m: int) -> dict[str, np.ndarray]:
    """The history's side of every grid point with ``m`` days, in units of the noise variance:
    it does not depend on the data, so it is cached (about 12 MB for every m up to 56)."""
    phis, whites = _grid()
    t = np.arange(m, dtype=float)
    k = (1 - whites)[:, None, None] * phis[:, None, None] ** np.abs(np.subtract.outer(t, t))
    k += whites[:, None, None] * np.eye(m)
    kinv = np.linalg.inv(k)
    x = np.column_stack([np.ones(m), t])
    return {
        "kinv": kinv,
        "logdet": np.linalg.slogdet(k)[1],
        "x": x,
        "xkx": (x.T @ kinv) @ x,
        "prior": np.where(whites == 1, 1.0, 1.0 / len(PHI_GRID)) / (len(DAY_NOISE_GRID) + 1),
    }


def _neighbours(x: np.ndarray) -> np.ndarray:
    """Each day's median of the two days either side of it (mirrored at the ends)."""
    padded = np.pad(x, 2, mode="reflect")
    around = np.sort(np.stack([padded[i : i + x.size] for i in (0, 1, 3, 4)]), axis=0)
    return (around[1] + around[2]) / 2


def _robust_sd(x: np.ndarray) -> float:
    """MAD-based, but never below the mean absolute deviation of the central 90% (MAD alone
    collapses to zero on small counts, where most days are equal)."""
    deviations = np.abs(x - np.median(x))
    central = deviations[deviations <= np.quantile(deviations, 0.9)]
    return max(1.4826 * float(np.median(deviations)), 1.2533 * float(central.mean()))


def _inverse_2x2(a: np.ndarray) -> np.ndarray:
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    inv = np.empty_like(a)
    inv[:, 0, 0], inv[:, 1, 1] = a[:, 1, 1] / det, a[:, 0, 0] / det
    inv[:, 0, 1], inv[:, 1, 0] = -a[:, 0, 1] / det, -a[:, 1, 0] / det
    return inv


def _theil_sen(t: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Median of pairwise slopes, and the median intercept: spikes move neither."""
    i, j = np.triu_indices(t.size, k=1)
    slope = float(np.median((z[j] - z[i]) / (t[j] - t[i])))
    return slope, float(np.median(z - slope * t))


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
