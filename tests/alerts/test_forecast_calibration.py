"""The forecast against the backtest's generated usage (bench/forecast_calibration.py), on a
small sample from a calibration seed: a regression guard on quality, not the reported run."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from alerts.forecast import calibrate

BENCH = Path(__file__).resolve().parents[2] / "bench" / "forecast_calibration.py"


@pytest.fixture(scope="module")
def backtest():
    spec = importlib.util.spec_from_file_location("forecast_calibration", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    test = bench.cases(700, 3)  # 100 of each family, from a seed the map was fitted on
    raw, observed = bench.raw_predictions(test, 3)
    line = np.array([bench.straight_line_margin(c) >= 0 for c in test], dtype=float)
    return bench, test, calibrate(raw), observed, line


def test_forecast_beats_the_dashboards_straight_line(backtest):
    bench, _, predicted, observed, line = backtest
    assert bench.brier(predicted, observed) < 0.8 * bench.brier(line, observed)


def test_crossing_probabilities_are_right_on_average(backtest):
    # Over the whole sample, and on each side of one half: the forecast neither cries wolf
    # nor misses crossings wholesale.
    _, _, predicted, observed, _ = backtest
    assert abs(predicted.mean() - observed.mean()) < 0.04
    for side in (predicted < 0.5, predicted >= 0.5):
        assert abs(predicted[side].mean() - observed[side].mean()) < 0.06
