"""The compiled validity kernels (mdllm._core) behind a numpy-shaped interface; the plain numpy
twins with the same signatures are in :mod:`mdllm.evaluate.kernels_numpy`.

Units are nanometres and radians, as in :mod:`mdllm.geometry`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mdllm import _core


class BondCheck(NamedTuple):
    """Per frame (F,) arrays; see cpp/include/mdllm/validity.hpp."""

    n_bond_outliers: np.ndarray
    n_angle_outliers: np.ndarray
    n_breaks: np.ndarray
    worst_bond_z: np.ndarray
    worst_angle_z: np.ndarray
    worst_bond_res: np.ndarray
    worst_angle_res: np.ndarray


class ClashCheck(NamedTuple):
    n_clashes: np.ndarray
    n_ca_clashes: np.ndarray
    worst_overlap: np.ndarray  # nm, largest positive overlap of radii; 0 when none overlap
    worst_pair: np.ndarray  # (F, 2) residue indices of that pair, -1 when none overlap


def check_bonds(xyz, chain_end, ideal, max_z: float, break_nm: float) -> BondCheck:
    """``ideal`` is the (16,) float array bond[4], bond_sigma[4], angle[4], angle_sigma[4]."""
    f, l = xyz.shape[:2]
    counts = [np.zeros(f, np.int32) for _ in range(3)]
    worst = [np.zeros(f, np.float32) for _ in range(2)]
    where = [np.zeros(f, np.int32) for _ in range(2)]
    _core.check_bonds(
        xyz,
        f,
        l,
        np.ascontiguousarray(chain_end, np.uint8),
        np.asarray(ideal, np.float32),
        float(max_z),
        float(break_nm),
        *counts,
        *worst,
        *where,
    )
    return BondCheck(*counts, *worst, *where)


def find_clashes(xyz, chain_index, radius, overlap_nm: float, ca_min_nm: float, min_separation: int) -> ClashCheck:
    f, l = xyz.shape[:2]
    n_clashes, n_ca = np.zeros(f, np.int32), np.zeros(f, np.int32)
    worst = np.zeros(f, np.float32)
    pair = np.zeros((f, 2), np.int32)
    _core.find_clashes(
        xyz,
        f,
        l,
        np.ascontiguousarray(chain_index, np.int32),
        np.asarray(radius, np.float32),
        float(overlap_nm),
        float(ca_min_nm),
        int(min_separation),
        n_clashes,
        n_ca,
        worst,
        pair,
    )
    return ClashCheck(n_clashes, n_ca, worst, pair)
