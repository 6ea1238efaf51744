"""The tokenizer's hyper-parameters, stored as config.json beside the weights: one dataclass per kind
of tokenizer (the "kind" key; a config without it is the transformer kind)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from math import prod

from mdllm.errors import MdllmError


@dataclass
class TokenizerConfig:
    """The transformer kind: kNN-frame encoder, finite scalar quantizer, token-only transformer decoder."""

    # Quantizer: finite scalar quantization, one digit per level; codebook size = product of levels.
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    # Encoder: k nearest neighbours (by CA distance, the residue itself included) feed an edge MLP.
    k_neighbours: int = 16
    n_rbf: int = 16
    rbf_max_nm: float = 2.0
    max_seq_sep: int = 16  # sequence separation of a neighbour, clipped to +-this
    dim: int = 128
    heads: int = 4
    ffn_dim: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 4
    max_rel_pos: int = 32  # attention bias buckets: relative position clipped to +-this
    version: int = 1
    kind = "transformer"  # class attribute: not a field, so older config files stay valid

    @property
    def codebook_size(self) -> int:
        return prod(self.levels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source="config") -> "TokenizerConfig":
        d = {k: v for k, v in d.items() if not (k == "kind" and v == cls.kind)}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise MdllmError(f"{source}: unknown tokenizer config keys {sorted(unknown)}")
        cfg = cls(**d)
        cfg.validate(source)
        return cfg

    def validate(self, source="config"):
        if not self.levels or any(int(l) < 2 for l in self.levels):
            raise MdllmError(f"{source}: quantizer levels must be integers >= 2, got {self.levels}")
        if self.dim % self.heads:
            raise MdllmError(f"{source}: dim {self.dim} is not divisible by heads {self.heads}")
        if self.k_neighbours < 1 or self.codebook_size > 2**20:
            raise MdllmError(f"{source}: bad k_neighbours or codebook size")


# Backbone geometry stored in every torsion tokenizer file, in this order (Angstrom, radians): bonds
# N-CA, CA-C, C-N(next), C=O and angles N-CA-C, CA-C-N(next), C(prev)-N-CA, CA-C-O.
GEOMETRY_NAMES = ("b_nca", "b_cac", "b_cn", "b_co", "a_ncac", "a_cacn", "a_cnca", "a_caco")


class _CodebookKind:
    """What the codebook kinds share: JSON with their kind first, and the codebook size check."""

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **asdict(self)}, indent=2)

    from_dict = classmethod(TokenizerConfig.from_dict.__func__)

    def validate(self, source="config"):
        if not 2 <= int(self.codebook_size) <= 65536:
            raise MdllmError(f"{source}: codebook_size must be in [2, 65536], got {self.codebook_size}")


@dataclass
class TorsionConfig(_CodebookKind):
    """The torsion-codebook kind (mdllm.tokenizer.torsion): K learned (omega, phi, psi) codes, encoded
    by closed-loop beam search of width ``beam_width``, decoded by building the chain."""

    codebook_size: int = 1024
    beam_width: int = 4
    version: int = 1
    kind = "torsion"

    def validate(self, source="config"):
        super().validate(source)
        if not 1 <= int(self.beam_width) <= 64:
            raise MdllmError(f"{source}: beam_width must be in [1, 64], got {self.beam_width}")


@dataclass
class MotionConfig(_CodebookKind):
    """The motion kind (mdllm.tokenizer.motion): K learned per-residue displacements of N, CA, C, O from
    a key frame, in the key residue's frame; one token per residue, decoded by adding it to the key."""

    codebook_size: int = 4096
    version: int = 1
    kind = "motion"


def config_from_dict(d: dict, source="config"):
    """The config of whichever kind ``d`` names (no "kind": the transformer kind)."""
    kinds = {TokenizerConfig.kind: TokenizerConfig, TorsionConfig.kind: TorsionConfig,
             MotionConfig.kind: MotionConfig}
    kind = d.get("kind", TokenizerConfig.kind)
    if kind not in kinds:
        raise MdllmError(f"{source}: unknown tokenizer kind '{kind}' (known: {', '.join(kinds)})")
    return kinds[kind].from_dict(d, source)
