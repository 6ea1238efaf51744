"""Numpy 3-vector geometry, the one copy production code uses where it works in numpy rather than on
the compiled kernels of :mod:`mdllm.geometry`: unit vectors, bond and dihedral angles, NeRF placement
of one atom and Kabsch superposition. Arrays broadcast over leading axes; float64 inside.

The C++ core has its own twins of these (cpp/src/core/vec3.hpp, superposition.cpp), kept separate for
speed and for bit-parity of the tokenizers with their references.
"""

from __future__ import annotations

import numpy as np


def normalize(v):
    """Unit vectors along the last axis."""
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def angle(a, b, c):
    """Angle a-b-c in radians."""
    u, v = np.asarray(a, np.float64) - b, np.asarray(c, np.float64) - b
    return np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.sum(u * v, axis=-1))


def dihedral(a, b, c, d):
    """Dihedral a-b-c-d in radians (IUPAC sign)."""
    a, b, c, d = (np.asarray(x, np.float64) for x in (a, b, c, d))
    b1, b2, b3 = b - a, c - b, d - c
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.sum(b1 * n2, axis=-1)
    return np.arctan2(y, np.sum(n1 * n2, axis=-1))


def place(a, b, c, bond, theta, chi):
    """NeRF: the point d with |d-c| = bond, angle(b,c,d) = theta and dihedral(a,b,c,d) = chi."""
    a, b, c = (np.asarray(x, np.float64) for x in (a, b, c))
    bond, theta, chi = (np.asarray(x, np.float64)[..., None] for x in (bond, theta, chi))
    bc = normalize(c - b)
    n = normalize(np.cross(b - a, bc))
    m = np.cross(n, bc)
    return c - bond * np.cos(theta) * bc + bond * np.sin(theta) * (np.cos(chi) * m + np.sin(chi) * n)


def kabsch(mobile, ref, weights=None):
    """Optimal rotation and centres superposing ``mobile`` (..., N, 3) onto ``ref`` (..., N, 3):
    returns (R (..., 3, 3), mobile centre (..., 3), ref centre (..., 3)) with
    ``ref ~ (mobile - mobile_centre) @ R.T + ref_centre``. ``weights`` (..., N) weight the points
    (centres and covariance); a reflection is never returned."""
    p, q = np.asarray(mobile, np.float64), np.asarray(ref, np.float64)
    w = np.ones(p.shape[:-1]) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), p.shape[:-1])
    w = w[..., None]
    pc = (p * w).sum(-2) / w.sum(-2)
    qc = (q * w).sum(-2) / w.sum(-2)
    h = np.swapaxes((p - pc[..., None, :]) * w, -1, -2) @ (q - qc[..., None, :])
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, -1, -2)
    d = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones(d.shape + (3,))
    fix[..., 2] = d
    return (v * fix[..., None, :]) @ np.swapaxes(u, -1, -2), pc, qc


def superpose(mobile, ref, weights=None):
    """``mobile`` (..., N, 3) moved onto ``ref`` by :func:`kabsch`."""
    r, pc, qc = kabsch(mobile, ref, weights)
    p = np.asarray(mobile, np.float64)
    return (p - pc[..., None, :]) @ np.swapaxes(r, -1, -2) + qc[..., None, :]
