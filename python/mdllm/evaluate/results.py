"""The arrays an evaluation computes besides its numbers (metrics.json): what the plots draw. Each
field is None (or empty) when its analysis did not run, e.g. everything ``ref_*`` without a reference
trajectory or the state RMSDs without named states."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvaluationData:
    # validity and global checks, per frame
    validity: object = None  # ValidityReport of the generated frames
    reference_validity: object = None  # ValidityReport of the reference frames
    global_report: object = None  # plausibility.GlobalReport
    acceptable: np.ndarray | None = None  # (F,) bool: valid and globally plausible
    # named states: CA RMSD (Å) of each frame to each state, (states, frames), and the frame times (ps)
    state_names: list[str] = field(default_factory=list)
    gen_rmsd: np.ndarray | None = None
    gen_time: np.ndarray | None = None
    ref_rmsd: np.ndarray | None = None
    ref_time: np.ndarray | None = None
    # structural comparison on the residues both trajectories share
    rmsf_residues: np.ndarray | None = None  # residue numbers of the RMSF profiles
    gen_rmsf: np.ndarray | None = None  # Å
    ref_rmsf: np.ndarray | None = None
    gen_pairs: np.ndarray | None = None  # pairwise CA RMSD between frames (Å)
    ref_pairs: np.ndarray | None = None
    gen_phi: np.ndarray | None = None  # (F, L) degrees
    gen_psi: np.ndarray | None = None
    ref_phi: np.ndarray | None = None
    ref_psi: np.ndarray | None = None
    # kinetics: TICA projections (frames, components) and the Markov-model timescales per trajectory
    tica_base: np.ndarray | None = None  # of the trajectory TICA was fitted on (the reference, if any)
    tica_gen: np.ndarray | None = None
    msm: dict = field(default_factory=dict)  # "generated"/"reference" -> lag_ps, timescales_ps, counts, ...
    # all-atom rebuilds: "generated"/"reference" -> rebuild.RebuildResult
    rebuild: dict = field(default_factory=dict)
