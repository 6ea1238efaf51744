"""Training losses, all in Angstrom: FAPE, aligned RMSD and local bond geometry."""

from __future__ import annotations

import torch

from mdllm.tokenizer.features import frames_from_backbone

NM_TO_A = 10.0


def fape(xyz_hat, rot_hat, t_hat, xyz, mask, clamp_nm=1.0):
    """Frame-aligned point error: every atom seen from every residue frame, predicted vs true."""
    rot, t = frames_from_backbone(xyz)
    b, l = mask.shape
    pts_hat = xyz_hat.reshape(b, 1, l * 4, 3) - t_hat[:, :, None, :]
    pts = xyz.reshape(b, 1, l * 4, 3) - t[:, :, None, :]
    loc_hat = torch.einsum("bipd,bide->bipe", pts_hat, rot_hat)
    loc = torch.einsum("bipd,bide->bipe", pts, rot)
    err = torch.sqrt(((loc_hat - loc) ** 2).sum(-1) + 1e-8).clamp(max=clamp_nm)
    pair = mask[:, :, None] & mask.repeat_interleave(4, dim=1)[:, None, :]
    return NM_TO_A * (err * pair).sum() / pair.sum()


@torch.no_grad()
def kabsch(mobile, ref, weights):
    """Rotation R and translation so that mobile @ R.T + t best fits ref (per batch item)."""
    w = weights[..., None].to(torch.float64)
    m, r = mobile.to(torch.float64), ref.to(torch.float64)
    n = w.sum(1, keepdim=True)
    mc = (m * w).sum(1, keepdim=True) / n
    rc = (r * w).sum(1, keepdim=True) / n
    h = ((m - mc) * w).transpose(1, 2) @ (r - rc)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    diag = torch.ones_like(h[..., 0])
    diag[:, 2] = d
    rot = vt.transpose(1, 2) @ torch.diag_embed(diag) @ u.transpose(1, 2)
    trans = rc - mc @ rot.transpose(1, 2)
    return rot.to(mobile.dtype), trans.to(mobile.dtype)


def aligned_rmsd(xyz_hat, xyz, mask):
    """Per-item RMSD (Angstrom) over all four atoms after superposing the prediction on the truth
    (the superposition itself carries no gradient)."""
    b, l = mask.shape
    w = mask.repeat_interleave(4, dim=1).to(xyz.dtype)
    p, q = xyz_hat.reshape(b, l * 4, 3), xyz.reshape(b, l * 4, 3)
    rot, trans = kabsch(p, q, w)
    p = p @ rot.transpose(1, 2) + trans
    msd = (((p - q) ** 2).sum(-1) * w).sum(1) / w.sum(1)
    return NM_TO_A * torch.sqrt(msd + 1e-10)


def local_geometry(xyz_hat, xyz, mask):
    """Mean |distance error| (Angstrom) over all atom pairs within residues i and i+1: bond lengths,
    bond angles and the peptide plane, so that the decoded chain is locally chemical."""
    b, l = mask.shape
    if l < 2:
        return xyz_hat.sum() * 0
    pair_hat = torch.cat([xyz_hat[:, :-1], xyz_hat[:, 1:]], dim=2)  # (B, L-1, 8, 3)
    pair = torch.cat([xyz[:, :-1], xyz[:, 1:]], dim=2)
    iu = torch.triu_indices(8, 8, 1)
    d_hat = torch.linalg.norm(pair_hat[:, :, iu[0]] - pair_hat[:, :, iu[1]] + 1e-12, dim=-1)
    d = torch.linalg.norm(pair[:, :, iu[0]] - pair[:, :, iu[1]], dim=-1)
    m = (mask[:, :-1] & mask[:, 1:]).to(d.dtype)[..., None]
    return NM_TO_A * ((d_hat - d).abs() * m).sum() / (m.sum() * d.shape[-1])


def ca_distance(xyz_hat, xyz, mask):
    """Mean |CA-CA distance error| (Angstrom) over all residue pairs: unclamped, so the global
    layout gets a gradient even while every atom is still far from its place."""
    ca_hat, ca = xyz_hat[..., 1, :], xyz[..., 1, :]
    d_hat = torch.sqrt(((ca_hat[:, :, None] - ca_hat[:, None, :]) ** 2).sum(-1) + 1e-10)
    d = torch.sqrt(((ca[:, :, None] - ca[:, None, :]) ** 2).sum(-1) + 1e-10)
    pair = (mask[:, :, None] & mask[:, None, :]).to(d.dtype)
    return NM_TO_A * ((d_hat - d).abs() * pair).sum() / pair.sum()
