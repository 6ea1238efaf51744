"""Projection of decoded backbones onto the key frame's local geometry.

Motion tokens place every residue on its own, so the bonds between neighbouring residues carry the
quantisation error of two codes (a few tenths of an Ångström, far beyond the spread of real peptide
bonds). This step restores the key frame's own bond lengths and 1-3 distances (which fix the bond
angles) within and between residues by iterated pairwise projection (SHAKE-like, Jacobi updates, all
frames at once): each distance is moved towards its target, both atoms sharing the correction. Atoms
move a few tenths of an Ångström at most; the fold and the motion the tokens describe stay.

Constraints per residue i: N-CA, CA-C, C-O, N..C, CA..O; to residue i+1: C-N, CA..N, C..CA, O..N,
CA..CA. Pairs whose key distance exceeds 0.45 nm (a chain break or chain end in the key) are free.

``project_to_key_geometry`` runs on the compiled core (mdllm/projection.hpp, frames in parallel), which
mdllm.geometry needs anyway; ``backend="numpy"`` is the reference here, which the tests compare it with.
"""

from __future__ import annotations

import numpy as np

from mdllm.errors import MdllmError

BREAK_NM = 0.45  # longer than any constrained distance of a connected backbone (CA-CA is 0.38 nm)
ITERATIONS = 300  # converged (60 left bond-angle outliers in a quarter of decoded frames)


def constraint_pairs(n_res: int) -> np.ndarray:
    """(P, 2) flat atom indices (atom 4 i + k with k = N, CA, C, O) of the constrained distances."""
    i = np.arange(n_res) * 4
    within = np.stack([np.stack([i + a, i + b], 1) for a, b in ((0, 1), (1, 2), (2, 3), (0, 2), (1, 3))], 1)
    j = i[:-1]
    between = np.stack([np.stack([j + a, j + 4 + b], 1) for a, b in ((2, 0), (1, 0), (2, 1), (3, 0), (1, 1))], 1)
    return np.concatenate([within.reshape(-1, 2), between.reshape(-1, 2)])


def project_to_key_geometry(xyz, key, iterations: int = ITERATIONS, backend: str = "cpp") -> np.ndarray:
    """Backbones (F, L, 4, 3) nm with the local distances of ``key`` (L, 4, 3) nm restored.
    ``backend``: 'cpp' (the compiled core) or 'numpy' (the reference)."""
    xyz = np.asarray(xyz)
    key = np.asarray(key, np.float64)
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3) or key.shape != xyz.shape[1:]:
        raise MdllmError(f"projection needs frames (F, L, 4, 3) and a key (L, 4, 3), got {xyz.shape} and {key.shape}")
    if backend == "numpy":
        return _project_numpy(xyz, key, iterations)
    if backend != "cpp":
        raise MdllmError(f"unknown projection backend '{backend}' (use 'cpp' or 'numpy')")
    from mdllm import _core

    out = np.empty(xyz.shape, np.float32)
    frames = np.ascontiguousarray(xyz, np.float32)
    _core.project_to_key_geometry(
        frames, xyz.shape[0], xyz.shape[1], np.ascontiguousarray(key, np.float32), iterations, out
    )
    return out


def key_constraints(key):
    """(a, b, target, share) of a key (L, 4, 3) nm: the flat atom indices of each constrained pair that
    the key does not leave free, its key distance (nm), and each atom's number of constraints (at least
    1), by which its summed corrections are divided."""
    key = np.asarray(key, np.float64)
    k = key.reshape(-1, 3)
    pairs = constraint_pairs(len(key))
    target = np.linalg.norm(k[pairs[:, 1]] - k[pairs[:, 0]], axis=-1)
    keep = target < BREAK_NM
    a, b, target = pairs[keep, 0], pairs[keep, 1], target[keep]
    share = np.bincount(np.concatenate([a, b]), minlength=len(k)).astype(np.float64)
    return a, b, target, np.maximum(share, 1.0)


def _project_numpy(xyz, key, iterations: int) -> np.ndarray:
    n_frames, n_res = xyz.shape[:2]
    n_atoms = 4 * n_res
    a, b, target, share = key_constraints(key)
    x = xyz.reshape(n_frames, n_atoms, 3).astype(np.float64)
    # scatter-add of the corrections as one sparse product: (atoms x pairs) @ (pairs x 3F)
    from scipy.sparse import csr_matrix

    rows = np.concatenate([a, b])
    cols = np.concatenate([np.arange(len(a)), np.arange(len(a))])
    signs = np.concatenate([np.ones(len(a)), -np.ones(len(a))])
    scatter = csr_matrix((signs / share[rows], (rows, cols)), shape=(n_atoms, len(a)))
    for _ in range(iterations):
        d = x[:, b] - x[:, a]
        dist = np.linalg.norm(d, axis=-1, keepdims=True)
        corr = 0.5 * (dist - target[None, :, None]) / np.maximum(dist, 1e-9) * d  # (F, P, 3)
        delta = scatter @ corr.transpose(1, 0, 2).reshape(len(a), -1)
        x += delta.reshape(n_atoms, n_frames, 3).transpose(1, 0, 2)
    return x.reshape(n_frames, n_res, 4, 3).astype(np.float32)
