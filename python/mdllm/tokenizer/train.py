"""Training loop: random crops, AdamW with warm-up and cosine decay, validation, atomic checkpoints
(safetensors + JSON) and exact resume (the batch of step s depends only on the seed and s)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdllm.errors import MdllmError
from mdllm.files import atomic_output
from mdllm.tokenizer.config import TokenizerConfig
from mdllm.tokenizer.data import Dataset, sample_batch
from mdllm.tokenizer.weights import save_tokenizer


@dataclass
class TrainOptions:
    steps: int = 20000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    warmup: int = 300
    weight_decay: float = 0.01
    md_fraction: float = 0.15
    seed: int = 0
    eval_every: int = 500
    val_chains: int = 60
    threads: int = 2
    max_minutes: float = 0.0  # stop early (and checkpoint) after this wall time; 0 = no limit
    stop_at: int = 0  # stop (and checkpoint) at this step while keeping the schedule of `steps`; 0 = no
    init: str = ""  # start from this tokenizer directory's weights instead of random ones
    freeze_encoder: bool = False  # train the decoder only: tokens stay those of `init`
    device: str = "auto"  # "cpu", "cuda" or "auto" (a GPU when PyTorch sees one)
    # > 0: the learning-rate schedule runs on wall time (warm-up, then cosine to 10 % at this many
    # minutes, where training stops), for a fixed time budget on hardware of unknown speed
    schedule_minutes: float = 0.0
    # Gaussian noise (Angstrom per coordinate) on the encoder's input for this fraction of the crops;
    # the decoder is still scored against the clean frame, so it learns that the many token variants of
    # one thermally jittered structure mean that structure (see RECIPE.md, "input noise")
    input_noise_A: float = 0.0
    input_noise_fraction: float = 0.5


def lr_at(step, opts: TrainOptions, minutes: float = 0.0):
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    if opts.schedule_minutes > 0:
        progress = minutes / opts.schedule_minutes
    else:
        progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def loss_terms(model, xyz, mask, xyz_in=None):
    """Loss terms of autoencoding ``xyz_in`` (default ``xyz``), scored against ``xyz``."""
    from mdllm.tokenizer.losses import aligned_rmsd, ca_distance, fape, local_geometry

    xyz_hat, rot, t, tokens, _ = model(xyz if xyz_in is None else xyz_in, mask)
    terms = {
        "fape": fape(xyz_hat, rot, t, xyz, mask),
        "rmsd": aligned_rmsd(xyz_hat, xyz, mask).mean(),
        "local": local_geometry(xyz_hat, xyz, mask),
        "dist": ca_distance(xyz_hat, xyz, mask),
    }
    return terms, tokens


def noisy_inputs(xyz, rng: np.random.Generator, noise_A: float, fraction: float):
    """A copy of the batch xyz (B, L, 4, 3) nm with Gaussian noise (noise_A Angstrom per coordinate) on
    a random ``fraction`` of its items; None when there is no noise to add."""
    if noise_A < 0 or not 0 <= fraction <= 1:
        raise MdllmError(f"input noise must be >= 0 A with a fraction in [0, 1], got {noise_A} A and {fraction}")
    if noise_A == 0 or fraction == 0:
        return None
    chosen = rng.random(len(xyz)) < fraction
    noise = rng.normal(scale=noise_A / 10.0, size=xyz.shape).astype(np.float32)
    return xyz + noise * chosen[:, None, None, None]


def train_step(model, optimizer, params, xyz, mask, lr: float, step: int, what: str = "training",
               xyz_in=None) -> dict:
    """One AdamW step (gradient-norm clip 1) on a padded batch; returns the loss terms. ``xyz_in``:
    what the encoder sees instead of ``xyz`` (noisy copies)."""
    import torch

    for group in optimizer.param_groups:
        group["lr"] = lr
    device = next(model.parameters()).device
    terms, _ = loss_terms(model, torch.from_numpy(xyz).to(device), torch.from_numpy(mask).to(device),
                          None if xyz_in is None else torch.from_numpy(xyz_in).to(device))
    loss = sum(terms.values())
    if not torch.isfinite(loss):
        raise MdllmError(f"{what} diverged at step {step} (loss {loss.item()})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return terms


def evaluate(model, ds: Dataset, n_chains: int, crop: int = 256):
    """Median aligned RMSD (Angstrom), perplexity and code use over the first n held-out chains."""
    import torch

    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom, codebook_usage

    model.eval()
    device = next(model.parameters()).device
    rmsds, tokens = [], []
    with torch.no_grad():
        for xyz in ds.val[:n_chains]:
            x = torch.from_numpy(xyz[:crop][None]).to(device)
            tok = model.encode(x)
            rec = model.decode(tok)
            rmsds.append(backbone_rmsd_angstrom(rec.cpu().numpy(), x.cpu().numpy())[0])
            tokens.append(tok.cpu().numpy().ravel())
    model.train()
    ppl, used = codebook_usage(np.concatenate(tokens), model.cfg.codebook_size)
    return {"val_rmsd_median_A": float(np.median(rmsds)), "val_rmsd_p95_A": float(np.percentile(rmsds, 95)),
            "perplexity": ppl, "codes_used": used}


def save_checkpoint(ckpt_dir: Path, model, optimizer, step, cfg, opts, history):
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if hasattr(value, "shape"):
                    state[f"{names[id(p)]}.{key}"] = value.detach().reshape(-1).float().cpu().contiguous() \
                        if value.ndim == 0 else value.detach().cpu().contiguous()
    with atomic_output(ckpt_dir / "model.safetensors") as tmp:
        save_file({k: v.cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_output(ckpt_dir / "optimizer.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {"step": step, "config": json.loads(cfg.to_json()), "options": opts.__dict__, "history": history}
    with atomic_output(ckpt_dir / "state.json") as tmp:  # written last: it marks a complete checkpoint
        tmp.write_text(json.dumps(meta, indent=1))


def load_checkpoint(ckpt_dir: Path, model, optimizer):
    from safetensors.torch import load_file

    meta = json.loads((ckpt_dir / "state.json").read_text())
    device = next(model.parameters()).device
    model.load_state_dict(load_file(str(ckpt_dir / "model.safetensors"), device=str(device)))
    opt_state = load_file(str(ckpt_dir / "optimizer.safetensors"), device=str(device))
    params = dict(model.named_parameters())
    for name, p in params.items():
        entry = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            if f"{name}.{key}" in opt_state:
                value = opt_state[f"{name}.{key}"]
                entry[key] = value.reshape(()) if key == "step" else value
        if entry:
            optimizer.state[p] = entry
    return meta["step"], meta.get("history", [])


def train(ds: Dataset, cfg: TokenizerConfig, opts: TrainOptions, out_dir, resume=False, progress=True):
    import torch
    from tqdm import tqdm

    from mdllm.tokenizer.model import FoldTokenModel

    torch.set_num_threads(max(1, opts.threads))
    torch.manual_seed(opts.seed)
    device = training_device(opts.device)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoint"
    model = FoldTokenModel(cfg)
    if opts.init:
        init_from(model, cfg, opts.init)
    model.to(device)
    if opts.freeze_encoder:
        if not opts.init:
            raise MdllmError("freezing the encoder needs a trained one to start from (--init)")
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    step, history = 0, []
    if resume:
        if not (ckpt_dir / "state.json").exists():
            raise MdllmError(f"{ckpt_dir}: no checkpoint to resume from")
        step, history = load_checkpoint(ckpt_dir, model, optimizer)
    start_time = time.time()
    # a resumed wall-clock schedule goes on from where it stopped (the records' minutes are cumulative
    # only for it; --max-minutes counts this run's time)
    earlier = history[-1]["minutes"] if resume and history and opts.schedule_minutes else 0.0
    running = {}
    # on a wall-clock schedule the step count is only a cap: show minutes left instead of a steps ETA
    bar = tqdm(total=None if opts.schedule_minutes else opts.steps, initial=step, disable=not progress,
               desc="tokenizer", dynamic_ncols=True)
    stopped_early = False
    while step < opts.steps:
        rng = np.random.default_rng([opts.seed, step])
        xyz, mask = sample_batch(ds, rng, opts.batch_size, opts.crop, opts.md_fraction)
        xyz_in = noisy_inputs(xyz, rng, opts.input_noise_A, opts.input_noise_fraction)
        minutes = (time.time() - start_time) / 60
        terms = train_step(model, optimizer, params, xyz, mask, lr_at(step, opts, earlier + minutes), step,
                           xyz_in=xyz_in)
        step += 1
        for k, v in terms.items():
            running[k] = 0.98 * running.get(k, v.item()) + 0.02 * v.item()
        bar.update(1)
        minutes = (time.time() - start_time) / 60
        postfix = {k: f"{v:.2f}" for k, v in running.items()}
        if opts.schedule_minutes:
            postfix["min_left"] = f"{max(0.0, opts.schedule_minutes - earlier - minutes):.1f}"
        bar.set_postfix(postfix)
        out_of_time = (opts.max_minutes and minutes > opts.max_minutes) or step == opts.stop_at or \
            (opts.schedule_minutes and earlier + minutes >= opts.schedule_minutes)
        if step % opts.eval_every == 0 or step == opts.steps or out_of_time:
            record = {"step": step, "minutes": earlier + minutes, **{k: round(v, 4) for k, v in running.items()}}
            if ds.val:
                record.update(evaluate(model, ds, opts.val_chains))
            history.append(record)
            bar.write(json.dumps(record))
            save_checkpoint(ckpt_dir, model, optimizer, step, cfg, opts, history)
            export(model, cfg, out_dir, {"_training": {"step": step, "seed": opts.seed, "last": record}})
        if out_of_time:
            stopped_early = True
            break
    bar.close()
    return model, history, stopped_early


def training_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MdllmError(f"device '{name}' asked for, but PyTorch sees no GPU")
        torch.backends.cuda.matmul.allow_tf32 = True  # the losses are in Angstrom; TF32 is plenty
    return torch.device(name)


def init_from(model, cfg: TokenizerConfig, init_dir):
    """Copy a trained tokenizer's weights into ``model``. The configs must agree except for the
    number of decoder layers: a deeper decoder keeps the trained layers first and starts the added
    ones at zero residual output (so it begins exactly as the trained one)."""
    import torch

    from mdllm.tokenizer.api import FoldTokenizer

    start = FoldTokenizer.load(init_dir, backend="torch")
    same_but_depth = json.loads(start.config.to_json()) | {"decoder_layers": cfg.decoder_layers}
    if same_but_depth != json.loads(cfg.to_json()):
        raise MdllmError(f"{init_dir}: its config differs from the requested one beyond --decoder-layers")
    if cfg.decoder_layers < start.config.decoder_layers:
        raise MdllmError(f"{init_dir}: has {start.config.decoder_layers} decoder layers; cannot drop to "
                         f"{cfg.decoder_layers}")
    model.load_state_dict(start.torch_model().state_dict(), strict=False)  # the added layers stay new
    with torch.no_grad():
        for block in model.decoder.blocks[start.config.decoder_layers:]:
            block.attn.o_proj.weight.zero_()
            block.attn.o_proj.bias.zero_()
            block.down_proj.weight.zero_()
            block.down_proj.bias.zero_()


def export(model, cfg, out_dir, extra=None):
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    save_tokenizer(out_dir, cfg, tensors, extra)
