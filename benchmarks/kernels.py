"""Feature-kernel benchmark: numba kernels against the per-pixel code a user would write.

    python -m benchmarks.kernels [--quick] [--out DIR]

Three comparisons, each measured in this one run (numba compile time excluded by a warm-up
call; kernel times are the best of 7 calls, reference times the best of 2 or 3 runs, to damp
the noise of a shared machine):
- Mann-Kendall + Theil-Sen on 10,000 pixels x 20 years vs a loop of pymannkendall
  ``original_test`` + ``sens_slope``; the loop is timed on a subset and scaled per series.
- SG upper envelope + SCVTG on 2,000 pixels x 365 days vs a per-pixel loop over
  ``scipy.signal.savgol_filter`` running the same Chen et al. (2004) iteration, with SCVTG in
  numpy; the loop is timed on a subset and scaled per pixel.
- Monthly median composite of 365 days x 10,000 pixels vs ``xarray`` ``resample(time="MS")
  .median()`` on the full stack.
``--quick`` shrinks every size about 10x. Writes ``kernels-cpu-<date>.json`` under ``--out``
(default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import warnings
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pymannkendall as mk
import scipy
import xarray as xr

from benchmarks.common import RESULTS, cpu_model, timed
from benchmarks.references import chen_envelope
from ciml_ter import kernels
from ciml_ter.kernels.envelope import DEFAULT_MAX_ITER, DEFAULT_ORDER, DEFAULT_WINDOW

def cloudy_daily(n_pix, seed=0, days=365):
    """Seasonal NIRv-like curves with cloud dips (20 % of days) and gaps (25 %), (days, n_pix)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)[:, None]
    y = 0.05 + 0.35 * (0.5 - 0.5 * np.cos(2 * np.pi * (t - rng.uniform(-40, 40, n_pix)) / days))
    dips = rng.random(y.shape) < 0.2
    y[dips] *= 1.0 - rng.uniform(0.05, 0.6, dips.sum())
    y[rng.random(y.shape) < 0.25] = np.nan
    return y


def envelope_scvtg_loop(y, window, order, max_iter):
    """Per-pixel reference: Chen iteration with scipy's savgol_filter, SCVTG with numpy."""
    days, n_pix = y.shape
    k = max(1, int(np.floor(0.05 * days + 0.5)))
    out = np.empty((9, n_pix))
    for p in range(n_pix):
        fit = chen_envelope(y[:, p], window, order, max_iter)
        ordered = np.sort(fit)
        top, bottom = ordered[-k:].mean(), ordered[:k].mean()
        values = [top, bottom]
        spans = []
        for level in (0.75, 0.5, 0.25):
            v = bottom + level * (top - bottom)
            below = fit < v
            i = np.flatnonzero(below[:-1] != below[1:])
            cross = i + (v - fit[i]) / (fit[i + 1] - fit[i])
            values.append(v)
            spans.append(cross[-1] - cross[0] if cross.size else np.nan)
        out[:, p] = values + spans + [fit.sum()]
    return out


def bench_trend(n_pix, n_years, n_ref):
    rng = np.random.default_rng(1)
    y = np.round(rng.normal(size=(n_years, n_pix)) + 0.05 * np.arange(n_years)[:, None], 2)
    kernels.mann_kendall_theil_sen(y[:, :10])
    seconds = timed(lambda: kernels.mann_kendall_theil_sen(y), 7)[0]

    def reference():
        return [(mk.original_test(y[:, p]), mk.sens_slope(y[:, p])) for p in range(n_ref)]

    ref_seconds, refs = timed(reference, 2)
    got = kernels.mann_kendall_theil_sen(y[:, :n_ref])
    diff = max(max(abs(got.p[p] - r.p), abs(got.slope[p] - s.slope)) for p, (r, s) in enumerate(refs))
    scaled = ref_seconds / n_ref * n_pix
    return {
        "sizes": {"pixels": n_pix, "years": n_years},
        "kernel_seconds": seconds,
        "reference": "loop of pymannkendall.original_test + sens_slope per series",
        "reference_series_timed": n_ref,
        "reference_seconds_per_series": ref_seconds / n_ref,
        "reference_seconds_scaled_to_all_pixels": scaled,
        "ratio": scaled / seconds,
        "goal_ratio": 500,
        "max_abs_diff_p_slope_on_subset": float(diff),
    }


def bench_envelope_scvtg(n_pix, n_ref):
    y = cloudy_daily(n_pix)
    window, order, max_iter = DEFAULT_WINDOW, DEFAULT_ORDER, DEFAULT_MAX_ITER

    def run(data):
        return kernels.scvtg(kernels.sg_upper_envelope(data, window, order, max_iter))

    run(y[:, :10])
    seconds = timed(lambda: run(y), 7)[0]
    ref_seconds, ref = timed(lambda: envelope_scvtg_loop(y[:, :n_ref], window, order, max_iter), 2)
    got = np.stack(list(run(y[:, :n_ref]).values()))
    scaled = ref_seconds / n_ref * n_pix
    return {
        "sizes": {"pixels": n_pix, "days": 365, "window": window, "order": order,
                  "max_iter": max_iter},
        "kernel_seconds": seconds,
        "reference": "per-pixel loop: numpy.interp + scipy.signal.savgol_filter Chen iteration, "
                     "SCVTG with numpy",
        "reference_pixels_timed": n_ref,
        "reference_seconds_per_pixel": ref_seconds / n_ref,
        "reference_seconds_scaled_to_all_pixels": scaled,
        "ratio": scaled / seconds,
        "goal_ratio": 50,
        "max_abs_diff_on_subset": float(np.nanmax(np.abs(got - ref))),
    }


def bench_monthly(n_pix):
    days = pd.date_range("2019-01-01", "2019-12-31", freq="D")
    y = cloudy_daily(n_pix, seed=2)
    months = days.month.to_numpy()
    kernels.monthly_median(y[:, :10], months)
    seconds = timed(lambda: kernels.monthly_median(y, months), 7)[0]
    da = xr.DataArray(y, dims=("time", "pixel"), coords={"time": days})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        da.resample(time="MS").median()
        ref_seconds = timed(lambda: da.resample(time="MS").median(), 3)[0]
        ref = da.resample(time="MS").median().values
    got = kernels.monthly_median(y, months).median
    return {
        "sizes": {"pixels": n_pix, "days": days.size, "months": 12},
        "kernel_seconds": seconds,
        "reference": 'xarray DataArray.resample(time="MS").median() on the full stack',
        "reference_seconds": ref_seconds,
        "ratio": ref_seconds / seconds,
        "goal_ratio": 5,
        "max_abs_diff": float(np.nanmax(np.abs(got - ref))),
    }


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    result = {
        "benchmark": "kernels",
        "date": datetime.date.today().isoformat(),
        "quick": args.quick,
        "device": {"kind": "cpu", "model": cpu_model(), "cores": len(os.sched_getaffinity(0)),
                   "numba_threads": numba.get_num_threads(), "platform": platform.platform()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "scipy": scipy.__version__,
                     "pymannkendall": getattr(mk, "__version__", "unknown"),
                     "xarray": xr.__version__},
        "timing": "kernel: best of 7 calls after a warm-up call (compile excluded); reference: "
                  "best of 2 runs (loops on a subset) or 3 runs (xarray)",
        "mann_kendall_theil_sen": bench_trend(10_000 // scale, 20, 2_000 // scale),
        "envelope_scvtg": bench_envelope_scvtg(2_000 // scale, 200 // scale),
        "monthly_median": bench_monthly(10_000 // scale),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"kernels-cpu-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(main())
