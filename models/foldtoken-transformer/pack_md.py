"""Pack MD/NMR frames into a backbone npz (coords in Angstrom, offsets, ids), one segment per frame,
so that `mdllm tokenizer train --md frames.npz` can use them on a machine without mdtraj (the GPU
machine of stage 3 in RECIPE.md). Usage: python models/foldtoken/pack_md.py OUT.npz TRAJ[:TOP] ..."""

import sys

from mdllm.errors import MdllmError
from mdllm.io import load_backbone
from mdllm.tokenizer.data import write_segments


def main(out, specs):
    frames = []
    for spec in specs:
        path, _, top = spec.partition(":")
        frames.extend(load_backbone(path, top=top or None).xyz)
    write_segments(out, [(f"md:{i}:0", xyz) for i, xyz in enumerate(frames)])
    print(f"{len(frames)} frames -> {out}")


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2:])
    except MdllmError as exc:
        sys.exit(f"error: {exc}")
