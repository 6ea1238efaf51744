"""Make data/md/: short MD of small fast-folding proteins for pretraining, with `mdllm simulate`.

    python data/make_md.py simulate RUNS_DIR [--minutes 5] [--rounds 1] [--shared ../shared/data]
        CPU runs (300 K and 360 K): round-robin over the CPU systems, each for --minutes of wall
        clock per round (resumable: run it again to extend every run; the runs' commands are
        recorded in their manifests)
    python data/make_md.py simulate-gpu RUNS_DIR [--minutes 5.5] [--hard-seconds 390] [--pack DIR]
        GPU runs (300 K, CUDA): every GPU system at once, one `mdllm simulate` process each, for
        --minutes of MD (a SIGTERM after --hard-seconds stops a process cleanly at its last frame);
        --pack writes DIR/NAME.tar.gz of each run (trajectory, topology, manifest) to bring back
    python data/make_md.py collect RUNS_DIR [--tag gpu] [--replica N]
        copy each run's trajectory (protein heavy atoms, XTC), topology PDB and manifest into
        data/md/NAME/T<temp>K_<tag><n>/ (--tag gpu: T300K_rep0 becomes T300K_gpu0), then `index`
    python data/make_md.py index
        rewrite data/md/index.json and README.md from every run folder in data/md/

The exact `mdllm simulate` command of every system is SYSTEMS and *_ARGS below (also in each
manifest.json).

simulate-gpu on a machine whose Python (3.12) has numpy, scipy, tqdm and PyTorch's CUDA 13 nvidia
wheels but no OpenMM: carry the wheels openmm==8.6.1, openmm-cuda-13==8.6.1 (its libOpenMMCUDA.so
needs libnvrtc.so.13 and libcufft.so.12: put their folder, e.g. site-packages/nvidia/cu13/lib, on
LD_LIBRARY_PATH), mdtraj==1.11.1.post2 and pdbfixer==1.12.0, `pip install --no-deps --target SITE`
them, set PYTHONPATH=SITE:python, and put the start PDBs in SHARED/pdb_experimental/.
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "md"
# name, file in the shared data folder's pdb_experimental/, note, made on CPU (300 K and 360 K)
SYSTEMS = [
    ("chignolin_5AWL", "5AWL.pdb", "chignolin CLN025, X-ray", True),
    ("trpcage_2JOF", "2JOF.pdb", "Trp-cage TC10b, NMR model 1", True),
    ("bba_1FME", "1FME.pdb", "BBA FSD-EY, NMR model 1", True),
    ("villin_2F4K", "2F4K.pdb", "villin HP35 (Nle65/Nle70 replaced by Leu by PDBFixer), X-ray", True),
    ("ntl9_2HBB", "2HBB.pdb", "NTL9 (residues 1-51), X-ray", True),
    ("GB1_1GB1", "1GB1.pdb", "protein G B1 domain (GB1), NMR model 1", False),
    ("t4l_3DMV", "3DMV.pdb", "T4 lysozyme L99A, X-ray (ligands and waters removed)", False),
]
CPU_SYSTEMS = [s for s in SYSTEMS if s[3]]
GPU_SYSTEMS = SYSTEMS  # every system, 300 K only
# where the GPU runs were made (README text)
GPU_MACHINE = "one NVIDIA H100 80GB with 16 CPU cores"
GPU_SOFTWARE = "PyPI wheels openmm and openmm-cuda-13 on the CUDA 13 libraries of PyTorch's nvidia wheels; Python 3.12"
SIMULATE_ARGS = [
    "--temperatures",
    "300",
    "360",
    "--length",
    "100",
    "--save-every",
    "1",
    "--equilibrate",
    "10",
    "--save-atoms",
    "heavy",
    "--seed",
    "0",
    "--checkpoint-minutes",
    "2",
    "--no-progress",
]
GPU_SIMULATE_ARGS = [
    "--platform",
    "CUDA",
    "--temperatures",
    "300",
    "--length",
    "100",
    "--save-every",
    "2",
    "--equilibrate",
    "10",
    "--save-atoms",
    "heavy",
    "--seed",
    "0",
    "--checkpoint-minutes",
    "1",
    "--no-progress",
]


def simulate(runs: Path, shared: Path, minutes: float, rounds: int) -> None:
    for _ in range(rounds):
        for name, pdb, _note, _cpu in CPU_SYSTEMS:
            command = [
                "mdllm",
                "--threads",
                "1",
                "simulate",
                str(shared / "pdb_experimental" / pdb),
                "-o",
                str(runs / name),
                *SIMULATE_ARGS,
                "--max-minutes",
                str(minutes),
            ]
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


def simulate_gpu(
    runs: Path, shared: Path, minutes: float, hard_seconds: float, pack: Path | None, platform: str = "CUDA"
) -> None:
    """Every GPU system at once, one process each (`python -m mdllm`, so no installed script is needed)."""
    runs.mkdir(parents=True, exist_ok=True)
    args = list(GPU_SIMULATE_ARGS)
    args[args.index("--platform") + 1] = platform  # another platform only to test this on a machine without GPU
    procs = {}
    for name, pdb, _note, _cpu in GPU_SYSTEMS:
        command = [
            sys.executable,
            "-m",
            "mdllm",
            "simulate",
            str(shared / "pdb_experimental" / pdb),
            "-o",
            str(runs / name),
            *args,
            "--max-minutes",
            str(minutes),
        ]
        print(" ".join(["mdllm", *command[3:]]), flush=True)
        log = open(runs / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    started = time.monotonic()
    while any(p.poll() is None for p, _ in procs.values()):
        if time.monotonic() - started > hard_seconds:
            for p, _ in procs.values():  # first SIGTERM: finish the frame, commit, stop
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            try:
                for p, _ in procs.values():
                    p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for p, _ in procs.values():
                    if p.poll() is None:
                        p.kill()
            break
        time.sleep(1)
    if pack:
        pack.mkdir(parents=True, exist_ok=True)
    for name, (p, log) in procs.items():
        p.wait()
        log.close()
        print(f"== {name} (exit {p.returncode})\n" + (runs / f"{name}.log").read_text(), end="", flush=True)
        for manifest_path in sorted((runs / name).glob("T*K_rep*/manifest.json")):
            m = json.loads(manifest_path.read_text())
            print(
                f"SUMMARY {name} {manifest_path.parent.name} {m['platform']}: {m['progress']['frames']} frames, "
                f"{m['length_ns']:g} ns, {m.get('last_ns_per_day')} ns/day, {m['wall_seconds']} s",
                flush=True,
            )
            if pack:
                with tarfile.open(pack / f"{name}.tar.gz", "w:gz") as tar:
                    for file in ("manifest.json", m["trajectory"], m["topology"]):
                        path = manifest_path.parent / file
                        tar.add(path, arcname=str(path.relative_to(runs)))


def collect(runs: Path, tag: str = "rep", replica: int | None = None) -> None:
    for name, _pdb, _note, _cpu in SYSTEMS:
        for manifest_path in sorted((runs / name).glob("T*K_rep*/manifest.json")):
            manifest = json.loads(manifest_path.read_text())
            if manifest["progress"]["frames"] == 0:
                continue
            run_dir = manifest_path.parent
            temperature, _, number = run_dir.name.partition("_rep")
            dest = OUT / name / f"{temperature}_{tag}{number if replica is None else replica}"
            dest.mkdir(parents=True, exist_ok=True)
            for file in (manifest["trajectory"], manifest["topology"]):
                shutil.copy2(run_dir / file, dest / file)
            (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    index()


def index() -> None:
    """index.json and README.md from every run folder in data/md/ (systems in SYSTEMS order, CPU runs first)."""
    rows = []
    for name, _pdb, note, _cpu in SYSTEMS:
        runs = []
        for manifest_path in (OUT / name).glob("T*K_*/manifest.json"):
            manifest = json.loads(manifest_path.read_text())
            if manifest["progress"]["frames"] == 0:
                continue
            run = manifest_path.parent.name
            runs.append((manifest["platform"] != "CPU", run.split("_")[1], manifest["temperature_k"], run, manifest))
        for *_key, run, manifest in sorted(runs, key=lambda r: r[:3]):
            rows.append(
                {
                    "system": name,
                    "run": run,
                    "note": note,
                    "sequence": manifest["system"]["sequence"],
                    "temperature_k": manifest["temperature_k"],
                    "seed": manifest["seed"],
                    "frames": manifest["progress"]["frames"],
                    "length_ns": manifest["length_ns"],
                    "save_every_ps": manifest["save_every_ps"],
                    "platform": manifest["platform"],
                    "ns_per_day": manifest.get("last_ns_per_day"),
                    "path": f"{name}/{run}/{manifest['trajectory']}",
                }
            )
    (OUT / "index.json").write_text(json.dumps(rows, indent=1) + "\n")
    (OUT / "README.md").write_text(readme(rows))
    for row in rows:
        print(
            f"{row['path']}: {row['frames']} frames, {row['length_ns']} ns at {row['temperature_k']:g} K "
            f"({row['platform']})"
        )


def readme(index) -> str:
    def table(selected):
        return "\n".join(
            f"| `{r['path']}` | {r['note']} | `{r['sequence']}` | {r['temperature_k']:g} | {r['seed']} | "
            f"{r['frames']} | {r['length_ns']:g} |"
            for r in selected
        )

    cpu = [r for r in index if r["platform"] == "CPU"]
    gpu = [r for r in index if r["platform"] != "CPU"]
    systems = [s for s in SYSTEMS if any(r["system"] == s[0] for r in index)]
    sources = "\n".join(f"| `{name}` | `pdb_experimental/{pdb}` | {note} |" for name, pdb, note, _cpu in systems)
    args = " ".join(SIMULATE_ARGS)
    gpu_args = " ".join(GPU_SIMULATE_ARGS)
    header = "| trajectory | system | sequence | T (K) | seed | frames | length (ns) |\n|---|---|---|---|---|---|---|"
    gpu_section = ""
    if gpu:
        rates = ", ".join(f"{r['system']} {r['ns_per_day']:g}" for r in gpu if r["ns_per_day"])
        first = json.loads((OUT / gpu[0]["path"]).parent.joinpath("manifest.json").read_text())
        command = first["commands"][-1].split()
        minutes = command[command.index("--max-minutes") + 1] if "--max-minutes" in command else "M"
        versions = first["versions"]
        gpu_section = f"""
## GPU runs (`T300K_gpu0`)

Made on {GPU_MACHINE} (OpenMM {gpu[0]["platform"]} platform, mixed precision), all systems at once, one
process each sharing the GPU, by `python data/make_md.py simulate-gpu RUNS --minutes {minutes} --pack OUT`,
i.e. for every system:
`mdllm simulate pdb_experimental/FILE -o RUNS/NAME {gpu_args} --max-minutes {minutes}`,
then `python data/make_md.py collect RUNS --tag gpu` (the run folder `T300K_rep0` is renamed `T300K_gpu0`;
its manifest keeps the name it was made under). Same preparation and physics as the CPU runs, 300 K only,
one frame every 2 ps. OpenMM {versions["openmm"]} ({GPU_SOFTWARE}), PDBFixer {versions["pdbfixer"]}.
Throughput with all of them sharing the GPU (ns/day): {rates}.

{header}
{table(gpu)}
"""
    return f"""# MD of small fast-folding proteins (pretraining data)

Made with `mdllm simulate` by `python data/make_md.py simulate RUNS --minutes M --rounds R` (CPU) or
`python data/make_md.py simulate-gpu RUNS --minutes M` (GPU) and copied here by
`python data/make_md.py collect RUNS` (this file and `index.json` are written by it; `index.json` also gives
each run's platform and ns/day). Each run folder holds `trajectory.xtc` (protein heavy atoms, 0.001 nm
precision, time in ps from the end of equilibration), `trajectory.pdb` (its topology: the first frame) and
`manifest.json` (system and its preparation, force field, temperature, seed, length, platform, OpenMM
version and the exact commands).

## CPU runs (`T300K_rep0`, `T360K_rep0`)

Every system: `mdllm --threads 1 simulate pdb_experimental/FILE -o RUNS/NAME {args} --max-minutes M`,
i.e. PDBFixer preparation (first model, waters and ions removed, hydrogens at pH 7), amber14 + GBn2
implicit solvent (0.15 M salt screening), 4 fs steps with hydrogen mass repartitioning (4 amu),
Langevin middle integrator (1/ps), minimization, 10 ps equilibration at the run's temperature, then
production at 300 K and 360 K (seed 0; each run derives its own seed, listed below), one frame per ps.

These are short (CPU only, one thread at low priority on a shared 2-core machine: about 3 ns/day
for NTL9 to 55 ns/day for chignolin): one picosecond to a few hundred picoseconds per run, far from
folding and unfolding timescales; they sample the start structure's basin and its thermal
fluctuations, more widely at 360 K. The runs resume: the same command extends them (`--length 100` ns is the goal, not what is
here). The length below is what exists. The `T300K_rep1` runs are second replicas at 300 K only, made the
same way with `--temperatures 300 --save-every 2 --seed 1 --checkpoint-minutes 3` (one frame per 2 ps;
1-9 ns/day at low priority beside language-model training: Trp-cage reached 1.14 ns in 3.5 h of wall
clock, BBA 0.23 ns and villin 0.17 ns in 2.1 h each), collected with `collect RUNS --replica 1`; their
manifests hold the exact commands and wall times. They are the held-out MD of `bench/realism.py`.

{header}
{table(cpu)}
{gpu_section}
## Sources

Start structures from the project's shared data folder (`pdb_experimental/`, see its PROVENANCE.md);
PDB entries are CC0 (wwPDB). The trajectories are new data made by this project (MIT, like mdllm).

| name | start structure | note |
|---|---|---|
{sources}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["simulate", "simulate-gpu", "collect", "index"])
    parser.add_argument(
        "runs", type=Path, nargs="?", help="folder of the full runs (checkpoints, chunks); outside the repo"
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument(
        "--hard-seconds",
        type=float,
        default=390.0,
        help="simulate-gpu: SIGTERM (clean stop) to processes still running after this",
    )
    parser.add_argument("--pack", type=Path, help="simulate-gpu: write NAME.tar.gz of each run here")
    parser.add_argument("--platform", default="CUDA", help="simulate-gpu: OpenMM platform (CUDA; CPU to test)")
    parser.add_argument("--tag", default="rep", help="collect: run folder T<temp>K_<tag><n> (CPU: rep, GPU: gpu)")
    parser.add_argument(
        "--replica",
        type=int,
        help="collect: number n of the run folders (default: the run's own; a second replica "
        "simulated in a separate RUNS_DIR is collected with --replica 1)",
    )
    args = parser.parse_args()
    if args.action != "index" and args.runs is None:
        parser.error(f"{args.action} needs RUNS_DIR")
    if args.action == "simulate":
        simulate(args.runs, args.shared, args.minutes, args.rounds)
    elif args.action == "simulate-gpu":
        simulate_gpu(args.runs, args.shared, args.minutes, args.hard_seconds, args.pack, args.platform)
    elif args.action == "collect":
        collect(args.runs, args.tag, args.replica)
    else:
        index()


if __name__ == "__main__":
    sys.exit(main())
