"""``mdllm train TOKENS.npz ... -o MODEL_DIR``: pretrain the structure language model from scratch, or
fine-tune a base (LoRA or full). Run under ``torchrun --nproc_per_node N -m mdllm train ...`` for
data-parallel training."""


def register(sub):
    p = sub.add_parser("train", help="pretrain or fine-tune the structure language model on token files")
    p.add_argument("data", nargs="*", help="token files (.npz from `mdllm encode`)")
    p.add_argument("--data-list", help="text file with one token file per line (# comments allowed)")
    p.add_argument("-o", "--out", required=True, help="output model directory (also holds checkpoints)")
    init = p.add_argument_group("starting point (default: a new model of --preset)")
    init.add_argument("--base", help="mdllm model directory to fine-tune")
    init.add_argument("--hf-base", help="local Hugging Face Llama/Mistral checkpoint directory to extend")
    init.add_argument("--preset", default="small", help="size of a new model: tiny, small, base")
    init.add_argument("--heads", type=int, help="attention heads of a new model (default: the preset's)")
    init.add_argument("--kv-heads", type=int, help="key/value heads of a new model (default: the preset's)")
    init.add_argument(
        "--context",
        type=int,
        default=0,
        help="context length of a new model (default: longest window, rounded up to 256)",
    )
    init.add_argument("--n-conditioning", type=int, default=8, help="reserved conditioning token slots")
    init.add_argument(
        "--frame-span",
        type=int,
        help="rotary positions per frame of a new model: each protein's positions are scaled so a frame "
        "spans this many (0: plain positions; default 256 for motion tokens, 0 for torsion tokens)",
    )
    init.add_argument(
        "--fine-codes",
        action="store_true",
        help="a new model of motion tokens also speaks the tokenizer's fine codes (a second token where a "
        "residue moves far; the token files must hold them, as mdllm encode writes them)",
    )
    init.add_argument(
        "--motion-tokenizer",
        default="motiontoken",
        help="a new model of motion tokens: the tokenizer whose codebook seeds the codes' "
        "embeddings (default: the shipped models/motiontoken)",
    )
    lora = p.add_argument_group("LoRA (fine-tuning)")
    lora.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: train all weights)")
    lora.add_argument("--lora-alpha", type=float, default=16.0)
    lora.add_argument("--lora-dropout", type=float, default=0.0)
    lora.add_argument(
        "--lora-targets",
        default="q_proj,k_proj,v_proj,o_proj",
        help="comma-separated module names (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)",
    )
    d = p.add_argument_group("windows")
    d.add_argument("--window", type=int, default=8, help="frames per training window (W)")
    d.add_argument("--stride", type=int, default=1, help="frames between window starts")
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="last fraction of each trajectory's frames held out for validation",
    )
    t = p.add_argument_group("optimisation")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--micro-batch", type=int, default=4, help="windows per forward pass per process")
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--min-lr-ratio", type=float, default=0.1)
    t.add_argument("--warmup", type=int, default=10, help="warm-up steps")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    t.add_argument("--eval-every", type=int, default=0, help="steps between validations (0: per epoch)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    t.add_argument(
        "--keep-best",
        action="store_true",
        help="save the weights of the lowest validation loss instead of the last (early stopping)",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=0,
        help="with --keep-best: stop after this many validations without a lower loss (0: run every step)",
    )
    t.add_argument(
        "--code-smoothing",
        type=float,
        default=0.0,
        metavar="A",
        help="motion codes: soft targets over neighbouring codes, Gaussian width in Å (0: one-hot)",
    )
    t.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def _data_paths(args) -> list[str]:
    from pathlib import Path

    from mdllm.errors import in_file

    paths = list(args.data)
    if args.data_list:
        listing = Path(args.data_list)
        if not listing.exists():
            raise in_file(listing, "no such data list")
        for line in listing.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line)
                paths.append(str(p if p.is_absolute() else listing.parent / p))
    return paths


def run(args):
    import sys

    import torch

    from mdllm.lm.fit import LoraSettings, NewModel, Windows, fit
    from mdllm.lm.train import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    new = NewModel(
        preset=args.preset,
        heads=args.heads,
        kv_heads=args.kv_heads,
        context=args.context,
        n_conditioning=args.n_conditioning,
        motion_tokenizer=args.motion_tokenizer,
        frame_span=args.frame_span,
        fine_codes=args.fine_codes,
    )
    lora = LoraSettings(
        rank=args.lora_rank,
        alpha=args.lora_alpha,
        dropout=args.lora_dropout,
        targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
    )
    cfg = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        micro_batch=args.micro_batch,
        grad_accum=args.grad_accum,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        keep_best=args.keep_best,
        patience=args.patience,
        progress=not args.no_progress,
        code_smoothing_A=args.code_smoothing,
    )
    fit(
        _data_paths(args),
        args.out,
        base=args.base,
        hf_base=args.hf_base,
        new=new,
        lora=lora,
        windows=Windows(args.window, args.stride, args.val_fraction),
        train=cfg,
        resume=args.resume,
        command="mdllm " + " ".join(sys.argv[1:]) if sys.argv else "",
    )
    print(f"saved {args.out}", file=sys.stderr)
