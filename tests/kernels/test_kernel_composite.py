"""Monthly median composites against pandas/numpy references."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ciml_ter import kernels


def daily_stack(year, n_pix, seed, nan_share=0.3):
    days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(days.size, n_pix))
    x[rng.random(x.shape) < nan_share] = np.nan
    return days, x


@pytest.mark.parametrize("year", [2019, 2020])
def test_daily_year_matches_pandas_monthly_median(year):
    days, x = daily_stack(year, 7, year)
    x[days.month == 2, 3] = np.nan  # an all-NaN month
    res = kernels.monthly_median(x, days.month.to_numpy())
    frame = pd.DataFrame(x, index=days)
    np.testing.assert_array_equal(res.labels, np.arange(1, 13))
    np.testing.assert_allclose(res.median, frame.resample("MS").median().to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(res.count, frame.resample("MS").count().to_numpy())
    assert np.isnan(res.median[1, 3]) and res.count[1, 3] == 0


def test_eight_day_stack_with_year_month_labels_and_shape():
    starts = pd.date_range("2018-01-01", periods=92, freq="8D")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(92, 2, 3)).astype(np.float32)
    labels = (starts.year * 12 + starts.month - 1).to_numpy()
    res = kernels.monthly_median(x, labels)
    assert res.median.shape == (len(np.unique(labels)), 2, 3) and res.count.dtype == np.int64
    for g, label in enumerate(res.labels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_allclose(res.median[g], np.median(x[labels == label], axis=0), rtol=1e-6)


@pytest.mark.parametrize("x, months, message", [
    (np.ones((10, 2)), np.arange(9), "months: expected one label per time step \\(10\\)"),
    (np.ones((10, 2)), np.ones(10), "months: expected integer labels, found dtype float64"),
    (np.ones((10, 2), dtype=np.int32), np.arange(10), "x: expected a floating-point array"),
])
def test_bad_input(x, months, message):
    with pytest.raises(ValueError, match=message):
        kernels.monthly_median(x, months)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 3)),
                  elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))),
       st.integers(0, 2**32 - 1))
def test_property_against_nanmedian(x, seed):
    months = np.random.default_rng(seed).integers(1, 5, x.shape[0])
    res = kernels.monthly_median(x, months)
    assert res.median.shape == (np.unique(months).size, x.shape[1])
    for g, label in enumerate(res.labels):
        block = x[months == label]
        np.testing.assert_array_equal(res.count[g], (~np.isnan(block)).sum(axis=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on all-NaN slices
            np.testing.assert_allclose(res.median[g], np.nanmedian(block, axis=0), rtol=1e-12)
