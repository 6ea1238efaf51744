"""Per-frame physical validity of backbones: bond lengths and angles against Engh & Huber ideal
values, chain breaks, backbone clashes, Ramachandran outliers and radius of gyration.

``check_backbone(xyz, sequence)`` returns a :class:`ValidityReport` with a valid/invalid flag and
human-readable reasons per frame; ``mdllm generate --filter`` and ``mdllm evaluate`` call it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mdllm.errors import MdllmError
from mdllm.geometry import ramachandran
from mdllm.geometry.ideal import ANGLE_SIGMA_DEG, BOND_SIGMA_NM, IDEAL_ANGLES_DEG, IDEAL_BONDS_NM, VDW_RADII_NM

__all__ = [
    "ANGLE_SIGMA_DEG",
    "BOND_SIGMA_NM",
    "IDEAL_ANGLES_DEG",
    "IDEAL_BONDS_NM",
    "VDW_RADII_NM",
    "ValidityLimits",
    "ValidityReport",
    "check_backbone",
    "filter_frames",
    "phi_psi_deg",
    "radius_of_gyration_A",
]


@dataclass(frozen=True)
class ValidityLimits:
    """Thresholds that make a frame invalid. Distances in Å as reports speak Å."""

    # Engh & Huber sigmas are crystal-structure spreads; thermal MD (AdK at 300 K, data/adk) reaches
    # 11.4 sigma, so 12 flags gross distortions, not thermal noise.
    max_z: float = 12.0  # a bond or angle this many sigmas from ideal is an outlier
    max_geometry_outliers: int = 0  # bond + angle outliers a valid frame may have
    break_A: float = 2.0  # C(i)-N(i+1) longer than this is a chain break
    clash_overlap_A: float = 0.7  # van der Waals radii overlapping by more than this is a clash
    ca_min_A: float = 3.0  # non-neighbouring CAs closer than this clash
    min_separation: int = 2  # residues closer in sequence than this are not checked for clashes
    max_clashes: int = 0
    max_rama_outlier_fraction: float = 0.05  # of residues with defined phi and psi
    rg_range_A: tuple[float, float] | None = None  # (min, max) CA radius of gyration, if given


@dataclass
class ValidityReport:
    """Per-frame results (arrays of length F) and the reasons a frame is invalid."""

    valid: np.ndarray
    reasons: list[list[str]]
    finite: np.ndarray
    n_bond_outliers: np.ndarray
    n_angle_outliers: np.ndarray
    n_breaks: np.ndarray
    worst_bond_z: np.ndarray
    worst_angle_z: np.ndarray
    n_clashes: np.ndarray
    n_ca_clashes: np.ndarray
    worst_overlap_A: np.ndarray
    rama_outlier_fraction: np.ndarray
    rama_favoured_fraction: np.ndarray
    rg_A: np.ndarray
    phi_deg: np.ndarray = field(repr=False)  # (F, L), NaN where undefined
    psi_deg: np.ndarray = field(repr=False)
    rama_levels: np.ndarray = field(repr=False)  # (F, L) see mdllm.evaluate.ramachandran
    limits: ValidityLimits = field(default_factory=ValidityLimits)

    @property
    def n_frames(self) -> int:
        return len(self.valid)

    def summary(self) -> dict:
        """Ensemble numbers for metrics.json (plain Python types)."""

        def stats(a):
            a = np.asarray(a, np.float64)[self.finite]
            return {"mean": float(a.mean()), "max": float(a.max())} if a.size else None

        counts: dict[str, int] = {}
        for reasons in self.reasons:
            for kind in {r.split(":")[0] for r in reasons}:
                counts[kind] = counts.get(kind, 0) + 1
        return {
            "frames": self.n_frames,
            "valid_frames": int(self.valid.sum()),
            "valid_fraction": float(self.valid.mean()) if self.n_frames else 0.0,
            "invalid_frames_by_reason": dict(sorted(counts.items())),
            "bond_outliers_per_frame": stats(self.n_bond_outliers),
            "angle_outliers_per_frame": stats(self.n_angle_outliers),
            "chain_breaks_per_frame": stats(self.n_breaks),
            "clashes_per_frame": stats(self.n_clashes),
            "rama_outlier_fraction": stats(self.rama_outlier_fraction),
            "rama_favoured_fraction": stats(self.rama_favoured_fraction),
            "rg_A": stats(self.rg_A),
            "limits": asdict(self.limits),
        }


def _ideal_table() -> np.ndarray:
    return np.array(
        IDEAL_BONDS_NM + BOND_SIGMA_NM + tuple(np.deg2rad(IDEAL_ANGLES_DEG)) + tuple(np.deg2rad(ANGLE_SIGMA_DEG)),
        np.float32,
    )


def _chain_layout(n_res, chain_ids):
    chain_ids = np.asarray(chain_ids if chain_ids is not None else ["A"] * n_res).astype(str)
    if len(chain_ids) != n_res:
        raise MdllmError(f"chain_ids has {len(chain_ids)} entries for {n_res} residues")
    _, chain_index = np.unique(chain_ids, return_inverse=True)
    ends = np.ones(n_res, bool)
    ends[:-1] = chain_ids[:-1] != chain_ids[1:]
    return chain_index.astype(np.int32), ends


def radius_of_gyration_A(xyz) -> np.ndarray:
    """(F,) radius of gyration of the CA atoms in Å."""
    ca = np.asarray(xyz, np.float64)[:, :, 1]
    centred = ca - ca.mean(axis=1, keepdims=True)
    return np.sqrt((centred**2).sum(-1).mean(-1)) * 10.0


def phi_psi_deg(xyz, chain_ends) -> tuple[np.ndarray, np.ndarray]:
    """Backbone phi and psi in degrees (F, L); NaN at chain ends."""
    from mdllm.geometry import dihedrals

    phi, psi, _ = dihedrals(xyz)
    phi, psi = np.degrees(phi.astype(np.float64)), np.degrees(psi.astype(np.float64))
    starts = np.roll(chain_ends, 1)
    phi[:, starts] = np.nan
    psi[:, chain_ends] = np.nan
    return phi, psi


def check_backbone(
    xyz, sequence: str | None = None, chain_ids=None, limits: ValidityLimits | None = None, backend: str = "cpp"
) -> ValidityReport:
    """Check every frame of backbones (F, L, 4, 3) nm (or a :class:`mdllm.io.Backbone`, whose
    sequence and chains are then used). ``backend`` 'cpp' (compiled kernels) or 'numpy'."""
    if hasattr(xyz, "xyz") and hasattr(xyz, "sequence"):
        sequence = sequence or xyz.sequence
        chain_ids = chain_ids if chain_ids is not None else xyz.chain_ids
    from mdllm.geometry import as_backbone_array

    xyz = as_backbone_array(xyz)
    n_frames, n_res = xyz.shape[:2]
    sequence = sequence or "X" * n_res
    if len(sequence) != n_res:
        raise MdllmError(f"sequence has {len(sequence)} residues, coordinates have {n_res}")
    limits = limits or ValidityLimits()
    if backend == "cpp":
        from mdllm.evaluate import kernels
    elif backend == "numpy":
        from mdllm.evaluate import kernels_numpy as kernels
    else:
        raise MdllmError(f"unknown validity backend '{backend}' (use 'cpp' or 'numpy')")
    chain_index, chain_ends = _chain_layout(n_res, chain_ids)

    finite = np.isfinite(xyz).all(axis=(1, 2, 3))
    bonds = kernels.check_bonds(xyz, chain_ends, _ideal_table(), limits.max_z, limits.break_A / 10.0)
    clashes = kernels.find_clashes(
        xyz, chain_index, VDW_RADII_NM, limits.clash_overlap_A / 10.0, limits.ca_min_A / 10.0, limits.min_separation
    )
    phi, psi = phi_psi_deg(xyz, chain_ends)
    levels = ramachandran.levels(phi, psi, ramachandran.residue_classes(sequence, chain_ends))
    defined = np.maximum((levels != ramachandran.UNDEFINED).sum(axis=1), 1)
    rama_out = (levels == ramachandran.OUTLIER).sum(axis=1) / defined
    rama_fav = (levels == ramachandran.FAVOURED).sum(axis=1) / defined
    rg = radius_of_gyration_A(xyz)

    def label(i):
        return f"{sequence[i]}{i + 1}"

    reasons: list[list[str]] = []
    for f in range(n_frames):
        why = []
        if not finite[f]:
            why.append("non-finite: NaN or inf coordinates")
            reasons.append(why)
            continue
        if bonds.n_breaks[f]:
            why.append(f"chain break: {bonds.n_breaks[f]} C-N distance(s) > {limits.break_A:g} A")
        if bonds.n_bond_outliers[f] + bonds.n_angle_outliers[f] > limits.max_geometry_outliers:
            why.append(
                f"geometry: {bonds.n_bond_outliers[f]} bond and {bonds.n_angle_outliers[f]} angle "
                f"outlier(s) > {limits.max_z:g} sigma (worst bond {bonds.worst_bond_z[f]:.1f} sigma at "
                f"{label(bonds.worst_bond_res[f])}, angle {bonds.worst_angle_z[f]:.1f} sigma at "
                f"{label(bonds.worst_angle_res[f])})"
            )
        if clashes.n_clashes[f] > limits.max_clashes or clashes.n_ca_clashes[f]:
            i, j = clashes.worst_pair[f]
            worst = f", worst {clashes.worst_overlap[f] * 10:.2f} A between {label(i)} and {label(j)}" if i >= 0 else ""
            why.append(
                f"clash: {clashes.n_clashes[f]} backbone atom pair(s) overlapping > "
                f"{limits.clash_overlap_A:g} A, {clashes.n_ca_clashes[f]} CA pair(s) < {limits.ca_min_A:g} A{worst}"
            )
        if rama_out[f] > limits.max_rama_outlier_fraction:
            why.append(
                f"ramachandran: {rama_out[f]:.1%} of residues in outlier regions "
                f"(> {limits.max_rama_outlier_fraction:.1%})"
            )
        if limits.rg_range_A is not None and not limits.rg_range_A[0] <= rg[f] <= limits.rg_range_A[1]:
            why.append(
                f"rg: radius of gyration {rg[f]:.1f} A outside {limits.rg_range_A[0]:g}-{limits.rg_range_A[1]:g} A"
            )
        reasons.append(why)

    return ValidityReport(
        valid=np.array([not r for r in reasons], bool),
        reasons=reasons,
        finite=finite,
        n_bond_outliers=bonds.n_bond_outliers,
        n_angle_outliers=bonds.n_angle_outliers,
        n_breaks=bonds.n_breaks,
        worst_bond_z=bonds.worst_bond_z,
        worst_angle_z=bonds.worst_angle_z,
        n_clashes=clashes.n_clashes,
        n_ca_clashes=clashes.n_ca_clashes,
        worst_overlap_A=clashes.worst_overlap * 10.0,
        rama_outlier_fraction=rama_out,
        rama_favoured_fraction=rama_fav,
        rg_A=rg,
        phi_deg=phi,
        psi_deg=psi,
        rama_levels=levels,
        limits=limits,
    )


def filter_frames(backbone, limits: ValidityLimits | None = None):
    """The valid frames of a :class:`mdllm.io.Backbone` and the report that judged them; for
    ``mdllm generate --filter``."""
    report = check_backbone(backbone, limits=limits)
    return backbone[np.flatnonzero(report.valid)], report
