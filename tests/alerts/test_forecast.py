"""Properties of the usage forecast (alerts/forecast.py): pure numpy, no database."""

from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pytest

from alerts.forecast import CALIBRATION_OBSERVED, CALIBRATION_RAW, calibrate, forecast_usage

LAST_DAY = date(2025, 3, 30)  # a Sunday
PERIOD_END = date(2025, 4, 29)  # 30 days ahead


def steady(days, rate=1000.0, seed=0, last_day=LAST_DAY):
    rng = np.random.default_rng(seed)
    return list(rng.normal(rate, rate * 0.05, size=days).clip(0))


def weekly(days, seed=0, last_day=LAST_DAY):
    """Weekdays ~1000, weekends ~200."""
    rng = np.random.default_rng(seed)
    weekdays = [(last_day - timedelta(days=days - 1 - i)).weekday() for i in range(days)]
    return [(200.0 if w >= 5 else 1000.0) * rng.lognormal(0, 0.05) for w in weekdays]


def forecast(history, seed=1, **kwargs):
    kwargs.setdefault("last_day", LAST_DAY)
    kwargs.setdefault("period_end", PERIOD_END)
    return forecast_usage(history, rng=np.random.default_rng(seed), **kwargs)


def width(f, offset):
    band = f.band()[offset]
    return band.p90 - band.p10


def test_band_widens_with_the_horizon():
    f = forecast(steady(60))
    widths = [width(f, i) for i in range(f.horizon_days)]
    assert widths[0] < widths[6] < widths[13] < widths[29]
    band = f.band()
    assert all(p.p10 <= p.p50 <= p.p90 for p in band)
    assert [p.day for p in band][:2] == [date(2025, 3, 31), date(2025, 4, 1)]


def test_period_end_quantiles_are_ordered_decimals_around_the_run_rate():
    f = forecast(steady(60), usage_to_date=Decimal("5000"))
    q = f.period_end_quantiles()
    assert isinstance(q.p50, Decimal)
    assert q.p10 < q.p50 < q.p90
    # 30 more days at ~1,000/day on top of 5,000 already used.
    assert Decimal(32_000) < q.p50 < Decimal(38_000)


def test_flat_series_has_near_zero_probability_of_a_far_level():
    f = forecast([500.0] * 60)
    assert f.probability_of_crossing(100_000, within_days=30) < 0.01
    assert f.expected_crossing_date(100_000) is None


def test_crossing_probability_is_monotone_in_level_and_window():
    f = forecast(steady(45, seed=3))
    levels = [5_000, 10_000, 14_000, 15_000, 16_000, 20_000, 40_000]
    by_level = [f.probability_of_crossing(x, within_days=15) for x in levels]
    assert by_level == sorted(by_level, reverse=True)
    assert by_level[0] == 1.0 and by_level[-1] == 0.0
    by_window = [f.probability_of_crossing(15_000, within_days=n) for n in range(1, 31)]
    assert by_window == sorted(by_window)
    assert by_window[0] == 0.0 and by_window[-1] == 1.0


def test_expected_crossing_date_is_the_median_crossing_day():
    f = forecast([1000.0] * 60, usage_to_date=2000)
    crossing = f.expected_crossing_date(12_500)
    assert crossing is not None
    assert abs((crossing - date(2025, 4, 10)).days) <= 1
    assert f.expected_crossing_date(1_000) == LAST_DAY  # already passed


def test_crossing_probability_is_the_calibrated_share_of_paths():
    # The map is monotone, keeps "no path" and "every path" exact, and widens the tails.
    assert CALIBRATION_RAW[0] == CALIBRATION_OBSERVED[0] == 0.0
    assert CALIBRATION_RAW[-1] == CALIBRATION_OBSERVED[-1] == 1.0
    assert list(CALIBRATION_OBSERVED) == sorted(CALIBRATION_OBSERVED)
    assert calibrate(0.02) > 0.02 and calibrate(0.98) < 0.98
    f = forecast(steady(45, seed=3))
    for level in (14_000, 15_000, 16_000):
        raw = f.probability_of_crossing(level, within_days=15, calibrated=False)
        assert raw == np.mean(f.cumulative[:, 14] >= level)
        assert f.probability_of_crossing(level, within_days=15) == pytest.approx(calibrate(raw))
    # The expected crossing date is the first day the calibrated probability reaches 1/2.
    crossing = f.expected_crossing_date(15_000)
    assert crossing is not None
    offset = (crossing - LAST_DAY).days
    assert f.probability_of_crossing(15_000, within_days=offset) >= 0.5
    assert f.probability_of_crossing(15_000, within_days=offset - 1) < 0.5


def test_level_already_passed_is_certain():
    f = forecast(steady(30), usage_to_date=9_000)
    assert f.probability_of_crossing(8_000, within_days=1) == 1.0


def test_short_history_has_a_wider_band_than_a_long_one_of_the_same_process():
    history = steady(60, seed=7)
    short = forecast(history[-5:]).period_end_quantiles()
    long = forecast(history).period_end_quantiles()
    assert (short.p90 - short.p10) > 3 * (long.p90 - long.p10)
    assert forecast(history[-5:]).fit.weekday_factors is None


def test_weekend_dip_is_picked_up():
    f = forecast(weekly(56))
    factors = f.fit.weekday_factors
    assert factors is not None
    assert max(factors[5:]) < 0.5 * min(factors[:5])
    # Forecast days are Monday 31 March onwards: the first Saturday is offset 5.
    daily = np.diff(np.concatenate([[0.0], [p.p50 for p in f.band()]]))
    assert daily[5] < 0.5 * daily[3] and daily[6] < 0.5 * daily[4]


def test_spikes_do_not_blow_up_the_median():
    calm = steady(60, seed=11)
    spiky = list(calm)
    twice = list(calm)
    twice[20] = twice[50] = 50_000.0  # a runaway job, twice: 50x a normal day
    twice_f = forecast(twice)
    assert 900 < twice_f.fit.level < 1100
    assert abs(twice_f.fit.daily_growth) < 0.01
    assert 900 < twice_f.band()[0].p50 < 1100  # a typical next day is still typical
    # One incident: the period's median stays put (it may recur, but less likely than not).
    spiky[50] = 50_000.0
    calm_f, spiky_f = forecast(calm), forecast(spiky)
    calm_p50 = calm_f.period_end_quantiles().p50
    assert abs(spiky_f.period_end_quantiles().p50 - calm_p50) < Decimal("0.1") * calm_p50
    # The spikes do widen the top of the band: they may recur.
    assert spiky_f.period_end_quantiles().p90 > calm_f.period_end_quantiles().p90


def test_growth_and_decline_are_followed():
    days = np.arange(60)
    growing = forecast(list(100 * np.exp(0.03 * days)))
    declining = forecast(list(1000 * np.exp(-0.03 * days)))
    assert growing.fit.daily_growth > 0.02
    assert declining.fit.daily_growth < -0.02
    # Next 30 days of growth are well above 30 x today's level, decline well below.
    assert growing.period_end_quantiles().p50 > 30 * Decimal(growing.fit.level)
    assert declining.period_end_quantiles().p50 < 30 * Decimal(declining.fit.level)


def test_growth_is_followed_at_its_rate():
    # No zero days, so no offset: log(y + c) would grow slower than log y and pull the
    # estimate toward flat (it used to read 3%/day as ~2.3%).
    rng = np.random.default_rng(2)
    days = np.arange(56)
    noise = rng.lognormal(0, 0.05, size=(2, 56))
    growing = forecast(list(1000 * np.exp(0.03 * days) * noise[0]))
    declining = forecast(list(1000 * np.exp(-0.03 * days) * noise[1]))
    assert 0.027 < growing.fit.daily_growth < 0.033
    assert -0.033 < declining.fit.daily_growth < -0.027


@pytest.mark.parametrize("rate", [0.5, 1.0, 3.0])
def test_a_meter_of_a_few_units_a_day_is_not_over_forecast(rate):
    # Zero days are big dips on the log scale; smearing and the cut at zero must not turn
    # them into extra usage (the paths used to average twice the rate).
    means, medians = [], []
    for seed in range(12):
        history = list(np.random.default_rng(100 + seed).poisson(rate, 56).astype(float))
        f = forecast(history, seed=seed)
        means.append(f.cumulative[:, -1].mean() / (30 * rate))
        medians.append(float(f.period_end_quantiles().p50) / (30 * rate))
    assert 0.8 < np.mean(medians) < 1.2
    assert np.mean(means) < 1.3


def test_a_busy_week_carries_on_a_one_day_spike_does_not():
    rng = np.random.default_rng(5)
    calm = list(rng.lognormal(np.log(1000), 0.05, 56))
    busy = calm[:-7] + [2 * v for v in calm[-7:]]  # the last week at twice the pace
    spike = [*calm[:-1], 10 * calm[-1]]  # yesterday a runaway job
    assert forecast(busy).band()[0].p50 > 1600  # the wander persists into tomorrow
    assert 900 < forecast(spike).band()[0].p50 < 1100  # the spike does not


def test_persistent_wander_widens_the_band_more_than_day_noise_of_the_same_spread():
    # Correlated days carry less information and do not average out over the period.
    rng = np.random.default_rng(0)
    wander = np.zeros(56)
    for day in range(1, 56):
        wander[day] = 0.9 * wander[day - 1] + rng.normal(0, 0.2 * np.sqrt(1 - 0.81))
    day_noise = rng.normal(0, 0.2, 56)
    spreads = []
    for deviations in (wander, day_noise):
        deviations = (deviations - deviations.mean()) * 0.2 / deviations.std()
        q = forecast(list(1000 * np.exp(deviations))).period_end_quantiles()
        spreads.append(q.p90 / q.p10)
    assert spreads[0] > Decimal("1.15") * spreads[1]


def test_new_account_band_is_wide_but_not_absurd():
    # Five days say little, but not that usage may be anything from a tenth to ten times
    # the pace (the band used to span a factor of ~28 here).
    history = list(np.random.default_rng(3).lognormal(np.log(1000), 0.05, 5))
    q = forecast(history).period_end_quantiles()
    assert Decimal("1.5") < q.p90 / q.p10 < Decimal(4)
    assert Decimal(20_000) < q.p50 < Decimal(45_000)


def test_zeros_and_all_zero_history():
    sparse = [0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0] * 5
    f = forecast(sparse)
    q = f.period_end_quantiles()
    assert Decimal(0) <= q.p10 <= q.p50 <= q.p90 < Decimal(200)
    nothing = forecast([0.0] * 20, usage_to_date=0)
    assert nothing.period_end_quantiles().p90 == Decimal("0.000000")
    assert nothing.probability_of_crossing(1, within_days=30) == 0.0


def test_usage_counted_today_is_a_floor_for_today():
    f = forecast(steady(30), usage_today=5_000)
    assert f.band()[0].p10 >= 5_000


def test_same_seed_same_forecast():
    history = weekly(40)
    a, b = forecast(history, seed=42), forecast(history, seed=42)
    assert a.band() == b.band()
    assert a.probability_of_crossing(20_000, within_days=20) == b.probability_of_crossing(
        20_000, within_days=20
    )
    assert np.array_equal(a.cumulative, b.cumulative)
    assert not a.cumulative.flags.writeable


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([], "empty"),
        ([1.0, -2.0, 3.0], "negative"),
        ([1.0, float("nan"), 3.0], "finite"),
        ([1.0, Decimal("NaN")], "finite"),
        ([1.0, float("inf")], "finite"),
        (["a lot"], "numbers"),
    ],
)
def test_bad_history_is_refused_clearly(history, message):
    with pytest.raises(ValueError, match=message):
        forecast(history)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="usage_to_date must not be negative"):
        forecast([1.0] * 10, usage_to_date=-1)
    with pytest.raises(ValueError, match="nothing to forecast"):
        forecast([1.0] * 10, period_end=LAST_DAY)
    f = forecast([1.0] * 10)
    with pytest.raises(ValueError, match="within_days"):
        f.probability_of_crossing(5, within_days=31)
    with pytest.raises(ValueError, match="finite"):
        f.probability_of_crossing(float("nan"), within_days=3)
