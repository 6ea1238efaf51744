"""The tokenizer's hyper-parameters, stored as config.json beside the weights: one dataclass per kind
of tokenizer, named by the "kind" key (motion or torsion)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from mdllm.errors import MdllmError


# Backbone geometry stored in every torsion tokenizer file, in this order (Angstrom, radians): bonds
# N-CA, CA-C, C-N(next), C=O and angles N-CA-C, CA-C-N(next), C(prev)-N-CA, CA-C-O.
GEOMETRY_NAMES = ("b_nca", "b_cac", "b_cn", "b_co", "a_ncac", "a_cacn", "a_cnca", "a_caco")


class _CodebookKind:
    """What the codebook kinds share: JSON with their kind first, and the codebook size check."""

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, d: dict, source="config"):
        d = {k: v for k, v in d.items() if not (k == "kind" and v == cls.kind)}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise MdllmError(f"{source}: unknown tokenizer config keys {sorted(unknown)}")
        cfg = cls(**d)
        cfg.validate(source)
        return cfg

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


# The FoldToken-style transformer kind (a learned encoder and decoder) was retired when the motion
# tokenizer replaced it; its config.json has "kind": "transformer" or no "kind" key at all.
RETIRED_KINDS = ("transformer",)


def config_from_dict(d: dict, source="config"):
    """The config of whichever kind ``d`` names."""
    kinds = {TorsionConfig.kind: TorsionConfig, MotionConfig.kind: MotionConfig}
    kind = d.get("kind", "transformer")
    if kind in RETIRED_KINDS:
        raise MdllmError(f"{source}: the {kind} tokenizer kind was retired in mdllm 0.1; use motion or torsion")
    if kind not in kinds:
        raise MdllmError(f"{source}: unknown tokenizer kind '{kind}' (known: {', '.join(kinds)})")
    return kinds[kind].from_dict(d, source)
