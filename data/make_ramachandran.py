"""Estimate the Ramachandran regions that ship in python/mdllm/geometry/ramachandran.npz.

Run from the repository root:  python data/make_ramachandran.py [/path/to/backbones_train.npz]

Source: the backbone set of the project's shared data folder (structures/backbones_train.npz, 3,083
experimental chain segments, 465,886 residues; see its PROVENANCE.md). The file records no resolution,
so every segment is used; the outlier contour is robust to that because it only excludes the sparsest
0.05 % (0.2 % for the smaller classes) of observed residues.

Method (in the spirit of MolProbity, Lovell et al. 2003, Proteins 50:437): phi/psi of every residue
with both neighbours present, split into four classes (general, glycine, proline, pre-proline);
per class a 2-degree periodic histogram smoothed with a Gaussian (sigma 4 degrees), normalised; the
"favoured" region is the highest-density area holding 98 % of the residues, the "allowed" region the
one holding 99.95 % (general) or 99.8 % (glycine, proline, pre-proline). Stored as uint8 levels
(0 outlier, 1 allowed, 2 favoured), shape (4, 180, 180) indexed [class, phi bin, psi bin], bins
starting at -180 degrees.
"""

import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mdllm.geometry import vectors

CLASSES = ("general", "glycine", "proline", "preproline")
BIN_DEG = 2.0
SMOOTH_DEG = 4.0
FAVOURED = 0.98
ALLOWED = {"general": 0.9995, "glycine": 0.998, "proline": 0.998, "preproline": 0.998}


def dihedral(a, b, c, d):
    return np.degrees(vectors.dihedral(a, b, c, d))  # IUPAC sign, as mdllm.geometry


def phi_psi_classes(coords, offsets, sequences):
    phis, psis, classes = [], [], []
    for start, end, seq in zip(offsets[:-1], offsets[1:], sequences):
        x = coords[start:end].astype(np.float64)
        n, ca, c = x[:, 0], x[:, 1], x[:, 2]
        phi = dihedral(c[:-2], n[1:-1], ca[1:-1], c[1:-1])
        psi = dihedral(n[1:-1], ca[1:-1], c[1:-1], n[2:])
        seq = np.array(list(seq))
        here, after = seq[1:-1], seq[2:]
        cls = np.zeros(len(here), np.int64)
        cls[after == "P"] = 3
        cls[here == "G"] = 1
        cls[here == "P"] = 2
        phis.append(phi), psis.append(psi), classes.append(cls)
    return np.concatenate(phis), np.concatenate(psis), np.concatenate(classes)


def levels_for(phi, psi, allowed_fraction):
    n_bins = int(360 / BIN_DEG)
    edges = np.linspace(-180, 180, n_bins + 1)
    hist, _, _ = np.histogram2d(phi, psi, bins=[edges, edges])
    density = gaussian_filter(hist, SMOOTH_DEG / BIN_DEG, mode="wrap")
    density /= density.sum()
    i = np.clip(((phi + 180) / BIN_DEG).astype(int), 0, n_bins - 1)
    j = np.clip(((psi + 180) / BIN_DEG).astype(int), 0, n_bins - 1)
    at_residues = np.sort(density[i, j])
    # The density value below which the given fraction of residues lies is the contour level.
    favoured_level = at_residues[int((1 - FAVOURED) * len(at_residues))]
    allowed_level = at_residues[int((1 - allowed_fraction) * len(at_residues))]
    levels = np.zeros(density.shape, np.uint8)
    levels[density >= allowed_level] = 1
    levels[density >= favoured_level] = 2
    return levels


def main():
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/structures/backbones_train.npz")
    data = np.load(source)
    phi, psi, cls = phi_psi_classes(data["coords"], data["offsets"], data["sequences"])
    ok = np.isfinite(phi) & np.isfinite(psi)
    grids, counts = [], []
    for k, name in enumerate(CLASSES):
        sel = ok & (cls == k)
        grids.append(levels_for(phi[sel], psi[sel], ALLOWED[name]))
        counts.append(int(sel.sum()))
        print(
            f"{name:<11} residues {sel.sum():>7}  favoured {np.mean(grids[-1] == 2):.3f}  "
            f"allowed+favoured {np.mean(grids[-1] >= 1):.3f} of the plane"
        )
    out = Path("python/mdllm/geometry/ramachandran.npz")
    np.savez_compressed(
        out,
        levels=np.stack(grids),
        classes=np.array(CLASSES),
        bin_deg=BIN_DEG,
        residues=np.array(counts),
        source=str(source.name),
    )
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
