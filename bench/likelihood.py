"""Does the language model predict held-out motion tokens better than a model without context?

For each protein of a ``bench/realism.py`` run (its fine-tuned motion model in
``OUT/<protein>/motion/export/model.gguf``), the held-out second half of
data/md/<protein>/<run>/trajectory.xtc is encoded against its frame 0 and scored, token by token, by:

- uniform: log K;
- marginal: each residue's own token frequencies in the training half (add-0.1 smoothing over the K
  codes; the number depends on that smoothing), with no context at all;
- base LM: the shipped base model (models/motion-lm, or --base), rolling window of 4 frames;
- fine-tuned LM: the realism run's model, same window.

Numbers are nats per token (structure tokens and frame separators, as ``mdllm score`` counts them);
lower is better. A fine-tuned model that does not beat "marginal" has learnt nothing about how residues
move together or in time.

Does the model use its context? Four more columns score, with the PyTorch models (the base's folder,
and the fine-tuned ``OUT/<protein>/motion/finetune``), the last frame of 120 random held-out 4-frame
windows (structure tokens only): as they are, and with the tokens of the three context frames shuffled
between residues (the same codes, each at another residue). A model that reads the same residue's
recent motion loses much by the shuffle.

Usage: python bench/likelihood.py [--out runs/realism] [--proteins trpcage_2JOF bba_1FME villin_2F4K]
                                  [--run T300K_rep1] [--base MODEL.gguf]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, machine, report

from mdllm.encoding import encode_backbone
from mdllm.generate import Generator
from mdllm.io import load_backbone
from mdllm.paths import model_path


def marginal_nll(first_tokens, held_tokens, k: int, smoothing: float = 0.1) -> float:
    """Mean -log p of the held-out tokens under each residue's smoothed training-half frequencies."""
    n_res = first_tokens.shape[1]
    counts = np.full((n_res, k), smoothing)
    for i in range(n_res):
        counts[i] += np.bincount(first_tokens[:, i], minlength=k)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-logp[np.arange(n_res)[None], held_tokens].mean())


def lm_nll(gen: Generator, md, half: int) -> float:
    """Mean -log p per token of frames half.. under ``gen``, keyed on frame 0 (as in fine-tuning)."""
    frames = md[[0, *range(half, md.n_frames)]]
    loglik = gen.score(frames, window=4)[1:]  # frame 0 only sets the key
    return float(-loglik.sum() / (len(loglik) * (md.n_residues + 1)))


def context_use(model_dir, encoded, half: int, windows: int = 120, seed: int = 0) -> tuple[float, float]:
    """(intact, context shuffled) mean -log p of the last frame's structure tokens of random held-out
    4-frame windows (frames half.. of ``encoded``, mdllm.encoding.Encoded) under the PyTorch model in
    ``model_dir``."""
    import torch
    import torch.nn.functional as F

    from mdllm.lm import store

    model = store.load(model_dir).eval()
    sequence = encoded.backbone.sequence
    held = encoded.tokens[half:]
    n_res = held.shape[1]
    rng = np.random.default_rng(seed)
    starts = rng.choice(len(held) - 3, min(windows, len(held) - 3), replace=False)
    totals = np.zeros(2)
    for start in starts:
        window = held[start : start + 4]
        shuffled = window.copy()
        shuffled[:3] = window[:3, rng.permutation(n_res)]
        for i, frames in enumerate((window, shuffled)):
            ids, _ = model.vocab.example(sequence, frames, key_tokens=encoded.key_tokens)
            with torch.no_grad():
                log_p = F.log_softmax(model(torch.as_tensor(ids)[None])[0].float(), dim=-1)
            first = len(ids) - (n_res + 1)  # the last frame's first structure token
            targets = torch.as_tensor(ids[first : len(ids) - 1])
            totals[i] += -log_p[first - 1 : len(ids) - 2].gather(1, targets[:, None]).mean().item()
    return tuple(totals / len(starts))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "runs" / "realism"), help="output folder of bench/realism.py")
    p.add_argument("--proteins", nargs="+", default=["trpcage_2JOF", "bba_1FME", "villin_2F4K"])
    p.add_argument("--run", default="T300K_rep1", help="run folder of data/md/<protein>/")
    p.add_argument("--base", help="GGUF of the base model the realism run fine-tuned (default: models/motion-lm)")
    args = p.parse_args()
    base_gguf = Path(args.base) if args.base else model_path("motion-lm") / "motion-lm.f16.gguf"
    base = Generator(base_gguf)
    rows, results = [], []
    for protein in args.proteins:
        folder = ROOT / "data" / "md" / protein / args.run
        md = load_backbone(folder / "trajectory.xtc", top=folder / "trajectory.pdb")
        half = md.n_frames // 2
        tok = base.tokenizer
        encoded = encode_backbone(md, tok, key=md[0:1])
        first, held = encoded.tokens[:half], encoded.tokens[half:]
        tuned = Generator(Path(args.out) / protein / "motion" / "export" / "model.gguf")
        r = {
            "protein": protein,
            "held_out_frames": md.n_frames - half,
            "uniform": float(np.log(tok.codebook_size)),
            "marginal": marginal_nll(first, held, tok.codebook_size),
            "base_lm": lm_nll(base, md, half),
            "fine_tuned_lm": lm_nll(tuned, md, half),
        }
        base_intact, base_shuffled = context_use(base_gguf.parent, encoded, half)
        intact, shuffled = context_use(Path(args.out) / protein / "motion" / "finetune", encoded, half)
        r |= {
            "base_last_frame_intact": base_intact,
            "base_last_frame_context_shuffled": base_shuffled,
            "last_frame_intact": intact,
            "last_frame_context_shuffled": shuffled,
        }
        results.append(r)
        rows.append(
            [protein, r["held_out_frames"], r["uniform"], r["marginal"], r["base_lm"], r["fine_tuned_lm"]]
            + [base_intact, base_shuffled, intact, shuffled]
        )
    report(
        "Held-out motion tokens, nats per token (lower is better)",
        ["protein", "frames", "uniform", "marginal", "base LM", "fine-tuned LM"]
        + ["base: last frame", "base: shuffled", "fine-tuned: last frame", "fine-tuned: shuffled"],
        rows,
        {"bench": "likelihood", "out": args.out, "base": str(base_gguf), "results": results, **machine()},
    )


if __name__ == "__main__":
    main()
