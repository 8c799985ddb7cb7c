"""Scalar helpers shared by the CPU (numba ``njit``) and GPU (numba-cuda device) kernels.

``build(jit)`` compiles one set of helpers with the given decorator, so each algorithm is
written once and runs on both targets. Helpers work on 1-D array views and never allocate;
``transpose_tile`` (CPU only) copies a block of pixels so each series is contiguous.

``fill`` and ``savgol`` compute in the dtype of their arrays (float32 or float64): numba
promotes float32 mixed with a float literal or an integer to float64, so they use neither
(integers are converted with the array's ``dtype.type``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda, njit

CHUNK = 64  # pixels per CPU work item: scratch arrays are allocated once per chunk


class Helpers(NamedTuple):
    """Compiled helpers for one target."""

    select: object  # select(a, n, k) -> k-th smallest of a[:n], partially orders a in place
    median: object  # median(a, n) -> median of a[:n] (mean of the two middle values if n even)
    sort: object  # sort(a, n) -> sorts a[:n] in place (insertion sort, for short runs)
    fill: object  # fill(x, out) -> number of valid values; gaps of x filled linearly into out
    savgol: object  # savgol(x, coef, out) -> Savitzky-Golay smoothing of x into out


def _select(a, n, k):
    # Quickselect with branch-free three-way partitions (below, equal to, above the pivot).
    lo = 0
    hi = n - 1
    while lo < hi:
        first = a[lo]
        middle = a[(lo + hi) // 2]
        last = a[hi]
        pivot = max(min(first, middle), min(max(first, middle), last))
        below = lo
        for i in range(lo, hi + 1):
            v = a[i]
            a[i] = a[below]
            a[below] = v
            below += int(v < pivot)
        if k < below:
            hi = below - 1
            continue
        upto = below
        for i in range(below, hi + 1):
            v = a[i]
            a[i] = a[upto]
            a[upto] = v
            upto += int(v <= pivot)
        if k < upto:
            return pivot
        lo = upto
    return a[k]


def _sort(a, n):
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


def _fill(x, out):
    real = out.dtype.type
    n = x.shape[0]
    prev = -1
    count = 0
    for i in range(n):
        v = x[i]
        if not math.isnan(v):
            if prev == -1:
                for j in range(i):
                    out[j] = v
            else:
                pv = x[prev]
                for j in range(prev + 1, i):
                    out[j] = pv + (v - pv) * real(j - prev) / real(i - prev)
            out[i] = v
            prev = i
            count += 1
    if prev >= 0:
        for j in range(prev + 1, n):
            out[j] = x[prev]
    return count


def _savgol(x, coef, out):
    n = x.shape[0]
    w = coef.shape[0]
    h = w // 2
    for i in range(h):
        lead = coef[i, 0] * x[0]
        tail = coef[w - 1 - i, 0] * x[n - w]
        for k in range(1, w):
            lead += coef[i, k] * x[k]
            tail += coef[w - 1 - i, k] * x[n - w + k]
        out[i] = lead
        out[n - 1 - i] = tail
    for i in range(h, n - h):
        acc = coef[h, h] * x[i]
        for k in range(h):
            acc += coef[h, k] * (x[i - h + k] + x[i + h - k])
        out[i] = acc


def build(jit, jit_sums=None) -> Helpers:
    """Compile the helpers with ``jit`` (``numba.njit`` or ``numba.cuda.jit(device=True)``);
    ``jit_sums``, if given, compiles the weighted sums of ``savgol`` (e.g. allowing SIMD
    reassociation on the CPU)."""
    select = jit(_select)

    def median(a, n):
        k = n // 2
        upper = select(a, n, k)
        if n % 2 == 1:
            return upper
        lower = a[0]
        for i in range(1, k):
            lower = max(lower, a[i])
        return 0.5 * (lower + upper)

    return Helpers(select, jit(median), jit(_sort), jit(_fill), (jit_sums or jit)(_savgol))


# Reassociation lets the CPU sums use SIMD; NaN/inf semantics stay IEEE (no "nnan"/"ninf").
CPU = build(njit, njit(fastmath={"reassoc", "contract"}))
GPU = build(cuda.jit(device=True))


@njit
def transpose_tile(x, start, stop):
    """Columns start:stop of a (time, pixels) array as a contiguous (stop - start, time) copy,
    read row by row (CPU kernels: one pixel's series then sits in consecutive memory)."""
    tile = np.empty((stop - start, x.shape[0]))
    for t in range(x.shape[0]):
        for q in range(stop - start):
            tile[q, t] = x[t, start + q]
    return tile


def savgol_coefficients(window: int, order: int) -> np.ndarray:
    """Savitzky-Golay weights, shape (window, window), float64.

    Row r holds the weights that evaluate, at sample r of a window, the least-squares
    polynomial of degree ``order`` fitted to that window's samples: row window // 2 is the
    centred filter (symmetric, and used as such by ``savgol``); the other rows serve the
    first and last window // 2 samples of a series (the polynomial fitted to the first or
    last full window, as scipy's ``mode="interp"``).
    """
    k = np.arange(window, dtype=np.float64)
    scale = window / 2.0
    coef = np.empty((window, window))
    for r in range(window):
        vander = ((k - r) / scale)[:, None] ** np.arange(order + 1)
        coef[r] = np.linalg.pinv(vander)[0]
    return coef
