"""Small statistical helpers shared by the readers and the reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint


def wilson_interval(count, nobs, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion, element by element.

    Parameters
    ----------
    count : array-like or scalar
        Number of successes (for example, chronically absent students). A pandas
        Series with nullable integers is accepted; missing values give NaN.
    nobs : array-like or scalar
        Number of trials (for example, eligible students), broadcast against
        ``count``. Where it is 0 or missing the interval is NaN.
    alpha : float, default 0.05
        Significance level: the interval has coverage ``1 - alpha``.

    Returns
    -------
    tuple of numpy.ndarray
        Lower and upper bounds, on the 0 to 1 scale, with the broadcast shape of
        ``count`` and ``nobs``.

    Raises
    ------
    ValueError
        If a count is negative or larger than its ``nobs``, or ``alpha`` is not
        between 0 and 1.

    Notes
    -----
    Uses :func:`statsmodels.stats.proportion.proportion_confint` with
    ``method="wilson"`` (Wilson, 1927, *JASA* 22:209-212), which stays inside
    [0, 1] and behaves well for small groups and rates near 0 or 1.

    Examples
    --------
    >>> low, upp = wilson_interval([3, 0], [10, 0])
    >>> round(float(low[0]), 4), round(float(upp[0]), 4)
    (0.1078, 0.6032)
    >>> bool(np.isnan(low[1]))
    True
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}.")

    def as_float(values) -> np.ndarray:
        # pandas nullable arrays and lists holding None or pd.NA become NaN.
        if isinstance(values, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
            return pd.to_numeric(pd.Series(values)).to_numpy(
                dtype=float, na_value=np.nan
            )
        array = np.asarray(values, dtype=object)
        return np.where(pd.isna(array), np.nan, array).astype(float)

    count_arr, nobs_arr = np.broadcast_arrays(as_float(count), as_float(nobs))
    low = np.full(count_arr.shape, np.nan)
    upp = np.full(count_arr.shape, np.nan)

    # Only cells with a count and a positive denominator get an interval; the
    # rest stay NaN, so statsmodels never divides by zero.
    valid = ~np.isnan(count_arr) & ~np.isnan(nobs_arr) & (nobs_arr > 0)
    bad = valid & ((count_arr < 0) | (count_arr > nobs_arr))
    if bad.any():
        first = np.flatnonzero(bad.ravel())[0]
        raise ValueError(
            f"count must be between 0 and nobs; found count "
            f"{count_arr.ravel()[first]:g} with nobs {nobs_arr.ravel()[first]:g} "
            f"at position {first}."
        )

    if valid.any():
        lo, hi = proportion_confint(
            count_arr[valid], nobs_arr[valid], alpha=alpha, method="wilson"
        )
        low[valid] = lo
        upp[valid] = hi

    # The bounds are exactly 0 at count 0 and 1 at count == nobs; statsmodels can
    # miss by a rounding error (2.8e-17), which would put the rate outside them.
    low[valid & (count_arr == 0)] = 0.0
    upp[valid & (count_arr == nobs_arr)] = 1.0
    return low, upp
