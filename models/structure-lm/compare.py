"""Validation loss of several models on the same held-out windows, per data list, as a Markdown table.

    python models/structure-lm/compare.py --lists build/lm-data/base.txt build/lm-data/md.txt \
        --models OLD_DIR NEW_DIR [--window 4] [--val-fraction 0.1]

Validation windows are those `mdllm train` holds out (the last val-fraction of every trajectory's
frames), so each model is scored on frames it never trained on, whichever list it was trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lists", nargs="+", required=True, help="data lists (one token file per line)")
    p.add_argument("--models", nargs="+", required=True, help="model directories")
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from mdllm.lm import store
    from mdllm.lm.data import load_token_files, windows
    from mdllm.lm.train import Distributed, evaluate

    torch.set_num_threads(args.threads)
    models = {m: store.load(m) for m in args.models}
    print("| validation set | windows | " + " | ".join(f"`{m}` loss / accuracy" for m in args.models) + " |")
    print("|---|---:|" + "---:|" * len(args.models))
    for data_list in args.lists:
        data_list = Path(data_list)
        names = [line.split("#")[0].strip() for line in data_list.read_text().splitlines()]
        files = [data_list.parent / n for n in names if n]
        cells = []
        for model in models.values():
            trajs = load_token_files(files, model.vocab)
            _, val = windows(trajs, model.vocab, args.window, 1, args.val_fraction)
            r = evaluate(model, val, model.vocab.pad_id, 4, Distributed(), torch.device("cpu"))
            cells.append(f"{r['val_loss']:.4f} / {r['val_accuracy']:.4f}")
        print(f"| {data_list.name} | {len(val)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
