"""LM loss of one against two motion codes per residue (the "LM loss" column of the trade-off in
models/motiontoken/RECIPE.md): two small language models from scratch, the same size, data, steps and
seed, one on the shipped codes and one on shipped + residual codes (K2 = 1024, two tokens per residue,
interleaved), scored on the held-out second halves of the Trp-cage, BBA and villin 300 K rep1 runs:
bits per residue of the last frame of 3-frame windows, and of its coarse codes alone. Needs the residual
codebook cached by `python bench/motion_codes.py`.

Training data: every frame of the rep0 / 360 K runs of chignolin, Trp-cage, BBA and villin and the first
halves of the three rep1 runs, each against its first frame (key). Plain rotary positions in both models.

Usage: nice -n 5 python docs/motion_residual/two_code_lm.py one|two [--steps 3000]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import motion_codes as mc  # noqa: E402
from mdllm.encoding import load_tokenizers  # noqa: E402
from mdllm.io import load_backbone  # noqa: E402
from mdllm.lm.model import MistralLM, ModelConfig  # noqa: E402
from mdllm.lm.text import Vocabulary  # noqa: E402
from mdllm.tokenizer.motion import displacements  # noqa: E402

HELD_OUT = ["trpcage_2JOF", "bba_1FME", "villin_2F4K"]
WINDOW = 3  # frames per training and scoring window


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("codes", choices=["one", "two"])
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args()
    torch.set_num_threads(2)
    tok, fold = load_tokenizers()
    books = [mc.codebook("shipped", 20)] + ([mc.codebook("res1024@shipped", 20)] if args.codes == "two" else [])
    offsets = np.cumsum([0] + [len(b) for b in books])[:-1]  # stage s codes: ids offsets[s] ..
    vocab = Vocabulary(
        int(sum(len(b) for b in books)), tok.hash, key_codebook_size=fold.codebook_size, key_tokenizer_hash=fold.hash
    )

    def load(protein, run, part):
        folder = ROOT / "data" / "md" / protein / run
        md = load_backbone(folder / "trajectory.xtc", top=folder / "trajectory.pdb")
        half = md.n_frames // 2
        xyz = {"all": md.xyz, "first": md.xyz[:half], "second": md.xyz[half:]}[part]
        d = displacements(xyz, md.xyz[0])
        stages, _ = mc.quantise(d.reshape(-1, 12), books)
        codes = np.stack([t + o for t, o in zip(stages, offsets)], -1).reshape(len(d), -1)  # residue-interleaved
        prefix = vocab.prefix(md.sequence, key_tokens=fold.encode(md.xyz[:1])[0])
        return md.n_residues, prefix, codes

    train = [load(p, r, "all") for p in ["chignolin_5AWL", *HELD_OUT] for r in ("T300K_rep0", "T360K_rep0")]
    train += [load(p, "T300K_rep1", "first") for p in HELD_OUT]
    held = [load(p, "T300K_rep1", "second") for p in HELD_OUT]

    def window(prefix, codes, start):
        ids = list(prefix)
        for frame in codes[start : start + WINDOW]:
            ids += list(frame + vocab.structure_offset) + [vocab.frame_id]
        return torch.tensor(ids)[None], len(prefix)

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab.size, hidden_size=256, intermediate_size=768, num_hidden_layers=4)
    model = MistralLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    weight = np.array([len(c) - WINDOW for _, _, c in train], float)
    t0 = time.perf_counter()
    model.train()
    for step in range(args.steps):
        opt.zero_grad()
        for _ in range(4):
            _, prefix, codes = train[rng.choice(len(train), p=weight / weight.sum())]
            ids, n_prefix = window(prefix, codes, rng.integers(0, len(codes) - WINDOW))
            loss = F.cross_entropy(model(ids)[0, n_prefix - 1 : -1].float(), ids[0, n_prefix:]) / 4
            loss.backward()
        cosine = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 30) * cosine
        opt.step()

    model.eval()
    rng = np.random.default_rng(1)
    per = len(books)
    print(f"{args.codes} code(s) per residue, {args.steps} steps, {time.perf_counter() - t0:.0f} s")
    for (n_res, prefix, codes), name in zip(held, HELD_OUT):
        total, coarse = [], []
        for start in rng.choice(len(codes) - WINDOW, 40, replace=False):
            ids, _ = window(prefix, codes, start)
            with torch.no_grad():
                logp = F.log_softmax(model(ids)[0].float(), -1)
            n = ids.shape[1]
            first = n - (n_res * per + 1)  # the last frame's structure tokens
            nll = -logp[first - 1 : n - 2].gather(1, ids[0, first : n - 1][:, None])[:, 0].numpy() / np.log(2)
            total.append(nll.sum() / n_res)
            coarse.append(nll[::per].sum() / n_res)
        print(f"{name}: {np.mean(total):.2f} bits per residue, coarse codes {np.mean(coarse):.2f}")


if __name__ == "__main__":
    main()
