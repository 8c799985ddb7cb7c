"""SCVTG on curves with known answers: raised cosines, constant and monotone years, leap years."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciml_ter import kernels

NAMES = ["Vtop", "Vbottom", "V75", "V50", "V25", "L75", "L50", "L25", "Area_NIRv"]


def raised_cosine(days, base, amp):
    """base at day 0, base + amp at mid-year; v(t) = base + amp (1 - cos(2 pi t / days)) / 2."""
    t = np.arange(days)
    return base + amp * 0.5 * (1 - np.cos(2 * np.pi * t / days))


@pytest.mark.parametrize("days", [365, 366])
def test_raised_cosine_known_answers(days):
    base = np.array([0.02, 0.1, 0.0])
    amp = np.array([0.3, 0.05, 1.0])
    v = np.stack([raised_cosine(days, b, a) for b, a in zip(base, amp)], axis=1)
    out = kernels.scvtg(v)
    assert list(out) == NAMES
    k = round(0.05 * days)  # 18 days in both years
    t = np.arange(days)
    top_days = np.argsort(np.abs(t - days / 2), kind="stable")[:k]  # nearest the peak
    bottom_days = np.argsort(np.minimum(t, days - t), kind="stable")[:k]  # nearest day 0
    for p in range(3):
        top = (base[p] + amp[p] * 0.5 * (1 - np.cos(2 * np.pi * top_days / days))).mean()
        bottom = (base[p] + amp[p] * 0.5 * (1 - np.cos(2 * np.pi * bottom_days / days))).mean()
        np.testing.assert_allclose(out["Vtop"][p], top, rtol=1e-12)
        np.testing.assert_allclose(out["Vbottom"][p], bottom, rtol=1e-12, atol=1e-15)
        for level in (75, 50, 25):
            value = bottom + level / 100 * (top - bottom)
            np.testing.assert_allclose(out[f"V{level}"][p], value, rtol=1e-12)
            # v(t) = value at t1 and days - t1: the span is days - 2 t1 (linear interpolation
            # between days is within 0.01 day of the exact crossing for these curves).
            t1 = days / (2 * np.pi) * np.arccos(1 - 2 * (value - base[p]) / amp[p])
            np.testing.assert_allclose(out[f"L{level}"][p], days - 2 * t1, atol=0.01)
        np.testing.assert_allclose(out["Area_NIRv"][p], days * (base[p] + amp[p] / 2), rtol=1e-12)


def test_constant_year_never_crosses_its_levels():
    """A flat year has Vtop = Vbottom = every level, so no level is crossed: L = NaN."""
    out = kernels.scvtg(np.full((365, 2), 0.25))
    for name in ("Vtop", "Vbottom", "V75", "V50", "V25"):
        np.testing.assert_allclose(out[name], 0.25)
    for name in ("L75", "L50", "L25"):
        assert np.isnan(out[name]).all()
    np.testing.assert_allclose(out["Area_NIRv"], 365 * 0.25)


def test_monotone_year_crosses_once_so_spans_are_zero():
    out = kernels.scvtg(np.linspace(0.0, 1.0, 366)[:, None])
    for name in ("L75", "L50", "L25"):
        np.testing.assert_allclose(out[name], 0.0)
    np.testing.assert_allclose(out["Vtop"], np.linspace(0, 1, 366)[-18:].mean())


def test_southern_hemisphere_year_measures_the_low_season():
    """Peak at the year ends: the first crossing falls, the last rises, L spans the trough."""
    days = 365
    v = 0.3 - raised_cosine(days, 0.0, 0.2)
    out = kernels.scvtg(v[:, None])
    value = out["V50"][0]
    t1 = days / (2 * np.pi) * np.arccos(1 - 2 * (0.3 - value) / 0.2)
    np.testing.assert_allclose(out["L50"][0], days - 2 * t1, atol=0.01)


def test_nan_pixel_custom_levels_and_shape():
    v = np.stack([raised_cosine(365, 0.1, 0.2)] * 6, axis=1).reshape(365, 2, 3)
    v[10, 1, 2] = np.nan
    out = kernels.scvtg(v, levels=(0.9, 0.1), share=0.1)
    assert set(out) == {"Vtop", "Vbottom", "V90", "V10", "L90", "L10", "Area_NIRv"}
    assert all(a.shape == (2, 3) for a in out.values())
    assert all(np.isnan(a[1, 2]) for a in out.values())
    assert out["L90"][0, 0] < out["L10"][0, 0]


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.ones((364, 2)),), {}, "envelope: expected 365 or 366 days on axis 0, found 364"),
    ((np.ones((365, 2), dtype=np.int16),), {}, "envelope: expected a floating-point array"),
    ((np.ones((365, 2)),), {"levels": (0.5, 1.5)}, "levels: expected a sequence of values"),
    ((np.ones((365, 2)),), {"share": 0.0}, "share: expected a fraction"),
])
def test_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kernels.scvtg(*args, **kwargs)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(20, 345), st.sampled_from([365, 366]))
def test_property_unimodal_years_nest_their_spans(seed, peak, days):
    """For a single-season year (rising from and falling back to its minimum inside the year)
    every higher level lies inside the lower ones: L75 <= L50 <= L25; always Vbottom <= V25 <=
    V50 <= V75 <= Vtop and Area = the annual sum."""
    rng = np.random.default_rng(seed)
    rise = np.concatenate([[0.0], np.cumsum(rng.exponential(1.0, peak - 1))])
    steps = rng.exponential(1.0, days - peak)
    fall = rise[-1] * (1.0 - np.cumsum(steps) / steps.sum())
    v = np.concatenate([rise, fall])[:, None] / rise[-1]
    out = {k: a[0] for k, a in kernels.scvtg(v).items()}
    assert out["L75"] <= out["L50"] <= out["L25"] <= days
    assert out["Vbottom"] <= out["V25"] <= out["V50"] <= out["V75"] <= out["Vtop"]
    np.testing.assert_allclose(out["Area_NIRv"], v.sum())
