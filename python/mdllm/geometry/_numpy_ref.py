"""Plain-numpy reference implementations of the C++ geometry kernels, for tests and benchmarks only
(production code uses :mod:`mdllm.geometry` and, in numpy, :mod:`mdllm.geometry.vectors`).

Slow but easy to read; the tests compare the compiled kernels against these. Same signatures and
conventions as :mod:`mdllm.geometry`.
"""

from __future__ import annotations

import numpy as np

from mdllm.geometry.vectors import angle, dihedral, kabsch, normalize, place

__all__ = [
    "angle",
    "dihedral",
    "dihedrals",
    "internal_coordinates",
    "nerf",
    "pairwise_rmsd",
    "place",
    "rigid_frames",
    "rmsd_to_reference",
    "superpose",
    "to_global",
    "to_local",
]


def rigid_frames(xyz):
    xyz = np.asarray(xyz, dtype=np.float64)
    n, ca, c = xyz[..., 0, :], xyz[..., 1, :], xyz[..., 2, :]
    e1 = normalize(c - ca)
    u = n - ca
    e2 = normalize(u - np.sum(u * e1, axis=-1, keepdims=True) * e1)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=-1).astype(np.float32), ca.astype(np.float32)


def to_local(rotations, translations, points):
    d = np.asarray(points, np.float64) - np.asarray(translations, np.float64)[..., None, :]
    return np.einsum("...ji,...pj->...pi", rotations, d).astype(np.float32)


def to_global(rotations, translations, local):
    g = np.einsum("...ij,...pj->...pi", rotations, np.asarray(local, np.float64))
    return (g + np.asarray(translations, np.float64)[..., None, :]).astype(np.float32)


def dihedrals(xyz):
    xyz = np.asarray(xyz, dtype=np.float64)
    f, l = xyz.shape[:2]
    phi, psi, omega = (np.full((f, l), np.nan) for _ in range(3))
    N, CA, C = xyz[:, :, 0], xyz[:, :, 1], xyz[:, :, 2]
    phi[:, 1:] = dihedral(C[:, :-1], N[:, 1:], CA[:, 1:], C[:, 1:])
    psi[:, :-1] = dihedral(N[:, :-1], CA[:, :-1], C[:, :-1], N[:, 1:])
    omega[:, :-1] = dihedral(CA[:, :-1], C[:, :-1], N[:, 1:], CA[:, 1:])
    return tuple(a.astype(np.float32) for a in (phi, psi, omega))


def internal_coordinates(xyz):
    xyz = np.asarray(xyz, dtype=np.float64)
    f, l = xyz.shape[:2]
    bonds, angles, torsions = (np.full((f, l, 4), np.nan) for _ in range(3))
    N, CA, C, O = (xyz[:, :, k] for k in range(4))
    bonds[..., 0] = np.linalg.norm(CA - N, axis=-1)
    bonds[..., 1] = np.linalg.norm(C - CA, axis=-1)
    bonds[:, :-1, 2] = np.linalg.norm(N[:, 1:] - C[:, :-1], axis=-1)
    bonds[..., 3] = np.linalg.norm(O - C, axis=-1)
    angles[..., 0] = angle(N, CA, C)
    angles[:, :-1, 1] = angle(CA[:, :-1], C[:, :-1], N[:, 1:])
    angles[:, :-1, 2] = angle(C[:, :-1], N[:, 1:], CA[:, 1:])
    angles[..., 3] = angle(CA, C, O)
    phi, psi, omega = dihedrals(xyz)
    torsions[..., 0], torsions[..., 1], torsions[..., 2] = phi, psi, omega
    torsions[..., 3] = dihedral(N, CA, C, O)
    return tuple(a.astype(np.float32) for a in (bonds, angles, torsions))


def nerf(bonds, angles, torsions):
    b, a, t = (np.asarray(x, np.float64) for x in (bonds, angles, torsions))
    f, l = b.shape[:2]
    xyz = np.zeros((f, l, 4, 3))
    N = np.zeros((f, 3))
    CA = np.stack([b[:, 0, 0], np.zeros(f), np.zeros(f)], axis=-1)
    C = CA + np.stack([-b[:, 0, 1] * np.cos(a[:, 0, 0]), b[:, 0, 1] * np.sin(a[:, 0, 0]), np.zeros(f)], axis=-1)
    for i in range(l):
        xyz[:, i, 0], xyz[:, i, 1], xyz[:, i, 2] = N, CA, C
        xyz[:, i, 3] = place(N, CA, C, b[:, i, 3], a[:, i, 3], t[:, i, 3])
        if i + 1 == l:
            break
        N1 = place(N, CA, C, b[:, i, 2], a[:, i, 1], t[:, i, 1])
        CA1 = place(CA, C, N1, b[:, i + 1, 0], a[:, i, 2], t[:, i, 2])
        C1 = place(C, N1, CA1, b[:, i + 1, 1], a[:, i + 1, 0], t[:, i + 1, 0])
        N, CA, C = N1, CA1, C1
    return xyz.astype(np.float32)


def _centre(points):
    points = np.asarray(points, np.float64)
    return points - points.mean(axis=-2, keepdims=True)


def rmsd_to_reference(points, ref):
    x = _centre(points)
    y = _centre(ref)
    out = np.empty(len(x))
    for f in range(len(x)):
        r = kabsch(x[f], y)[0]
        out[f] = np.sqrt(np.mean(np.sum((x[f] @ r.T - y) ** 2, axis=-1)))
    return out.astype(np.float32)


def superpose(points, ref):
    x = _centre(points)
    ref = np.asarray(ref, np.float64)
    y = ref - ref.mean(axis=0)
    out = np.empty_like(x)
    for f in range(len(x)):
        out[f] = x[f] @ kabsch(x[f], y)[0].T + ref.mean(axis=0)
    return out.astype(np.float32), rmsd_to_reference(points, ref)


def pairwise_rmsd(points):
    """All-pairs RMSD with batched SVDs, one row at a time."""
    x = _centre(points)
    n_frames, n_points = x.shape[:2]
    g = np.sum(x * x, axis=(1, 2))
    out = np.zeros((n_frames, n_frames))
    for i in range(n_frames):
        h = np.einsum("na,fnb->fab", x[i], x)  # covariance of frame i with every frame
        s = np.linalg.svd(h, compute_uv=False)
        sign = np.sign(np.linalg.det(h))
        trace = s[:, 0] + s[:, 1] + sign * s[:, 2]
        out[i] = np.sqrt(np.maximum(g[i] + g - 2 * trace, 0) / n_points)
    return out.astype(np.float32)
