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


def js_1d(a, b, bins: int = 50, range_=None, periodic: bool = False) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return float("nan")
    if range_ is None:
        both = np.concatenate([a, b])
        range_ = (both.min(), both.max() + 1e-9)
    edges = np.linspace(*range_, bins + 1)
    return js_distance(np.histogram(a, edges)[0], np.histogram(b, edges)[0])


def js_2d(a, b, bins: int = 30, range_=None) -> float:
    """a, b: (N, 2) samples."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a).all(1)], b[np.isfinite(b).all(1)]
    if not len(a) or not len(b):
        return float("nan")
    if range_ is None:
        both = np.concatenate([a, b])
        range_ = [(both[:, k].min(), both[:, k].max() + 1e-9) for k in range(2)]
    ha = np.histogram2d(a[:, 0], a[:, 1], bins=bins, range=range_)[0]
    hb = np.histogram2d(b[:, 0], b[:, 1], bins=bins, range=range_)[0]
    return js_distance(ha, hb)
