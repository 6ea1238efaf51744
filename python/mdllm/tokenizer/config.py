"""The tokenizer's hyper-parameters: one dataclass, stored as config.json beside the weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from math import prod

from mdllm.errors import MdllmError


@dataclass
class TokenizerConfig:
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

    @property
    def codebook_size(self) -> int:
        return prod(self.levels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source="config") -> "TokenizerConfig":
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
