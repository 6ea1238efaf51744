"""Where the decoded frames of bench/motion_codes.py fail Ramachandran: phi/psi error of the round trip
(after projection with 300 iterations) and Ramachandran outliers per residue, for the shipped codebook
(1 stage) and shipped + residual K2 = 1024 (2 stages), on held-out Trp-cage and BBA (300 K rep1), next to
the MD frames' own outliers. Needs the codebooks cached by `python bench/motion_codes.py`.

Usage: nice -n 5 python docs/motion_residual/torsion_errors.py
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import motion_codes as mc  # noqa: E402
from mdllm.evaluate.validity import check_backbone  # noqa: E402
from mdllm.geometry import ramachandran  # noqa: E402
from mdllm.geometry.projection import project_to_key_geometry  # noqa: E402
from mdllm.io import load_backbone  # noqa: E402
from mdllm.tokenizer.motion import displacements, key_frames  # noqa: E402

books = [mc.codebook("shipped", 20), mc.codebook("res1024@shipped", 20)]
for name, xtc, top in [mc.HELD_OUT[0], mc.HELD_OUT[1]]:
    bb = load_backbone(ROOT / xtc, top=ROOT / top)
    key = bb.xyz[0].astype(np.float64)
    rot = key_frames(key)
    d = displacements(bb.xyz, key)
    f, l = d.shape[:2]
    md = check_backbone(bb)
    print(name, bb.sequence, "MD outliers per residue", (md.rama_levels == ramachandran.OUTLIER).sum(0))
    for nb in (1, 2):
        _, rec = mc.quantise(d.reshape(-1, 12), books[:nb])
        placed = mc.place(rec.reshape(f, l, 12), key, rot).astype(np.float32)
        p = project_to_key_geometry(placed, key.astype(np.float32), iterations=300)
        rep = check_backbone(p, bb.sequence, bb.chain_ids)
        print(f"  {nb} stage(s): outliers per residue", (rep.rama_levels == ramachandran.OUTLIER).sum(0))
        dphi = np.abs((rep.phi_deg - md.phi_deg + 180) % 360 - 180)
        dpsi = np.abs((rep.psi_deg - md.psi_deg + 180) % 360 - 180)
        print(
            f"     median |dphi| {np.nanmedian(dphi):.1f} deg, |dpsi| {np.nanmedian(dpsi):.1f}, "
            f"p95 {np.nanpercentile(dphi, 95):.1f}/{np.nanpercentile(dpsi, 95):.1f}"
        )
