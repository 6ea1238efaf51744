"""Per-residue fluctuations (RMSF) and pairwise-RMSD distributions of CA atoms."""

from __future__ import annotations

import numpy as np


def rmsf_A(ca: np.ndarray, iterations: int = 3) -> np.ndarray:
    """(L,) RMSF in Å of CA positions (F, L, 3) nm about their mean, after superposing every frame
    onto the mean structure (start from frame 0, then re-superpose on the running mean)."""
    from mdllm.geometry import superpose

    ca = np.ascontiguousarray(ca, np.float32)
    ref = ca[0]
    for _ in range(iterations):
        aligned, _ = superpose(ca, ref)
        ref = aligned.mean(axis=0)
    aligned, _ = superpose(ca, ref)
    mean = aligned.mean(axis=0)
    return np.sqrt(((aligned - mean) ** 2).sum(-1).mean(0)) * 10.0


def pairwise_rmsd_A(ca: np.ndarray, max_frames: int = 500, seed: int = 0) -> np.ndarray:
    """Upper-triangle CA RMSD values (Å) between pairs of frames; at most ``max_frames`` frames,
    drawn evenly so the matrix stays small."""
    from mdllm.geometry import pairwise_rmsd

    ca = np.ascontiguousarray(ca, np.float32)
    if len(ca) > max_frames:
        ca = ca[np.linspace(0, len(ca) - 1, max_frames).astype(int)]
    matrix = pairwise_rmsd(ca) * 10.0
    return matrix[np.triu_indices(len(ca), k=1)]
