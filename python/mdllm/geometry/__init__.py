"""Backbone geometry on the compiled core: frames, dihedrals, internal coordinates, NeRF, RMSD.

Inputs are backbones (F, L, 4, 3) or point sets (F, N, 3) in nanometres; a :class:`mdllm.Backbone`
is accepted wherever a backbone is. Shapes are checked and outputs allocated here; the kernels in
``mdllm._core`` run multi-threaded without the GIL.

The rest of the package's geometry lives here too: :mod:`~mdllm.geometry.vectors` (numpy angles,
dihedrals, NeRF placement, Kabsch), :mod:`~mdllm.geometry.ideal` (ideal backbone geometry),
:mod:`~mdllm.geometry.ramachandran` (allowed phi/psi regions), :mod:`~mdllm.geometry.projection` and
:mod:`~mdllm.geometry.refine`. This package imports nothing from :mod:`mdllm.evaluate` or
:mod:`mdllm.simulate` (tests/test_layering.py). :mod:`mdllm.geometry._numpy_ref` holds plain numpy
versions of the compiled kernels for tests and benchmarks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mdllm import _core
from mdllm.errors import MdllmError

set_num_threads = _core.set_num_threads
num_threads = _core.num_threads


class InternalCoordinates(NamedTuple):
    """Per residue (F, L, 4) arrays; see :func:`internal_coordinates` for the columns."""

    bonds: np.ndarray
    angles: np.ndarray
    torsions: np.ndarray


def as_backbone_array(xyz) -> np.ndarray:
    """(F, L, 4, 3) C-contiguous float32 from a Backbone, a (L, 4, 3) frame or an array."""
    xyz = getattr(xyz, "xyz", xyz)
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    if xyz.ndim == 3:
        xyz = xyz[None]
    if xyz.ndim != 4 or xyz.shape[2:] != (4, 3):
        raise MdllmError(f"expected backbone coordinates of shape (frames, residues, 4, 3), got {xyz.shape}")
    return xyz


def as_points(points) -> np.ndarray:
    """(F, N, 3) float32 from points or a backbone (its atoms flattened per frame)."""
    points = getattr(points, "xyz", points)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim == 4 and points.shape[-1] == 3:
        points = points.reshape(points.shape[0], -1, 3)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3:
        raise MdllmError(f"expected points of shape (frames, atoms, 3), got {points.shape}")
    return np.ascontiguousarray(points)


def rigid_frames(xyz):
    """Per-residue frames by Gram-Schmidt on N, CA, C.

    Returns rotations (F, L, 3, 3) whose columns are the local x (CA->C), y (towards N in the
    N-CA-C plane) and z axes, and translations (F, L, 3) (the CA positions).
    """
    xyz = as_backbone_array(xyz)
    f, l = xyz.shape[:2]
    rot = np.empty((f, l, 3, 3), np.float32)
    trans = np.empty((f, l, 3), np.float32)
    _core.rigid_frames(xyz, f, l, rot, trans)
    return rot, trans


def _frame_points(rotations, translations, points):
    rotations = np.ascontiguousarray(rotations, np.float32)
    translations = np.ascontiguousarray(translations, np.float32)
    points = np.ascontiguousarray(points, np.float32)
    if rotations.ndim != 4 or rotations.shape[2:] != (3, 3) or translations.shape != rotations.shape[:3]:
        raise MdllmError(
            f"rotations (F, L, 3, 3) and translations (F, L, 3) expected, got "
            f"{rotations.shape} and {translations.shape}"
        )
    if points.ndim != 4 or points.shape[:2] != rotations.shape[:2] or points.shape[-1] != 3:
        raise MdllmError(f"points must have shape (F, L, P, 3) matching the frames, got {points.shape}")
    return rotations, translations, points


def to_local(rotations, translations, points):
    """Coordinates of points (F, L, P, 3) in each residue's frame: R^T (p - t)."""
    rot, trans, pts = _frame_points(rotations, translations, points)
    out = np.empty_like(pts)
    _core.to_local(rot, trans, pts, pts.shape[0], pts.shape[1], pts.shape[2], out)
    return out


def to_global(rotations, translations, local):
    """Inverse of :func:`to_local`: R p + t."""
    rot, trans, pts = _frame_points(rotations, translations, local)
    out = np.empty_like(pts)
    _core.to_global(rot, trans, pts, pts.shape[0], pts.shape[1], pts.shape[2], out)
    return out


def dihedrals(xyz):
    """Backbone dihedrals phi, psi, omega in radians, each (F, L); NaN where undefined
    (phi of the first residue, psi and omega of the last)."""
    xyz = as_backbone_array(xyz)
    f, l = xyz.shape[:2]
    phi, psi, omega = (np.empty((f, l), np.float32) for _ in range(3))
    _core.dihedrals(xyz, f, l, phi, psi, omega)
    return phi, psi, omega


def internal_coordinates(xyz) -> InternalCoordinates:
    """Bond lengths (nm), bond angles and torsions (radians) that fix a backbone up to a rigid motion.

    Columns of each (F, L, 4) array, for residue i:
      bonds:    |N-CA|, |CA-C|, |C-N(i+1)|, |C-O|
      angles:   N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1), CA-C-O
      torsions: phi(i), psi(i), omega(i), N-CA-C-O
    Entries that need residue i+1 are NaN for the last residue; phi is NaN for the first.
    """
    xyz = as_backbone_array(xyz)
    f, l = xyz.shape[:2]
    bonds, angles, torsions = (np.empty((f, l, 4), np.float32) for _ in range(3))
    _core.internal_coordinates(xyz, f, l, bonds, angles, torsions)
    return InternalCoordinates(bonds, angles, torsions)


def bond_angles(xyz):
    """Backbone bond angles (F, L, 3) in radians: N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1)."""
    return internal_coordinates(xyz).angles[..., :3]


def nerf(bonds, angles, torsions):
    """Rebuild (F, L, 4, 3) backbones from internal coordinates (layout of
    :func:`internal_coordinates`). The first residue has N at the origin, CA on +x, C in the xy plane."""
    arrays = [np.ascontiguousarray(a, np.float32) for a in (bonds, angles, torsions)]
    shape = arrays[0].shape
    if len(shape) != 3 or shape[2] != 4 or any(a.shape != shape for a in arrays):
        raise MdllmError(f"bonds, angles and torsions must share a shape (F, L, 4), got {[a.shape for a in arrays]}")
    xyz = np.empty((shape[0], shape[1], 4, 3), np.float32)
    _core.nerf(*arrays, shape[0], shape[1], xyz)
    return xyz


def _reference_points(ref, n_points):
    """(N, 3) reference from points, a backbone frame (L, 4, 3), or the first frame of a batch."""
    ref = np.asarray(getattr(ref, "xyz", ref), np.float32)
    if ref.ndim == 3 and ref.shape[1:] == (4, 3) and ref.shape[0] * 4 == n_points:
        ref = ref.reshape(-1, 3)
    elif ref.ndim in (3, 4):
        ref = as_points(ref)[0]
    ref = np.ascontiguousarray(ref, np.float32)
    if ref.shape != (n_points, 3):
        raise MdllmError(f"reference has {ref.shape[0]} atoms, frames have {n_points}")
    return ref


def rmsd(points, ref):
    """RMSD (nm) of every frame to ``ref`` (N, 3) — or the first frame of a backbone/trajectory —
    after optimal superposition. Backbones are compared over all four atoms of every residue."""
    pts = as_points(points)
    ref = _reference_points(ref, pts.shape[1])
    out = np.empty(pts.shape[0], np.float32)
    _core.rmsd_to_reference(pts, pts.shape[0], pts.shape[1], ref, out)
    return out


def superpose(points, ref):
    """Copy of ``points`` optimally superposed onto ``ref``, and the RMSD of each frame."""
    original = getattr(points, "xyz", points)
    pts = as_points(points).copy()
    ref = _reference_points(ref, pts.shape[1])
    out = np.empty(pts.shape[0], np.float32)
    _core.superpose(pts, pts.shape[0], pts.shape[1], ref, out)
    return pts.reshape(np.shape(original) if np.ndim(original) > 2 else pts.shape), out


def pairwise_rmsd(points):
    """(F, F) RMSD in nm between all pairs of frames, after optimal superposition."""
    pts = as_points(points)
    out = np.empty((pts.shape[0], pts.shape[0]), np.float32)
    _core.pairwise_rmsd(pts, pts.shape[0], pts.shape[1], out)
    return out
