"""Restrained geometric refinement of decoded backbones.

A decoder predicts each residue's atoms with some independent error; even when the fold is right
(round-trip RMSD of 1-2 Å), bonds and angles are off by tenths of an Å, which breaks peptide bonds
for any validity check. ``refine_backbones`` moves the atoms as little as it can while pulling every
bond, every backbone angle and the trans peptide plane to Engh & Huber ideal geometry, and pushing apart
backbone atoms of non-neighbouring residues that overlap: a harmonic restraint network minimised by
L-BFGS. It is not a force field; the all-atom rebuild and OpenMM minimization of ``mdllm evaluate
--rebuild`` are.

Two backends minimise the same energy: the compiled core (default; mdllm/refine.hpp: its own L-BFGS,
each frame on its own until no gradient component exceeds ``GRADIENT_TOL``, frames in parallel without
the GIL) and the scipy reference here (all frames as one problem), which the tests compare it with.
``restraint_energy`` evaluates the energy itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mdllm.errors import MdllmError

N, CA, C, O = 0, 1, 2, 3


def _ideal_distances(omega: float = np.pi):
    """Every restrained pair (atom a of residue i, atom b of residue i + offset, ideal distance in Å):
    the bonds, the 1-3 distances that fix the bond angles, and the 1-4 distances across the peptide
    bond that make it planar (trans for omega = pi, cis for 0), measured on an ideal dipeptide built
    here from the Engh & Huber values the validity check uses."""
    from mdllm.geometry.ideal import IDEAL_ANGLES_DEG, IDEAL_BONDS_NM
    from mdllm.geometry.vectors import place

    b_n_ca, b_ca_c, b_c_n, b_c_o = (10.0 * b for b in IDEAL_BONDS_NM)
    a_n_ca_c, a_ca_c_n, a_c_n_ca, a_ca_c_o = np.deg2rad(IDEAL_ANGLES_DEG)

    ca0 = np.zeros(3)
    c0 = np.array([b_ca_c, 0.0, 0.0])
    n0 = b_n_ca * np.array([np.cos(a_n_ca_c), np.sin(a_n_ca_c), 0.0])
    n1 = place(n0, ca0, c0, b_c_n, a_ca_c_n, np.deg2rad(-45.0))  # psi: no distance below depends on it
    o0 = place(n1, ca0, c0, b_c_o, a_ca_c_o, np.pi)  # carbonyl O in the peptide plane
    ca1 = place(ca0, c0, n1, b_n_ca, a_c_n_ca, omega)
    atoms = {(N, 0): n0, (CA, 0): ca0, (C, 0): c0, (O, 0): o0, (N, 1): n1, (CA, 1): ca1}
    pairs = [
        ((N, 0), (CA, 0)),
        ((CA, 0), (C, 0)),
        ((C, 0), (O, 0)),
        ((C, 0), (N, 1)),  # bonds
        ((N, 0), (C, 0)),
        ((CA, 0), (O, 0)),
        ((CA, 0), (N, 1)),
        ((O, 0), (N, 1)),  # angles
        ((C, 0), (CA, 1)),
        ((CA, 0), (CA, 1)),
        ((O, 0), (CA, 1)),
    ]  # angle, plane
    return [(a, b, ib - ia, float(np.linalg.norm(atoms[(a, ia)] - atoms[(b, ib)]))) for (a, ia), (b, ib) in pairs]


IDEAL = _ideal_distances()
IDEAL_CIS = _ideal_distances(0.0)  # differs from IDEAL only in the two 1-4 distances across the peptide
VDW_A = np.array([1.55, 1.70, 1.70, 1.52])  # N, CA, C, O: ideal.VDW_RADII_NM in Å, as the validity check uses
CA_MIN_A = 3.0  # non-neighbouring CAs closer than this clash (the validity check's limit)
GEOMETRY_WEIGHT = (
    10.0  # per Å² of bond, 1-3 distance and overlap error; position restraint and Ramachandran terms are relative to 1
)

# The C++ backend's stop: no gradient component above this (energy per Å). tests/test_refine.py shows
# that its results then match the reference's within the stated tolerances.
GRADIENT_TOL = 1e-2
CPP_ITERATIONS = 1500  # per frame over all rounds; 600 (the reference's) left 1 frame in 10 short of its minimum


def _rama_fields():
    """Per residue class (general, glycine, proline, pre-proline): the distance (radians) from every
    cell of the phi x psi grid to the nearest allowed cell, its derivatives along phi and psi and its
    mixed derivative (central differences, periodic in both angles), and the bin width (radians)."""
    from scipy.ndimage import distance_transform_edt

    from mdllm.geometry import ramachandran

    table, bin_deg = ramachandran.grid()
    n = table.shape[1]
    fields = []
    for levels in table:
        tiled = np.tile(levels >= ramachandran.ALLOWED, (3, 3))  # periodic: the middle tile sees its wrap
        dist = distance_transform_edt(~tiled)[n : 2 * n, n : 2 * n] * np.deg2rad(bin_deg)
        fields.append(dist)
    dist = np.stack(fields)
    step = np.deg2rad(bin_deg)

    def central(a, axis):
        return (np.roll(a, -1, axis=axis) - np.roll(a, 1, axis=axis)) / (2 * step)

    d_phi = central(dist, 1)
    return dist, d_phi, central(dist, 2), central(d_phi, 2), float(step)


def _hermite(t):
    """Cubic Hermite basis on [0, 1] (value at 0, value at 1, slope at 0, slope at 1) and its derivative."""
    t2, t3 = t * t, t * t * t
    return (
        (2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2, t3 - 2 * t2 + t, t3 - t2),
        (6 * t2 - 6 * t, -6 * t2 + 6 * t, 3 * t2 - 4 * t + 1, 3 * t2 - 2 * t),
    )


def _interpolate(fields, cls, phi, psi):
    """The distance field at (phi, psi) radians of residues of class ``cls``, by bicubic Hermite
    interpolation between cell centres on the value and derivative grids of :func:`_rama_fields`:
    continuous with a continuous gradient, so that a minimiser's gradient stop means a minimum (a
    cell lookup would be a staircase). Returns the value and its derivatives along phi and psi."""
    dist, d_phi, d_psi, d_phipsi, step = fields
    n = dist.shape[1]
    u, v = (phi + np.pi) / step - 0.5, (psi + np.pi) / step - 0.5
    fu, fv = np.floor(u), np.floor(v)
    (hu, du), (hv, dv) = _hermite(u - fu), _hermite(v - fv)
    iu = (fu.astype(np.int64) % n, (fu.astype(np.int64) + 1) % n)
    iv = (fv.astype(np.int64) % n, (fv.astype(np.int64) + 1) % n)
    value = np.zeros(np.shape(phi))
    by_phi, by_psi = np.zeros_like(value), np.zeros_like(value)
    for a in (0, 1):
        for b in (0, 1):
            cell = (cls, iu[a], iv[b])
            # node data in grid units: value, slopes times the step, mixed slope times step squared
            terms = (
                (dist[cell], a, b),
                (d_phi[cell] * step, a + 2, b),
                (d_psi[cell] * step, a, b + 2),
                (d_phipsi[cell] * step * step, a + 2, b + 2),
            )
            for f, ku, kv in terms:
                value += f * hu[ku] * hv[kv]
                by_phi += f * du[ku] * hv[kv]
                by_psi += f * hu[ku] * dv[kv]
    return value, by_phi / step, by_psi / step


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
    from mdllm.geometry.vectors import dihedral

    n_frames, n_res = x.shape[0], x.shape[1] // 4
    omega = dihedral(x[:, 1:-4:4], x[:, 2:-4:4], x[:, 4::4], x[:, 5::4])  # CA C N+1 CA+1
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
    return GEOMETRY_WEIGHT * (diff**2).sum()


def _check(xyz, sequence):
    xyz = np.asarray(xyz, np.float32)
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3):
        raise MdllmError(f"expected backbones of shape (frames, residues, 4, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise MdllmError("backbone coordinates contain NaN or infinite values")
    if sequence is not None and len(sequence) != xyz.shape[1]:
        raise MdllmError(f"sequence has {len(sequence)} residues, the backbones {xyz.shape[1]}")
    if xyz.shape[1] < 2:
        raise MdllmError(f"refinement needs at least 2 residues, got {xyz.shape[1]}")
    return xyz


def refine_backbones(
    xyz,
    sequence: str | None = None,
    restraint: float = 0.02,
    rama: float = 20.0,
    iterations: int | None = None,
    rounds: int = 3,
    allowed_overlap_A: float = 0.4,
    backend: str = "cpp",
    gradient_tol: float = GRADIENT_TOL,
    progress: bool = False,
    stats: dict | None = None,
) -> np.ndarray:
    """Refined copy of backbones (F, L, 4, 3) nm (N, CA, C, O): ideal bonds, angles and trans peptide
    planes, no backbone overlaps beyond ``allowed_overlap_A`` (nor CAs closer than 3 Å), each atom held
    to its input position by a spring ``restraint`` times weaker than the geometry terms. With
    ``sequence``, residues whose (phi, psi) lie outside the allowed Ramachandran regions of their class
    are pulled to the nearest allowed region (weight ``rama`` per radian squared).

    ``backend`` 'cpp' (default) minimises every frame on its own in the compiled core, frames in
    parallel, each round stopping once no gradient component exceeds ``gradient_tol`` (energy per Å);
    'reference' is the scipy L-BFGS-B twin the tests compare it with (all frames as one problem).
    ``iterations`` caps the L-BFGS iterations over all rounds: default 600 for the reference (shared by
    all frames), 1500 per frame for C++ (a safety net: frames stop on the gradient after 100-700).
    ``progress`` shows a bar over frames; ``stats``, a dict, receives per-frame ``energy``,
    ``iterations``, ``evaluations`` (of the energy) and ``max_gradient`` (C++ backend)."""
    if backend == "reference":
        return _refine_reference(xyz, sequence, restraint, rama, iterations or 600, rounds, allowed_overlap_A)
    if backend != "cpp":
        raise MdllmError(f"unknown refinement backend '{backend}' (cpp or reference)")
    from mdllm import _core

    xyz = np.ascontiguousarray(_check(xyz, sequence))
    n_frames, n_res = xyz.shape[:2]
    args = _core_terms(sequence, n_res, rama)
    opts = _core_options(
        restraint, rama, CPP_ITERATIONS if iterations is None else iterations, rounds, allowed_overlap_A, gradient_tol
    )
    out = np.empty_like(xyz)
    energy, max_gradient = np.empty(n_frames), np.empty(n_frames)
    its, evals = np.empty(n_frames, np.int32), np.empty(n_frames, np.int32)
    # chunks of frames between updates of the bar; each chunk still runs on every thread
    chunk = max(4 * _core.num_threads(), 16) if progress else max(n_frames, 1)
    bar = None
    if progress and n_frames > chunk:
        from mdllm.progress import bar as progress_bar

        bar = progress_bar(total=n_frames, unit="frame", desc="refining")
    for b in range(0, n_frames, chunk):
        e = min(n_frames, b + chunk)
        _core.refine(
            xyz[b:e], e - b, n_res, *args, opts, out[b:e], energy[b:e], its[b:e], evals[b:e], max_gradient[b:e]
        )
        if bar:
            bar.update(e - b)
    if bar:
        bar.close()
    if stats is not None:
        stats.update(energy=energy, iterations=its, evaluations=evals, max_gradient=max_gradient)
    return out


def restraint_energy(
    xyz,
    input_xyz,
    sequence: str | None = None,
    restraint: float = 0.02,
    rama: float = 20.0,
    allowed_overlap_A: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """The energy that :func:`refine_backbones` minimises, at backbones ``xyz`` for atoms restrained to
    ``input_xyz`` (both (F, L, 4, 3) nm), with overlaps listed at ``xyz``: per-frame energy (F,) and
    its gradient (F, L, 4, 3) per Å (compiled core)."""
    from mdllm import _core

    xyz = np.ascontiguousarray(_check(xyz, sequence))
    input_xyz = np.ascontiguousarray(_check(input_xyz, sequence))
    if input_xyz.shape != xyz.shape:
        raise MdllmError(f"backbones of shape {xyz.shape} and their inputs of shape {input_xyz.shape} differ")
    n_frames, n_res = xyz.shape[:2]
    energy, grad = np.empty(n_frames), np.empty(xyz.shape, np.float64)
    _core.refine_energy(
        xyz,
        input_xyz,
        n_frames,
        n_res,
        *_core_terms(sequence, n_res, rama),
        _core_options(restraint, rama, 0, 1, allowed_overlap_A, GRADIENT_TOL),
        energy,
        grad,
    )
    return energy, grad


def _core_terms(sequence, n_res, rama):
    """The ideal pairs (P, 5), the Ramachandran class per residue, the four grids of
    :func:`_rama_fields` stacked (4, classes, n, n) and the bin width, as the core takes them (no
    classes: no Ramachandran term)."""
    pairs = np.array([(a, b, off, d, d_cis) for (a, b, off, d), (*_, d_cis) in zip(IDEAL, IDEAL_CIS)], np.float64)
    if sequence is None or rama <= 0 or n_res <= 2:
        return pairs, np.zeros(0, np.int32), np.zeros((0, 0, 0, 0)), 0.0
    from mdllm.geometry import ramachandran

    return (pairs, ramachandran.residue_classes(sequence).astype(np.int32), *_core_rama_grids())


def _core_options(restraint, rama, iterations, rounds, allowed_overlap_A, gradient_tol) -> dict:
    if rounds < 1 or iterations < 0:
        raise MdllmError(f"refinement needs rounds >= 1 and iterations >= 0, got {rounds} and {iterations}")
    return dict(
        geometry_weight=GEOMETRY_WEIGHT,
        restraint=restraint,
        rama=rama,
        radius_A=VDW_A.tolist(),
        allowed_overlap_A=allowed_overlap_A,
        ca_min_A=CA_MIN_A + 0.1,
        contact_margin_A=0.5,
        iterations=iterations,
        rounds=rounds,
        gradient_tol=gradient_tol,
    )


@lru_cache(maxsize=1)
def _rama_fields_cached():
    return _rama_fields()


@lru_cache(maxsize=1)
def _core_rama_grids():
    *grids, step = _rama_fields_cached()
    return np.ascontiguousarray(np.stack(grids)), step


def _energy_terms(x0, sequence, rama):
    """What the reference energy needs besides the coordinates: ideal pairs, Ramachandran terms."""
    ii, jj, d0 = _pairs(x0)
    if sequence is not None and rama > 0 and x0.shape[1] // 4 > 2:
        from mdllm.geometry import ramachandran

        n_res = x0.shape[1] // 4
        classes = ramachandran.residue_classes(sequence)[1:-1]  # residues with both phi and psi
        inner = np.arange(1, n_res - 1)
        phi_atoms = [(inner - 1) * 4 + C, inner * 4 + N, inner * 4 + CA, inner * 4 + C]
        psi_atoms = [inner * 4 + N, inner * 4 + CA, inner * 4 + C, (inner + 1) * 4 + N]
        rama_terms = (_rama_fields_cached(), classes, phi_atoms, psi_atoms)
    else:
        rama_terms = None
    return ii, jj, d0, rama_terms


def _energy(p, x0, ii, jj, d0, contacts, rama_terms, restraint, rama):
    """Reference energy and gradient of all frames p (F, L * 4, 3) Å together."""
    cf, ci, cj, cmin = contacts
    grad = 2 * restraint * (p - x0)
    e = restraint * ((p - x0) ** 2).sum()
    e += _springs(p, grad, (slice(None), ii), (slice(None), jj), d0)
    if len(cf):
        e += _springs(p, grad, (cf, ci), (cf, cj), cmin, push_only=True)
    if rama_terms is not None:
        fields, classes, phi_atoms, psi_atoms = rama_terms
        phi, dphi = _dihedral_and_gradient(*(p[:, k] for k in phi_atoms))
        psi, dpsi = _dihedral_and_gradient(*(p[:, k] for k in psi_atoms))
        dist, slope_phi, slope_psi = _interpolate(fields, np.broadcast_to(classes, phi.shape), phi, psi)
        dist = np.maximum(dist, 0.0)  # the cubic may dip below 0 inside the allowed region
        e += rama * (dist**2).sum()
        for atoms, grads, slope in ((phi_atoms, dphi, slope_phi), (psi_atoms, dpsi, slope_psi)):
            coef = (2 * rama * dist * slope)[..., None]
            for k, gk in zip(atoms, grads):
                np.add.at(grad, (slice(None), k), coef * gk)
    return e, grad


def _reference_energy(
    xyz, input_xyz, sequence=None, restraint=0.02, rama=20.0, allowed_overlap_A=0.4
) -> tuple[float, np.ndarray]:
    """The reference's total energy over all frames (contacts listed at ``xyz``) and its gradient (Å);
    the twin of :func:`restraint_energy`."""
    x0 = np.asarray(input_xyz, np.float32).reshape(len(input_xyz), -1, 3).astype(np.float64) * 10.0
    x = np.asarray(xyz, np.float32).reshape(x0.shape).astype(np.float64) * 10.0
    ii, jj, d0, rama_terms = _energy_terms(x0, sequence, rama)
    e, grad = _energy(x, x0, ii, jj, d0, _contacts(x, allowed_overlap_A), rama_terms, restraint, rama)
    return e, grad.reshape(np.shape(xyz))


def _refine_reference(xyz, sequence, restraint, rama, iterations, rounds, allowed_overlap_A) -> np.ndarray:
    """The tested reference: scipy's L-BFGS-B on all frames as one problem."""
    from scipy.optimize import minimize

    xyz = _check(xyz, sequence)
    n_frames, n_res = xyz.shape[:2]
    x0 = xyz.reshape(n_frames, n_res * 4, 3).astype(np.float64) * 10.0  # Å
    ii, jj, d0, rama_terms = _energy_terms(x0, sequence, rama)
    x = x0.copy()
    for _ in range(rounds):  # contacts are re-listed between rounds as atoms move
        contacts = _contacts(x, allowed_overlap_A)

        def energy(flat):
            e, grad = _energy(flat.reshape(x0.shape), x0, ii, jj, d0, contacts, rama_terms, restraint, rama)
            return e, grad.ravel()

        x = minimize(
            energy, x.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": iterations // rounds, "gtol": 1e-6}
        ).x.reshape(x0.shape)
    return (x / 10.0).reshape(xyz.shape).astype(np.float32)
