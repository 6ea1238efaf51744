"""Training loop: pretraining from scratch or fine-tuning (LoRA or full), on one or many processes.

One optimizer step consumes a *global batch* of ``micro_batch * grad_accum * world_size`` windows. The
order of windows is a permutation drawn from (seed, epoch), and the loss of a step is the mean over all
target tokens of the global batch, so a run on N processes and a run on one process with N times the
gradient accumulation compute the same update (up to float summation order). Dropout noise is seeded
from (seed, step, micro-batch, rank), so a resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mdllm.errors import MdllmError, in_file
from mdllm.files import atomic_output
from mdllm.lm.data import collate
from mdllm.lm.model import MistralLM, loss_and_accuracy
from mdllm.lm.text import IGNORE

CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.json"


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int | None = None  # stop (and end the schedule) after this many steps
    micro_batch: int = 4  # windows per forward pass, per process
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 10
    keep_best: bool = False  # end with the weights of the lowest validation loss (early stopping)
    patience: int = 0  # with keep_best: stop after this many validations without a new lowest loss (0: never)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50  # steps; 0 = only at the end of each epoch
    eval_every: int = 0  # steps; 0 = once per epoch
    progress: bool = True
    # motion codes: soft targets over each code's nearest codes, a Gaussian this wide in Å
    # (mdllm.lm.model.CodeSmoothing); 0 = one-hot. Validation loss stays the one-hot cross-entropy.
    code_smoothing_A: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size())


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total`` steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: MistralLM, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def epoch_order(n: int, global_batch: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of the n windows, wrapped around to a whole number of global batches."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen).numpy()
    steps = math.ceil(n / global_batch)
    return np.resize(order, steps * global_batch)


# --- checkpoints ------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: MistralLM, optimizer, state: dict) -> None:
    """Model, optimizer moments and loop state in one safetensors file, written atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("model.lm_head.weight", None)
    opt = optimizer.state_dict()
    for idx, s in opt["state"].items():
        for key, value in s.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path: Path, model: MistralLM, optimizer) -> dict:
    from safetensors import safe_open

    if not path.exists():
        raise in_file(path, "no checkpoint to resume from")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if model.config.tie_word_embeddings:
        model_state.setdefault("lm_head.weight", model_state["model.embed_tokens.weight"])
    try:
        model.load_state_dict(model_state)
    except RuntimeError as exc:
        raise in_file(path, f"checkpoint does not fit this model ({str(exc).splitlines()[0]})") from None
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["state"])


# --- the loop ---------------------------------------------------------------------------------


def evaluate(model, examples, pad_id: int, micro_batch: int, dist_info: Distributed, device) -> dict:
    """Mean token loss and accuracy over ``examples`` (sharded across processes)."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    shard = examples[dist_info.rank :: dist_info.world_size]
    with torch.no_grad():
        for i in range(0, len(shard), micro_batch):
            ids, targets = collate(shard[i : i + micro_batch], pad_id)
            with _autocast(device):
                logits = model(ids.to(device))
            loss, correct, count = loss_and_accuracy(logits, targets.to(device))
            totals += torch.tensor([loss.item(), correct.item(), count.item()], dtype=torch.float64)
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(totals)
    model.train()
    n = max(totals[2].item(), 1.0)
    return {"val_loss": totals[0].item() / n, "val_accuracy": totals[1].item() / n, "val_tokens": int(totals[2].item())}


def _autocast(device):
    # bf16 autocast only on a GPU; CPU training stays float32 (exact resume and DDP checks).
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


MIN_TRAIN_WINDOWS = 32  # fewer windows than this: a fine-tune memorises them rather than learning motion


def warn_about_data(n_train: int, n_val: int, total_steps: int, cfg: TrainConfig) -> None:
    """Say before the long work when the data or the schedule cannot carry the request."""
    import warnings

    if n_train < MIN_TRAIN_WINDOWS:
        warnings.warn(
            f"only {n_train} training windows (at least {MIN_TRAIN_WINDOWS} recommended): give more "
            f"frames (with stride 1, about {MIN_TRAIN_WINDOWS - n_train} more per trajectory) or a smaller "
            "--window",
            stacklevel=3,
        )
    if n_val == 0:
        warnings.warn(
            "no validation windows: the held-out end of each trajectory is shorter than one window, so "
            "no validation loss is reported (give longer trajectories or a larger --val-fraction)",
            stacklevel=3,
        )
    if cfg.warmup_steps >= total_steps:
        warnings.warn(
            f"the warm-up ({cfg.warmup_steps} steps) is as long as the whole run ({total_steps} steps): "
            f"the learning rate never reaches {cfg.lr:g}; use --warmup below {total_steps}",
            stacklevel=3,
        )


def train(
    model: MistralLM,
    train_examples: list,
    val_examples: list,
    out_dir,
    cfg: TrainConfig,
    resume: bool = False,
    record: dict | None = None,
    on_step=None,
    smoothing=None,
) -> dict:
    """Train ``model`` in place; writes checkpoints and ``history.json`` to ``out_dir`` and returns
    the history. ``on_step(step)`` is called before each optimizer step (progress hooks, tests).
    ``smoothing``: a :class:`mdllm.lm.model.CodeSmoothing` for the training loss (``fit`` builds it
    from ``cfg.code_smoothing_A``)."""
    from mdllm.progress import bar as progress_bar

    if not train_examples:
        raise MdllmError("no training windows (too few frames for the window size?)")
    if model.vocab is None:
        raise MdllmError("model has no vocabulary layout")
    out_dir = Path(out_dir)
    dist_info = init_distributed()
    device = (
        torch.device("cuda", dist_info.rank % torch.cuda.device_count())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    model.to(device).train()
    net = model
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    pad_id = model.vocab.pad_id

    global_batch = cfg.micro_batch * cfg.grad_accum * dist_info.world_size
    steps_per_epoch = math.ceil(len(train_examples) / global_batch)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    if dist_info.is_main:
        warn_about_data(len(train_examples), len(val_examples), total_steps, cfg)

    step, history = (
        0,
        {
            "train": [],
            "val": [],
            "config": cfg.to_dict(),
            "record": record or {},
            "global_batch": global_batch,
            "world_size": dist_info.world_size,
            "trainable_parameters": model.num_parameters(trainable_only=True),
            "parameters": model.num_parameters(),
        },
    )
    if resume:
        state = load_checkpoint(out_dir / CHECKPOINT, model, optimizer)
        step, history = state["step"], state["history"]
        if state["global_batch"] != global_batch or state["n_train"] != len(train_examples):
            raise MdllmError(
                f"{out_dir / CHECKPOINT}: checkpoint was made with a different global batch "
                f"or data ({state['global_batch']} x {state['n_train']} windows)"
            )
    elif not history["val"] and val_examples:
        history["val"].append(
            {"step": 0, "epoch": 0, **evaluate(model, val_examples, pad_id, cfg.micro_batch, dist_info, device)}
        )

    def checkpoint():
        if dist_info.is_main:
            save_checkpoint(
                out_dir / CHECKPOINT,
                model,
                optimizer,
                {"step": step, "history": history, "global_batch": global_batch, "n_train": len(train_examples)},
            )
            with atomic_output(out_dir / HISTORY) as tmp:
                tmp.write_text(json.dumps(history, indent=1) + "\n")

    best = {"loss": float("inf"), "state": None, "step": None}

    def remember_if_best():
        # After a resume only the steps from there on compete: the weights of earlier steps are gone.
        if cfg.keep_best and history["val"] and history["val"][-1]["val_loss"] < best["loss"]:
            best.update(
                loss=history["val"][-1]["val_loss"],
                step=history["val"][-1]["step"],
                state={k: v.detach().clone() for k, v in model.state_dict().items()},
            )

    if step == 0:
        remember_if_best()  # the starting weights (a base model) compete too
    bar = progress_bar(
        total=total_steps, initial=step, desc="train", unit="step", enabled=cfg.progress and dist_info.is_main
    )
    while step < total_steps:
        epoch = step // steps_per_epoch
        order = epoch_order(len(train_examples), global_batch, cfg.seed, epoch)
        batch = order[(step % steps_per_epoch) * global_batch :][:global_batch]
        # Every process knows the whole global batch, so each can count its target tokens.
        n_targets = sum(int((train_examples[i][1][1:] != IGNORE).sum()) for i in batch)
        if on_step is not None:
            on_step(step)
        t0 = time.perf_counter()
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, total_steps, cfg)
        loss_total = torch.zeros((), dtype=torch.float64)
        for a in range(cfg.grad_accum):
            start = (a * dist_info.world_size + dist_info.rank) * cfg.micro_batch
            ids, targets = collate([train_examples[i] for i in batch[start : start + cfg.micro_batch]], pad_id)
            torch.manual_seed(((cfg.seed * 1_000_003 + step) * 4099 + a) * 1031 + dist_info.rank)
            sync = a == cfg.grad_accum - 1 or dist_info.world_size == 1
            ctx = net.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with _autocast(device):
                    logits = net(ids.to(device))
                loss_sum, _, _ = loss_and_accuracy(logits, targets.to(device), smoothing=smoothing)
                # DDP averages gradients over processes; scale so that the sum is the global mean.
                (loss_sum * (dist_info.world_size / n_targets)).backward()
            loss_total += loss_sum.detach().double().cpu()
        if dist_info.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(loss_total)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - t0
        entry = {
            "step": step,
            "epoch": epoch,
            "loss": loss_total.item() / n_targets,
            "lr": optimizer.param_groups[0]["lr"],
            "grad_norm": float(grad_norm),
            "tokens": n_targets,
            "seconds": seconds,
        }
        history["train"].append(entry)
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.1e}")

        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if val_examples and (end_of_epoch or (cfg.eval_every and step % cfg.eval_every == 0)):
            history["val"].append(
                {
                    "step": step,
                    "epoch": epoch + (1 if end_of_epoch else 0),
                    **evaluate(model, val_examples, pad_id, cfg.micro_batch, dist_info, device),
                }
            )
            remember_if_best()
            if cfg.progress and dist_info.is_main:
                bar.write(
                    f"step {step}: val loss {history['val'][-1]['val_loss']:.4f}, "
                    f"accuracy {history['val'][-1]['val_accuracy']:.3f}"
                )
            best_step = best["step"] if best["step"] is not None else -1
            if cfg.keep_best and cfg.patience and sum(v["step"] > best_step for v in history["val"]) >= cfg.patience:
                history["stopped_early"] = step  # every process sees the same validation losses
                checkpoint()
                break
        if end_of_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            checkpoint()
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
        history["best_val"] = {"step": best["step"], "val_loss": best["loss"]}
        if cfg.progress and dist_info.is_main:
            print(f"kept the weights of step {best['step']} (lowest validation loss {best['loss']:.4f})")
    return history
