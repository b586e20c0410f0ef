"""exp and log from IEEE-754 basic operations only, so every machine computes the same bits.

numpy's `np.exp` and `np.log` are chosen at run time by the CPU (SVML / AVX-512 / AVX2 /
scalar libm) and may differ in the last bit between machines; a probability table built from
them is then only *nearly* the same on the decoder's machine, which is not good enough for an
entropy coder. The functions here use only operations that IEEE 754 defines to be correctly
rounded (+, -, *, /, rint, frexp, ldexp), each as a separate numpy call in a fixed order on
float64 arrays: the result is a function of the input bits alone, on every CPU, numpy version
and thread count. Accuracy: relative error below 4e-16 over the whole float64 range (a few
ulp), which is irrelevant for coding; what matters is that it is the same everywhere.

`exact_table` turns non-negative weights into a normalised probability table with integer
arithmetic (a float sum's rounding depends on the summation order; an integer sum's does not).
"""
from __future__ import annotations

import numpy as np

__all__ = ["exp", "log", "exact_table", "exact_counts", "ordered_sum", "sum_last",
           "weighted_sum", "TABLE_BITS"]

_LN2_HI = 6.93147180369123816490e-01   # ln 2 with 21 trailing zero bits: n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10   # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e+00
_EXP_TERMS = tuple(1.0 / np.prod(np.arange(1, k + 1, dtype=np.float64)) for k in range(14))
_SQRT_HALF = 0.70710678118654757274


def exp(x) -> np.ndarray:
    """e**x, float64, for any float64 input (inf -> inf, -inf -> 0, NaN -> NaN).

    x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two-part ln 2), e**r by its Taylor series to
    r**13 (Horner), then scaled by 2**n with ldexp."""
    x = np.asarray(x, dtype=np.float64)
    xc = np.clip(np.where(np.isnan(x), 0.0, x), -746.0, 710.0)
    n = np.rint(xc * _INV_LN2)
    r = xc - n * _LN2_HI
    r = r - n * _LN2_LO
    p = np.full_like(r, _EXP_TERMS[13])
    for c in _EXP_TERMS[12::-1]:
        p = p * r
        p = p + c
    # two steps so that 2**n never overflows an intermediate when the result is normal
    half = np.floor(n * 0.5).astype(np.int64)
    with np.errstate(over="ignore"):
        out = np.ldexp(np.ldexp(p, half), n.astype(np.int64) - half)
    return np.where(np.isnan(x), x, out)


def log(x) -> np.ndarray:
    """Natural log, float64: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
    s = (m - 1)/(m + 1), by its series to s**21. log 0 = -inf; negative or NaN -> NaN."""
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(np.where((x > 0) & np.isfinite(x), x, 1.0))   # m in [0.5, 1)
    small = m < _SQRT_HALF
    m = np.where(small, m * 2.0, m)
    e = (e - small).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, 1.0 / 21)
    for k in range(19, 0, -2):
        p = p * s2
        p = p + 1.0 / k
    logm = (p * s) * 2.0
    out = e * _LN2_HI + (logm + e * _LN2_LO)
    out = np.where(x == 0, -np.inf, out)
    out = np.where(np.isinf(x) & (x > 0), np.inf, out)
    return np.where((x < 0) | np.isnan(x), np.nan, out)


TABLE_BITS = 40   # exact_table: weights become integers in units of max / 2**40


def exact_table(weights) -> np.ndarray:
    """Rows (..., K) of non-negative weights -> probability tables (..., K), float64.

    Each row is scaled so that its largest entry is 2**TABLE_BITS, floored to integers, 1 is
    added to every entry (so every symbol stays codable; NaN, negative and infinite entries
    count as 0, an all-zero row becomes uniform), and divided by the row's integer sum. Every
    step is exact or correctly rounded and element by element, and the sum is an integer sum:
    the table is the same on every machine, whatever order a sum is taken in."""
    counts = exact_counts(weights)
    return counts / counts.sum(axis=-1, keepdims=True)    # exact integer sums: K < 2**22


def exact_counts(weights) -> np.ndarray:
    """exact_table's integer counts (..., K) int64, before the division by the row sums:
    floor(2**TABLE_BITS w / max w) + 1 (see exact_table)."""
    w = np.asarray(weights, dtype=np.float64)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    top = w.max(axis=-1, keepdims=True)                    # a max is exact in any order
    scale = np.where(top > 0, top, 1.0)
    return np.floor((w / scale) * float(1 << TABLE_BITS)).astype(np.int64) + 1


def ordered_sum(terms) -> np.ndarray:
    """t0 + t1 + t2 + ... (float64 arrays, broadcast), added one term at a time in the order
    given: elementwise additions, each correctly rounded, so the same bits on every machine
    (a vectorised reduction such as `sum` may pair the terms differently)."""
    it = iter(terms)
    out = np.array(next(it), dtype=np.float64)
    for t in it:
        out = out + t
    return out


def weighted_sum(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ordered_sum(weights[:, k, None] * rows[k] for k in range(K)) for weights (R, K) and
    rows (K, N): the same products and additions in the same order, the same bits, computed
    in two buffers (15-20% faster than a new array per operation, measured at K = 512)."""
    w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).T)[:, :, None]   # (K, R, 1)
    rows = np.asarray(rows, dtype=np.float64)
    out = w[0] * rows[0]
    term = np.empty_like(out)
    for k in range(1, len(w)):
        np.multiply(w[k], rows[k], out=term)
        out += term
    return out


def sum_last(a: np.ndarray) -> np.ndarray:
    """The sum over the last axis, entries added in index order (see `ordered_sum`)."""
    return ordered_sum(a[..., i] for i in range(a.shape[-1]))
