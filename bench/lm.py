"""Language-model benchmark: CPU training throughput of a model config, GGUF sizes per weight type and
their logit differences from PyTorch.

    python bench/lm.py [--model models/structure-lm | --preset small] [--threads 1 2] [--residues 214]

Without --model, a freshly initialised model of --preset is timed (same architecture and speed as a
trained one). Training windows are random structure tokens of an AdK-sized protein (214 residues,
--window frames), which cost exactly what real tokens cost. Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mdllm.lm as lm
from mdllm.lm.data import collate
from mdllm.lm.export import write_gguf
from mdllm.lm.gguf_eval import gguf_logits
from mdllm.lm.model import PRESETS, loss_and_accuracy
from mdllm.lm.train import TrainConfig, make_optimizer


def build(args):
    if args.model:
        return lm.load(args.model)
    vocab = lm.Vocabulary(args.codebook_size, "0" * 64)
    torch.manual_seed(0)
    context = 256 * -(-(3 + args.residues + args.window * (args.residues + 1)) // 256)
    model = lm.MistralLM(lm.ModelConfig(vocab_size=vocab.size, max_position_embeddings=context, **PRESETS[args.preset]))
    model.vocab = vocab
    return model


def training_throughput(model, args, threads: int) -> dict:
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), args.residues))
    examples = [
        model.vocab.example(seq, rng.integers(0, model.vocab.codebook_size, (args.window, args.residues)))
        for _ in range(args.micro_batch)
    ]
    ids, targets = collate(examples, model.vocab.pad_id)
    model.train()
    opt = make_optimizer(model, TrainConfig())
    times = []
    for i in range(args.warmup_steps + args.steps):
        t0 = time.perf_counter()
        loss_sum, _, count = loss_and_accuracy(model(ids), targets)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= args.warmup_steps:
            times.append(time.perf_counter() - t0)
    model.eval()
    step_s = float(np.median(times))
    return {
        "threads": threads,
        "tokens_per_step": int(ids.numel()),
        "seconds_per_step": step_s,
        "tokens_per_s": ids.numel() / step_s,
    }


def gguf_report(model, args) -> list[dict]:
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), args.residues))
    ids, _ = model.vocab.example(seq, rng.integers(0, model.vocab.codebook_size, (2, args.residues)))
    with torch.no_grad():
        ref = model(torch.from_numpy(ids)[None])[0].numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("f32", "f16", "q8_0"):
            path = write_gguf(model, Path(tmp) / f"model.{kind}.gguf", kind)
            out = gguf_logits(path, ids, n_threads=1)
            rows.append(
                {
                    "type": kind,
                    "bytes": path.stat().st_size,
                    "max_abs_logit_diff": float(np.abs(out - ref).max()),
                    "argmax_agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()),
                }
            )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="mdllm model directory (default: a new --preset model)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--codebook-size", type=int, default=1000, help="K of a new model")
    p.add_argument("--residues", type=int, default=214)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup-steps", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)

    model = build(args)
    cfg = model.config
    print(
        f"model: {model.num_parameters():,} parameters, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} "
        f"layers, {cfg.num_attention_heads}/{cfg.num_key_value_heads} q/kv heads, vocab {cfg.vocab_size}, "
        f"context {cfg.max_position_embeddings}"
    )
    print(f"window: {args.window} frames x {args.residues} residues, micro-batch {args.micro_batch}")
    train_rows = [training_throughput(model, args, t) for t in args.threads]
    print(f"\n{'threads':>7} {'tokens/step':>11} {'s/step':>8} {'tokens/s':>9}")
    for r in train_rows:
        print(f"{r['threads']:>7} {r['tokens_per_step']:>11} {r['seconds_per_step']:>8.3f} {r['tokens_per_s']:>9.0f}")
    torch.set_num_threads(1)
    gguf_rows = gguf_report(model, args)
    print(f"\n{'GGUF':>5} {'MB':>7} {'max|dlogit|':>12} {'argmax agree':>13}")
    for r in gguf_rows:
        print(
            f"{r['type']:>5} {r['bytes'] / 1e6:>7.2f} {r['max_abs_logit_diff']:>12.3g} {r['argmax_agreement']:>13.3f}"
        )
    result = {
        "bench": "lm",
        "model": args.model or f"preset:{args.preset}",
        "parameters": model.num_parameters(),
        "config": cfg.to_dict(),
        "window": args.window,
        "residues": args.residues,
        "training": train_rows,
        "gguf": gguf_rows,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
