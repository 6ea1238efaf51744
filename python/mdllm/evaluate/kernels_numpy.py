"""Plain numpy versions of :mod:`mdllm.evaluate.kernels` (same signatures and results), written
independently of the C++ code so that tests can compare the two."""

from __future__ import annotations

import numpy as np

from mdllm.evaluate.kernels import BondCheck, ClashCheck
from mdllm.geometry.vectors import angle as _angle


def _first_max(z):
    """Largest finite |z| per frame and its residue (first on ties); 0 and -1 if none."""
    f = z.shape[0]
    filled = np.where(np.isfinite(z), z, -1.0).reshape(f, -1)
    flat = filled.argmax(axis=1)
    best = filled[np.arange(f), flat]
    residue = np.where(best >= 0, flat // z.shape[2], -1)
    return np.maximum(best, 0.0).astype(np.float32), residue.astype(np.int32)


def check_bonds(xyz, chain_end, ideal, max_z: float, break_nm: float) -> BondCheck:
    x = np.asarray(xyz, np.float64)
    ideal = np.asarray(ideal, np.float64)
    bond, bond_sd, ang, ang_sd = ideal[:4], ideal[4:8], ideal[8:12], ideal[12:]
    n, ca, c, o = (x[:, :, k] for k in range(4))
    f, l = x.shape[:2]
    linked = np.zeros(l, bool)
    linked[:-1] = ~np.asarray(chain_end, bool)[:-1]
    n1 = np.roll(n, -1, axis=1)
    ca1 = np.roll(ca, -1, axis=1)
    bonds = np.stack(
        [
            np.linalg.norm(ca - n, axis=-1),
            np.linalg.norm(c - ca, axis=-1),
            np.linalg.norm(n1 - c, axis=-1),
            np.linalg.norm(o - c, axis=-1),
        ],
        axis=-1,
    )
    angles = np.stack([_angle(n, ca, c), _angle(ca, c, n1), _angle(c, n1, ca1), _angle(ca, c, o)], axis=-1)
    bonds[:, ~linked, 2] = np.nan
    angles[:, ~linked, 1:3] = np.nan
    bond_z = np.abs(bonds - bond) / bond_sd
    angle_z = np.abs(angles - ang) / ang_sd
    with np.errstate(invalid="ignore"):
        n_bond = (bond_z > max_z).sum(axis=(1, 2))
        n_angle = (angle_z > max_z).sum(axis=(1, 2))
        n_breaks = (bonds[:, :, 2] > break_nm).sum(axis=1)
    worst_bond, bond_res = _first_max(bond_z)
    worst_angle, angle_res = _first_max(angle_z)
    return BondCheck(
        n_bond.astype(np.int32),
        n_angle.astype(np.int32),
        n_breaks.astype(np.int32),
        worst_bond,
        worst_angle,
        bond_res,
        angle_res,
    )


def find_clashes(xyz, chain_index, radius, overlap_nm: float, ca_min_nm: float, min_separation: int) -> ClashCheck:
    x = np.asarray(xyz, np.float64)
    f, l = x.shape[:2]
    chain_index = np.asarray(chain_index)
    res_i, res_j = np.triu_indices(l, k=1)
    keep = (chain_index[res_i] != chain_index[res_j]) | (res_j - res_i >= min_separation)
    res_i, res_j = res_i[keep], res_j[keep]
    radius = np.asarray(radius, np.float64)
    radius_sum = radius[:, None] + radius[None, :]  # (4, 4) atom a of i, atom b of j
    n_clashes = np.zeros(f, np.int32)
    n_ca = np.zeros(f, np.int32)
    worst = np.zeros(f, np.float32)
    pair = np.full((f, 2), -1, np.int32)
    for k in range(f):
        d = np.linalg.norm(x[k, res_i][:, :, None] - x[k, res_j][:, None, :], axis=-1)  # (P, 4, 4)
        overlap = radius_sum - d
        with np.errstate(invalid="ignore"):
            n_clashes[k] = (overlap > overlap_nm).sum()
            n_ca[k] = (d[:, 1, 1] < ca_min_nm).sum()
        per_pair = np.where(np.isfinite(overlap), overlap, -np.inf).max(axis=(1, 2))
        if per_pair.size and per_pair.max() > 0:
            best = int(per_pair.argmax())  # first pair in (i, j) order, as the C++ loop
            worst[k] = per_pair[best]
            pair[k] = res_i[best], res_j[best]
    return ClashCheck(n_clashes, n_ca, worst, pair)
