"""Restrained geometric refinement of decoded backbones.

A decoder predicts each residue's atoms with some independent error; even when the fold is right
(round-trip RMSD of 1-2 Å), bonds and angles are off by tenths of an Å, which breaks peptide bonds
for any validity check. ``refine_backbones`` moves the atoms as little as it can while pulling every
bond, every backbone angle and the trans peptide plane to Engh & Huber ideal geometry, and pushing apart
backbone atoms of non-neighbouring residues that overlap: a harmonic restraint network minimised by
L-BFGS (scipy), all frames at once (their terms are independent). It is not a force field; the all-atom
rebuild and OpenMM minimization of ``mdllm evaluate --rebuild`` are.
"""

from __future__ import annotations

import numpy as np

from mdllm.errors import MdllmError

N, CA, C, O = 0, 1, 2, 3


def _ideal_distances():
    """Every restrained pair (atom a of residue i, atom b of residue i + offset, ideal distance in Å):
    the bonds, the 1-3 distances that fix the bond angles, and the 1-4 distances across the peptide
    bond that make it planar and trans, measured on an ideal dipeptide built here from the Engh & Huber
    values the validity check uses."""
    from mdllm.evaluate.validity import IDEAL_ANGLES_DEG, IDEAL_BONDS_NM

    b_n_ca, b_ca_c, b_c_n, b_c_o = (10.0 * b for b in IDEAL_BONDS_NM)
    a_n_ca_c, a_ca_c_n, a_c_n_ca, a_ca_c_o = np.deg2rad(IDEAL_ANGLES_DEG)

    def place(a, b, c, bond, angle, torsion):
        # atom d with |cd| = bond, angle bcd and dihedral abcd (NeRF)
        bc = (c - b) / np.linalg.norm(c - b)
        n = np.cross(b - a, bc)
        n /= np.linalg.norm(n)
        m = np.cross(n, bc)
        local = [-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion), bond * np.sin(angle) * np.sin(torsion)]
        return c + local[0] * bc + local[1] * m + local[2] * n

    ca0 = np.zeros(3)
    c0 = np.array([b_ca_c, 0.0, 0.0])
    n0 = b_n_ca * np.array([np.cos(a_n_ca_c), np.sin(a_n_ca_c), 0.0])
    n1 = place(n0, ca0, c0, b_c_n, a_ca_c_n, np.deg2rad(-45.0))  # psi: no distance below depends on it
    o0 = place(n1, ca0, c0, b_c_o, a_ca_c_o, np.pi)             # carbonyl O in the peptide plane
    ca1 = place(ca0, c0, n1, b_n_ca, a_c_n_ca, np.pi)            # omega = 180 (trans)
    atoms = {(N, 0): n0, (CA, 0): ca0, (C, 0): c0, (O, 0): o0, (N, 1): n1, (CA, 1): ca1}
    pairs = [((N, 0), (CA, 0)), ((CA, 0), (C, 0)), ((C, 0), (O, 0)), ((C, 0), (N, 1)),   # bonds
             ((N, 0), (C, 0)), ((CA, 0), (O, 0)), ((CA, 0), (N, 1)), ((O, 0), (N, 1)),   # angles
             ((C, 0), (CA, 1)), ((CA, 0), (CA, 1)), ((O, 0), (CA, 1))]                   # angle, plane
    return [(a, b, ib - ia, float(np.linalg.norm(atoms[(a, ia)] - atoms[(b, ib)]))) for (a, ia), (b, ib) in pairs]


IDEAL = _ideal_distances()
VDW_A = np.array([1.55, 1.70, 1.70, 1.52])  # N, CA, C, O (Bondi), as the validity check uses


def _pairs(n_res):
    """Index arrays (atom i, atom j, ideal distance) over flattened (L * 4) atoms."""
    ii, jj, d0 = [], [], []
    for a, b, off, d in IDEAL:
        res = np.arange(n_res - off)
        ii.append(res * 4 + a)
        jj.append((res + off) * 4 + b)
        d0.append(np.full(len(res), d))
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(d0)


def _contacts(x, allowed_overlap):
    """Pairs of atoms of residues at least 2 apart that are closer than their radii allow (+0.5 Å
    margin), per frame: (frame, i, j, minimum distance)."""
    from scipy.spatial import cKDTree

    radius = np.tile(VDW_A, x.shape[1] // 4)
    reach = 2 * VDW_A.max() - allowed_overlap + 0.5
    f_idx, i_idx, j_idx = [], [], []
    for f in range(x.shape[0]):
        pairs = cKDTree(x[f]).query_pairs(reach, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = np.linalg.norm(x[f, i] - x[f, j], axis=-1)
        keep = (np.abs(i // 4 - j // 4) >= 2) & (d < radius[i] + radius[j] - allowed_overlap + 0.5)
        f_idx.append(np.full(keep.sum(), f))
        i_idx.append(i[keep])
        j_idx.append(j[keep])
    f_idx, i_idx, j_idx = np.concatenate(f_idx), np.concatenate(i_idx), np.concatenate(j_idx)
    return f_idx, i_idx, j_idx, radius[i_idx] + radius[j_idx] - allowed_overlap


def refine_backbones(xyz, restraint: float = 0.05, iterations: int = 300, rounds: int = 3,
                     allowed_overlap_A: float = 0.4) -> np.ndarray:
    """Refined copy of backbones (F, L, 4, 3) nm (N, CA, C, O): ideal bonds, angles and trans peptide
    planes, no backbone overlaps beyond ``allowed_overlap_A``, each atom held to its input position by
    a spring ``restraint`` times weaker than the geometry terms."""
    from scipy.optimize import minimize

    xyz = np.asarray(xyz, np.float32)
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3):
        raise MdllmError(f"expected backbones of shape (frames, residues, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise MdllmError("backbone coordinates contain NaN or infinite values")
    n_frames, n_res = xyz.shape[:2]
    x0 = xyz.reshape(n_frames, n_res * 4, 3).astype(np.float64) * 10.0  # Å
    ii, jj, d0 = _pairs(n_res)
    x = x0.copy()
    for _ in range(rounds):  # contacts are re-listed between rounds as atoms move
        cf, ci, cj, cmin = _contacts(x, allowed_overlap_A)

        def energy(flat):
            p = flat.reshape(x0.shape)
            grad = 2 * restraint * (p - x0)
            e = restraint * ((p - x0) ** 2).sum()
            v = p[:, ii] - p[:, jj]
            d = np.linalg.norm(v, axis=-1) + 1e-9
            e += ((d - d0) ** 2).sum()
            g = (2 * (d - d0) / d)[..., None] * v
            np.add.at(grad, (slice(None), ii), g)
            np.add.at(grad, (slice(None), jj), -g)
            if len(cf):
                v = p[cf, ci] - p[cf, cj]
                d = np.linalg.norm(v, axis=-1) + 1e-9
                short = np.minimum(d - cmin, 0.0)  # only overlaps push
                e += (short ** 2).sum()
                g = (2 * short / d)[:, None] * v
                np.add.at(grad, (cf, ci), g)
                np.add.at(grad, (cf, cj), -g)
            return e, grad.ravel()

        x = minimize(energy, x.ravel(), jac=True, method="L-BFGS-B",
                     options={"maxiter": iterations // rounds, "gtol": 1e-6}).x.reshape(x0.shape)
    return (x / 10.0).reshape(xyz.shape).astype(np.float32)
