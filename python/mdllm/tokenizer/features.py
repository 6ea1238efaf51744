"""Rotation- and translation-invariant per-residue features, in PyTorch.

Conventions follow :mod:`mdllm.geometry`: a residue's frame has origin CA and columns e1 (CA->C),
e2 (towards N in the N-CA-C plane), e3 = e1 x e2; local coordinates are R^T (p - CA). The C++ core
computes the same features with the same formulas (cpp/src/core/tokenizer.cpp).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def _normalize(v):
    return v / torch.clamp(torch.linalg.norm(v, dim=-1, keepdim=True), min=EPS)


def frames_from_backbone(xyz):
    """xyz (..., L, 4, 3) -> rotations (..., L, 3, 3) (columns e1, e2, e3) and origins (..., L, 3)."""
    n, ca, c = xyz[..., 0, :], xyz[..., 1, :], xyz[..., 2, :]
    e1 = _normalize(c - ca)
    u = n - ca
    e2 = _normalize(u - (u * e1).sum(-1, keepdim=True) * e1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1), ca


def _dihedral_sin_cos(a, b, c, d):
    b1, b2, b3 = b - a, c - b, d - c
    n1 = torch.cross(b1, b2, dim=-1)
    n2 = torch.cross(b2, b3, dim=-1)
    m1 = torch.cross(n1, _normalize(b2), dim=-1)
    x = (n1 * n2).sum(-1)
    y = (m1 * n2).sum(-1)
    r = torch.clamp(torch.sqrt(x * x + y * y), min=EPS)
    return y / r, x / r


def dihedral_features(xyz):
    """(B, L, 4, 3) -> (B, L, 6): sin, cos of phi, psi, omega; zeros where undefined (chain ends)."""
    n, ca, c = xyz[..., 0, :], xyz[..., 1, :], xyz[..., 2, :]
    out = torch.zeros(*xyz.shape[:-2], 6, dtype=xyz.dtype, device=xyz.device)
    if xyz.shape[-3] < 2:
        return out
    s, co = _dihedral_sin_cos(c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :], c[..., 1:, :])  # phi(i>0)
    out[..., 1:, 0], out[..., 1:, 1] = s, co
    s, co = _dihedral_sin_cos(n[..., :-1, :], ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])  # psi(i<L-1)
    out[..., :-1, 2], out[..., :-1, 3] = s, co
    s, co = _dihedral_sin_cos(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :])  # omega
    out[..., :-1, 4], out[..., :-1, 5] = s, co
    return out


def neighbour_index(ca, k, mask=None):
    """Indices (B, L, k') of the k nearest residues by CA distance (self first); k' = min(k, L).
    Padded residues (mask False) are never chosen while real ones remain."""
    d = torch.cdist(ca, ca)
    if mask is not None:
        d = d.masked_fill(~mask[:, None, :], float("inf"))
    k = min(k, ca.shape[-2])
    # stable sort: equal distances resolve by residue index, as in the C++ core
    return torch.sort(d, dim=-1, stable=True).indices[..., :k]


def edge_features(xyz, nbr, n_rbf, rbf_max_nm):
    """Per edge (i, j = nbr[i, m]): j's N, CA, C, O in i's frame (12), R_i^T R_j (9) and an RBF
    expansion of the CA-CA distance (n_rbf). Returns (B, L, k, 21 + n_rbf)."""
    rot, ca = frames_from_backbone(xyz)
    b, l, k = nbr.shape
    bidx = torch.arange(b, device=xyz.device)[:, None, None]
    xyz_j = xyz[bidx, nbr]  # (B, L, k, 4, 3)
    rot_j = rot[bidx, nbr]  # (B, L, k, 3, 3)
    rel = xyz_j - ca[:, :, None, None, :]
    local = torch.einsum("blkpd,blde->blkpe", rel, rot)
    rel_rot = torch.einsum("bldi,blkdj->blkij", rot, rot_j)
    dist = torch.linalg.norm(rel[:, :, :, 1], dim=-1)
    centres = torch.linspace(0.0, rbf_max_nm, n_rbf, device=xyz.device, dtype=xyz.dtype)
    width = rbf_max_nm / n_rbf
    rbf = torch.exp(-(((dist[..., None] - centres) / width) ** 2))
    return torch.cat([local.reshape(b, l, k, 12), rel_rot.reshape(b, l, k, 9), rbf], dim=-1)


def node_features(xyz):
    """Per residue: dihedral sin/cos (6) and the O position in the residue's own frame (3)."""
    rot, ca = frames_from_backbone(xyz)
    o_local = torch.einsum("bld,blde->ble", xyz[..., 3, :] - ca, rot)
    return torch.cat([dihedral_features(xyz), o_local], dim=-1)
