"""Train a structure language model on token files: a new model, or a fine-tuned base (all weights
or LoRA). ``mdllm train`` and the ``finetune`` stage of ``mdllm run`` both call :func:`fit`; it runs
under ``torchrun`` too (data-parallel, see :mod:`mdllm.lm.train`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from mdllm.errors import MdllmError


@dataclass(frozen=True)
class NewModel:
    """Shape of a model trained from scratch (ignored when fine-tuning a base)."""

    preset: str = "small"  # mdllm.lm.model.PRESETS
    heads: int | None = None  # attention heads (default: the preset's)
    kv_heads: int | None = None
    context: int = 0  # 0: the longest training window, rounded up to 256
    n_conditioning: int = 8  # reserved conditioning token slots
    motion_tokenizer: str = "motiontoken"  # its codebook seeds the motion codes' embeddings (and smoothing)
    frame_span: int | None = None  # ModelConfig.frame_span; None: DEFAULT_FRAME_SPAN for motion tokens, else 0
    fine_codes: bool = False  # speak the motion tokenizer's fine codes too (the token files must hold them)


# Rotary positions per frame of a new motion-token model (ModelConfig.frame_span): more than the
# residues + 1 of most proteins, so neighbouring residues stay at least a position apart.
DEFAULT_FRAME_SPAN = 256


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 0  # 0: train all weights
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class Windows:
    """How trajectories become training examples (mdllm.lm.data.windows)."""

    window: int = 8  # frames per window
    stride: int = 1  # frames between window starts
    val_fraction: float = 0.1  # last fraction of each trajectory's frames held out for validation


@dataclass(frozen=True)
class FitResult:
    out: Path
    steps: int
    train_windows: int
    val_windows: int
    final_val: dict | None
    best_val: dict | None
    history: dict = field(repr=False)


def _new_model(trajs, spec: NewModel, window: int):
    from mdllm.lm.data import vocabulary_for
    from mdllm.lm.model import PRESETS, MistralLM, ModelConfig

    if spec.preset not in PRESETS:
        raise MdllmError(f"unknown preset {spec.preset!r}; choose from {', '.join(PRESETS)}")
    vocab = vocabulary_for(trajs[0], spec.n_conditioning, fine=spec.fine_codes)
    for t in trajs:
        vocab.check_fine(t.fine_codebook_size, t.fine_hash, source=t.source)

    longest = max(
        len(vocab.prefix(t.sequence, key_tokens=t.key_tokens))
        + min(window, len(t.tokens)) * (vocab.tokens_per_residue * t.tokens.shape[1] + 1)
        for t in trajs
    )
    shape = dict(PRESETS[spec.preset])
    if spec.heads:
        shape["num_attention_heads"] = spec.heads
    if spec.kv_heads:
        shape["num_key_value_heads"] = spec.kv_heads
    context = spec.context or 256 * -(-longest // 256)
    span = spec.frame_span if spec.frame_span is not None else (DEFAULT_FRAME_SPAN if vocab.key_codebook_size else 0)
    model = MistralLM(ModelConfig(vocab_size=vocab.size, max_position_embeddings=context, frame_span=span, **shape))
    model.vocab = vocab
    if vocab.key_codebook_size:
        from mdllm.lm.model import init_motion_codes
        from mdllm.tokenizer.api import load_tokenizer

        motion = load_tokenizer(spec.motion_tokenizer)
        vocab.check_tokenizer(motion.codebook_size, motion.hash, source=str(motion.path))
        fine = motion.fine_codes if vocab.fine_codebook_size else None
        if fine is not None:
            vocab.check_fine(fine.size, fine.hash, source=str(motion.path))
        init_motion_codes(model, motion.codebook, fine_codebook=None if fine is None else fine.codebook)
    return model


def _code_smoothing(model, sigma_A: float, motion_tokenizer: str):
    """The soft motion-code targets of ``TrainConfig.code_smoothing_A`` (None when 0)."""
    if not sigma_A:
        return None
    if not model.vocab.key_codebook_size:
        raise MdllmError("code smoothing is for motion-token models; this model's tokens are torsion codes")
    from mdllm.lm.model import CodeSmoothing
    from mdllm.tokenizer.api import load_tokenizer

    motion = load_tokenizer(motion_tokenizer)
    model.vocab.check_tokenizer(motion.codebook_size, motion.hash, source=str(motion.path))
    return CodeSmoothing(motion.codebook, model.vocab.structure_offset, sigma_A)


def fit(
    data,
    out,
    *,
    base=None,
    hf_base=None,
    new: NewModel = NewModel(),
    lora: LoraSettings = LoraSettings(),
    windows: Windows = Windows(),
    train=None,
    resume: bool = False,
    command: str = "",
) -> FitResult:
    """Train on the token files ``data`` (paths of `mdllm encode` outputs) and save the model in ``out``
    (config.json + model.safetensors; checkpoints there too). ``base``: an mdllm model directory to
    fine-tune; ``hf_base``: a local Hugging Face Llama/Mistral checkpoint to extend; neither: a new
    model of shape ``new``. ``train``: a :class:`mdllm.lm.train.TrainConfig`."""
    import torch

    from mdllm.lm import store
    from mdllm.lm.data import load_token_files
    from mdllm.lm.data import windows as cut_windows
    from mdllm.lm.lora import add_lora
    from mdllm.lm.train import CHECKPOINT, TrainConfig, init_distributed
    from mdllm.lm.train import train as run_training

    train = train or TrainConfig()
    out = Path(out)
    if base and hf_base:
        raise MdllmError("give a base or a Hugging Face base, not both")
    if (out / CHECKPOINT).exists() and not resume:
        raise MdllmError(
            f"{out}: holds a checkpoint of an earlier run; continue it (mdllm train --resume, "
            "or resume=True) or choose another output directory"
        )
    paths = [str(p) for p in data]
    if not paths:
        raise MdllmError("no token files to train on")
    trajs = load_token_files(paths)
    torch.manual_seed(train.seed)

    if base:
        model = store.load(base)
        for t in trajs:
            model.check_tokenizer(t.codebook_size, t.tokenizer_hash, source=t.source)
            model.vocab.check_key_tokenizer(t.key_codebook_size, t.key_tokenizer_hash, source=t.source)
        if model.meta.get("lora"):  # a LoRA-tuned base: fold its adapters in before training on top
            from mdllm.lm.lora import merge_lora

            merge_lora(model)
            model.meta["lora"] = None
    elif hf_base:
        model = store.load_hf(
            hf_base, trajs[0].codebook_size, trajs[0].tokenizer_hash, new.n_conditioning, seed=train.seed
        )
    else:
        model = _new_model(trajs, new, windows.window)
    train_ex, val_ex = cut_windows(trajs, model.vocab, windows.window, windows.stride, windows.val_fraction)
    longest = max(len(ids) for ids, _ in train_ex + val_ex)
    if longest > model.config.max_position_embeddings:
        raise MdllmError(
            f"a window of {windows.window} frames needs {longest} tokens but the model's context "
            f"is {model.config.max_position_embeddings}; use a smaller window"
        )
    if lora.rank:
        add_lora(model, lora.rank, lora.alpha, lora.dropout, list(lora.targets))
        model.meta["lora"] = {
            "rank": lora.rank,
            "alpha": lora.alpha,
            "dropout": lora.dropout,
            "targets": list(lora.targets),
        }

    record = {
        "command": command,
        "data": paths,
        "sequences": sorted({t.sequence for t in trajs}),
        "seed": train.seed,
        "window": windows.window,
        "stride": windows.stride,
        "val_fraction": windows.val_fraction,
        "base": str(base or hf_base) if (base or hf_base) else None,
        "train_windows": len(train_ex),
        "val_windows": len(val_ex),
    }
    dist_info = init_distributed()
    if dist_info.is_main and train.progress:
        print(
            f"model: {model.num_parameters():,} parameters, {model.num_parameters(True):,} trained; "
            f"{len(train_ex)} training / {len(val_ex)} validation windows from {len(trajs)} files",
            file=sys.stderr,
        )
    smoothing = _code_smoothing(model, train.code_smoothing_A, new.motion_tokenizer)
    history = run_training(model, train_ex, val_ex, out, train, resume=resume, record=record, smoothing=smoothing)
    final_val = history["val"][-1] if history["val"] else None
    if dist_info.is_main:
        model.meta["training"] = {
            **record,
            "steps": len(history["train"]),
            "final_val": final_val,
            "best_val": history.get("best_val"),
        }
        store.save(model.cpu(), out)
    if dist_info.world_size > 1:
        import gc

        import torch.distributed as dist

        # Collect the DDP wrapper's leftovers (gloo work holding tensors) while the interpreter is alive:
        # freed during interpreter shutdown instead, they once aborted rank 1 on a loaded CI machine.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return FitResult(
        out=out,
        steps=len(history["train"]),
        train_windows=len(train_ex),
        val_windows=len(val_ex),
        final_val=final_val,
        best_val=history.get("best_val"),
        history=history,
    )
