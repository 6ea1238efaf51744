"""The FoldToken-style autoencoder: invariant encoder -> finite scalar quantizer -> token decoder.

Every operation is one the C++ core re-implements (Linear, LayerNorm, SiLU, softmax attention with a
relative-position bias, kNN gather, rounding), so a plain safetensors file of these parameters fully
defines the tokenizer. The decoder sees only the tokens and is deterministic: no random initial
coordinates and no sampling.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from mdllm.tokenizer.config import TokenizerConfig
from mdllm.tokenizer.features import edge_features, neighbour_index, node_features

LN_EPS = 1e-5


class Attention(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.heads, self.max_rel = cfg.heads, cfg.max_rel_pos
        self.q_proj = nn.Linear(cfg.dim, cfg.dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim)
        # one learned bias per head and clipped relative position j - i
        self.rel_pos_bias = nn.Parameter(torch.zeros(cfg.heads, 2 * cfg.max_rel_pos + 1))

    def forward(self, x, mask):
        b, l, d = x.shape
        h, dh = self.heads, d // self.heads
        q = self.q_proj(x).view(b, l, h, dh).transpose(1, 2)
        k = self.k_proj(x).view(b, l, h, dh).transpose(1, 2)
        v = self.v_proj(x).view(b, l, h, dh).transpose(1, 2)
        pos = torch.arange(l, device=x.device)
        rel = torch.clamp(pos[None, :] - pos[:, None], -self.max_rel, self.max_rel) + self.max_rel
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + self.rel_pos_bias[:, rel]
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, l, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x); x + ffn(LN x)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim)

    def forward(self, x, mask):
        x = x + self.attn(self.attn_norm(x), mask)
        return x + self.down_proj(F.silu(self.up_proj(self.ffn_norm(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.edge_in = nn.Linear(21 + cfg.n_rbf, cfg.dim)
        self.seq_sep = nn.Embedding(2 * cfg.max_seq_sep + 1, cfg.dim)
        self.edge_out = nn.Linear(cfg.dim, cfg.dim)
        self.node_in = nn.Linear(9, cfg.dim)
        self.in_norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_layers))
        self.out_norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.to_latent = nn.Linear(cfg.dim, len(cfg.levels))

    def forward(self, xyz, mask):
        cfg = self.cfg
        nbr = neighbour_index(xyz[..., 1, :], cfg.k_neighbours, mask)
        ef = edge_features(xyz, nbr, cfg.n_rbf, cfg.rbf_max_nm)
        pos = torch.arange(xyz.shape[1], device=xyz.device)
        sep = torch.clamp(nbr - pos[None, :, None], -cfg.max_seq_sep, cfg.max_seq_sep) + cfg.max_seq_sep
        e = F.silu(self.edge_in(ef) + self.seq_sep(sep))
        e = F.silu(self.edge_out(e))
        valid = torch.gather(mask[:, None, :].expand(-1, mask.shape[1], -1), 2, nbr).to(e.dtype)
        agg = (e * valid[..., None]).sum(2) / valid.sum(2, keepdim=True).clamp(min=1.0)
        x = self.in_norm(self.node_in(node_features(xyz)) + agg)
        for block in self.blocks:
            x = block(x, mask)
        return self.to_latent(self.out_norm(x))


class FSQ(nn.Module):
    """Finite scalar quantization: each latent digit is squashed to [0, levels-1] and rounded.
    The whole grid is the codebook, so every code stays reachable and nothing needs re-initialising."""

    def __init__(self, levels):
        super().__init__()
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        radix = [1]
        for l in levels[:-1]:
            radix.append(radix[-1] * l)
        self.register_buffer("radix", torch.tensor(radix, dtype=torch.int64), persistent=False)

    def digits_continuous(self, z):
        return torch.sigmoid(z) * (self.levels - 1)

    def quantize(self, z):
        """Latents -> (straight-through digits, token ids)."""
        u = self.digits_continuous(z)
        q = torch.round(u)
        tokens = (q.to(torch.int64) * self.radix).sum(-1)
        return u + (q - u).detach(), tokens

    def digits(self, tokens):
        return (tokens[..., None] // self.radix) % self.levels.to(torch.int64)

    def embed(self, digits):
        """Digits (float) -> decoder input in [-1, 1]."""
        return digits / (self.levels - 1) * 2 - 1


class Decoder(nn.Module):
    """Tokens -> per-residue frame (6D rotation, translation) and local N, C, O -> N, CA, C, O."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.from_code = nn.Linear(len(cfg.levels), cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_layers))
        self.out_norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.head = nn.Linear(cfg.dim, 18)
        # ideal local positions (nm) of N, C, O in the residue frame; the head predicts corrections
        ideal = torch.tensor([[-0.0523, 0.1361, 0.0], [0.1525, 0.0, 0.0], [0.2150, -0.1040, 0.0]])
        self.ideal_local = nn.Parameter(ideal, requires_grad=False)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[3] = 1.0  # rotation starts near identity
            self.head.bias[7] = 1.0

    def forward(self, code, mask):
        x = self.from_code(code)
        for block in self.blocks:
            x = block(x, mask)
        out = self.head(self.out_norm(x))
        return assemble_backbone(out, self.ideal_local)


def assemble_backbone(out, ideal_local):
    """Head output (..., 18) -> (xyz (..., 4, 3), rotations (..., 3, 3), translations (..., 3))."""
    t = out[..., 0:3]
    a, b = out[..., 3:6], out[..., 6:9]
    e1 = a / torch.clamp(torch.linalg.norm(a, dim=-1, keepdim=True), min=1e-6)
    b = b - (b * e1).sum(-1, keepdim=True) * e1
    e2 = b / torch.clamp(torch.linalg.norm(b, dim=-1, keepdim=True), min=1e-6)
    e3 = torch.cross(e1, e2, dim=-1)
    rot = torch.stack([e1, e2, e3], dim=-1)
    local = ideal_local + 0.1 * out[..., 9:18].reshape(*out.shape[:-1], 3, 3)
    glob = torch.einsum("...de,...pe->...pd", rot, local) + t[..., None, :]
    xyz = torch.stack([glob[..., 0, :], t, glob[..., 1, :], glob[..., 2, :]], dim=-2)
    return xyz, rot, t


class FoldTokenModel(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = FSQ(cfg.levels)
        self.decoder = Decoder(cfg)

    def forward(self, xyz, mask):
        """Autoencode (B, L, 4, 3) nm -> (decoded xyz, rotations, translations, tokens, continuous digits)."""
        z = self.encoder(xyz, mask)
        digits, tokens = self.quantizer.quantize(z)
        xyz_hat, rot, t = self.decoder(self.quantizer.embed(digits), mask)
        return xyz_hat, rot, t, tokens, self.quantizer.digits_continuous(z)

    @torch.no_grad()
    def encode(self, xyz):
        mask = torch.ones(xyz.shape[:2], dtype=torch.bool, device=xyz.device)
        return self.quantizer.quantize(self.encoder(xyz, mask))[1]

    @torch.no_grad()
    def decode(self, tokens):
        mask = torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)
        code = self.quantizer.embed(self.quantizer.digits(tokens).to(torch.float32))
        return self.decoder(code, mask)[0]
