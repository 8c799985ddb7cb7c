"""Monthly (or any labelled) median composites of a daily or 8-day stack, NaN ignored."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, cuda_grid, is_cupy_array
from ._numeric import CPU, GPU


class MonthlyMedian(NamedTuple):
    """Composite of a (time, ...) stack over the sorted distinct labels."""

    median: object  # (months, ...), units of the input, NaN where a month has no valid value
    count: object  # (months, ...), int64, number of valid values per month
    labels: object  # (months,), the distinct labels, sorted (NumPy)


_median_cpu = CPU.median
_median_gpu = GPU.median


@cuda.jit(device=True)
def _pixel_gpu(x, order, starts, med, count, buf):
    for g in range(starts.shape[0] - 1):
        n = 0
        for j in range(starts[g], starts[g + 1]):
            v = x[order[j]]
            buf[n] = v
            n += int(not math.isnan(v))
        count[g] = n
        med[g] = _median_gpu(buf, n) if n > 0 else np.nan


_LANES = 64  # CPU: pixels gathered together, so each time step is read as one short row


@njit(parallel=True, cache=True)
def _composite_cpu(x, order, starts, n_buf, med, count):
    n_pix = x.shape[1]
    for c in prange((n_pix + _LANES - 1) // _LANES):
        first = c * _LANES
        lanes = min(n_pix, first + _LANES) - first
        buf = np.empty((_LANES, n_buf))
        n = np.empty(_LANES, dtype=np.int64)
        for g in range(starts.shape[0] - 1):
            n[:] = 0
            for j in range(starts[g], starts[g + 1]):
                row = x[order[j]]
                for q in range(lanes):
                    v = row[first + q]
                    buf[q, n[q]] = v
                    n[q] += int(not math.isnan(v))
            for q in range(lanes):
                count[g, first + q] = n[q]
                med[g, first + q] = _median_cpu(buf[q], n[q]) if n[q] > 0 else np.nan


@cuda.jit
def _composite_gpu(x, order, starts, med, count, buf):
    p = cuda.grid(1)
    if p < x.shape[1]:
        _pixel_gpu(x[:, p], order, starts, med[:, p], count[:, p], buf[:, p])


def launch_composite_gpu(x, order, starts):
    """Run the CUDA kernel on ``x`` (time, pixels), float64, on the device that holds it (CuPy,
    or NumPy under the CUDA simulator), with time indices ``order`` grouped by label and group
    offsets ``starts`` (NumPy). Returns the (groups, pixels) median and count on that device."""
    xp = array_module(x)
    n_groups = starts.size - 1
    med = xp.empty((n_groups, x.shape[1]), dtype=np.float64)
    count = xp.empty((n_groups, x.shape[1]), dtype=np.int64)
    buf = xp.empty((int(np.diff(starts).max()), x.shape[1]), dtype=np.float64)
    blocks, threads = cuda_grid(x.shape[1])
    _composite_gpu[blocks, threads](x, xp.asarray(order), xp.asarray(starts), med, count, buf)
    return med, count


def group_order(labels):
    """Time indices sorted by label (stable) and the offsets of each label's run."""
    distinct, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(np.bincount(inverse)))).astype(np.int64)
    return distinct, order, starts


def monthly_median(x, months) -> MonthlyMedian:
    """Median per month of a stack ``x`` (time, ...), NaN ignored, with the valid counts.

    ``months`` (time,) are integer labels of each time step (e.g. 1-12, or year * 12 + month
    for several years). Output dtype float64; a month with no valid value gives NaN, count 0.
    """
    xp = array_module(x)
    check_float("x", x)
    labels = np.asarray(months.get() if is_cupy_array(months) else months)
    n_time = x.shape[0] if x.ndim else 0
    if labels.ndim != 1 or labels.size != n_time:
        raise ValueError(f"months: expected one label per time step ({n_time}) on axis 0, "
                         f"found shape {labels.shape}")
    if n_time == 0:
        raise ValueError("x: expected at least one time step on axis 0, found 0")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"months: expected integer labels, found dtype {labels.dtype}")
    distinct, order, starts = group_order(labels)
    if xp is np:  # float32 or float64 as given: no converted copy of the stack
        xx = np.ascontiguousarray(x.reshape(n_time, -1))
        med = np.empty((distinct.size, xx.shape[1]))
        count = np.empty((distinct.size, xx.shape[1]), dtype=np.int64)
        _composite_cpu(xx, order, starts, int(np.diff(starts).max()), med, count)
    else:
        med, count = launch_composite_gpu(xp.ascontiguousarray(x.reshape(n_time, -1), dtype=np.float64),
                                          order, starts)
    shape = (distinct.size,) + x.shape[1:]
    return MonthlyMedian(med.reshape(shape), count.reshape(shape), distinct)
