"""Tests for analysis.statistics.wilson_interval."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from analysis.statistics import wilson_interval

#: Floating-point agreement between the hand formula and statsmodels.
TOL = 1e-12


def wilson_by_hand(count: float, nobs: float, alpha: float = 0.05):
    """Wilson score interval written out from the formula.

    Source: E. B. Wilson (1927), "Probable inference, the law of succession, and
    statistical inference", JASA 22:209-212; the form used here is eq. (2) of
    A. Agresti and B. A. Coull (1998), "Approximate is better than 'exact' for
    interval estimation of binomial proportions", The American Statistician
    52(2):119-126:

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
    """
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = count / nobs
    denom = 1 + z**2 / nobs
    centre = (p + z**2 / (2 * nobs)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / nobs + z**2 / (4 * nobs**2))
    return centre - half, centre + half


def test_matches_hand_calculation_for_3_of_10():
    low, upp = wilson_interval(3, 10)
    hand_low, hand_upp = wilson_by_hand(3, 10)
    # Hand values for reference: 0.107791..., 0.603221...
    assert float(low) == pytest.approx(hand_low, abs=TOL)
    assert float(upp) == pytest.approx(hand_upp, abs=TOL)
    assert float(low) == pytest.approx(0.1077913, abs=1e-7)
    assert float(upp) == pytest.approx(0.6032219, abs=1e-7)


@pytest.mark.parametrize(("count", "nobs", "alpha"), [
    (0, 10, 0.05), (10, 10, 0.05), (1, 1, 0.05), (3280, 11815, 0.05), (7, 40, 0.1),
])
def test_matches_hand_calculation_elsewhere(count, nobs, alpha):
    low, upp = wilson_interval(count, nobs, alpha=alpha)
    hand_low, hand_upp = wilson_by_hand(count, nobs, alpha)
    assert float(low) == pytest.approx(hand_low, abs=TOL)
    assert float(upp) == pytest.approx(hand_upp, abs=TOL)


def test_vectorised_over_nullable_series_with_zero_and_missing_nobs():
    count = pd.Series([3, 0, pd.NA, 2, 5], dtype="Int64")
    nobs = pd.Series([10, 0, 8, pd.NA, 5], dtype="Int64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero or cast warnings
        low, upp = wilson_interval(count, nobs)

    assert isinstance(low, np.ndarray) and low.shape == (5,)
    assert np.isnan(low[1:4]).all() and np.isnan(upp[1:4]).all()
    assert low[0] == pytest.approx(wilson_by_hand(3, 10)[0], abs=TOL)
    assert low[4] == pytest.approx(wilson_by_hand(5, 5)[0], abs=TOL)
    assert upp[4] == pytest.approx(1.0)


def test_bounds_are_exact_at_zero_and_at_nobs():
    # statsmodels returns 2.8e-17 for some count-0 lower bounds (for example
    # 0 of 28); the rate 0 must still lie inside its interval.
    low, upp = wilson_interval([0, 0, 9, 28], [28, 19, 9, 28])
    assert (low[:2] == 0.0).all()
    assert (upp[2:] == 1.0).all()


def test_lists_with_none_and_broadcasting():
    low, upp = wilson_interval([3, None, 0], 10)
    assert np.isnan(low[1]) and np.isnan(upp[1])
    assert low[2] == 0.0
    assert (low[[0, 2]] <= upp[[0, 2]]).all()


def test_all_missing_gives_all_nan_without_calling_statsmodels():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, upp = wilson_interval(np.array([np.nan, 1.0]), np.array([0.0, np.nan]))
    assert np.isnan(low).all() and np.isnan(upp).all()


def test_count_above_nobs_is_an_error():
    with pytest.raises(ValueError, match="between 0 and nobs"):
        wilson_interval([3, 11], [10, 10])


def test_bad_alpha_is_an_error():
    with pytest.raises(ValueError, match="alpha"):
        wilson_interval(3, 10, alpha=1.5)
