"""``mdllm evaluate GEN --top T [--reference REF] [--state NAME=PDB ...] -o DIR``: validity, states,
free energy, kinetics and all-atom rebuild of a trajectory, as metrics.json, PNG plots and report.html."""

from mdllm.errors import MdllmError


def register(sub):
    p = sub.add_parser("evaluate", help="physical validity and comparison with reference MD; writes a report")
    p.add_argument("generated", help="trajectory to judge (any format mdtraj reads)")
    p.add_argument("--top", help="topology for the trajectory (DCD, XTC, ...)")
    p.add_argument("--reference", help="reference MD trajectory")
    p.add_argument("--reference-top", help="topology for the reference trajectory")
    p.add_argument("--state", action="append", default=[], metavar="NAME=PDB",
                   help="a named state structure (repeatable), e.g. --state closed=adk_closed.pdb")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--state-cutoff", type=float, default=1.5, help="CA RMSD (Å) within which a frame is in a state")
    p.add_argument("--tica-lag", type=int, default=1, help="TICA lag time in frames")
    p.add_argument("--clusters", type=int, default=20, help="k-means clusters for the Markov state models")
    p.add_argument("--rebuild", type=int, default=0, metavar="N",
                   help="rebuild and minimise N evenly spaced frames all-atom with OpenMM (and N reference frames)")
    p.add_argument("--rebuild-threads", type=int, default=1, help="CPU threads for OpenMM")
    p.add_argument("--max-iterations", type=int, default=1000,
                   help="minimisation iterations per frame in vacuum (first stage)")
    p.add_argument("--solvent-iterations", type=int, default=20,
                   help="minimisation iterations per frame in implicit solvent (second stage, slower per step)")
    p.add_argument("--no-plots", action="store_true", help="metrics.json and report.html only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def parse_states(specs) -> dict:
    states = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise MdllmError(f"--state expects NAME=PDB, got '{spec}'")
        if name in states:
            raise MdllmError(f"--state '{name}' given twice")
        states[name] = path
    return states


def run(args):
    from mdllm.evaluate.pipeline import EvaluateOptions, evaluate

    options = EvaluateOptions(state_cutoff_A=args.state_cutoff, tica_lag=args.tica_lag, n_clusters=args.clusters,
                              rebuild_frames=args.rebuild, rebuild_threads=args.rebuild_threads,
                              max_iterations=args.max_iterations, solvent_iterations=args.solvent_iterations, plots=not args.no_plots, seed=args.seed)
    metrics = evaluate(args.generated, args.out, top=args.top, reference=args.reference,
                       reference_top=args.reference_top, states=parse_states(args.state), options=options)
    v = metrics["validity"]
    print(f"valid frames: {v['valid_frames']} of {v['frames']}")
    for name, s in metrics.get("states", {}).get("generated", {}).get("per_state", {}).items():
        print(f"min CA RMSD to {name}: {s['min_rmsd_A']:.2f} A")
    print(f"report: {args.out}/report.html")
