"""Frame repair of motion tokens: once a frame's codes are drawn, residues that carry a fault take other
codes the language model found likely there, until the frame passes the validity check.

A frame is decoded as the user gets it (the tokenizer's context decoder, then the projection onto the key's
geometry) and judged by the rules of :func:`mdllm.evaluate.check_backbone` (:class:`ValidityLimits`),
residue by residue: bond and angle outliers and chain breaks implicate the residues they span, clashes
the two residues, a Ramachandran outlier at residue i residues i, i+1 and i-1. While the frame fails, the
implicated residues are tried in that order, each with its ``candidates`` most likely codes (the model's
logits as the residue was drawn), most likely first, then with the codes ranked up to ``wide_candidates``;
the first code that lowers the frame's fault score
(Ramachandran outliers + 3 x (geometry faults + clashing pairs)) is kept, up to ``max_changes`` times.
A code is judged first on the 25 residues around it projected alone (the rest of the frame as it stands);
only one that lowers that score is projected and judged on the whole frame.

Why after the frame, not before each residue (constrained decoding, :mod:`mdllm.sampling.constraint`): a
mask built from code placements forbids most large moves (a code's own placement error grows with its
displacement), so constrained frames lose part of the motion; repair changes only residues whose fault
the final frame shows (models/motiontoken/RECIPE.md, "Frame repair").

The compiled core (``_core.FrameRepair``, mdllm/frame_repair.hpp) does the work; :func:`reference_faults`
is its numpy reference for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm.errors import MdllmError
from mdllm.evaluate.validity import ValidityLimits, _chain_layout, _ideal_table
from mdllm.geometry import ramachandran as rama
from mdllm.geometry.ideal import VDW_RADII_NM


@dataclass(frozen=True)
class RepairLimits:
    max_changes: int = 40  # codes changed per frame at most
    candidates: int = 64  # the model's most likely codes tried per residue
    wide_candidates: int = 512  # when none of those lowers the score: the codes ranked up to this


class FrameRepair:
    """Repairs frames of one protein (key frame, sequence, chains) for a motion tokenizer; with
    ``use_fine``, of a model with the tokenizer's fine codes (a changed first code keeps its fine code when
    both take one, gains the fine code nearest no correction, or drops it)."""

    def __init__(
        self,
        tokenizer,
        key_xyz,
        sequence: str,
        chain_ids=None,
        limits: RepairLimits = RepairLimits(),
        validity: ValidityLimits = ValidityLimits(),
        use_fine: bool = False,
    ):
        from mdllm import _core
        from mdllm.tokenizer.motion_context import key_segments, residue_classes

        if not tokenizer.needs_key_frame or tokenizer.core_tokenizer() is None:
            raise MdllmError("frame repair needs a motion tokenizer with the compiled core")
        self.key = np.ascontiguousarray(key_xyz, np.float32)
        n_res = len(sequence)
        if self.key.shape != (n_res, 4, 3):
            raise MdllmError(f"frame repair: key frame of shape {self.key.shape}, expected ({n_res}, 4, 3)")
        if validity.rg_range_A is not None or validity.max_geometry_outliers != 0 or validity.max_clashes != 0:
            raise MdllmError(
                "frame repair judges frames by the default rules: no geometry outlier, no clash, no Rg range"
            )
        self.sequence, self.limits, self.validity = sequence, limits, validity
        self.chain_index, self.chain_ends = _chain_layout(n_res, chain_ids)
        self.classes = rama.residue_classes(sequence, self.chain_ends).astype(np.int32)
        levels, bin_deg = rama.grid()
        self._decoder = tokenizer.core_context_decoder()
        decoder_classes = None
        if self._decoder is not None:
            decoder_classes = residue_classes(sequence, key_segments(self.key)).astype(np.int32)
        self.core = _core.FrameRepair(
            tokenizer.core_tokenizer(),
            self._decoder,
            self.key,
            n_res,
            self.classes,
            decoder_classes,
            self.chain_index.astype(np.int32),
            np.ascontiguousarray(levels, np.uint8),
            levels.shape[1],
            bin_deg,
            _ideal_table(),
            validity.max_z,
            validity.break_A / 10.0,
            validity.clash_overlap_A / 10.0,
            validity.ca_min_A / 10.0,
            validity.min_separation,
            validity.max_rama_outlier_fraction,
            limits.max_changes,
            limits.candidates,
            limits.wide_candidates,
        )
        self.fine = getattr(tokenizer, "fine_codes", None) if use_fine else None
        if self.fine is not None:
            if self._decoder is None:
                raise MdllmError("frame repair with fine codes needs the tokenizer's context decoder")
            self.core.use_fine_codes()  # the compiled tokenizer's own fine codes (MotionTokenizer loads them)

    def decode(self, codes, fine=None) -> np.ndarray:
        """(L, 4, 3) nm: the frame of ``codes`` (L,) (and its ``fine`` codes) as generation decodes it
        (decoder, then projection)."""
        out = np.empty(self.key.shape, np.float32)
        self.core.decode(
            np.ascontiguousarray(codes, np.int32), out, None if fine is None else np.asarray(fine, np.int32)
        )
        return out

    def faults(self, xyz) -> dict:
        """The core's faults of one decoded frame (L, 4, 3) nm: rama, geometry, clashes, defined, score, valid."""
        return self.core.faults(np.ascontiguousarray(xyz, np.float32))

    def repair(self, codes, logits, fine=None):
        """(repaired codes (L,), outcome) for ``codes`` (L,) and the model's logits over the codes (L, K);
        with fine codes, ``fine`` (L,) too, and (codes, fine, outcome) comes back."""
        out = np.array(codes, np.int32)
        if fine is None:
            return out, self.core.repair(out, np.ascontiguousarray(logits, np.float32))
        fine_out = np.array(fine, np.int32)
        return out, fine_out, self.core.repair(out, np.ascontiguousarray(logits, np.float32), fine_out)


def reference_faults(xyz, sequence: str, chain_ids=None, limits: ValidityLimits = ValidityLimits()) -> dict:
    """The numpy reference of :meth:`FrameRepair.faults` for one frame (L, 4, 3) nm."""
    from mdllm.evaluate.validity import IDEAL_ANGLES_DEG, IDEAL_BONDS_NM, ANGLE_SIGMA_DEG, BOND_SIGMA_NM, phi_psi_deg

    x = np.asarray(xyz, np.float64)
    n_res = len(x)
    chain_index, chain_ends = _chain_layout(n_res, chain_ids)

    def angle(a, b, c):
        u, v = a - b, c - b
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    def bad(value, k, ideal, sigma):
        return np.abs(value - ideal[k]) / sigma[k] > limits.max_z

    n, ca, c, o = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    within = (
        bad(np.linalg.norm(ca - n, axis=-1), 0, IDEAL_BONDS_NM, BOND_SIGMA_NM)
        | bad(np.linalg.norm(c - ca, axis=-1), 1, IDEAL_BONDS_NM, BOND_SIGMA_NM)
        | bad(np.linalg.norm(o - c, axis=-1), 3, IDEAL_BONDS_NM, BOND_SIGMA_NM)
        | bad(angle(n, ca, c), 0, IDEAL_ANGLES_DEG, ANGLE_SIGMA_DEG)
        | bad(angle(ca, c, o), 3, IDEAL_ANGLES_DEG, ANGLE_SIGMA_DEG)
    )
    peptide = np.linalg.norm(n[1:] - c[:-1], axis=-1)
    across = (
        (peptide > limits.break_A / 10.0)
        | bad(peptide, 2, IDEAL_BONDS_NM, BOND_SIGMA_NM)
        | bad(angle(ca[:-1], c[:-1], n[1:]), 1, IDEAL_ANGLES_DEG, ANGLE_SIGMA_DEG)
        | bad(angle(c[:-1], n[1:], ca[1:]), 2, IDEAL_ANGLES_DEG, ANGLE_SIGMA_DEG)
    ) & ~chain_ends[:-1]
    geometry = []
    for i in range(n_res):
        if within[i]:
            geometry.append((i, i))
        if i + 1 < n_res and across[i]:
            geometry.append((i, i + 1))

    radius = np.asarray(VDW_RADII_NM)
    limit = radius[:, None] + radius[None, :] - limits.clash_overlap_A / 10.0
    d = np.linalg.norm(x[:, None, :, None] - x[None, :, None, :], axis=-1)  # (L, L, 4, 4)
    clashes = [
        (i, j)
        for i in range(n_res)
        for j in range(i + 1, n_res)
        if (chain_index[i] != chain_index[j] or j - i >= limits.min_separation)
        and ((d[i, j] < limit).any() or d[i, j, 1, 1] < limits.ca_min_A / 10.0)
    ]

    phi, psi = phi_psi_deg(x[None], chain_ends)
    levels = rama.levels(phi, psi, rama.residue_classes(sequence, chain_ends))[0]
    defined = int((levels != rama.UNDEFINED).sum())
    outliers = [int(i) for i in np.flatnonzero(levels == rama.OUTLIER)]
    score = len(outliers) + 3 * (len(geometry) + len(clashes))
    valid = not geometry and not clashes and len(outliers) / max(defined, 1) <= limits.max_rama_outlier_fraction
    return {
        "rama": outliers,
        "geometry": geometry,
        "clashes": clashes,
        "defined": defined,
        "score": score,
        "valid": valid,
    }
