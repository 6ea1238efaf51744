"""Decoder adaptation of a transformer-kind tokenizer: fine-tune only its decoder on one protein's frames.

The encoder and quantizer are frozen, so every frame gets exactly the same tokens as before and any
language model trained on the base tokenizer's tokens stays valid (``FoldTokenizer.hash`` covers the
encoder only). The adapted decoder has learned the protein's fold, so it turns that protein's tokens
back into backbones far more accurately than the general decoder (measured in models/foldtoken-transformer/RECIPE.md).
The flip side: it has seen only the given frames' states; how well it decodes tokens of states it was
not adapted on is measured in docs/adk_experiment.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError


@dataclass
class AdaptOptions:
    steps: int = 1000
    batch_size: int = 4
    crop: int = 256         # residues; longer chains are cropped at random
    lr: float = 5e-4
    warmup: int = 50
    val_fraction: float = 0.1  # last frames of each trajectory, never trained on
    seed: int = 0
    threads: int = 0        # PyTorch threads; 0 = PyTorch's default
    max_minutes: float = 0.0  # stop early after this wall time; 0 = no limit
    input_noise_A: float = 0.0  # as in TrainOptions: noisy encoder input for a fraction of the crops
    input_noise_fraction: float = 0.5


def _lr(step: int, opts: AdaptOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = min(1.0, (step - opts.warmup) / max(1, opts.steps - opts.warmup))
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def split_frames(trajectories, val_fraction: float):
    """Per trajectory (F, L, 4, 3): the first frames for training, the last ``val_fraction`` held out
    (none held out from a trajectory of fewer than 10 frames)."""
    train, val = [], []
    for xyz in trajectories:
        n_val = int(round(len(xyz) * val_fraction)) if len(xyz) >= 10 else 0
        train.append(xyz[:len(xyz) - n_val])
        if n_val:
            val.append(xyz[len(xyz) - n_val:])
    return train, val


def decoded_rmsd(model, frames, chunk: int = 16) -> np.ndarray:
    """Round-trip RMSD (Angstrom) of every frame through ``model``."""
    import torch

    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

    out = []
    with torch.no_grad():
        for i in range(0, len(frames), chunk):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + chunk], np.float32))
            out.append(backbone_rmsd_angstrom(model.decode(model.encode(x)).numpy(), x.numpy()))
    return np.concatenate(out) if out else np.zeros(0)


def adapt_decoder(tokenizer, trajectories, out_dir, opts: AdaptOptions = AdaptOptions(), progress=True) -> dict:
    """Fine-tune ``tokenizer``'s decoder on ``trajectories`` (list of (F, L, 4, 3) nm arrays of one or
    more proteins) and write the adapted tokenizer to ``out_dir``. Returns the measurements (also
    stored in its config.json under "_adapted")."""
    if tokenizer.kind != "transformer":
        raise MdllmError(f"{tokenizer.path}: a {tokenizer.kind} tokenizer decodes by building the chain from its "
                         "codes; it has no learned decoder to adapt")
    import torch
    from tqdm import tqdm

    from mdllm.tokenizer.data import pad, random_crop
    from mdllm.tokenizer.train import noisy_inputs, train_step
    from mdllm.tokenizer.weights import save_tokenizer

    trajectories = [np.asarray(t, np.float32) for t in trajectories if len(t)]
    if not trajectories:
        raise MdllmError("decoder adaptation needs at least one frame")
    if opts.steps < 1:
        raise MdllmError(f"--steps must be at least 1, got {opts.steps}")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    train, val = split_frames(trajectories, opts.val_fraction)
    train = [t for t in train if len(t)]
    val_frames = [f for t in val for f in t]
    weights = np.array([len(t) for t in train], np.float64)
    weights /= weights.sum()

    model = tokenizer.torch_model()
    model = type(model)(model.cfg)  # a private copy: the tokenizer's own module stays untouched
    model.load_state_dict(tokenizer.torch_model().state_dict())
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    params = [p for p in model.decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)

    def val_rmsd():
        model.eval()
        r = [decoded_rmsd(model, f[None])[0] for f in val_frames]
        model.train()
        return float(np.median(r)) if r else None

    before = val_rmsd()
    start, step = time.time(), 0
    bar = tqdm(total=opts.steps, disable=not progress, desc="adapt decoder", dynamic_ncols=True)
    running = None
    model.train()
    while step < opts.steps:
        rng = np.random.default_rng([opts.seed, step])
        items = []
        for _ in range(opts.batch_size):
            traj = train[rng.choice(len(train), p=weights)]
            items.append(random_crop(traj[rng.integers(len(traj))], rng, opts.crop))
        xyz, mask = pad(items)
        xyz_in = noisy_inputs(xyz, rng, opts.input_noise_A, opts.input_noise_fraction)
        terms = train_step(model, optimizer, params, xyz, mask, _lr(step, opts), step, "decoder adaptation", xyz_in)
        step += 1
        rmsd = terms["rmsd"].item()
        running = rmsd if running is None else 0.95 * running + 0.05 * rmsd
        bar.update(1)
        bar.set_postfix(train_rmsd_A=f"{running:.2f}")
        if opts.max_minutes and (time.time() - start) / 60 > opts.max_minutes:
            break
    bar.close()
    after = val_rmsd()
    report = {"base_tokenizer": str(tokenizer.path), "base_file_hash": tokenizer.file_hash,
              "token_hash": tokenizer.hash, "steps": step, "minutes": round((time.time() - start) / 60, 2),
              "train_frames": int(sum(len(t) for t in train)), "val_frames": len(val_frames),
              "val_rmsd_median_A_before": before, "val_rmsd_median_A_after": after,
              "options": asdict(opts)}
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    save_tokenizer(Path(out_dir), tokenizer.config, tensors, {"_adapted": report})
    return report
