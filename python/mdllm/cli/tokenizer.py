"""``mdllm tokenizer train|adapt|eval``: train the FoldToken-style structure tokenizer, adapt its decoder
to one protein, and measure it."""

DEFAULT_NPZ = "../shared/data/structures/backbones_train.npz"


def register(sub):
    p = sub.add_parser("tokenizer", help="train or evaluate the structure tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")

    t = tsub.add_parser("train", help="train a tokenizer (PyTorch, CPU or GPU)",
                        description="Train a structure tokenizer. --kind torsion (the shipped default) fits a "
                                    "codebook of residue torsions by k-means in seconds to minutes; --kind "
                                    "transformer trains the FoldToken-style autoencoder (the options below "
                                    "--codebook are its own).")
    t.add_argument("--kind", choices=["torsion", "motion", "transformer"], default="torsion")
    t.add_argument("--codebook", type=int, default=None, help="torsion and motion kinds: number of codes K "
                   "(default 1024 torsion, 4096 motion)")
    t.add_argument("--keys", type=int, default=4, help="motion kind: key frames drawn per --md trajectory")
    t.add_argument("--beam", type=int, default=4, help="torsion kind: beam width of the closed-loop encoder")
    t.add_argument("--kmeans-iters", type=int, default=30, help="torsion kind: Lloyd iterations")
    t.add_argument("--max-samples", type=int, default=400_000, help="torsion kind: residues sampled for k-means")
    t.add_argument("--data", default=DEFAULT_NPZ, help="backbone npz: coords (Angstrom), offsets, ids")
    t.add_argument("--md", action="append", default=[], metavar="TRAJ[:TOP]",
                   help="MD trajectory or NMR ensemble whose frames are added to training (repeatable)")
    t.add_argument("-o", "--out", required=True, help="output directory (model.safetensors, config.json, checkpoint/)")
    t.add_argument("--levels", default="8,5,5,5", help="FSQ levels; codebook size is their product")
    t.add_argument("--dim", type=int, default=128)
    t.add_argument("--encoder-layers", type=int, default=2)
    t.add_argument("--decoder-layers", type=int, default=None,
                   help="default 4; with --init, a larger number deepens the trained decoder")
    t.add_argument("--steps", type=int, default=20000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--val-percent", type=float, default=3.0, help="percent of chains held out for validation")
    t.add_argument("--torch-threads", type=int, default=2)
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (a GPU when PyTorch sees one)")
    t.add_argument("--schedule-minutes", type=float, default=0.0,
                   help="run the learning-rate schedule on wall time and stop after this many minutes "
                        "(a fixed time budget on hardware of unknown speed; --steps is then only a cap)")
    t.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this wall time")
    t.add_argument("--stop-at", type=int, default=0, help="stop at this step, keeping the --steps schedule (short comparisons)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--init", help="start from this tokenizer's weights (its sizes are used)")
    t.add_argument("--freeze-encoder", action="store_true",
                   help="with --init: train only the decoder, so tokens (and models trained on them) stay valid")
    add_noise_arguments(t)
    t.set_defaults(run=run_train)
    register_adapt(tsub)
    register_eval(tsub)


def add_noise_arguments(p):
    p.add_argument("--input-noise", type=float, default=0.0, metavar="A",
                   help="Gaussian noise (Angstrom per coordinate) on the encoder's input for a fraction of the "
                        "crops, scored against the clean frame: the decoder learns that thermally jittered "
                        "token variants mean the same structure")
    p.add_argument("--input-noise-fraction", type=float, default=0.5, help="fraction of crops made noisy")


def run_train(args):
    if args.kind == "torsion":
        return run_train_torsion(args)
    if args.kind == "motion":
        return run_train_motion(args)
    from mdllm.errors import MdllmError
    from mdllm.tokenizer.config import TokenizerConfig
    from mdllm.tokenizer.data import load_dataset
    from mdllm.tokenizer.train import TrainOptions, train

    try:
        levels = [int(x) for x in args.levels.split(",")]
    except ValueError:
        raise MdllmError(f"--levels must be comma-separated integers, got '{args.levels}'") from None
    if args.init:
        from mdllm.tokenizer.weights import read_config

        cfg = read_config(args.init)
        if args.decoder_layers:
            cfg.decoder_layers = args.decoder_layers
    else:
        cfg = TokenizerConfig(levels=levels, dim=args.dim, ffn_dim=2 * args.dim,
                              encoder_layers=args.encoder_layers, decoder_layers=args.decoder_layers or 4)
    cfg.validate("--levels/--dim")
    opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                        seed=args.seed, eval_every=args.eval_every, threads=args.torch_threads,
                        max_minutes=args.max_minutes, stop_at=args.stop_at, init=args.init or "",
                        freeze_encoder=args.freeze_encoder, device=args.device,
                        schedule_minutes=args.schedule_minutes, input_noise_A=args.input_noise,
                        input_noise_fraction=args.input_noise_fraction)
    ds = load_dataset(args.data, args.md, val_percent=args.val_percent)
    print(f"train segments {len(ds.train)}, held-out segments {len(ds.val)}, MD/NMR frames {len(ds.md)}, "
          f"codebook {cfg.codebook_size}")
    _, history, early = train(ds, cfg, opts, args.out, resume=args.resume)
    if history:
        print(f"last: {history[-1]}{' (stopped early: a time limit or --stop-at)' if early else ''}")
    print(f"tokenizer written to {args.out}")


def run_train_torsion(args):
    import torch

    from mdllm.tokenizer.config import TorsionConfig
    from mdllm.tokenizer.data import load_dataset
    from mdllm.tokenizer.torsion_train import train_torsion_tokenizer
    from mdllm.tokenizer.train import training_device

    cfg = TorsionConfig(codebook_size=args.codebook or 1024, beam_width=args.beam)
    cfg.validate("--codebook/--beam")
    torch.set_num_threads(args.torch_threads)
    ds = load_dataset(args.data, args.md, val_percent=args.val_percent)
    print(f"train segments {len(ds.train)} (+ {len(ds.md)} MD/NMR frames), held-out segments {len(ds.val)}, "
          f"codebook {cfg.codebook_size}, beam {cfg.beam_width}")
    device = training_device(args.device)  # k-means takes minutes on a CPU, seconds on a GPU
    stats = train_torsion_tokenizer(ds.train + ds.md, cfg, args.out, iters=args.kmeans_iters,
                                    max_samples=args.max_samples, seed=args.seed, val_segments=ds.val,
                                    device=device)
    print(f"k-means: {stats['samples']} residues, {stats['codes_used']:.1%} of codes used, "
          f"{stats['minutes']:.1f} min")
    if ds.val:
        print(f"held-out chains ({stats['val_chains']}): round-trip RMSD median {stats['val_rmsd_median_A']:.2f} A, "
              f"p95 {stats['val_rmsd_p95_A']:.2f} A")
    print(f"tokenizer written to {args.out}")


def run_train_motion(args):
    from mdllm.errors import MdllmError
    from mdllm.tokenizer.data import load_md_frames
    from mdllm.tokenizer.motion_train import train_motion

    if not args.md:
        raise MdllmError("--kind motion learns from MD: give trajectories with --md TRAJ[:TOP]")
    trajectories = [load_md_frames(spec) for spec in args.md]
    print(f"{len(trajectories)} trajectories, {sum(len(t) for t in trajectories)} frames, "
          f"{args.keys} key frames each, codebook {args.codebook or 4096}")
    stats = train_motion(trajectories, args.out, codebook_size=args.codebook or 4096, keys_per_trajectory=args.keys,
                         max_samples=args.max_samples, iterations=args.kmeans_iters, seed=args.seed, sources=args.md)
    print(f"k-means: {stats['samples']} residue displacements, {stats['codes_used']:.1%} of codes used, "
          f"RMS atom error {stats['rms_atom_error_A']:.3f} A, {stats['minutes']:.1f} min")
    print(f"tokenizer written to {args.out}")


def register_adapt(tsub):
    a = tsub.add_parser("adapt", help="fine-tune only the decoder on one protein's trajectories (tokens unchanged)",
                        description="Fine-tune the decoder of a tokenizer on the frames of one protein. The encoder "
                                    "is frozen, so tokens and the language models trained on them stay valid; "
                                    "decoding of that protein's tokens becomes much more accurate.")
    a.add_argument("trajectories", nargs="+", metavar="TRAJ", help="trajectories or structures of the protein")
    a.add_argument("--top", help="topology for trajectories that carry none (XTC, DCD, ...)")
    a.add_argument("--tokenizer", help="tokenizer to adapt (default: the shipped models/foldtoken)")
    a.add_argument("-o", "--out", required=True, help="output tokenizer directory")
    a.add_argument("--steps", type=int, default=1000)
    a.add_argument("--batch-size", type=int, default=4)
    a.add_argument("--crop", type=int, default=256, help="residues per training crop")
    a.add_argument("--lr", type=float, default=5e-4)
    a.add_argument("--val-fraction", type=float, default=0.1,
                   help="last fraction of each trajectory's frames held out to measure the gain")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-minutes", type=float, default=0.0, help="stop after this wall time")
    add_noise_arguments(a)
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(run=run_adapt)


def run_adapt(args):
    from mdllm.io import load_backbone
    from mdllm.tokenizer import FoldTokenizer
    from mdllm.tokenizer.adapt import AdaptOptions, adapt_decoder

    tok = FoldTokenizer.load(args.tokenizer)
    trajs = [load_backbone(t, top=args.top).xyz for t in args.trajectories]
    opts = AdaptOptions(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                        val_fraction=args.val_fraction, seed=args.seed, threads=getattr(args, "threads", 0) or 0,
                        max_minutes=args.max_minutes, input_noise_A=args.input_noise,
                        input_noise_fraction=args.input_noise_fraction)
    report = adapt_decoder(tok, trajs, args.out, opts, progress=not args.no_progress)
    before, after = report["val_rmsd_median_A_before"], report["val_rmsd_median_A_after"]
    if before is not None:
        print(f"held-out frames ({report['val_frames']}): round-trip RMSD median {before:.2f} A -> {after:.2f} A")
    print(f"adapted tokenizer written to {args.out} (tokens unchanged: {report['token_hash'][:12]})")


def register_eval(tsub):
    e = tsub.add_parser("eval", help="acceptance measurements of a tokenizer (prints JSON)")
    e.add_argument("--tokenizer", help="tokenizer directory (default: the shipped models/foldtoken)")
    e.add_argument("--data", default=DEFAULT_NPZ, help="backbone npz; its held-out chains are evaluated")
    e.add_argument("--val-percent", type=float, default=3.0)
    e.add_argument("--adk", default="data/adk", help="directory with adk_open.pdb, adk_closed.pdb and *.xtc (+ .pdb)")
    e.add_argument("--backend", default="auto", choices=["auto", "cpp", "torch", "numpy"])
    e.add_argument("--md", action="append", default=[], metavar="TRAJ[:TOP]",
                   help="motion kind: MD trajectories to measure on, each against its first frame "
                        "(default: the AdK transitions of --adk)")
    e.add_argument("-o", "--out", help="also write the JSON here")
    e.set_defaults(run=run_eval)


def run_eval(args):
    import json

    from mdllm.files import atomic_output
    from mdllm.tokenizer import FoldTokenizer
    from mdllm.tokenizer.api import load_tokenizer
    from mdllm.tokenizer.evaluate import adk_transitions, held_out_chains

    tok = load_tokenizer(args.tokenizer, backend=args.backend)
    if tok.needs_key_frame:
        return run_eval_motion(tok, args)
    tok = FoldTokenizer.load(args.tokenizer, backend=args.backend)
    report = {"tokenizer": str(tok.path), "hash": tok.hash, "file_hash": tok.file_hash, "codebook_size": tok.codebook_size,
              "held_out_chains": held_out_chains(tok, args.data, args.val_percent),
              "adk": adk_transitions(tok, args.adk)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text + "\n")


def run_eval_motion(tok, args):
    import json
    from pathlib import Path

    from mdllm.files import atomic_output
    from mdllm.io import load_backbone
    from mdllm.tokenizer.evaluate import motion_round_trip

    specs = args.md or [f"{x}:{x.with_suffix('.pdb')}" for x in sorted(Path(args.adk).glob("*.xtc"))]
    trajectories = {}
    for spec in specs:
        path, _, top = spec.partition(":")
        trajectories[spec] = load_backbone(path, top=top or None)
    report = {"tokenizer": str(tok.path), "hash": tok.hash, "codebook_size": tok.codebook_size,
              **motion_round_trip(tok, trajectories)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text + "\n")
