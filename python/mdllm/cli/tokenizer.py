"""``mdllm tokenizer train|eval``: train a structure tokenizer of either kind (motion or torsion) and
measure it."""

DEFAULT_NPZ = "../shared/data/structures/backbones_train.npz"


def register(sub):
    p = sub.add_parser("tokenizer", help="train or evaluate the structure tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")

    t = tsub.add_parser(
        "train",
        help="train a tokenizer (k-means; the torsion kind on PyTorch, CPU or GPU)",
        description="Train a structure tokenizer. --kind torsion (the default) fits a codebook of "
        "residue torsions on the chains of --data (+ --md frames); --kind motion fits "
        "a codebook of residue displacements from key frames of --md trajectories.",
    )
    t.add_argument("--kind", choices=["torsion", "motion"], default="torsion")
    t.add_argument("--codebook", type=int, default=None, help="number of codes K (default 1024 torsion, 4096 motion)")
    t.add_argument("--keys", type=int, default=4, help="motion kind: key frames drawn per --md trajectory")
    t.add_argument("--beam", type=int, default=4, help="torsion kind: beam width of the closed-loop encoder")
    t.add_argument("--kmeans-iters", type=int, default=30, help="Lloyd iterations")
    t.add_argument("--max-samples", type=int, default=400_000, help="residues sampled for k-means")
    t.add_argument("--data", default=DEFAULT_NPZ, help="torsion kind: backbone npz: coords (Angstrom), offsets, ids")
    t.add_argument(
        "--md",
        action="append",
        default=[],
        metavar="TRAJ[:TOP]",
        help="MD trajectory or NMR ensemble whose frames are added to training (repeatable)",
    )
    t.add_argument("-o", "--out", required=True, help="output directory (model.safetensors, config.json)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--val-percent", type=float, default=3.0, help="torsion kind: percent of chains held out for validation"
    )
    t.add_argument("--torch-threads", type=int, default=2)
    t.add_argument("--device", default="auto", help="torsion kind: cpu, cuda or auto (a GPU when PyTorch sees one)")
    t.set_defaults(run=run_train)
    register_train_context(tsub)
    register_train_fine(tsub)
    register_eval(tsub)


def register_train_context(tsub):
    c = tsub.add_parser(
        "train-context",
        help="train the context decoder of a motion tokenizer (PyTorch)",
        description="Train the network that decodes each residue of a motion tokenizer from its own and "
        "its neighbours' tokens (mdllm.tokenizer.motion_context), through the projection onto the key "
        "frame's geometry, with clash and Ramachandran penalties. Writes context_decoder.safetensors "
        "(+ .json notes) into the tokenizer directory unless -o names a file.",
    )
    c.add_argument("--tokenizer", default="motiontoken", help="motion tokenizer directory (default: the shipped one)")
    c.add_argument("--md", action="append", default=[], metavar="TRAJ[:TOP]", help="MD trajectory (repeatable)")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--window", type=int, default=3, help="neighbours before a residue that its decoding sees")
    c.add_argument(
        "--ahead",
        type=int,
        help="neighbours after it that it sees (default: --window; 0 makes the decoder causal, so constrained "
        "decoding can judge each residue as it will be decoded)",
    )
    c.add_argument("--spatial", type=int, default=0, help="nearest residues in the key (beyond the window) it sees")
    c.add_argument("--hidden", type=int, default=256, help="width of the two hidden layers")
    c.add_argument("--keys", type=int, default=8, help="key frames per trajectory")
    c.add_argument(
        "--max-swap",
        type=float,
        default=0.0,
        help="largest share of a frame's tokens swapped for other frames' per step (0: the encoder's tokens only; "
        "more teaches it to smooth incoherent tokens, at the cost of damping their motion)",
    )
    c.add_argument(
        "--swap-target",
        choices=("frame", "source"),
        default="frame",
        help="where a swapped token's residue is aimed: its own frame's position (the decoder infers it from the "
        "neighbours) or where the token's frame had it (it follows every token; only the clash and "
        "Ramachandran terms make neighbours agree)",
    )
    c.add_argument("--clash-weight", type=float, default=10.0)
    c.add_argument("--rama-weight", type=float, default=3.0)
    c.add_argument("-o", "--out", help="output file or directory (default: the tokenizer directory)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--torch-threads", type=int, default=2)
    c.set_defaults(run=run_train_context)


def run_train_context(args):
    import torch

    from mdllm.errors import MdllmError
    from mdllm.tokenizer.api import load_tokenizer
    from mdllm.tokenizer.data import load_md_backbone
    from mdllm.tokenizer.motion_context_train import train_context_decoder

    if not args.md:
        raise MdllmError("the context decoder learns from MD: give trajectories with --md TRAJ[:TOP]")
    tok = load_tokenizer(args.tokenizer)
    torch.set_num_threads(args.torch_threads)
    trajectories = [load_md_backbone(spec) for spec in args.md]
    print(f"{len(trajectories)} trajectories, {sum(b.n_frames for b in trajectories)} frames, {args.keys} keys each")
    notes = train_context_decoder(
        trajectories,
        tok,
        args.out or tok.path,
        steps=args.steps,
        window=args.window,
        spatial=args.spatial,
        ahead=args.ahead,
        hidden=args.hidden,
        keys_per_trajectory=args.keys,
        max_swap=args.max_swap,
        swap_target=args.swap_target,
        clash_weight=args.clash_weight,
        rama_weight=args.rama_weight,
        seed=args.seed,
        sources=args.md,
    )
    last = notes["history"][-1]
    print(
        f"{notes['minutes']:.1f} min; last {min(250, args.steps)} steps: mean squared atom error "
        f"{last['mse_A2']:.3f} A^2, clash {last['clash']:.4f}, Ramachandran {last['rama']:.4f}"
    )
    print(f"context decoder written to {notes['file']}")


def register_train_fine(tsub):
    f = tsub.add_parser(
        "train-fine",
        help="train the fine codes of a motion tokenizer (a second token for residues that move far)",
        description="Fit a residual codebook (k-means) on what the first motion code leaves of every "
        "training displacement whose first code moves more than --threshold Å, so that residues far from "
        "the key get a second, fine token (mdllm.tokenizer.motion_fine). With the first stage's --md "
        "trajectories, --keys and --seed the samples are the first stage's own. Writes "
        "fine_codes.safetensors (+ .json notes) into the tokenizer directory unless -o names a file.",
    )
    f.add_argument("--tokenizer", default="motiontoken", help="motion tokenizer directory (default: the shipped one)")
    f.add_argument("--md", action="append", default=[], metavar="TRAJ[:TOP]", help="MD trajectory (repeatable)")
    f.add_argument("--codebook", type=int, default=1024, help="fine codes K2")
    f.add_argument(
        "--threshold", type=float, default=2.0, help="first codes moving more than this (Å) take a fine code"
    )
    f.add_argument("--keys", type=int, default=8, help="key frames per trajectory")
    f.add_argument("--kmeans-iters", type=int, default=20, help="Lloyd iterations")
    f.add_argument("--max-samples", type=int, default=400_000, help="residues sampled before the threshold")
    f.add_argument("-o", "--out", help="output file or directory (default: the tokenizer directory)")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(run=run_train_fine)


def run_train_fine(args):
    from mdllm.errors import MdllmError
    from mdllm.tokenizer.data import load_md_frames
    from mdllm.tokenizer.motion import MotionTokenizer
    from mdllm.tokenizer.motion_fine import train_fine_codes

    if not args.md:
        raise MdllmError("fine codes learn from MD: give trajectories with --md TRAJ[:TOP]")
    tok = MotionTokenizer.load(args.tokenizer)
    trajectories = [load_md_frames(spec) for spec in args.md]
    print(f"{len(trajectories)} trajectories, {sum(len(t) for t in trajectories)} frames, {args.keys} keys each")
    notes = train_fine_codes(
        trajectories,
        tok,
        args.out or tok.path,
        codebook_size=args.codebook,
        threshold_A=args.threshold,
        keys_per_trajectory=args.keys,
        max_samples=args.max_samples,
        iterations=args.kmeans_iters,
        seed=args.seed,
        sources=args.md,
    )
    print(
        f"k-means: {notes['fine_samples']} of {notes['samples']} displacements move more than {args.threshold} A "
        f"({notes['first_codes_followed']} first codes take a fine code); residual RMS atom error "
        f"{notes['rms_atom_error_A']:.3f} A, {notes['minutes']:.1f} min"
    )
    print(f"fine codes written to {notes['file']}")


def run_train(args):
    if args.kind == "motion":
        return run_train_motion(args)
    return run_train_torsion(args)


def run_train_torsion(args):
    import torch

    from mdllm.tokenizer.config import TorsionConfig
    from mdllm.tokenizer.data import load_dataset
    from mdllm.tokenizer.torsion_train import train_torsion_tokenizer, training_device

    cfg = TorsionConfig(codebook_size=args.codebook or 1024, beam_width=args.beam)
    cfg.validate("--codebook/--beam")
    torch.set_num_threads(args.torch_threads)
    ds = load_dataset(args.data, args.md, val_percent=args.val_percent)
    print(
        f"train segments {len(ds.train)} (+ {len(ds.md)} MD/NMR frames), held-out segments {len(ds.val)}, "
        f"codebook {cfg.codebook_size}, beam {cfg.beam_width}"
    )
    device = training_device(args.device)  # k-means takes minutes on a CPU, seconds on a GPU
    stats = train_torsion_tokenizer(
        ds.train + ds.md,
        cfg,
        args.out,
        iters=args.kmeans_iters,
        max_samples=args.max_samples,
        seed=args.seed,
        val_segments=ds.val,
        device=device,
    )
    print(f"k-means: {stats['samples']} residues, {stats['codes_used']:.1%} of codes used, {stats['minutes']:.1f} min")
    if ds.val:
        print(
            f"held-out chains ({stats['val_chains']}): round-trip RMSD median {stats['val_rmsd_median_A']:.2f} A, "
            f"p95 {stats['val_rmsd_p95_A']:.2f} A"
        )
    print(f"tokenizer written to {args.out}")


def run_train_motion(args):
    from mdllm.errors import MdllmError
    from mdllm.tokenizer.data import load_md_frames
    from mdllm.tokenizer.motion_train import train_motion

    if not args.md:
        raise MdllmError("--kind motion learns from MD: give trajectories with --md TRAJ[:TOP]")
    trajectories = [load_md_frames(spec) for spec in args.md]
    print(
        f"{len(trajectories)} trajectories, {sum(len(t) for t in trajectories)} frames, "
        f"{args.keys} key frames each, codebook {args.codebook or 4096}"
    )
    stats = train_motion(
        trajectories,
        args.out,
        codebook_size=args.codebook or 4096,
        keys_per_trajectory=args.keys,
        max_samples=args.max_samples,
        iterations=args.kmeans_iters,
        seed=args.seed,
        sources=args.md,
    )
    print(
        f"k-means: {stats['samples']} residue displacements, {stats['codes_used']:.1%} of codes used, "
        f"RMS atom error {stats['rms_atom_error_A']:.3f} A, {stats['minutes']:.1f} min"
    )
    print(f"tokenizer written to {args.out}")


def register_eval(tsub):
    e = tsub.add_parser("eval", help="acceptance measurements of a tokenizer (prints JSON)")
    e.add_argument("--tokenizer", help="tokenizer directory (default: the shipped models/torsiontoken)")
    e.add_argument("--data", default=DEFAULT_NPZ, help="backbone npz; its held-out chains are evaluated")
    e.add_argument("--val-percent", type=float, default=3.0)
    e.add_argument("--adk", default="data/adk", help="directory with adk_open.pdb, adk_closed.pdb and *.xtc (+ .pdb)")
    e.add_argument("--backend", default="auto", choices=["auto", "cpp", "torch", "numpy"])
    e.add_argument(
        "--md",
        action="append",
        default=[],
        metavar="TRAJ[:TOP]",
        help="motion kind: MD trajectories to measure on, each against its first frame "
        "(default: the AdK transitions of --adk)",
    )
    e.add_argument("-o", "--out", help="also write the JSON here")
    e.set_defaults(run=run_eval)


def run_eval(args):
    import json

    from mdllm.files import atomic_output
    from mdllm.tokenizer.api import load_tokenizer
    from mdllm.tokenizer.evaluate import adk_transitions, held_out_chains

    tok = load_tokenizer(args.tokenizer, backend=args.backend)
    if tok.needs_key_frame:
        return run_eval_motion(tok, args)
    report = {
        "tokenizer": str(tok.path),
        "hash": tok.hash,
        "file_hash": tok.file_hash,
        "codebook_size": tok.codebook_size,
        "held_out_chains": held_out_chains(tok, args.data, args.val_percent),
        "adk": adk_transitions(tok, args.adk),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text + "\n")


def run_eval_motion(tok, args):
    import json
    from pathlib import Path

    from mdllm.files import atomic_output
    from mdllm.tokenizer.data import load_md_backbone
    from mdllm.tokenizer.evaluate import motion_round_trip

    specs = args.md or [f"{x}:{x.with_suffix('.pdb')}" for x in sorted(Path(args.adk).glob("*.xtc"))]
    trajectories = {spec: load_md_backbone(spec) for spec in specs}
    report = {
        "tokenizer": str(tok.path),
        "hash": tok.hash,
        "codebook_size": tok.codebook_size,
        **motion_round_trip(tok, trajectories),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text + "\n")
