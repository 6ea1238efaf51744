"""``mdllm generate MODEL.gguf --start START ...``: new frames from a structure or trajectory."""

import argparse


def register(sub):
    p = sub.add_parser("generate", help="generate trajectories with a GGUF model (rolling window, many walkers)")
    p.add_argument("model", help="GGUF model exported by `mdllm export`")
    p.add_argument("--start", required=True, help="start structure, or trajectory whose last WINDOW frames start it")
    p.add_argument("--top", help="topology for a start trajectory without one")
    p.add_argument("--tokenizer", help="structure tokenizer directory (default: the shipped one)")
    p.add_argument("--frames", type=int, default=100, help="new frames per walker (default 100)")
    p.add_argument("--walkers", type=int, default=1, help="independent trajectories, decoded in one batch")
    p.add_argument("--window", type=int, default=4, help="frames of context (default 4)")
    p.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature, 0 = greedy (default: 0.8 for motion tokens, 1 for torsion tokens)",
    )
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    p.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu-layers", type=int, default=0, help="layers offloaded to a GPU (llama.cpp built with one)")
    p.add_argument("--no-kv-shift", action="store_true", help="re-evaluate the window instead of shifting the KV cache")
    p.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine decoded backbones to ideal bonds, angles, peptide planes and allowed Ramachandran "
        "regions (small moves; default: on for motion tokens, off for torsion tokens)",
    )
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="motion tokens: accept every frame as drawn (default: the guard draws a residue again when "
        "it would break the chain, and a frame again when CA atoms clash or it loses the start's "
        "compaction or native contacts, as judged by mdllm evaluate's global checks)",
    )
    p.add_argument(
        "--constrain",
        action="store_true",
        help="motion tokens: constrained decoding; before each residue is drawn, mask the codes that would "
        "break the chain, make a Ramachandran outlier or clash with the residues already drawn in the frame "
        "(likelihoods stay the model's)",
    )
    p.add_argument(
        "--constraint-tolerance",
        type=float,
        default=0.03,
        help="with --constrain: allowed deviation (nm) of the distances across each peptide link (C-N, CA-CA "
        "and the 1-3 distances CA-N, C-CA, O-N) from the key frame's (default 0.03)",
    )
    p.add_argument(
        "--decoded-tries",
        type=int,
        default=8,
        help="with --constrain and a causal context decoder (the shipped one): each drawn code is judged as "
        "the frame will decode it (the last residues decoded and projected together: Ramachandran outliers, "
        "clashes); a rejected code is drawn again up to this many times among the masked codes, as many among "
        "all codes, then the most likely code that passes is taken (default 8; 0: the code-alone mask only)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="motion tokens: frame repair; once a frame is drawn, residues with a validity fault (bond or angle "
        "outlier, clash, Ramachandran outlier, as the frame decodes) take other codes among the model's most "
        "likely there until the frame passes; keeps more of the model's motion than --constrain",
    )
    p.add_argument(
        "--filter",
        action="store_true",
        help="write only acceptable frames: valid by the local checks (mdllm.evaluate.check_backbone) and "
        "globally plausible against the start (compaction, native contacts), as mdllm evaluate "
        "judges them",
    )
    p.add_argument(
        "-o", "--output", required=True, help="OUT.dcd|.xtc|.pdb|.h5 (plus OUT.pdb, OUT.tokens.npz, OUT.json)"
    )
    p.set_defaults(run=run)


def run(args):
    from pathlib import Path

    from mdllm.errors import MdllmError
    from mdllm.generate import Generator
    from mdllm.io import WRITABLE_SUFFIXES
    from mdllm.sampling import SamplingParams
    from mdllm.sampling.constraint import ConstraintLimits

    if Path(args.output).suffix.lower() not in WRITABLE_SUFFIXES:
        raise MdllmError(f"{args.output}: output must end in one of {', '.join(WRITABLE_SUFFIXES)}")
    gen = Generator(args.model, args.tokenizer, gpu_layers=args.gpu_layers, threads=args.threads)
    temperature = gen.default_temperature if args.temperature is None else args.temperature
    params = SamplingParams(temperature, args.top_k, args.top_p, args.min_p)
    ensemble = gen.generate(
        args.start,
        args.top,
        frames=args.frames,
        walkers=args.walkers,
        window=args.window,
        params=params,
        seed=args.seed,
        kv_shift=not args.no_kv_shift,
        filter=args.filter,
        refine=args.refine,
        guard=not args.no_guard,
        constrain=args.constrain,
        constraint_limits=ConstraintLimits(tolerance_nm=args.constraint_tolerance, decoded_tries=args.decoded_tries),
        repair=args.repair,
    )
    written = ensemble.save(args.output)
    timing = ensemble.info["timing"]
    print(
        f"{ensemble.tokens.shape[0]} walkers x {ensemble.tokens.shape[1]} frames in "
        f"{timing['generate_seconds']:.2f} s ({ensemble.info['frames_per_second']:.1f} frames/s); "
        f"mean frame log-likelihood {ensemble.frame_loglik.mean():.2f}"
    )
    if ensemble.info.get("refine"):
        r = ensemble.info["refine"]
        print(
            f"refined: atoms moved {r['rms_displacement_A_median']:.2f} A RMS per frame (median), "
            f"{r['rms_displacement_A_max']:.2f} A at most"
        )
    if ensemble.info.get("guard"):
        g = ensemble.info["guard"]
        print(
            f"guard: {g['frames_redrawn']} of {g['frames']} frames drawn again ({g['redraws']} extra draws, "
            f"{g['frames_kept_after_last_try']} kept after the last try); rejections {g['rejections_by_reason']}; "
            f"{g['residues_redrawn']} residues drawn again for a broken link "
            f"({100 * g['residue_redraw_fraction']:.1f} % of residue draws)"
        )
    if ensemble.info.get("constraint"):
        c = ensemble.info["constraint"]
        print(
            f"constraint: {c['constrained_draws']} draws masked, {c['mean_allowed_codes']:.0f} codes allowed on "
            f"average, {c['empty_masks']} with no allowed code (drawn unconstrained)"
        )
        if c["decoded_check"]:
            print(
                f"constraint, as decoded: {c['decoded_redraws']} codes sent back, {c['decoded_kept']} draws kept "
                "after the last try"
            )
    if ensemble.info.get("repair"):
        r = ensemble.info["repair"]
        print(
            f"repair: {r['frames_repaired']} of {r['frames']} frames repaired, {r['codes_changed']} codes changed "
            f"({100 * r['code_fraction_changed']:.1f} % of codes), {r['frames_left_invalid']} draws left invalid"
        )
    if "validity" in ensemble.info:
        v = ensemble.info["validity"]
        print(
            f"filter: kept {v['acceptable_frames']} acceptable of {v['frames']} frames ({v['valid_frames']} valid "
            f"by the local checks); rejected for: {v['invalid_reasons']}"
        )
    for path in written:
        print(f"wrote {path}")
