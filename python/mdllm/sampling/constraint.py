"""Constrained decoding of motion tokens: before residue j of a frame is drawn, the codes that would
break local geometry with the residues already drawn in that frame are masked out.

A motion code places residue j's N, CA, C, O at ``key[j] + F_j code`` (unprojected). Code k is allowed
when (a) C(j-1)-N(j) and CA(j-1)-CA(j) stay within ``tolerance_nm`` of the key's own distances (pairs
in one chain whose key C-N is at most ``break_nm``), and with ``link_angles`` the 1-3 distances across
the peptide bond too (CA(j-1)-N(j), C(j-1)-CA(j), O(j-1)-N(j)), (b) residue j-1's (phi, psi), now
defined, is not a Ramachandran outlier of its class and residue j's phi (defined now) leaves some allowed
psi, and (c) residue j's atoms do not overlap residues j-2 .. j-``local_reach`` or earlier residues whose
key CA lies within ``neighbour_cutoff_nm`` by more than ``clash_overlap_nm``. No allowed code: with
``relax_when_empty`` the mask is built again with the tolerance doubled and the overlap 0.02 nm larger;
still none: all are allowed.

With a causal context decoder (``ahead`` 0: residue i decoded from the codes of residues up to i alone)
attached by :meth:`ChainConstraint.judge_decoded`, the generation loop also judges each drawn code as the
frame will hold it: residues j-``DECODED_WINDOW`` .. j decoded and projected together onto the key's
geometry (the decoder learned through the projection; its raw output is not chain-like), then (b) and
(c) on those coordinates (an earlier clash partner i as residues i-``SETTLE_REACH`` .. i+``SETTLE_REACH``
projected together place it), and j must not add faults (Ramachandran outliers, clashes among them and
with their earlier partners) to residues j-``DECODED_WINDOW`` .. j-1, which it moves through the
projection ((a) is the projection's); a rejected code is removed and residue j drawn again, up to
``decoded_tries`` times among the masked codes and as many among all codes, then the most likely code
that passes is taken (the generation loop, cpp/src/llama/generate.cpp). The code-alone mask cannot see the
10-20 degrees by which decoding turns torsions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm import _core
from mdllm.errors import MdllmError
from mdllm.geometry import ramachandran as rama
from mdllm.geometry.ideal import VDW_RADII_NM
from mdllm.geometry.vectors import dihedral
from mdllm.tokenizer.motion import key_frames


@dataclass(frozen=True)
class ConstraintLimits:
    tolerance_nm: float = 0.03  # (a) C(j-1)-N(j) and CA(j-1)-CA(j) distance, each, from the key's
    link_cn: bool = True  # (a) judges C(j-1)-N(j) too (False: CA(j-1)-CA(j) only)
    ramachandran: bool = True  # (b)
    clash_overlap_nm: float = 0.05  # (c) inside mdllm.evaluate.validity.ValidityLimits' 0.7 A
    ca_min_nm: float = 0.30  # (c) non-neighbouring CA pairs closer than this clash (3.0 A)
    local_reach: int = 4  # (c) residues j-2 .. j-local_reach are always checked (0: none)
    neighbour_cutoff_nm: float = 1.0  # (c) and earlier residues whose key CA is this close (0 = none)
    break_nm: float = 0.2  # key C-N longer than this: a chain break, not constrained
    link_angles: bool = True  # (a) the 1-3 distances across the link too (CA-N, C-CA, O-N)
    relax_when_empty: bool = True  # no code allowed: try tolerance x 2, clash overlap + 0.02 nm, before all
    decoded_tries: int = 8  # with a causal context decoder: redraws of a code rejected as decoded (0: off)


RELAX_TOLERANCE = 2.0  # relax_when_empty (the core's kRelaxTolerance, kRelaxOverlapNm)
RELAX_OVERLAP_NM = 0.02
DECODED_WINDOW = 10  # the core's kDecodedWindow: residues projected with the one judged as decoded
SETTLE_REACH = 3  # the core's kSettleReach: earlier clash partners projected with 3 residues each side


def link_limits(tolerance_nm: float) -> ConstraintLimits:
    """Only (a) on CA-CA, chain continuity: what the generation guard checks residue by residue."""
    return ConstraintLimits(
        tolerance_nm=tolerance_nm,
        link_cn=False,
        ramachandran=False,
        local_reach=0,
        neighbour_cutoff_nm=0.0,
        link_angles=False,
        relax_when_empty=False,
    )


def _dihedral_deg(a, b, c, d) -> np.ndarray:
    return np.degrees(dihedral(a, b, c, d))


class ChainConstraint:
    """The mask of allowed motion codes for residue j given the codes of residues < j of one frame.

    codebook (K, 12) nm; key_xyz (L, 4, 3) nm; chain_ids (L,) or None (one chain)."""

    def __init__(self, codebook, key_xyz, sequence: str, chain_ids=None, limits: ConstraintLimits = ConstraintLimits()):
        self.codebook = np.ascontiguousarray(codebook, np.float32).reshape(-1, 12)
        self.key = np.ascontiguousarray(key_xyz, np.float32)
        n_res = len(sequence)
        if self.key.shape != (n_res, 4, 3):
            raise MdllmError(f"constraint: key frame of shape {self.key.shape}, expected ({n_res}, 4, 3)")
        self.limits = limits
        chains = np.zeros(n_res, np.int64) if chain_ids is None else np.asarray(chain_ids)
        if chains.shape != (n_res,):
            raise MdllmError(f"constraint: {chains.shape[0]} chain ids for {n_res} residues")
        same_chain = chains[1:] == chains[:-1]
        self.classes = rama.residue_classes(sequence, np.append(~same_chain, True)).astype(np.int32)
        self.levels, self.bin_deg = rama.grid()
        self.levels = np.ascontiguousarray(self.levels, np.uint8)
        self.core = _core.ChainConstraint(
            self.codebook,
            len(self.codebook),
            self.key,
            n_res,
            self.classes,
            self.levels,
            self.levels.shape[1],
            self.bin_deg,
            same_chain.astype(np.uint8),
            limits.tolerance_nm,
            limits.ramachandran,
            limits.clash_overlap_nm,
            limits.ca_min_nm,
            limits.local_reach,
            limits.neighbour_cutoff_nm,
            limits.break_nm,
            limits.link_cn,
            limits.link_angles,
            limits.relax_when_empty,
        )
        key64 = self.key.astype(np.float64)
        cn = np.linalg.norm(key64[1:, 0] - key64[:-1, 2], axis=-1)
        self.linked = same_chain & (cn <= limits.break_nm)
        self.key_cn = cn
        self.key_caca = np.linalg.norm(key64[1:, 1] - key64[:-1, 1], axis=-1)
        self.link_pairs = ((1, 0), (2, 1), (3, 0))  # 1-3 across the link: CA(i)-N(i+1), C(i)-CA(i+1), O(i)-N(i+1)
        self.key_link = np.stack([np.linalg.norm(key64[1:, b] - key64[:-1, a], axis=-1) for a, b in self.link_pairs], 1)
        self._frames = key_frames(key64)

    def mask(self, j: int, drawn) -> tuple[np.ndarray, int]:
        """(allowed (K,) bool, number allowed before the all-allowed fallback) from the compiled core."""
        out = np.zeros(len(self.codebook), np.uint8)
        n = self.core.mask(int(j), np.ascontiguousarray(drawn, np.int32), out)
        return out.astype(bool), int(n)

    def allows(self, j: int, drawn, code: int) -> bool:
        """Whether ``code`` is allowed for residue j given ``drawn`` by the strict limits (one entry of
        :meth:`mask` before any relaxation or fallback)."""
        return bool(self.core.allows(int(j), np.ascontiguousarray(drawn, np.int32), int(code)))

    def place(self, i: int, codes) -> np.ndarray:
        """(..., 4, 3) nm: residue i placed by its codes (unprojected)."""
        c = self.codebook.astype(np.float64)[np.asarray(codes)].reshape(*np.shape(codes), 4, 3)
        return self.key[i].astype(np.float64) + np.einsum("rc,...ac->...ar", self._frames[i], c)

    def judge_decoded(self, core_decoder, classes) -> None:
        """Judge drawn codes as ``core_decoder`` (a causal ``_core.MotionContextDecoder`` of this codebook)
        decodes them, with the Ramachandran ``classes`` it decodes with (L,); see the module docstring."""
        self.core.attach_decoder(core_decoder, np.ascontiguousarray(classes, np.int32))

    def allows_decoded(self, j: int, drawn) -> bool:
        """Whether ``drawn[j]`` is allowed by the strict limits on decoded coordinates (after
        :meth:`judge_decoded`)."""
        return bool(self.core.allows_decoded(int(j), np.ascontiguousarray(drawn, np.int32)))

    def reference_allows_decoded(self, j: int, decoded) -> bool:
        """The numpy reference of :meth:`allows_decoded`, given the decoded, unprojected residues 0..j
        (``decoded`` (>= j + 1, 4, 3) nm float32, as
        :func:`mdllm.tokenizer.motion.place_displacements` places a context decoder's output)."""
        from mdllm.geometry.projection import project_to_key_geometry

        decoded = np.asarray(decoded)
        lo = max(0, j - DECODED_WINDOW)
        window = project_to_key_geometry(decoded[None, lo : j + 1], self.key[lo : j + 1], backend="numpy")[0]
        window = window.astype(np.float64)

        earlier = {}  # the window's clash partners before it, as residues i-3 .. i+3 projected together place them
        for i in {i for r in range(lo, j + 1) for i in self._clash_partners(r) if i < lo}:
            first, end = max(0, i - SETTLE_REACH), i + SETTLE_REACH + 1
            part = project_to_key_geometry(decoded[None, first:end], self.key[first:end], backend="numpy")
            earlier[i] = part[0, i - first]

        lim = self.limits
        placed = lambda i: window[i - lo] if i >= lo else earlier[i]  # noqa: E731
        ok = self._reference_allowed(j, placed, window[-1][None], lim.tolerance_nm, lim.clash_overlap_nm, False)
        if not ok[0] or j == lo:
            return bool(ok[0])
        without = project_to_key_geometry(decoded[None, lo:j], self.key[lo:j], backend="numpy")[0]
        faults_with = self._window_faults(window, lo, j - 1, earlier)
        return faults_with <= self._window_faults(without.astype(np.float64), lo, j - 1, earlier)

    def _clash_partners(self, j: int) -> list[int]:
        """Earlier residues whose overlaps with residue j (c) judges."""
        lim = self.limits
        key_ca = self.key[:, 1].astype(np.float64)
        return [
            k
            for k in range(j - 1)
            if j - k <= lim.local_reach or np.linalg.norm(key_ca[j] - key_ca[k]) < lim.neighbour_cutoff_nm
        ]

    def _window_faults(self, w, lo: int, last: int, earlier: dict) -> int:
        """Ramachandran outliers of residues lo+1 .. last-1 and clashing atom pairs among residues
        lo .. last (two or more apart) of window coordinates ``w`` (residues lo ..), and between them and
        their clash partners before lo (``earlier[i]``)."""
        lim = self.limits
        faults = 0
        for r in range(lo + 1, last) if lim.ramachandran else ():
            if self.linked[r - 1] and self.linked[r]:
                x, before, after = w[r - lo], w[r - 1 - lo], w[r + 1 - lo]
                phi = _dihedral_deg(before[2], x[0], x[1], x[2])
                psi = _dihedral_deg(x[0], x[1], x[2], after[0])
                faults += int(self.levels[self.classes[r], self._bin(phi), self._bin(psi)] == rama.OUTLIER)
        radius = np.asarray(VDW_RADII_NM)
        limit = radius[:, None] + radius[None, :] - lim.clash_overlap_nm
        for b in range(lo, last + 1):
            others = [w[a - lo] for a in range(lo, b - 1)] + [earlier[a] for a in self._clash_partners(b) if a < lo]
            for other in others:
                d = np.linalg.norm(other[:, None] - w[b - lo][None], axis=-1)
                faults += int((d < limit).sum()) + int(limit[1, 1] <= d[1, 1] < lim.ca_min_nm)  # CA-CA: either
        return faults

    def _bin(self, angle_deg):
        """Ramachandran grid bin(s) of angle(s) in degrees (the core's angle_bin)."""
        bins = np.floor((np.asarray(angle_deg) + 180.0) / self.bin_deg).astype(np.int64)
        return np.clip(bins, 0, self.levels.shape[1] - 1)

    def reference_mask(self, j: int, drawn) -> tuple[np.ndarray, int]:
        """The numpy reference of :meth:`mask`."""
        lim = self.limits
        cand = self.place(j, np.arange(len(self.codebook)))  # (K, 4, 3)
        for relaxed in (False, True) if lim.relax_when_empty else (False,):
            tolerance = lim.tolerance_nm * (RELAX_TOLERANCE if relaxed else 1.0)
            overlap = lim.clash_overlap_nm + (RELAX_OVERLAP_NM if relaxed else 0.0)
            ok = self._reference_allowed(j, lambda i: self.place(i, drawn[i]), cand, tolerance, overlap)
            if ok.any():
                return ok, int(ok.sum())
        return np.ones(len(self.codebook), bool), 0

    def _reference_allowed(
        self, j: int, placed, cand, tolerance: float, overlap: float, distances: bool = True
    ) -> np.ndarray:
        """Which candidate placements ``cand`` (C, 4, 3) of residue j are allowed, the residues before it
        placed by ``placed(i)`` (4, 3); ``distances`` False leaves (a) out."""
        lim = self.limits
        ok = np.ones(len(cand), bool)
        if j > 0 and self.linked[j - 1]:
            prev = placed(j - 1)
            if distances and lim.link_cn:
                ok &= np.abs(np.linalg.norm(cand[:, 0] - prev[2], axis=-1) - self.key_cn[j - 1]) <= tolerance
            if distances:
                ok &= np.abs(np.linalg.norm(cand[:, 1] - prev[1], axis=-1) - self.key_caca[j - 1]) <= tolerance
            if distances and lim.link_angles:
                for (a, b), want in zip(self.link_pairs, self.key_link[j - 1]):
                    ok &= np.abs(np.linalg.norm(cand[:, b] - prev[a], axis=-1) - want) <= tolerance
            if lim.ramachandran and j >= 2 and self.linked[j - 2]:
                before = placed(j - 2)
                phi = _dihedral_deg(before[2], prev[0], prev[1], prev[2])
                psi = _dihedral_deg(prev[0], prev[1], prev[2], cand[:, 0])
                ok &= self.levels[self.classes[j - 1], self._bin(phi), self._bin(psi)] != rama.OUTLIER
            if lim.ramachandran and j + 1 < len(self.key) and self.linked[j]:  # j's own phi leaves some psi
                phi_j = _dihedral_deg(prev[2], cand[:, 0], cand[:, 1], cand[:, 2])
                ok &= (self.levels[self.classes[j]] != rama.OUTLIER).any(axis=1)[self._bin(phi_j)]
        radius = np.asarray(VDW_RADII_NM)
        limit = radius[:, None] + radius[None, :] - overlap
        for k in self._clash_partners(j):
            other = placed(k)
            d = np.linalg.norm(cand[:, :, None] - other[None, None], axis=-1)  # (K, 4, 4)
            ok &= ~((d < limit).any(axis=(1, 2)) | (d[:, 1, 1] < lim.ca_min_nm))
        return ok
