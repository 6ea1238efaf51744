"""The torsion-codebook tokenizer's PyTorch reference (``TorsionTokenModel``): one learned (omega, phi,
psi) code per residue, decoded exactly by building the chain from ideal bonds and angles, and encoded by
closed-loop beam search. ``mdllm.tokenizer.torsion.TorsionTokenizer`` is the user's class.

A plain chain of quantised torsions drifts: each rounding error swings everything downstream. Here the
encoder decodes as it goes and picks, residue by residue, the codes whose rebuilt atoms land closest to
the real ones *given the errors already made*, so later codes correct earlier ones (analysis by
synthesis, as in error-feedback quantisation). The decoder is therefore a fixed, deterministic chain
builder that sees only the tokens, and every decoded backbone has ideal bond lengths and angles.

The algorithm, step by step, is written out in docs/torsion_tokenizer_spec.md; the C++ core
(``cpp/src/core/torsion_tokenizer.cpp``) follows the same arithmetic in double precision, so both give
the same tokens. This PyTorch version is the reference and the trainer's tool; it batches frames,
hypotheses and codes, but runs the residues one after another.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mdllm.errors import MdllmError


def _norm(v):
    return torch.sqrt((v * v).sum(-1, keepdim=True))


def place(a, b, c, length, angle, cos_t, sin_t):
    """NeRF: the atom d with |cd| = length, angle bcd = angle and torsion abcd = t (given as cos, sin)."""
    bc = c - b
    bc = bc / _norm(bc)
    n = torch.linalg.cross(b - a, bc, dim=-1)
    n = n / _norm(n)
    m = torch.linalg.cross(n, bc, dim=-1)
    radial = length * math.sin(angle)
    return c + (-length * math.cos(angle)) * bc + (radial * cos_t)[..., None] * m + (radial * sin_t)[..., None] * n


def start_frame(g, like):
    """N, CA, C of residue 0 in the canonical frame (N at the origin, CA on x, C in the xy plane)."""
    b_nca, b_cac, a_ncac = g[0], g[1], g[4]
    n = torch.zeros(3, dtype=torch.float64, device=like.device)
    ca = torch.tensor([b_nca, 0.0, 0.0], dtype=torch.float64, device=like.device)
    c = ca + b_cac * torch.tensor([-math.cos(a_ncac), math.sin(a_ncac), 0.0], dtype=torch.float64, device=like.device)
    return n, ca, c


def residue_frame_coordinates(y):
    """(F, L, 4, 3) Angstrom -> the same atoms in the frame of residue 0 (N origin, CA on x, C in xy)."""
    o = y[:, 0, 0]
    e1 = y[:, 0, 1] - o
    e1_len = _norm(e1)
    v = y[:, 0, 2] - y[:, 0, 1]
    e2 = v - (v * (e1 / e1_len)).sum(-1, keepdim=True) * (e1 / e1_len)
    e2_len = _norm(e2)
    if bool((e1_len < 1e-6).any()) or bool((e2_len < 1e-6).any()):
        raise MdllmError("degenerate first residue (N, CA, C coincide or are collinear)")
    e1, e2 = e1 / e1_len, e2 / e2_len
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    rel = y - o[:, None, None, :]
    return torch.stack([(rel * e[:, None, None, :]).sum(-1) for e in (e1, e2, e3)], -1)


class TorsionTokenModel(torch.nn.Module):
    """codebook (K, 3) radians (omega, phi, psi); geometry (8,) as GEOMETRY_NAMES; beam width B."""

    def __init__(self, codebook, geometry, beam_width: int = 4):
        super().__init__()
        self.codebook = torch.nn.Parameter(torch.as_tensor(np.asarray(codebook), dtype=torch.float32))
        self.register_buffer("geometry", torch.as_tensor(np.asarray(geometry), dtype=torch.float32))
        self.beam_width = int(beam_width)

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def _trig(self):
        # numpy's cos and sin round like the C++ core's std::cos and std::sin (torch's can differ in
        # the last bit), and a last-bit difference could flip a near-tie of the beam
        cb = self.codebook.detach().double().numpy()
        return (torch.from_numpy(np.cos(cb)), torch.from_numpy(np.sin(cb)), [float(x) for x in self.geometry.double()])

    @torch.no_grad()
    def decode(self, tokens):
        """tokens (F, L) -> float32 (F, L, 4, 3) nm in the canonical frame of residue 0."""
        tokens = torch.as_tensor(tokens, dtype=torch.int64)
        cos, sin, g = self._trig()
        b_nca, b_cac, b_cn, b_co, a_ncac, a_cacn, a_cnca, a_caco = g
        f, length = tokens.shape
        n0, ca0, c0 = start_frame(g, cos)
        out = torch.zeros(f, length, 4, 3, dtype=torch.float64)
        out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = n0, ca0, c0
        for i in range(length):
            ci, si = cos[tokens[:, i]], sin[tokens[:, i]]
            if i > 0:
                out[:, i, 1] = place(
                    out[:, i - 1, 1], out[:, i - 1, 2], out[:, i, 0], b_nca, a_cnca, ci[:, 0], si[:, 0]
                )
                out[:, i, 2] = place(out[:, i - 1, 2], out[:, i, 0], out[:, i, 1], b_cac, a_ncac, ci[:, 1], si[:, 1])
            n, ca, c = out[:, i, 0], out[:, i, 1], out[:, i, 2]
            out[:, i, 3] = place(n, ca, c, b_co, a_caco, -ci[:, 2], -si[:, 2])
            if i + 1 < length:
                out[:, i + 1, 0] = place(n, ca, c, b_cn, a_cacn, ci[:, 2], si[:, 2])
        return (out * 0.1).float()

    @torch.no_grad()
    def encode(self, xyz):
        """xyz (F, L, 4, 3) nm -> int64 tokens (F, L), by closed-loop beam search."""
        y = residue_frame_coordinates(torch.as_tensor(xyz).double() * 10.0)
        cos, sin, g = self._trig()
        b_nca, b_cac, b_cn, b_co, a_ncac, a_cacn, a_cnca, a_caco = g
        f, length = y.shape[:2]
        k, beam = self.codebook_size, self.beam_width
        n0, ca0, c0 = start_frame(g, cos)
        # hypotheses (F, H, 3): the previous CA and C and this residue's N of each kept partial chain
        ca_p, c_p, n_h = ca0.expand(f, 1, 3), c0.expand(f, 1, 3), n0.expand(f, 1, 3)
        cost = torch.zeros(f, 1, dtype=torch.float64)
        parents, chosen = [], []
        for i in range(length):
            h = cost.shape[1]
            n_k = n_h[:, :, None, :].expand(f, h, k, 3)
            if i == 0:
                ca = ca0.expand(f, h, k, 3)
                c = c0.expand(f, h, k, 3)
                err = torch.zeros(f, h, k, dtype=torch.float64)
            else:
                ca = place(ca_p[:, :, None, :], c_p[:, :, None, :], n_k, b_nca, a_cnca, cos[:, 0], sin[:, 0])
                c = place(c_p[:, :, None, :], n_k, ca, b_cac, a_ncac, cos[:, 1], sin[:, 1])
                err = _sq(ca - y[:, None, None, i, 1]) + _sq(c - y[:, None, None, i, 2])
            o = place(n_k, ca, c, b_co, a_caco, -cos[:, 2], -sin[:, 2])
            err = err + _sq(o - y[:, None, None, i, 3])
            if i + 1 < length:
                n_next = place(n_k, ca, c, b_cn, a_cacn, cos[:, 2], sin[:, 2])
                err = err + _sq(n_next - y[:, None, None, i + 1, 0])
            else:
                n_next = n_k
            total = (cost[:, :, None] + err).reshape(f, h * k)
            # the smallest totals, ties to the smaller candidate index (a stable sort keeps index order)
            keep = torch.sort(total, dim=1, stable=True).indices[:, :beam]
            parent, token = keep // k, keep % k
            parents.append(parent)
            chosen.append(token)
            pick = keep[..., None].expand(-1, -1, 3)
            ca_p = torch.gather(ca.reshape(f, h * k, 3), 1, pick)
            c_p = torch.gather(c.reshape(f, h * k, 3), 1, pick)
            n_h = torch.gather(n_next.reshape(f, h * k, 3), 1, pick)
            cost = torch.gather(total, 1, keep)
        tokens = torch.zeros(f, length, dtype=torch.int64)
        best = torch.zeros(f, dtype=torch.int64)
        rows = torch.arange(f)
        for i in range(length - 1, -1, -1):  # back along the winning hypothesis
            tokens[:, i] = chosen[i][rows, best]
            best = parents[i][rows, best]
        return tokens


def _sq(d):
    return (d * d).sum(-1)
