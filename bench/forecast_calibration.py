"""Are the forecast's crossing probabilities honest? A backtest on generated usage.

Generates meters from known processes, one family per case in turn: steady, linear growth,
exponential growth, weekly seasonal, spiky, declining, and a new account (any of those,
with only 5 days of history). Every series has persistent (AR(1)) day-to-day variation on
the log scale, Poisson counting on top (so small meters have zero days), and a third of the
non-seasonal ones a weekday pattern too. Each case shows the model its history, asks
P(period usage reaches X within N days) for N in 7..30, and then reveals the hidden future.
X is the process's noise-free expectation times a log-normal factor (sd 0.35), so it does
not peek at the realized future and outcomes are mixed.

Prints the reliability table (predicted probability bins against the observed frequency,
with counts), the Brier score, and the same for two baselines:

  * straight line (in RESULT): the period's usage so far extrapolated at its average daily
    rate, as most billing dashboards show, scored 1 if the line reaches X within N days
    else 0 (a dashboard gives no probability);
  * straight line + logistic: the same line turned into a probability by a logistic on
    log(projection / X), fitted on a separate set of cases (the tuning seed), so the
    baseline gets the same benefit of fitting that the model's constants had.

Also times forecasting 150 meters (60 days of history, a 30-day horizon): the demo.

The model (alerts/forecast.py) was developed looking only at the calibration seeds (3, 5, 7
and 9, per family and against synthetic series); the reported run uses the default --seed 1,
and seeds 2 and 4 are further unseen checks: none of them was looked at while developing.
The crossing probabilities go through a post-hoc calibration map (forecast.CALIBRATION_RAW ->
CALIBRATION_OBSERVED), fitted by --fit-calibration on seeds 3, 5, 7, 9, 11 and 13 (never 1,
2 or 4; the stored map with --cases 10000, so 60,000 cases) and pasted in as constants; the
run prints the worst bin of the raw share of paths too, so the map's effect is visible.

Even a perfectly calibrated forecast shows bin errors from the finite sample: with 5,000
cases, 300-1,000 per bin, the largest of the ten bin errors is about 4 pp in a typical run,
and over 5 pp in about one run in five (outcomes drawn from the predictions themselves).

    .venv/bin/python bench/forecast_calibration.py            # 5,000 cases
    .venv/bin/python bench/forecast_calibration.py --quick    # 1,000 cases
    .venv/bin/python bench/forecast_calibration.py --fit-calibration --cases 10000  # refit

No database: the forecast is pure numpy.
"""

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.forecast import CALIBRATION_RAW, calibrate, forecast_usage

FAMILIES = (
    "steady",
    "linear",
    "exponential",
    "seasonal",
    "spiky",
    "declining",
    "new_account",
)
BINS = 10
MIN_BIN = 100  # bins with fewer cases are shown but not judged
TUNING_SEED = 7
CALIBRATION_SEEDS = (3, 5, 7, 9, 11, 13)  # the map's fitting seeds: never the reported 1


@dataclass(frozen=True)
class Case:
    family: str
    history: np.ndarray
    future: np.ndarray
    last_day: date
    usage_to_date: float
    period_days_so_far: int
    within_days: int
    level: float


def generate(rng: np.random.Generator, family: str) -> Case:
    within = int(rng.integers(7, 31))
    shape_family = family
    if family == "new_account":
        n = 5
        shape_family = str(rng.choice(FAMILIES[:-1]))
    else:
        n = int(rng.integers(14, 91))
    total = n + within
    t = np.arange(total, dtype=float)
    base_rate = float(np.exp(rng.uniform(np.log(0.5), np.log(50_000))))

    if shape_family == "linear":
        shape = 1 + rng.uniform(0.005, 0.04) * t
    elif shape_family == "exponential":
        shape = np.exp(rng.uniform(0.005, 0.035) * t)
    elif shape_family == "declining":
        if rng.random() < 0.5:
            shape = np.exp(-rng.uniform(0.005, 0.03) * t)
        else:
            shape = np.maximum(1 - rng.uniform(0.003, 0.012) * t, 0.05)
    elif shape_family in ("seasonal", "spiky"):
        shape = np.exp(rng.uniform(-0.01, 0.02) * t)
    else:
        shape = np.ones(total)

    last_day = date(2025, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
    weekdays = (last_day.weekday() - (n - 1) + t.astype(int)) % 7
    weekly = np.ones(7)
    if shape_family == "seasonal" or rng.random() < 1 / 3:
        weekly[5:] = rng.uniform(0.1, 0.7, size=2)  # weekend dip
        weekly[:5] *= rng.uniform(0.85, 1.15, size=5)
    expected = base_rate * shape * weekly[weekdays]

    # Persistent variation: a slow AR(1) on the log scale, stationary sd 0.05..0.35.
    phi = rng.uniform(0.3, 0.9)
    spread = rng.uniform(0.05, 0.35)
    shocks = rng.normal(0, spread * np.sqrt(1 - phi**2), size=total)
    ar = np.empty(total)
    ar[0] = rng.normal(0, spread)
    for i in range(1, total):
        ar[i] = phi * ar[i - 1] + shocks[i]
    rate = expected * np.exp(ar - spread**2 / 2)
    if shape_family == "spiky":
        spikes = rng.random(total) < rng.uniform(0.03, 0.1)
        rate = np.where(spikes, rate * rng.uniform(3, 15, size=total), rate)
    usage = rng.poisson(np.minimum(rate, 1e9)).astype(float)

    history, future = usage[:n], usage[n:]
    so_far = int(rng.integers(1, min(n, 28) + 1))
    usage_to_date = float(history[-so_far:].sum())
    # The level: what the process would add on average, times a factor nobody knows.
    level = usage_to_date + float(expected[n:].sum()) * float(np.exp(rng.normal(0, 0.35)))
    return Case(family, history, future, last_day, usage_to_date, so_far, within, level)


def cases(count: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [generate(rng, FAMILIES[i % len(FAMILIES)]) for i in range(count)]


def outcome(case: Case) -> bool:
    return case.usage_to_date + case.future[: case.within_days].sum() >= case.level


def model_probability(case: Case, rng: np.random.Generator) -> float:
    """The raw share of simulated paths crossing (before the calibration map)."""
    forecast = forecast_usage(
        case.history,
        last_day=case.last_day,
        period_end=case.last_day + timedelta(days=case.within_days),
        usage_to_date=case.usage_to_date,
        rng=rng,
    )
    return forecast.probability_of_crossing(
        case.level, within_days=case.within_days, calibrated=False
    )


def raw_predictions(test: list[Case], seed: int) -> tuple[np.ndarray, np.ndarray]:
    observed = np.array([outcome(c) for c in test], dtype=float)
    model_rng = np.random.default_rng(seed + 10_000)
    return np.array([model_probability(c, model_rng) for c in test]), observed


def fit_calibration(count: int) -> None:
    """Fit the calibration map on CALIBRATION_SEEDS and print it as constants.

    At each inner knot of forecast.CALIBRATION_RAW: a local linear fit of the outcome on the
    raw share, triangular weights reaching to the neighbouring knots; then made monotone by
    pooling adjacent violators (weighted). Shares of exactly 0 or 1 are left out: the map
    keeps them."""
    pairs = [raw_predictions(cases(count, seed), seed) for seed in CALIBRATION_SEEDS]
    raw = np.concatenate([p for p, _ in pairs])
    observed = np.concatenate([o for _, o in pairs])
    knots = np.array(CALIBRATION_RAW)
    inner = (raw > 0) & (raw < 1)
    values, weights = [], []
    for k in range(1, knots.size - 1):
        low, knot, high = knots[k - 1], knots[k], knots[k + 1]
        near = inner & (raw > low) & (raw < high)
        x = raw[near]
        w = np.where(x < knot, (x - low) / (knot - low), (high - x) / (high - knot))
        design = np.column_stack([np.ones(x.size), x - knot]) * np.sqrt(w)[:, None]
        beta = np.linalg.lstsq(design, observed[near] * np.sqrt(w), rcond=None)[0]
        values.append(float(beta[0]))
        weights.append(float(w.sum()))
    blocks = [[v, w, 1] for v, w in zip(values, weights, strict=True)]
    i = 0
    while i < len(blocks) - 1:
        if blocks[i][0] > blocks[i + 1][0]:
            (v0, w0, n0), (v1, w1, n1) = blocks[i], blocks[i + 1]
            blocks[i : i + 2] = [[(v0 * w0 + v1 * w1) / (w0 + w1), w0 + w1, n0 + n1]]
            i = max(i - 1, 0)
        else:
            i += 1
    fitted = [min(max(v, 0.0), 1.0) for v, _, n in blocks for _ in range(n)]
    print(f"fitted on seeds {CALIBRATION_SEEDS}, {raw.size} cases")
    print(f"CALIBRATION_RAW = {tuple(float(k) for k in knots)}")
    print(f"CALIBRATION_OBSERVED = {(0.0, *(round(v, 3) for v in fitted), 1.0)}")


def straight_line_margin(case: Case) -> float:
    """log(projection / level) of the dashboard's straight line (rate so far, carried on)."""
    rate = case.usage_to_date / case.period_days_so_far
    projection = case.usage_to_date + rate * case.within_days
    return float(np.log(max(projection, 1e-9) / case.level))


def fit_logistic(margins: np.ndarray, outcomes: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood logistic p = 1 / (1 + exp(-(a + b * margin))), by Newton steps."""
    x = np.column_stack([np.ones_like(margins), np.clip(margins, -20, 20)])
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (outcomes - p)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def reliability(predicted: np.ndarray, observed: np.ndarray) -> tuple[list[tuple], float]:
    """Rows of (bin, count, mean predicted, observed frequency) and the largest error (pp)
    over bins with at least MIN_BIN cases."""
    index = np.minimum((predicted * BINS).astype(int), BINS - 1)
    rows, worst = [], 0.0
    for b in range(BINS):
        inside = index == b
        count = int(inside.sum())
        if count == 0:
            rows.append((b, 0, None, None))
            continue
        mean_p = float(predicted[inside].mean())
        freq = float(observed[inside].mean())
        rows.append((b, count, mean_p, freq))
        if count >= MIN_BIN:
            worst = max(worst, abs(mean_p - freq) * 100)
    return rows, worst


def print_table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    print(f"  {'bin':>9}  {'cases':>6}  {'predicted':>9}  {'observed':>8}  {'error_pp':>8}")
    for b, count, mean_p, freq in rows:
        label = f"{b / BINS:.1f}-{(b + 1) / BINS:.1f}"
        if count == 0:
            print(f"  {label:>9}  {0:>6}")
            continue
        flag = "" if count >= MIN_BIN else "  (too few to judge)"
        error = abs(mean_p - freq) * 100
        print(f"  {label:>9}  {count:>6}  {mean_p:>9.3f}  {freq:>8.3f}  {error:>8.1f}{flag}")


def brier(predicted: np.ndarray, observed: np.ndarray) -> float:
    return float(np.mean((predicted - observed) ** 2))


def time_demo(rng: np.random.Generator) -> float:
    """Seconds to forecast 150 meters with 60 days of history over a 30-day horizon."""
    histories = [rng.poisson(rng.uniform(10, 5000), size=60).astype(float) for _ in range(150)]
    start = time.perf_counter()
    for history in histories:
        forecast = forecast_usage(
            history,
            last_day=date(2025, 3, 31),
            period_end=date(2025, 4, 30),
            usage_to_date=float(history[-10:].sum()),
            rng=rng,
        )
        forecast.period_end_quantiles()
        forecast.band()
        forecast.probability_of_crossing(float(history.sum()), within_days=14)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="1,000 cases")
    parser.add_argument("--seed", type=int, default=1, help="reported runs use 1; tuning used 7")
    parser.add_argument(
        "--fit-calibration", action="store_true", help="refit the map on CALIBRATION_SEEDS"
    )
    args = parser.parse_args()
    count = 1_000 if args.quick else args.cases
    if args.fit_calibration:
        fit_calibration(count)
        return

    started = time.perf_counter()
    test = cases(count, args.seed)
    raw, observed = raw_predictions(test, args.seed)
    predicted = calibrate(raw)
    forecast_seconds = time.perf_counter() - started

    tuning = cases(max(count, 2_000), TUNING_SEED + 1_000)
    a, b = fit_logistic(
        np.array([straight_line_margin(c) for c in tuning]),
        np.array([outcome(c) for c in tuning], dtype=float),
    )
    margins = np.array([straight_line_margin(c) for c in test])
    line = (margins >= 0).astype(float)
    line_logistic = 1 / (1 + np.exp(-(a + b * np.clip(margins, -20, 20))))

    print(f"{count} cases, seed {args.seed}, {np.mean(observed):.1%} crossed")
    rows, worst = reliability(predicted, observed)
    print_table("forecast (alerts/forecast.py)", rows)
    _, worst_raw = reliability(raw, observed)
    print(
        f"  raw share of paths (before the calibration map): max bin error {worst_raw:.1f} pp,"
        f" brier {brier(raw, observed):.3f}"
    )
    rows_log, worst_log = reliability(line_logistic, observed)
    print_table(f"straight line + logistic (a={a:.2f}, b={b:.2f})", rows_log)

    families = np.array([c.family for c in test])
    print(f"\n  {'family':>12}  {'cases':>6}  {'brier':>6}  {'line':>6}  {'line+logit':>10}")
    for family in FAMILIES:
        inside = families == family
        print(
            f"  {family:>12}  {int(inside.sum()):>6}  "
            f"{brier(predicted[inside], observed[inside]):>6.3f}  "
            f"{brier(line[inside], observed[inside]):>6.3f}  "
            f"{brier(line_logistic[inside], observed[inside]):>10.3f}"
        )

    score = brier(predicted, observed)
    score_line = brier(line, observed)
    score_logistic = brier(line_logistic, observed)
    print(f"\nbrier: forecast {score:.3f}, straight line {score_line:.3f}, ", end="")
    print(f"straight line + logistic {score_logistic:.3f} (max bin error {worst_log:.1f} pp)")
    print(
        f"improvement over the line {1 - score / score_line:.2f}, "
        f"over line + logistic {1 - score / score_logistic:.2f}"
    )
    print(f"forecasting {count} cases took {forecast_seconds:.1f} s")
    print(f"demo: 150 meters forecast in {time_demo(np.random.default_rng(args.seed)):.2f} s")
    print(
        f"RESULT max_bin_error_pp={worst:.1f} brier={score:.3f} "
        f"brier_baseline={score_line:.3f} improvement={1 - score / score_line:.2f} cases={count}"
    )


if __name__ == "__main__":
    main()
