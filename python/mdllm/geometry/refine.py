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


def _ideal_distances(omega: float = np.pi):
    """Every restrained pair (atom a of residue i, atom b of residue i + offset, ideal distance in Å):
    the bonds, the 1-3 distances that fix the bond angles, and the 1-4 distances across the peptide
    bond that make it planar (trans for omega = pi, cis for 0), measured on an ideal dipeptide built
    here from the Engh & Huber values the validity check uses."""
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
    ca1 = place(ca0, c0, n1, b_n_ca, a_c_n_ca, omega)
    atoms = {(N, 0): n0, (CA, 0): ca0, (C, 0): c0, (O, 0): o0, (N, 1): n1, (CA, 1): ca1}
    pairs = [((N, 0), (CA, 0)), ((CA, 0), (C, 0)), ((C, 0), (O, 0)), ((C, 0), (N, 1)),   # bonds
             ((N, 0), (C, 0)), ((CA, 0), (O, 0)), ((CA, 0), (N, 1)), ((O, 0), (N, 1)),   # angles
             ((C, 0), (CA, 1)), ((CA, 0), (CA, 1)), ((O, 0), (CA, 1))]                   # angle, plane
    return [(a, b, ib - ia, float(np.linalg.norm(atoms[(a, ia)] - atoms[(b, ib)]))) for (a, ia), (b, ib) in pairs]


IDEAL = _ideal_distances()
IDEAL_CIS = _ideal_distances(0.0)  # differs from IDEAL only in the two 1-4 distances across the peptide
VDW_A = np.array([1.55, 1.70, 1.70, 1.52])  # N, CA, C, O (Bondi), as the validity check uses
CA_MIN_A = 3.0  # non-neighbouring CAs closer than this clash (the validity check's limit)
GEOMETRY_WEIGHT = 10.0  # per Å² of bond, 1-3 distance and overlap error; position restraint and Ramachandran terms are relative to 1


def _rama_fields():
    """Per residue class (general, glycine, proline, pre-proline): the distance (radians) from every
    cell of the phi x psi grid to the nearest allowed cell, and its gradient; periodic in both angles."""
    from scipy.ndimage import distance_transform_edt

    from mdllm.evaluate import ramachandran

    table, bin_deg = ramachandran.grid()
    n = table.shape[1]
    fields = []
    for levels in table:
        tiled = np.tile(levels >= ramachandran.ALLOWED, (3, 3))  # periodic: the middle tile sees its wrap
        dist = distance_transform_edt(~tiled)[n:2 * n, n:2 * n] * np.deg2rad(bin_deg)
        fields.append(dist)
    dist = np.stack(fields)
    step = np.deg2rad(bin_deg)
    d_phi = (np.roll(dist, -1, axis=1) - np.roll(dist, 1, axis=1)) / (2 * step)
    d_psi = (np.roll(dist, -1, axis=2) - np.roll(dist, 1, axis=2)) / (2 * step)
    return dist, d_phi, d_psi, step


def _dihedral_and_gradient(p0, p1, p2, p3):
    """Dihedral angles (radians, IUPAC sign) of point quadruples (..., 3) and their gradients with
    respect to each point (Blondel & Karplus 1996)."""
    f, g, h = p0 - p1, p1 - p2, p3 - p2
    a, b = np.cross(f, g), np.cross(h, g)
    g_norm = np.linalg.norm(g, axis=-1, keepdims=True) + 1e-9
    a2 = (a * a).sum(-1, keepdims=True) + 1e-9
    b2 = (b * b).sum(-1, keepdims=True) + 1e-9
    angle = np.arctan2((np.cross(b, a) * g).sum(-1) / g_norm[..., 0], (a * b).sum(-1))
    fg, hg = (f * g).sum(-1, keepdims=True), (h * g).sum(-1, keepdims=True)
    d0 = -g_norm / a2 * a
    d3 = g_norm / b2 * b
    d1 = -d0 + fg / (a2 * g_norm) * a - hg / (b2 * g_norm) * b
    d2 = -d3 - fg / (a2 * g_norm) * a + hg / (b2 * g_norm) * b
    return angle, (d0, d1, d2, d3)


def _pairs(x):
    """Index arrays (atom i, atom j) over flattened (L * 4) atoms and the ideal distances (F, pairs):
    a peptide bond keeps the cis or trans form it has in the input (cis-prolines exist)."""
    from mdllm.geometry import numpy_ref

    n_frames, n_res = x.shape[0], x.shape[1] // 4
    omega = numpy_ref.dihedral(x[:, 1:-4:4], x[:, 2:-4:4], x[:, 4::4], x[:, 5::4])  # CA C N+1 CA+1
    cis = np.abs(omega) < np.pi / 2  # (F, L-1)
    ii, jj, d0 = [], [], []
    for (a, b, off, d), (*_, d_cis) in zip(IDEAL, IDEAL_CIS):
        res = np.arange(n_res - off)
        ii.append(res * 4 + a)
        jj.append((res + off) * 4 + b)
        d0.append(np.where(cis, d_cis, d) if off else np.full((n_frames, len(res)), d))
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(d0, axis=1)


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
    limit = radius[i_idx] + radius[j_idx] - allowed_overlap
    both_ca = (i_idx % 4 == CA) & (j_idx % 4 == CA)
    limit[both_ca] = np.maximum(limit[both_ca], CA_MIN_A + 0.1)
    return f_idx, i_idx, j_idx, limit


def _springs(p, grad, a, b, target, push_only=False) -> float:
    """Harmonic springs (weight GEOMETRY_WEIGHT) between atoms p[a] and p[b] toward ``target`` Å;
    adds their gradient to ``grad`` and returns their energy. ``push_only``: only overlaps count."""
    v = p[a] - p[b]
    d = np.linalg.norm(v, axis=-1) + 1e-9
    diff = d - target
    if push_only:
        diff = np.minimum(diff, 0.0)
    g = (2 * GEOMETRY_WEIGHT * diff / d)[..., None] * v
    np.add.at(grad, a, g)
    np.add.at(grad, b, -g)
    return GEOMETRY_WEIGHT * (diff ** 2).sum()


def refine_backbones(xyz, sequence: str | None = None, restraint: float = 0.02, rama: float = 20.0,
                     iterations: int = 600, rounds: int = 3, allowed_overlap_A: float = 0.4) -> np.ndarray:
    """Refined copy of backbones (F, L, 4, 3) nm (N, CA, C, O): ideal bonds, angles and trans peptide
    planes, no backbone overlaps beyond ``allowed_overlap_A`` (nor CAs closer than 3 Å), each atom held
    to its input position by a spring ``restraint`` times weaker than the geometry terms. With
    ``sequence``, residues whose (phi, psi) lie outside the allowed Ramachandran regions of their class
    are pulled to the nearest allowed region (weight ``rama`` per radian squared)."""
    from scipy.optimize import minimize

    xyz = np.asarray(xyz, np.float32)
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3):
        raise MdllmError(f"expected backbones of shape (frames, residues, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise MdllmError("backbone coordinates contain NaN or infinite values")
    n_frames, n_res = xyz.shape[:2]
    x0 = xyz.reshape(n_frames, n_res * 4, 3).astype(np.float64) * 10.0  # Å
    ii, jj, d0 = _pairs(x0)
    if sequence is not None and len(sequence) != n_res:
        raise MdllmError(f"sequence has {len(sequence)} residues, the backbones {n_res}")
    if sequence is not None and rama > 0 and n_res > 2:
        from mdllm.evaluate import ramachandran

        field, d_phi, d_psi, step = _rama_fields()
        classes = ramachandran.residue_classes(sequence)[1:-1]  # residues with both phi and psi
        inner = np.arange(1, n_res - 1)
        phi_atoms = [(inner - 1) * 4 + C, inner * 4 + N, inner * 4 + CA, inner * 4 + C]
        psi_atoms = [inner * 4 + N, inner * 4 + CA, inner * 4 + C, (inner + 1) * 4 + N]
    else:
        rama = 0.0
    x = x0.copy()
    for _ in range(rounds):  # contacts are re-listed between rounds as atoms move
        cf, ci, cj, cmin = _contacts(x, allowed_overlap_A)

        def energy(flat):
            p = flat.reshape(x0.shape)
            grad = 2 * restraint * (p - x0)
            e = restraint * ((p - x0) ** 2).sum()
            e += _springs(p, grad, (slice(None), ii), (slice(None), jj), d0)
            if len(cf):
                e += _springs(p, grad, (cf, ci), (cf, cj), cmin, push_only=True)
            if rama:
                phi, dphi = _dihedral_and_gradient(*(p[:, k] for k in phi_atoms))
                psi, dpsi = _dihedral_and_gradient(*(p[:, k] for k in psi_atoms))
                i = np.clip(((phi + np.pi) // step).astype(np.int64), 0, field.shape[1] - 1)
                j = np.clip(((psi + np.pi) // step).astype(np.int64), 0, field.shape[1] - 1)
                cls = np.broadcast_to(classes, i.shape)
                dist = field[cls, i, j]
                e += rama * (dist ** 2).sum()
                for atoms, grads, slope in ((phi_atoms, dphi, d_phi[cls, i, j]), (psi_atoms, dpsi, d_psi[cls, i, j])):
                    coef = (2 * rama * dist * slope)[..., None]
                    for k, gk in zip(atoms, grads):
                        np.add.at(grad, (slice(None), k), coef * gk)
            return e, grad.ravel()

        x = minimize(energy, x.ravel(), jac=True, method="L-BFGS-B",
                     options={"maxiter": iterations // rounds, "gtol": 1e-6}).x.reshape(x0.shape)
    return (x / 10.0).reshape(xyz.shape).astype(np.float32)
