"""``mdllm score MODEL.gguf TRAJ``: per-frame log-likelihood of an existing trajectory."""


def register(sub):
    p = sub.add_parser("score", help="per-frame log-likelihood of a trajectory under a GGUF model")
    p.add_argument("model", help="GGUF model exported by `mdllm export`")
    p.add_argument("trajectory", help="structure or trajectory (any format mdtraj reads)")
    p.add_argument("--top", help="topology for formats without one")
    p.add_argument("--tokenizer", help="structure tokenizer directory (default: the shipped one)")
    p.add_argument("--window", type=int, default=4, help="frames of context (default 4)")
    p.add_argument("-o", "--output", help="write frame, loglik as CSV here instead of printing")
    p.set_defaults(run=run)


def run(args):
    from mdllm.files import atomic_output
    from mdllm.generate import Generator

    gen = Generator(args.model, args.tokenizer, threads=args.threads)
    loglik = gen.score(args.trajectory, args.top, window=args.window)
    lines = ["frame,loglik"] + [f"{i},{v:.6f}" for i, v in enumerate(loglik)]
    if args.output:
        with atomic_output(args.output) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.output}: {len(loglik)} frames, mean log-likelihood {loglik.mean():.3f}")
    else:
        print("\n".join(lines))
