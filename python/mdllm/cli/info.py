"""``mdllm info FILE``: what a structure or trajectory file holds, as mdllm reads it."""


def register(sub):
    p = sub.add_parser("info", help="frames, residues, chains, sequence and time step of a file")
    p.add_argument("file", help="structure or trajectory (any format mdtraj reads)")
    p.add_argument("--top", help="topology file for formats without one (DCD, XTC, TRR, NetCDF)")
    p.add_argument("--chain", help="only this chain (id such as A, or index)")
    p.add_argument("--stride", type=int, default=1, help="read every n-th frame")
    p.set_defaults(run=run)


def run(args):
    from mdllm.io import load_backbone

    bb = load_backbone(args.file, top=args.top, stride=args.stride, chain=args.chain)
    counts = {c: int((bb.chain_ids == c).sum()) for c in bb.chains}
    rows = [
        ("file", args.file),
        ("frames", bb.n_frames),
        ("residues", bb.n_residues),
        ("chains", f"{len(counts)} (" + ", ".join(f"{c}: {n}" for c, n in counts.items()) + ")"),
        ("time step", f"{bb.timestep:g} ps" if bb.timestep is not None else "- (one frame)"),
        ("time span", f"{bb.time[0]:g} to {bb.time[-1]:g} ps"),
    ]
    for c in bb.chains:
        rows.append((f"sequence {c}", "".join(s for s, cid in zip(bb.sequence, bb.chain_ids) if cid == c)))
    for key, value in rows:
        print(f"{key:<12} {value}")
