"""Mistral-architecture decoder in plain PyTorch, readable top to bottom.

RMSNorm, rotary position embeddings (Hugging Face "rotate halves" layout), grouped-query attention,
SwiGLU feed-forward, optional sliding-window attention. Parameter names follow Hugging Face
(``model.embed_tokens``, ``model.layers.N.self_attn.q_proj``, ``mlp.gate_proj``, ``lm_head`` ...) so
that they map one-to-one onto GGUF tensor names and a local HF checkpoint loads directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdllm.errors import MdllmError


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    sliding_window: int | None = None
    tie_word_embeddings: bool = False
    # 0: token i sits at rotary position i. S > 0: positions are scaled by S / (L + 1), L the residues
    # of the prompt's sequence, so one frame (L tokens + separator) spans S positions in every protein
    # and the same residue one frame back is always S positions away: one attention pattern finds it
    # in every protein (with plain positions it is L + 1 tokens back, a different offset per protein,
    # and a model trained across proteins learns to ignore the previous frames: bench/likelihood.py).
    frame_span: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise MdllmError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise MdllmError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise MdllmError("head dimension must be even for rotary embeddings")
        if self.frame_span < 0:
            raise MdllmError("frame_span must be 0 (plain positions) or positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Named sizes for ``mdllm train --preset``; vocab_size and context come from the data.
PRESETS = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
    "small": dict(
        hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2
    ),
    "base": dict(
        hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2
    ),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """cos, sin of shape (..., T, head_dim) for positions (..., T), in the rotate-halves layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_halves(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x, cos, sin):
    return x * cos.to(x.dtype) + rotate_halves(x) * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(B, T, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # Grouped-query attention: each key/value head serves a group of query heads.
        groups = cfg.num_attention_heads // cfg.num_key_value_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """Named ``model`` inside :class:`MistralLM`, as in Hugging Face checkpoints."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MistralLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # The vocabulary layout and tokenizer identity (mdllm.lm.text.Vocabulary), and other
        # metadata carried with the model (LoRA settings, training record).
        self.vocab = None
        self.meta: dict = {}

    def check_tokenizer(self, codebook_size: int, tokenizer_hash: str, source: str = "tokens") -> None:
        """Raise MdllmError unless the structure tokens come from this model's tokenizer."""
        if self.vocab is None:
            raise MdllmError("model has no vocabulary layout, so no tokenizer to check against")
        self.vocab.check_tokenizer(codebook_size, tokenizer_hash, source)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def attention_mask(self, T: int, device):
        """None for plain causal attention; a boolean (T, T) band when a sliding window applies."""
        w = self.config.sliding_window
        if w is None or w >= T:
            return None
        i = torch.arange(T, device=device)
        diff = i[:, None] - i[None, :]
        return (diff >= 0) & (diff < w)

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Rotary positions of ids (B, T): (T,) 0..T-1, or with ``frame_span`` (B, 1, T) scaled per row by
        frame_span / (L + 1) (fine codes: / (2 L + 1)), L the amino-acid tokens of the row (as llama.cpp's
        rope_freq_scale does)."""
        T = ids.shape[1]
        plain = torch.arange(T, device=ids.device)
        if not self.config.frame_span:
            return plain
        if self.vocab is None:
            raise MdllmError("frame-scaled positions need the model's vocabulary to find the sequence")
        from mdllm.lm.text import frame_position_scale, residue_count

        residues = residue_count(ids, self.vocab.amino_acid_offset).float()
        return (
            plain[None, :]
            * frame_position_scale(self.config.frame_span, residues[:, None], self.vocab.tokens_per_residue)
        )[:, None, :]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> logits (B, T, vocab)."""
        B, T = ids.shape
        if T > self.config.max_position_embeddings:
            raise MdllmError(
                f"sequence of {T} tokens exceeds the model's context of {self.config.max_position_embeddings}"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise MdllmError(f"token id outside the model's vocabulary of {self.config.vocab_size}")
        cos, sin = rotary_tables(self.positions(ids), self.config.head_dim, self.config.rope_theta)
        mask = self.attention_mask(T, ids.device)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen, n = set(), 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            n += p.numel()
        return n


def _mean_preserving_weights(offsets, sigma_A: float, iterations: int = 50, ridge: float = 0.01) -> np.ndarray:
    """(K, M) weights over each code's M neighbours at ``offsets`` (K, M, 12) Å from it, Gaussian in the
    distance and exponentially tilted so that the weighted mean offset is zero: Newton's method on the
    convex log-partition function log sum_j exp(-|d_j|^2 / 2 sigma^2 + lambda . d_j) (+ a small ridge,
    which keeps lambda finite for a code whose neighbours all lie on one side)."""
    log_base = -(offsets**2).sum(-1) / (2.0 * sigma_A**2)
    lam = np.zeros((offsets.shape[0], offsets.shape[2]))
    eye = np.eye(offsets.shape[2])
    for _ in range(iterations):
        logits = log_base + np.einsum("kmi,ki->km", offsets, lam)
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        mean = np.einsum("km,kmi->ki", w, offsets)
        centred = offsets - mean[:, None]
        hessian = np.einsum("km,kmi,kmj->kij", w, centred, centred) + ridge * eye
        lam -= np.linalg.solve(hessian, (mean + ridge * lam)[..., None])[..., 0]
    logits = log_base + np.einsum("kmi,ki->km", offsets, lam)
    w = np.exp(logits - logits.max(1, keepdims=True))
    return w / w.sum(1, keepdims=True)


class CodeSmoothing:
    """Soft training targets for motion codes: the observed code's mass shared with its nearest codes
    by a Gaussian of width ``sigma_A`` (Å, over the 12 displacement numbers).

    A fine-tune sees a few hundred frames, so most of a residue's thousands of codes are never observed
    and a one-hot target only ever pushes them down, wherever they lie. Soft targets tell the model that a
    code next to the observed one is nearly as good, so what it learns from one code carries to its
    neighbours in space (bench/realism.py measures the effect on generated frames).

    Codes are dense near zero displacement and sparse far out, so a code's nearest neighbours lie more on
    one side of it, and plain Gaussian weights would move the target's mean displacement: towards the key
    frame for most codes, and a model trained on them would move too little. The weights are therefore
    tilted (w_j ~ exp(-|d_j|^2 / 2 sigma^2 + lambda . d_j), d_j = c_j - c_k, one lambda per code) so that
    each soft target keeps the observed code's displacement as its mean, where its neighbours allow."""

    def __init__(self, codebook, offset: int, sigma_A: float, neighbours: int = 16):
        if sigma_A <= 0:
            raise MdllmError(f"code smoothing width must be positive, got {sigma_A} A")
        cb = np.asarray(codebook, np.float64) * 10.0  # nm -> Å
        d2 = ((cb[:, None] - cb[None]) ** 2).sum(-1)
        m = min(neighbours, len(cb))
        nearest = np.argpartition(d2, m - 1, axis=1)[:, :m]
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(d2, nearest, 1), axis=1), 1)
        weights = _mean_preserving_weights(cb[nearest] - cb[:, None], sigma_A)
        self.offset, self.size = offset, len(cb)
        self.ids = torch.as_tensor(nearest + offset)
        self.weights = torch.as_tensor(weights, dtype=torch.float32)

    def token_losses(self, log_probs, targets, hard):
        """Per-target loss: the soft cross-entropy where the target is a motion code, else ``hard``."""
        is_code = (targets >= self.offset) & (targets < self.offset + self.size)
        code = (targets - self.offset).clamp(0, self.size - 1)
        ids, weights = self.ids.to(targets.device)[code], self.weights.to(log_probs.device)[code]
        soft = -(weights * log_probs.gather(1, ids)).sum(1)
        return torch.where(is_code, soft, hard)


def loss_and_accuracy(logits, targets, ignore_index: int = -100, smoothing: CodeSmoothing | None = None):
    """Summed next-token cross-entropy (against ``smoothing``'s soft targets for motion codes, if
    given), number of correct predictions and of counted targets."""
    logits = logits[:, :-1].float()
    flat_t = targets[:, 1:].reshape(-1)
    flat_logits = logits.reshape(-1, logits.shape[-1])
    counted = flat_t != ignore_index
    if smoothing is None:
        loss_sum = F.cross_entropy(flat_logits, flat_t, ignore_index=ignore_index, reduction="sum")
    else:
        log_probs = F.log_softmax(flat_logits, dim=-1)
        hard = -log_probs.gather(1, flat_t.clamp(min=0)[:, None])[:, 0]
        loss_sum = (smoothing.token_losses(log_probs, flat_t, hard) * counted).sum()
    correct = ((flat_logits.argmax(-1) == flat_t) & counted).sum()
    return loss_sum, correct, counted.sum()


def init_motion_codes(model: "MistralLM", codebook, scale: float = 1.0, fine_codebook=None) -> None:
    """Give the motion codes of a new model the geometry of their displacements.

    Embedding and output rows of code k start as its displacement c_k (12 numbers, Å) and, in the next
    dimension, -|c_k|^2 / 2, so that a hidden state [m / s^2, 1 / s^2, 0 ...] scores every code by
    -|c_k - m|^2 / (2 s^2): a Gaussian around a predicted displacement m. Codes that are close in space
    then start close in the model, which a one-hot vocabulary of thousands of codes cannot learn from
    the little MD a protein has. The remaining dimensions keep their random start. Fine codes
    (``fine_codebook``, a model with them) start the same way from their own displacements."""
    vocab = model.vocab
    if model.config.hidden_size < 13:
        raise MdllmError("the hidden size must be at least 13 to hold the motion codes' geometry")
    books = [(codebook, vocab.structure_offset, vocab.codebook_size)]
    if vocab.fine_codebook_size:
        if fine_codebook is None:
            raise MdllmError("this model has fine codes: give their codebook too")
        books.append((fine_codebook, vocab.fine_offset, vocab.fine_codebook_size))
    for book, offset, size in books:
        cb = torch.as_tensor(np.asarray(book, np.float64) * 10.0, dtype=torch.float32)  # nm -> Å
        if cb.shape != (size, 12):
            raise MdllmError(f"codebook of shape {tuple(cb.shape)} for {size} motion codes")
        rows = slice(offset, offset + size)
        features = torch.cat([cb, -(cb * cb).sum(1, keepdim=True) / 2], dim=1)
        features = features / features.std() * scale * 0.02 * 4  # a few times the random rows' spread
        with torch.no_grad():
            model.model.embed_tokens.weight[rows, :13] = features
            model.lm_head.weight[rows, :13] = features
