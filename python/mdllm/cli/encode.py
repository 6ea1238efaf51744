"""``mdllm encode TRAJ -o tokens.npz``: one structure token per residue per frame."""


def register(sub):
    p = sub.add_parser("encode", help="structure tokens of a trajectory (npz with tokens, sequence, tokenizer hash)")
    p.add_argument("traj", help="structure or trajectory (any format mdtraj reads)")
    p.add_argument("--top", help="topology file for formats without one (DCD, XTC, TRR, NetCDF)")
    p.add_argument("--chain", help="only this chain (id such as A, or index)")
    p.add_argument("--stride", type=int, default=1, help="read every n-th frame")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the shipped models/foldtoken)")
    p.add_argument("-o", "--out", required=True, help="output .npz")
    p.set_defaults(run=run)


def run(args):
    import numpy as np

    from mdllm.errors import in_file
    from mdllm.files import atomic_output
    from mdllm.io import load_backbone
    from mdllm.tokenizer import FoldTokenizer

    if not args.out.endswith(".npz"):
        raise in_file(args.out, "the token file must end in .npz")
    tokenizer = FoldTokenizer.load(args.tokenizer)
    bb = load_backbone(args.traj, top=args.top, stride=args.stride, chain=args.chain)
    tokens = tokenizer.encode(bb)
    with atomic_output(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, tokens=tokens, sequence=np.array(bb.sequence), residue_ids=bb.residue_ids,
                     chain_ids=bb.chain_ids, time=bb.time, tokenizer_hash=np.array(tokenizer.hash),
                     codebook_size=np.array(tokenizer.codebook_size))
    print(f"{args.out}: {tokens.shape[0]} frames x {tokens.shape[1]} residues, "
          f"codebook {tokenizer.codebook_size}, tokenizer {tokenizer.hash[:12]}")
