"""``mdllm decode tokens.npz -o OUT``: structure tokens back to backbones."""


def register(sub):
    p = sub.add_parser("decode", help="backbones of a token file (the reverse of encode)")
    p.add_argument("tokens", help="token file written by `mdllm encode` or `mdllm generate` (.npz)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the shipped tokenizer of the file's kind)")
    p.add_argument(
        "--no-projection",
        action="store_true",
        help="motion tokens: write the exact placement (key + displacements) without restoring the "
        "key's bond lengths and angles",
    )
    p.add_argument("-o", "--out", required=True, help="output trajectory (.pdb, .dcd, .xtc, .h5)")
    p.set_defaults(run=run)


def run(args):
    from mdllm.encoding import decode_file

    written = decode_file(args.tokens, args.out, args.tokenizer, project=not args.no_projection)
    print(f"{', '.join(map(str, written))}: decoded")
