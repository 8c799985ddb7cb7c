"""Block resampling against numpy reshape-based references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ciml_ter import kernels


def blocks(x, f):
    """(..., y, x) -> (..., y/f, x/f, f*f) by reshaping."""
    *lead, ny, nx = x.shape
    b = x.reshape(*lead, ny // f, f, nx // f, f)
    return np.moveaxis(b, -3, -2).reshape(*lead, ny // f, nx // f, f * f)


def reference(x, f, method, min_valid):
    b = blocks(x, f)
    valid = (~np.isnan(b)).sum(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "mean":
            out = np.nanmean(b, axis=-1)
        elif method == "median":
            out = np.nanmedian(b, axis=-1)
        else:
            out = stats.mode(b, axis=-1, nan_policy="omit").mode.astype(float)
    out[(valid == 0) | (valid < min_valid * f * f)] = np.nan
    return out


@pytest.mark.parametrize("method", ["mean", "median"])
@pytest.mark.parametrize("f", [1, 2, 3, 5])
def test_continuous_methods_match_reshape_reference(method, f):
    rng = np.random.default_rng(f)
    x = rng.normal(size=(2, 30, 60))
    x[rng.random(x.shape) < 0.3] = np.nan
    got = kernels.block_resample(x, f, method, min_valid=0.5)
    np.testing.assert_allclose(got, reference(x, f, method, 0.5), atol=1e-12)


def test_mode_matches_reference_for_class_maps():
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 5, size=(40, 60)).astype(float)
    classes[rng.random(classes.shape) < 0.2] = np.nan
    for f in (2, 4, 10):
        got = kernels.block_resample(classes, f, "mode", min_valid=0.0)
        np.testing.assert_array_equal(got, reference(classes, f, "mode", 0.0))


@pytest.mark.parametrize("min_valid", [0.0, 0.25, 0.5, 1.0])
def test_valid_fraction_threshold(min_valid):
    x = np.arange(16.0).reshape(4, 4)
    x[0, 0] = np.nan  # block (0, 0): 3 of 4 valid
    x[2:, 2:] = np.nan  # block (1, 1): none valid
    x[2, 0] = x[3, 0] = np.nan  # block (1, 0): 2 of 4 valid
    got = kernels.block_resample(x, 2, "mean", min_valid=min_valid)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(reference(x, 2, "mean", min_valid)))
    assert np.isnan(got[1, 1]) and np.isnan(got[0, 0]) == (min_valid > 0.75)


@pytest.mark.parametrize("args, message", [
    ((np.ones((6, 6)), 2.5), "factor: expected a positive integer, found 2.5"),
    ((np.ones((6, 6)), 0), "factor: expected a positive integer, found 0"),
    ((np.ones((6, 9)), 2), "x: axis -1 has length 9, expected a multiple of factor=2"),
    ((np.ones((7, 6)), 2), "x: axis -2 has length 7, expected a multiple of factor=2"),
    ((np.ones((6, 6)), 2, "max"), "method: expected one of"),
    ((np.ones((6, 6)), 2, "mean", 1.5), "min_valid: expected a fraction in \\[0, 1\\]"),
    ((np.ones((6, 6), dtype=np.uint8), 2), "x: expected a floating-point array"),
    ((np.ones(6), 2), "x: expected at least 2 dimensions"),
])
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        kernels.block_resample(*args)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from(["mean", "median", "mode"]), st.floats(0, 1))
def test_property_shapes_and_nan(f, ny, nx, seed, method, min_valid):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(3, ny * f, nx * f)).astype(float)
    x[rng.random(x.shape) < 0.4] = np.nan
    got = kernels.block_resample(x, f, method, min_valid)
    assert got.shape == (3, ny, nx)
    np.testing.assert_allclose(got, reference(x, f, method, min_valid), atol=1e-12)
