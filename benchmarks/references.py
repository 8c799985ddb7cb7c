"""Plain NumPy / SciPy references the kernels are checked (tests) and timed (benchmarks) against."""
from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter


def chen_envelope(y, window, order, max_iter):
    """Chen et al. (2004) upper envelope of one pixel's series, written with numpy.interp and
    scipy's savgol_filter (NaN = missing; all-NaN gives all-NaN)."""
    t = np.arange(y.size)
    ok = ~np.isnan(y)
    if not ok.any():
        return np.full(y.size, np.nan)
    n0 = np.interp(t, t[ok], y[ok])
    fit = savgol_filter(n0, window, order)
    if max_iter == 0:
        return fit
    dist = np.abs(n0 - fit)
    weight = np.ones_like(n0)
    if dist.max() > 0:
        weight = np.where(n0 >= fit, 1.0, 1.0 - dist / dist.max())
    best = np.inf
    for _ in range(max_iter):
        candidate = savgol_filter(np.maximum(n0, fit), window, order)
        effect = np.sum(weight * np.abs(candidate - n0))
        if effect >= best:
            break
        best, fit = effect, candidate
    return fit
