"""``mdllm encode TRAJ -o tokens.npz``: one structure token per residue per frame."""


def register(sub):
    p = sub.add_parser("encode", help="structure tokens of a trajectory (npz with tokens, sequence, tokenizer hash)")
    p.add_argument("traj", help="structure or trajectory (any format mdtraj reads)")
    p.add_argument("--top", help="topology file for formats without one (DCD, XTC, TRR, NetCDF)")
    p.add_argument("--chain", help="only this chain (id such as A, or index)")
    p.add_argument("--stride", type=int, default=1, help="read every n-th frame")
    p.add_argument(
        "--tokenizer",
        help="tokenizer directory (default: the shipped motion tokenizer, "
        "models/motiontoken; models/torsiontoken for torsion tokens)",
    )
    p.add_argument(
        "--key",
        help="motion tokens: the key frame, a structure of the same residues (default: the trajectory's first frame)",
    )
    p.add_argument("-o", "--out", required=True, help="output .npz")
    p.set_defaults(run=run)


def run(args):
    from mdllm.encoding import encode_file

    enc = encode_file(
        args.traj, args.out, top=args.top, stride=args.stride, chain=args.chain, tokenizer=args.tokenizer, key=args.key
    )
    print(
        f"{args.out}: {enc.tokens.shape[0]} frames x {enc.tokens.shape[1]} residues, "
        f"{enc.tokenizer.kind} codebook {enc.tokenizer.codebook_size}, tokenizer {enc.tokenizer.hash[:12]}"
        + (", with its key frame" if enc.key_xyz is not None else "")
    )
