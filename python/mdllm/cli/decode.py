"""``mdllm decode tokens.npz -o out.pdb|.dcd|.xtc``: structure tokens back to a backbone trajectory."""


def register(sub):
    p = sub.add_parser("decode", help="backbone coordinates (N, CA, C, O) from a token file")
    p.add_argument("tokens", help=".npz written by `mdllm encode` (or with arrays tokens, sequence)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the shipped models/foldtoken)")
    p.add_argument("-o", "--out", required=True, help="output .pdb, .dcd, .xtc or .h5 (a topology .pdb is written beside .dcd/.xtc)")
    p.set_defaults(run=run)


def load_token_file(path):
    """(tokens, fields) from a token npz; fields holds whatever identity arrays it has."""
    import zipfile

    import numpy as np

    from mdllm.errors import in_file

    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise in_file(path, f"not a token .npz file: {exc}") from None
    if "tokens" not in fields:
        raise in_file(path, "has no 'tokens' array")
    return fields.pop("tokens"), fields


def run(args):
    import numpy as np

    from mdllm.errors import MdllmError, in_file
    from mdllm.io import Backbone, save
    from mdllm.tokenizer import FoldTokenizer

    tokens, fields = load_token_file(args.tokens)
    tokenizer = FoldTokenizer.load(args.tokenizer)
    stored = str(fields["tokenizer_hash"]) if "tokenizer_hash" in fields else None
    if stored is not None and stored != tokenizer.hash:
        raise in_file(args.tokens, f"was made by tokenizer {stored[:12]}, not by {tokenizer.hash[:12]} "
                                   "(pass the matching --tokenizer)")
    try:
        xyz = tokenizer.decode(tokens)
    except MdllmError as exc:
        raise in_file(args.tokens, str(exc)) from None
    n_frames, n_res = xyz.shape[:2]
    sequence = str(fields.get("sequence", "X" * n_res))
    if len(sequence) != n_res:
        raise in_file(args.tokens, f"sequence has {len(sequence)} residues, tokens have {n_res}")
    bb = Backbone(xyz, sequence,
                  fields.get("residue_ids", np.arange(1, n_res + 1)),
                  fields.get("chain_ids", np.full(n_res, "A")),
                  fields.get("time", np.arange(n_frames, dtype=np.float64)))
    written = save(bb, args.out)
    print(f"{', '.join(map(str, written))}: {n_frames} frames x {n_res} residues decoded")
