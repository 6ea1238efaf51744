"""Pack MD/NMR frames into a backbone npz (coords in Angstrom, offsets, ids), one segment per frame,
so that `mdllm tokenizer train --md frames.npz` can use them on a machine without mdtraj (the GPU
machine of stage 3 in RECIPE.md). Usage: python models/foldtoken/pack_md.py OUT.npz TRAJ[:TOP] ..."""

import sys

import numpy as np

from mdllm.io import load_backbone


def main(out, specs):
    frames = []
    for spec in specs:
        path, _, top = spec.partition(":")
        frames.extend(load_backbone(path, top=top or None).xyz)
    offsets = np.cumsum([0] + [len(f) for f in frames])
    ids = np.array([f"md:{i}:0" for i in range(len(frames))])
    np.savez_compressed(out, coords=(np.concatenate(frames) * 10.0).astype(np.float32), offsets=offsets, ids=ids)
    print(f"{len(frames)} frames -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
