"""Plain or frame-scaled rotary positions: which lets a motion model read the previous frames?

Two models of the shipped base's shape are trained from scratch, the same steps, seed and data
(elastic-network token files of models/motion-lm/elastic_data.py, the last --held-out of them kept
out), one with plain positions (token i at position i) and one with positions scaled so that a
frame spans --span positions in every protein (mdllm.lm.model.ModelConfig.frame_span). Each then
scores the last frame of held-out 4-frame windows (nats per structure token, bench/likelihood.py's
context_use): with the context as it is and with the context frames' tokens shuffled between
residues. A model that reads the same residue's recent motion loses much by the shuffle; one that
does not scores both alike. Windows of held-out elastic-network trajectories, and zero-shot of the
held-out halves of data/md/<protein>/T300K_rep1 (proteins the data script keeps out).

Usage: python bench/positions.py [--data build/motion-lm-data] [--steps 800] [--span 256]
                                 [--held-out 20] [--out runs/positions] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from common import ROOT, machine, report
from likelihood import context_use

PROTEINS = ("trpcage_2JOF", "bba_1FME", "villin_2F4K")


def train(files, out: Path, span: int, steps: int, seed: int) -> float:
    from mdllm.lm.fit import NewModel, Windows, fit
    from mdllm.lm.train import TrainConfig

    t0 = time.perf_counter()
    if not (out / "model.safetensors").exists():
        fit(
            files,
            out,
            new=NewModel(preset="small", heads=4, kv_heads=1, frame_span=span),
            windows=Windows(window=4, stride=1, val_fraction=0.1),
            train=TrainConfig(max_steps=steps, epochs=1000, lr=1e-3, warmup_steps=30, seed=seed, progress=False),
        )
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "build" / "motion-lm-data"), help="folder with elastic.txt")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--span", type=int, default=256)
    p.add_argument("--held-out", type=int, default=20, help="elastic-network trajectories kept for scoring")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "positions"))
    args = p.parse_args()
    import torch

    from mdllm import tokenfile
    from mdllm.encoding import encode_backbone, load_tokenizers
    from mdllm.io import load_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    names = [n for n in (data / "elastic.txt").read_text().split() if n]
    train_files, held_files = [data / n for n in names[: -args.held_out]], [data / n for n in names[-args.held_out :]]
    held = [tokenfile.load(f) for f in held_files]
    tok, fold = load_tokenizers()
    md = {}
    for protein in PROTEINS:
        folder = ROOT / "data" / "md" / protein / "T300K_rep1"
        bb = load_backbone(folder / "trajectory.xtc", top=folder / "trajectory.pdb")
        md[protein] = (encode_backbone(bb, tok, key=bb[0:1], fold_tokenizer=fold), bb.n_frames // 2)

    rows, results = [], []
    for label, span in (("plain", 0), (f"frame span {args.span}", args.span)):
        out = Path(args.out) / f"span{span}"
        seconds = train(train_files, out, span, args.steps, args.seed)
        scores = []
        for tf in held:
            encoded = SimpleNamespace(backbone=SimpleNamespace(sequence=tf.sequence), tokens=tf.tokens)
            encoded.key_tokens = tf.key_tokens
            scores.append(context_use(out, encoded, 0, windows=10, seed=args.seed))
        elastic = np.mean(scores, axis=0)
        r = {"positions": label, "frame_span": span, "train_seconds": seconds, "elastic": list(elastic)}
        row = [label, elastic[0], elastic[1]]
        for protein, (encoded, half) in md.items():
            intact, shuffled = context_use(out, encoded, half, windows=60, seed=args.seed)
            r[protein] = [intact, shuffled]
            row += [intact, shuffled]
        results.append(r)
        rows.append(row)
    header = ["positions", "elastic: last frame", "elastic: shuffled"]
    for protein in PROTEINS:
        header += [f"{protein.split('_')[0]}: last frame", f"{protein.split('_')[0]}: shuffled"]
    report(
        f"Last-frame NLL (nats per token) of held-out windows after {args.steps} steps from scratch",
        header,
        rows,
        {"bench": "positions", "steps": args.steps, "results": results, **machine()},
    )


if __name__ == "__main__":
    main()
