"""``mdllm simulate START.pdb -o DIR``: OpenMM molecular dynamics, resumable, several temperatures and replicas."""


def register(sub):
    p = sub.add_parser(
        "simulate",
        help="run molecular dynamics of a structure with OpenMM (resumable)",
        description="Prepare START (PDBFixer), then run amber14 MD at each temperature and replica "
        "into DIR/T<temp>K_rep<n>/ (trajectory, topology PDB, manifest.json). Re-running "
        "the same command resumes from the last checkpoint; a larger --length extends.",
    )
    p.add_argument("start", help="start structure (PDB or mmCIF; first model of an NMR ensemble)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    prep = p.add_argument_group("preparation")
    prep.add_argument("--chain", nargs="+", help="chain ids to keep (default: all)")
    prep.add_argument("--ph", type=float, default=7.0, help="pH for protonation (default 7)")
    prep.add_argument("--keep-water", action="store_true", help="keep crystal waters")
    prep.add_argument("--keep-ligands", action="store_true", help="keep heterogens (only ions the force field knows)")
    phys = p.add_argument_group("physics")
    phys.add_argument(
        "--solvent",
        choices=["implicit", "explicit"],
        default="implicit",
        help="GBn2 implicit (default) or TIP3P-FB explicit water",
    )
    phys.add_argument("--padding", type=float, default=1.0, help="explicit solvent: nm from protein to box edge")
    phys.add_argument("--ionic-strength", type=float, default=0.15, help="salt, molar (default 0.15)")
    phys.add_argument("--timestep", type=float, default=4.0, help="fs (default 4, with hydrogen mass repartitioning)")
    phys.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default 1)")
    plan = p.add_argument_group("runs")
    plan.add_argument("--temperatures", type=float, nargs="+", default=[300.0], help="kelvin (default 300)")
    plan.add_argument("--replicas", type=int, default=1, help="independent runs per temperature")
    plan.add_argument("--seed", type=int, default=0, help="base seed; each run derives its own")
    plan.add_argument("--length", type=float, default=10.0, help="production length per run, ns (default 10)")
    plan.add_argument("--save-every", type=float, default=10.0, help="ps between saved frames (default 10)")
    plan.add_argument("--equilibrate", type=float, default=100.0, help="ps of equilibration after minimization")
    plan.add_argument(
        "--save-atoms",
        choices=["heavy", "protein", "backbone"],
        default="heavy",
        help="atoms written to the trajectory (default protein heavy atoms)",
    )
    plan.add_argument("--format", choices=["xtc", "dcd"], default="xtc")
    run = p.add_argument_group("execution")
    run.add_argument(
        "--platform",
        choices=["CUDA", "OpenCL", "CPU", "Reference"],
        help="OpenMM platform (default: CUDA, then OpenCL, then CPU); CPU threads: mdllm --threads N",
    )
    run.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        help="wall-clock minutes between commits of frames and checkpoint (default 5)",
    )
    run.add_argument("--max-minutes", type=float, help="stop cleanly (resumable) after this many minutes")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_command)


def run_command(args):
    import shlex
    import sys

    from mdllm.simulate import Physics, Plan, Preparation, simulate

    prep = Preparation(tuple(args.chain) if args.chain else None, args.ph, args.keep_water, args.keep_ligands)
    physics = Physics(args.solvent, args.timestep, args.friction, args.ionic_strength, args.padding)
    plan = Plan(
        tuple(args.temperatures),
        args.replicas,
        args.seed,
        args.length,
        args.save_every,
        args.equilibrate,
        args.save_atoms,
        args.format,
    )
    command = "mdllm " + shlex.join(sys.argv[1:])
    manifests = simulate(
        args.start,
        args.output,
        prep,
        physics,
        plan,
        platform=args.platform,
        threads=args.threads,
        checkpoint_minutes=args.checkpoint_minutes,
        max_minutes=args.max_minutes,
        command=command,
        show_progress=False if args.no_progress else None,
    )
    for m in manifests:
        rate = m.get("last_ns_per_day")
        print(
            f"{m['name']}: {m['progress']['frames']} frames, {m['length_ns']:g} of {m['target_length_ns']:g} ns"
            + (f", {rate:g} ns/day" if rate else "")
            + f", platform {m['platform']}"
        )
