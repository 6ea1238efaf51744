"""Global plausibility of frames: is each frame still the user's protein, folded as it was?

The local checks of :mod:`mdllm.evaluate.validity` (bonds, angles, Ramachandran, clashes) pass for a
well-built unfolded chain. These global checks judge the whole chain, per frame:

- compaction: CA radius of gyration against the start structure and, when given, the reference MD
  (tolerance from the reference's own spread); without a reference, also against the length-based
  expectation for folded chains;
- native contacts: fraction Q of the start structure's contacts kept (Best, Hummer & Eaton 2013,
  PNAS 110:17874, on the backbone heavy atoms N, CA, C, O);
- distance to the reference ensemble: CA-RMSD to the nearest reference frame, against the
  reference's own spread.

A frame is ``acceptable`` when it is valid (local checks) and plausible (global checks).
:class:`GlobalCheck` is built once from a start structure (and a reference) and then judges any
number of frames: ``mdllm evaluate``, ``mdllm generate --filter`` and the generation guard use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mdllm.errors import MdllmError

# Length-based expectations of the CA radius of gyration (Å) of a chain of N residues:
# folded globular proteins Rg ~ 2.2 N^0.38 (Skolnick et al. 1997, J Mol Biol 265:217; Hong & Lei 2009,
# J Mol Biol 392:1133) and chemically denatured chains Rg ~ 1.927 N^0.598 (Kohn et al. 2004, PNAS 101:12491).
RG_FOLDED = (2.2, 0.38)
RG_COIL = (1.927, 0.598)


def rg_folded_A(n_residues: int) -> float:
    return RG_FOLDED[0] * n_residues ** RG_FOLDED[1]


def rg_coil_A(n_residues: int) -> float:
    return RG_COIL[0] * n_residues ** RG_COIL[1]


def rg_unfolded_threshold_A(n_residues: int) -> float:
    """Geometric mean of the folded and the random-coil expectation: a chain above it is closer (on a
    log scale) to a random coil of its length than to a folded protein of its length."""
    return float(np.sqrt(rg_folded_A(n_residues) * rg_coil_A(n_residues)))


@dataclass(frozen=True)
class GlobalLimits:
    """How far from the start structure and the reference a plausible frame may be."""

    # A value is compatible with a distribution within this many of its standard deviations (a normal
    # sample leaves +-4 sigma once in 16 000 frames).
    sigmas: float = 4.0
    # Smallest relative spread of the radius of gyration assumed: folded proteins fluctuate by 1-2 %
    # in Rg at 300 K, and a short reference (or none) underestimates its own spread.
    rg_min_relative_sigma: float = 0.02
    # Without a reference the start alone cannot say how far a domain may move: a frame may also reach
    # this multiple of the folded expectation 2.2 N^0.38 (elongated and two-domain folds lie up to
    # about 1.3x above the fit; adenylate kinase opening takes Rg from 1.0x to 1.18x of it), but never
    # the geometric mean of the folded and the random-coil expectation (closer to a coil than a fold).
    rg_folded_scatter: float = 1.3
    # Best-Hummer-Eaton native contacts: heavy-atom pairs of residues more than 3 apart, closer than
    # 4.5 Å in the start structure; smoothing beta 5 /Å, tolerance lambda 1.8 (their all-atom values).
    contact_cutoff_A: float = 4.5
    contact_min_separation: int = 4
    q_beta_per_A: float = 5.0
    q_lambda: float = 1.8
    # Q below which a frame has lost its fold. Folding simulations of small proteins put the unfolded
    # basin at Q < 0.5 and the transition state at Q ~ 0.6-0.7 (Best, Hummer & Eaton 2013); a folded
    # frame keeps more than the transition state's contacts. A reference that itself samples lower
    # Q (sigmas below its mean) lowers the threshold; it never raises it.
    q_folded: float = 0.6
    # Reference basin: a frame is inside when its nearest reference frame is no farther than the
    # reference's own spread (this quantile of its pairwise CA-RMSD), and never less than
    # basin_min_A, the CA-RMSD within which mdllm calls two frames the same state.
    basin_quantile: float = 0.95
    basin_min_A: float = 1.5
    max_reference_frames: int = 1000  # reference frames compared (evenly spaced) to bound the work


def native_contacts(start_xyz, limits: GlobalLimits = GlobalLimits()):
    """(i, j, r0_nm): backbone heavy-atom pairs in contact in the start structure (L, 4, 3) nm."""
    xyz = np.asarray(start_xyz, np.float64).reshape(-1, 3)
    residue = np.repeat(np.arange(len(xyz) // 4), 4)
    i, j = np.triu_indices(len(xyz), k=1)
    far_in_sequence = residue[j] - residue[i] >= limits.contact_min_separation
    i, j = i[far_in_sequence], j[far_in_sequence]
    r0 = np.linalg.norm(xyz[i] - xyz[j], axis=-1)
    close = r0 < limits.contact_cutoff_A / 10.0
    return i[close], j[close], r0[close]


def fraction_native_contacts(xyz, contacts, limits: GlobalLimits = GlobalLimits()) -> np.ndarray:
    """(F,) Best-Hummer-Eaton Q of frames (F, L, 4, 3) nm for ``contacts`` from :func:`native_contacts`."""
    i, j, r0 = contacts
    xyz = np.asarray(xyz, np.float64)
    if not len(i):
        return np.ones(len(xyz))
    flat = xyz.reshape(len(xyz), -1, 3)
    out = np.empty(len(xyz))
    for start in range(0, len(xyz), 256):  # bounded memory
        r = np.linalg.norm(flat[start : start + 256, i] - flat[start : start + 256, j], axis=-1)
        x = np.clip(limits.q_beta_per_A * 10.0 * (r - limits.q_lambda * r0), -50, 50)
        out[start : start + 256] = (1.0 / (1.0 + np.exp(x))).mean(axis=1)
    return out


def radius_of_gyration_A(xyz) -> np.ndarray:
    from mdllm.evaluate.validity import radius_of_gyration_A as rg

    return rg(xyz)


def nearest_rmsd_A(ca, reference_ca) -> np.ndarray:
    """(F,) CA-RMSD in Å of every frame (F, M, 3) nm to its nearest frame of ``reference_ca`` (R, M, 3)."""
    from mdllm.geometry import rmsd

    ca = np.ascontiguousarray(ca, np.float32)
    best = np.full(len(ca), np.inf)
    for ref in np.asarray(reference_ca, np.float32):
        np.minimum(best, rmsd(ca, np.ascontiguousarray(ref)) * 10.0, out=best)
    return best


def _even(n: int, at_most: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, at_most)).astype(int))


class GlobalCheck:
    """Global plausibility of frames of one protein, relative to a start structure (L, 4, 3) nm and
    optionally a reference ensemble (R, L, 4, 3) nm on the same residues.

    ``check(xyz)`` returns (plausible (F,), reasons per frame, measures); the thresholds are derived
    here, once, and listed by :meth:`summary`."""

    def __init__(
        self,
        start_xyz,
        reference_xyz=None,
        limits: GlobalLimits = GlobalLimits(),
        length_expectation: bool | None = None,
    ):
        start = np.asarray(start_xyz, np.float64)
        if start.ndim != 3 or start.shape[1:] != (4, 3):
            raise MdllmError(f"start structure must be (L, 4, 3), got {start.shape}")
        if not np.isfinite(start).all():
            raise MdllmError("start structure has non-finite coordinates")
        self.limits = limits
        self.n_residues = len(start)
        self.start_xyz = start
        self.contacts = native_contacts(start, limits)
        self.start_rg = float(radius_of_gyration_A(start[None])[0])
        k = limits.sigmas
        self.reference = None
        self.derived: dict = {
            "start_rg_A": self.start_rg,
            "native_contacts": int(len(self.contacts[0])),
            "rg_folded_expected_A": rg_folded_A(self.n_residues),
            "rg_coil_expected_A": rg_coil_A(self.n_residues),
        }
        if reference_xyz is not None:
            ref = np.asarray(reference_xyz, np.float32)
            if ref.ndim != 4 or ref.shape[1:] != start.shape:
                raise MdllmError(f"reference frames {ref.shape[1:]} do not match the start structure {start.shape}")
            ref = ref[np.isfinite(ref).all(axis=(1, 2, 3))]
            if not len(ref):
                raise MdllmError("reference has no frame with finite coordinates")
            ref_rg = radius_of_gyration_A(ref)
            ref_q = fraction_native_contacts(ref, self.contacts, limits)
            sigma = max(float(ref_rg.std()), limits.rg_min_relative_sigma * float(ref_rg.mean()))
            centres = (self.start_rg, float(ref_rg.mean()))
            self.rg_band = (min(centres) - k * sigma, max(centres) + k * sigma)
            self.q_min = float(min(limits.q_folded, ref_q.mean() - k * ref_q.std()))
            self.reference = np.ascontiguousarray(ref[_even(len(ref), limits.max_reference_frames), :, 1])
            from mdllm.evaluate.fluctuations import pairwise_rmsd_A

            pairs = pairwise_rmsd_A(self.reference) if len(self.reference) > 1 else np.zeros(1)
            self.basin_A = float(max(np.quantile(pairs, limits.basin_quantile), limits.basin_min_A))
            self.derived.update(
                reference_frames=int(len(ref)),
                reference_rg_A={"mean": float(ref_rg.mean()), "std": float(ref_rg.std())},
                reference_q={"mean": float(ref_q.mean()), "std": float(ref_q.std()), "min": float(ref_q.min())},
                reference_pairwise_rmsd_A_quantile=float(np.quantile(pairs, limits.basin_quantile)),
            )
            self.length_expectation = False if length_expectation is None else length_expectation
        else:
            sigma = limits.rg_min_relative_sigma * self.start_rg
            self.rg_band = (self.start_rg - k * sigma, self.start_rg + k * sigma)
            self.q_min = limits.q_folded
            self.basin_A = None
            self.length_expectation = True if length_expectation is None else length_expectation
        self.rg_unfolded_A = rg_unfolded_threshold_A(self.n_residues)
        if self.length_expectation:  # without a reference: up to a folded chain's size, never coil-like
            hi = max(self.rg_band[1], limits.rg_folded_scatter * rg_folded_A(self.n_residues))
            self.rg_band = (self.rg_band[0], min(hi, self.rg_unfolded_A))
        self.derived.update(
            rg_band_A=list(self.rg_band),
            rg_sigma_A=sigma,
            q_min=self.q_min,
            basin_A=self.basin_A,
            rg_unfolded_threshold_A=self.rg_unfolded_A,
            length_expectation_applied=self.length_expectation,
        )

    def measure(self, xyz) -> dict:
        xyz = np.asarray(xyz, np.float32)
        out = {"rg_A": radius_of_gyration_A(xyz), "q": fraction_native_contacts(xyz, self.contacts, self.limits)}
        if self.reference is not None:
            out["nearest_reference_rmsd_A"] = nearest_rmsd_A(xyz[:, :, 1], self.reference)
        return out

    def check(self, xyz, measures: dict | None = None):
        """(plausible (F,), reasons (list of lists of str), measures) for frames (F, L, 4, 3) nm."""
        xyz = np.asarray(xyz, np.float32)
        if xyz.ndim != 4 or xyz.shape[1:] != self.start_xyz.shape:
            raise MdllmError(f"frames {xyz.shape[1:]} do not match the start structure {self.start_xyz.shape}")
        m = measures or self.measure(xyz)
        lo, hi = self.rg_band
        reasons: list[list[str]] = []
        for f in range(len(xyz)):
            why = []
            rg, q = m["rg_A"][f], m["q"][f]
            if not np.isfinite(rg) or not lo <= rg <= hi:
                why.append(f"compaction: radius of gyration {rg:.1f} A outside {lo:.1f}-{hi:.1f} A")
            if not q >= self.q_min:
                why.append(f"native contacts: Q {q:.2f} < {self.q_min:.2f}")
            if self.reference is not None:
                d = m["nearest_reference_rmsd_A"][f]
                if not d <= self.basin_A:
                    why.append(f"far from reference: nearest reference frame {d:.1f} A CA-RMSD > {self.basin_A:.1f} A")
            reasons.append(why)
        return np.array([not r for r in reasons], bool), reasons, m

    def summary(self) -> dict:
        return {"limits": asdict(self.limits), **self.derived}


@dataclass
class PlausibilityReport:
    """Global checks of every frame and the resulting class: acceptable = valid and plausible."""

    plausible: np.ndarray
    acceptable: np.ndarray
    reasons: list[list[str]]
    measures: dict
    check: GlobalCheck

    def summary(self) -> dict:
        def stats(a):
            a = np.asarray(a, np.float64)
            a = a[np.isfinite(a)]
            return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())} if a.size else None

        counts: dict[str, int] = {}
        for reasons in self.reasons:
            for kind in {r.split(":")[0] for r in reasons}:
                counts[kind] = counts.get(kind, 0) + 1
        n = len(self.plausible)
        kinds = [{r.split(":")[0] for r in reasons} for reasons in self.reasons]
        compact = np.array(["compaction" not in k for k in kinds], bool)
        folded = np.array(["compaction" not in k and "native contacts" not in k for k in kinds], bool)
        out = {
            "plausible_frames": int(self.plausible.sum()),
            "compact_fraction": float(compact.mean()) if n else 0.0,
            "folded_fraction": float(folded.mean()) if n else 0.0,
            "plausible_fraction": float(self.plausible.mean()) if n else 0.0,
            "implausible_frames_by_reason": dict(sorted(counts.items())),
            "rg_A": stats(self.measures["rg_A"]),
            "q": stats(self.measures["q"]),
            **self.check.summary(),
        }
        if "nearest_reference_rmsd_A" in self.measures:
            d = self.measures["nearest_reference_rmsd_A"]
            out["nearest_reference_rmsd_A"] = stats(d)
            out["in_reference_basin_fraction"] = float(np.mean(d <= self.check.basin_A)) if n else 0.0
        return out


def check_global(
    xyz, valid, start_xyz, reference_xyz=None, limits: GlobalLimits = GlobalLimits()
) -> PlausibilityReport:
    """Global checks of frames (F, L, 4, 3) nm; ``valid`` (F,) from the local checks."""
    check = GlobalCheck(start_xyz, reference_xyz, limits)
    plausible, reasons, measures = check.check(xyz)
    return PlausibilityReport(plausible, plausible & np.asarray(valid, bool), reasons, measures, check)
