"""Molecular dynamics with OpenMM: from a start structure to checkpointed, resumable trajectories.

``simulate(start, out_dir, ...)`` prepares the structure (PDBFixer), builds an amber14 system in
GBn2 implicit or TIP3P-FB explicit solvent with 4 fs steps (hydrogen mass repartitioning), then
minimizes, equilibrates and runs every temperature and replica, committing frames and checkpoints
atomically. Needs the ``physics`` extra (openmm, pdbfixer).
"""

from mdllm.simulate.run import Plan, Preparation, derive_seed, simulate
from mdllm.simulate.system import Physics

__all__ = ["simulate", "Plan", "Preparation", "Physics", "derive_seed"]
