"""``mdllm run START.pdb -o DIR``: simulate, encode, fine-tune, export, generate and evaluate."""


def register(sub):
    from mdllm.pipeline import PRESETS

    p = sub.add_parser("run", help="from one structure to an evaluated ensemble (every stage, cached)")
    p.add_argument("start", help="start structure (PDB or mmCIF)")
    p.add_argument("-o", "--output", required=True, help="output directory (one folder per stage)")
    p.add_argument(
        "--trajectory",
        action="append",
        default=[],
        help="train on this MD trajectory instead of simulating (repeatable)",
    )
    p.add_argument("--top", help="topology for --trajectory files without one")
    p.add_argument(
        "--preset",
        default="quick",
        choices=sorted(PRESETS),
        help="stage sizes: quick (2 CPU cores, minutes), laptop, gpu (default quick)",
    )
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="NAME=PDB",
        help="named reference state for the report (the start structure is always one)",
    )
    p.add_argument(
        "--base",
        help="base model directory to fine-tune (default: the shipped model of the "
        "tokenizer's kind, models/motion-lm or models/structure-lm)",
    )
    p.add_argument("--no-guard", action="store_true", help="generate without the guard (motion tokens)")
    p.add_argument(
        "--constrain",
        action="store_true",
        help="motion tokens: constrained decoding, each residue's draw judged as it will be decoded "
        "(mdllm generate --constrain; slower, far more frames valid before refinement)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="motion tokens: frame repair, residues with a validity fault redrawn among the model's likely codes "
        "once each frame is drawn (mdllm generate --repair; slower, far more frames valid before refinement)",
    )
    p.add_argument("--tokenizer", help="structure tokenizer directory (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    for name, kind, what in [
        ("frames", int, "generated frames per walker"),
        ("walkers", int, "walkers"),
        ("train-steps", int, "fine-tuning steps"),
        ("lora-rank", int, "LoRA rank of the fine-tune (0: all weights)"),
        ("simulate-ns", float, "ns per temperature"),
        (
            "sampling-temperature",
            float,
            "sampling temperature of the language model (default: 0.8 for motion tokens, 1 for torsion tokens)",
        ),
        ("surrogate-frames", int, "frames of the linear surrogate added to the fine-tune (motion tokens; 0: none)"),
        (
            "code-smoothing",
            float,
            "width in Å of the soft fine-tuning targets over neighbouring codes (motion; 0: off)",
        ),
    ]:
        p.add_argument(f"--{name}", type=kind, help=f"override the preset's {what}")
    p.set_defaults(run=run)


def run(args):
    from mdllm.evaluate.states import parse_state_specs
    from mdllm.pipeline import run as run_pipeline

    states = parse_state_specs(args.state)
    overrides = {
        key: value
        for key, value in [
            ("frames", args.frames),
            ("walkers", args.walkers),
            ("train_steps", args.train_steps),
            ("lora_rank", args.lora_rank),
            ("simulate_ns", args.simulate_ns),
            ("sampling_temperature", args.sampling_temperature),
            ("surrogate_frames", args.surrogate_frames),
            ("code_smoothing_A", args.code_smoothing),
        ]
        if value is not None
    }
    if args.no_guard:
        overrides["guard"] = False
    if args.constrain:
        overrides["constrain"] = True
    if args.repair:
        overrides["repair"] = True
    run_pipeline(
        args.start,
        args.output,
        trajectories=args.trajectory,
        top=args.top,
        preset=args.preset,
        base=args.base,
        tokenizer=args.tokenizer,
        seed=args.seed,
        threads=args.threads,
        states=states,
        **overrides,
    )
