"""``mdllm evaluate GEN --top T [--reference REF] [--state NAME=PDB ...] -o DIR``: validity, states,
free energy, kinetics and all-atom rebuild of a trajectory, as metrics.json, PNG plots and report.html."""


def register(sub):
    p = sub.add_parser("evaluate", help="physical validity and comparison with reference MD; writes a report")
    p.add_argument("generated", help="trajectory to judge (any format mdtraj reads)")
    p.add_argument("--top", help="topology for the trajectory (DCD, XTC, ...)")
    p.add_argument("--reference", help="reference MD trajectory")
    p.add_argument("--reference-top", help="topology for the reference trajectory")
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="NAME=PDB",
        help="a named state structure (repeatable), e.g. --state closed=adk_closed.pdb",
    )
    p.add_argument(
        "--start",
        help="structure generation started from, for the global checks (default: the start "
        "recorded in GEN's .json beside it, else the first reference frame, else GEN's "
        "first frame)",
    )
    p.add_argument(
        "--training",
        action="append",
        default=[],
        metavar="TRAJ",
        help="trajectory the model learned from (repeatable): the closest approach to each named "
        "state is compared with that of its frames",
    )
    p.add_argument("--training-top", help="topology for the --training trajectories")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--state-cutoff", type=float, default=1.5, help="CA RMSD (Å) within which a frame is in a state")
    p.add_argument("--tica-lag", type=int, default=1, help="TICA lag time in frames")
    p.add_argument("--clusters", type=int, default=20, help="k-means clusters for the Markov state models")
    p.add_argument(
        "--rebuild",
        type=int,
        default=0,
        metavar="N",
        help="rebuild and minimise N evenly spaced frames all-atom with OpenMM (and N reference frames)",
    )
    p.add_argument(
        "--rebuild-threads",
        type=int,
        default=None,
        help="CPU threads for OpenMM (default: every core this process may use)",
    )
    p.add_argument(
        "--max-iterations", type=int, default=1000, help="minimisation iterations per frame in vacuum (first stage)"
    )
    p.add_argument(
        "--solvent-iterations",
        type=int,
        default=0,
        help="minimisation iterations per frame in GBn2 implicit solvent after the vacuum stage "
        "(default 0: GBn2 energies only; each step costs ~400x a vacuum step on CPU)",
    )
    p.add_argument("--no-plots", action="store_true", help="metrics.json and report.html only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args):
    from mdllm.evaluate.pipeline import EvaluateOptions, evaluate
    from mdllm.evaluate.states import parse_state_specs
    from mdllm.evaluate.verdict import print_verdict

    options = EvaluateOptions(
        state_cutoff_A=args.state_cutoff,
        tica_lag=args.tica_lag,
        n_clusters=args.clusters,
        rebuild_frames=args.rebuild,
        rebuild_threads=args.rebuild_threads,
        max_iterations=args.max_iterations,
        solvent_iterations=args.solvent_iterations,
        plots=not args.no_plots,
        seed=args.seed,
    )
    metrics = evaluate(
        args.generated,
        args.out,
        top=args.top,
        reference=args.reference,
        reference_top=args.reference_top,
        states=parse_state_specs(args.state),
        options=options,
        start=args.start,
        training=args.training,
        training_top=args.training_top,
    )
    print_verdict(metrics, f"{args.out}/report.html")
