"""Jensen-Shannon distances between sample distributions on shared histogram bins (base 2, so
0 for identical and 1 for disjoint distributions)."""

from __future__ import annotations

import numpy as np


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """JS distance of two histograms (any shape, normalised here)."""
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p, np.float64).ravel(), np.asarray(q, np.float64).ravel()
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def bins_for(n_a: int, n_b: int, dims: int = 1) -> int:
    """Bins per axis so the smaller sample still fills its histogram (about 4 samples per bin in
    1D, 2 per cell in 2D); sparse histograms inflate JS distances of equal distributions."""
    n = min(n_a, n_b)
    return int(np.clip(n // 4, 8, 50)) if dims == 1 else int(np.clip(np.sqrt(n / 2), 4, 30))


def js_1d(a, b, bins: int | None = None, range_=None) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return float("nan")
    bins = bins or bins_for(len(a), len(b))
    if range_ is None:
        both = np.concatenate([a, b])
        range_ = (both.min(), both.max() + 1e-9)
    edges = np.linspace(*range_, bins + 1)
    return js_distance(np.histogram(a, edges)[0], np.histogram(b, edges)[0])


def js_2d(a, b, bins: int | None = None, range_=None) -> float:
    """a, b: (N, 2) samples."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a).all(1)], b[np.isfinite(b).all(1)]
    if not len(a) or not len(b):
        return float("nan")
    bins = bins or bins_for(len(a), len(b), dims=2)
    if range_ is None:
        both = np.concatenate([a, b])
        range_ = [(both[:, k].min(), both[:, k].max() + 1e-9) for k in range(2)]
    ha = np.histogram2d(a[:, 0], a[:, 1], bins=bins, range=range_)[0]
    hb = np.histogram2d(b[:, 0], b[:, 1], bins=bins, range=range_)[0]
    return js_distance(ha, hb)
