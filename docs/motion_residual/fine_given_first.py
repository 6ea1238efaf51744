"""Does the first motion code predict its fine code? Bits per fine token on held-out MD of a per-code table
P(fine | first code), counted on the tokenizer's training MD (each trajectory against its first frame and
three random frames) and backed off towards the marginal, against the marginal alone and a uniform draw
(log2 1024 = 10 bits). Run from the repository root: python docs/motion_residual/fine_given_first.py"""

import numpy as np

from mdllm.io import load_backbone
from mdllm.tokenizer.motion import MotionTokenizer

tok = MotionTokenizer.load()
rng = np.random.default_rng(0)


def md(protein, run):
    return f"data/md/{protein}/{run}/trajectory.xtc", f"data/md/{protein}/{run}/trajectory.pdb"


def pairs(traj, top, keys, second_half=False):
    """(first code, fine code) of every residue that takes a fine code, against `keys` key frames."""
    xyz = load_backbone(traj, top=top).xyz
    xyz = xyz[len(xyz) // 2 :] if second_half else xyz
    out = []
    for k in [0, *rng.integers(0, len(xyz), keys - 1)]:
        first, fine = tok.encode_fine(xyz, xyz[k])
        out.append(np.stack([first[fine >= 0], fine[fine >= 0]], 1))
    return np.concatenate(out)


training = [
    md(p, r)
    for p in ("chignolin_5AWL", "trpcage_2JOF", "bba_1FME", "villin_2F4K")
    for r in ("T300K_rep0", "T360K_rep0")
]
training.append(("data/adk/adk_dims.xtc", "data/adk/adk_dims.pdb"))
seen = np.concatenate([pairs(*s, keys=4) for s in training])
counts = np.zeros((tok.codebook_size, tok.fine_codes.size))
np.add.at(counts, (seen[:, 0], seen[:, 1]), 1)
marginal = counts.sum(0) + 1
marginal /= marginal.sum()
print(f"{len(seen)} training pairs; bits per fine token (table ; marginal), held out:")

held_out = {p: (*md(p, "T300K_rep1"), True) for p in ("trpcage_2JOF", "bba_1FME", "villin_2F4K", "ntl9_2HBB")}
held_out["AdK DIMS2"] = ("data/adk/adk_dims2.xtc", "data/adk/adk_dims2.pdb", False)
held_out["AdK GBIS"] = ("data/adk/adk_gbis_tmd-fast1_NAMD.xtc", "data/adk/adk_gbis_tmd-fast1_NAMD.pdb", False)
tests = {name: pairs(t, top, keys=1, second_half=half) for name, (t, top, half) in held_out.items()}
for alpha in (0.05, 0.2, 1.0):  # weight of the marginal, in pseudo-counts per fine code
    cells = []
    for name, h in tests.items():
        rows = counts[h[:, 0]] + alpha * tok.fine_codes.size * marginal
        p = rows[np.arange(len(h)), h[:, 1]] / rows.sum(1)
        cells.append(f"{name} {-np.log2(p).mean():.2f} ; {-np.log2(marginal[h[:, 1]]).mean():.2f} (n {len(h)})")
    print(f"alpha {alpha}: " + ", ".join(cells))
