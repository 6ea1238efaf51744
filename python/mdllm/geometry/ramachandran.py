"""Ramachandran regions estimated from experimental structures (see data/make_ramachandran.py):
per residue class a (180, 180) grid of levels 0 outlier, 1 allowed, 2 favoured on phi x psi."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

GRID_FILE = Path(__file__).with_name("ramachandran.npz")
CLASSES = ("general", "glycine", "proline", "preproline")
OUTLIER, ALLOWED, FAVOURED, UNDEFINED = 0, 1, 2, 255


@lru_cache(maxsize=1)
def grid() -> tuple[np.ndarray, float]:
    """The (4, n, n) uint8 level grid and its bin width in degrees."""
    data = np.load(GRID_FILE)
    return data["levels"], float(data["bin_deg"])


def residue_classes(sequence: str, chain_ends: np.ndarray | None = None) -> np.ndarray:
    """(L,) class index per residue: glycine, proline, pre-proline (followed by P in its chain)
    or general."""
    seq = np.array(list(sequence))
    ends = np.zeros(len(seq), bool) if chain_ends is None else np.asarray(chain_ends, bool)
    classes = np.zeros(len(seq), np.int64)
    before_pro = np.zeros(len(seq), bool)
    before_pro[:-1] = (seq[1:] == "P") & ~ends[:-1]
    classes[before_pro] = 3
    classes[seq == "G"] = 1
    classes[seq == "P"] = 2
    return classes


def levels(phi_deg: np.ndarray, psi_deg: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(F, L) region levels; UNDEFINED where phi or psi is NaN (chain ends, bad coordinates)."""
    table, bin_deg = grid()
    n_bins = table.shape[1]
    ok = np.isfinite(phi_deg) & np.isfinite(psi_deg)
    i = np.clip(((np.where(ok, phi_deg, 0.0) + 180.0) // bin_deg).astype(np.int64), 0, n_bins - 1)
    j = np.clip(((np.where(ok, psi_deg, 0.0) + 180.0) // bin_deg).astype(np.int64), 0, n_bins - 1)
    cls = np.broadcast_to(classes, phi_deg.shape)
    return np.where(ok, table[cls, i, j], UNDEFINED).astype(np.uint8)
