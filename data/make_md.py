"""Make data/md/: short MD of small fast-folding proteins for pretraining, with `mdllm simulate`.

    python data/make_md.py simulate RUNS_DIR [--minutes 5] [--rounds 1] [--shared ../shared/data]
        round-robin over the systems, each for --minutes of wall clock per round (resumable:
        run it again to extend every run; the runs' commands are recorded in their manifests)
    python data/make_md.py collect RUNS_DIR
        copy each run's trajectory (protein heavy atoms, XTC), topology PDB and manifest into data/md/

The exact `mdllm simulate` command of every system is SYSTEMS below (also in each manifest.json).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "md"
# name, file in the shared data folder's pdb_experimental/, note
SYSTEMS = [
    ("chignolin_5AWL", "5AWL.pdb", "chignolin CLN025, X-ray"),
    ("trpcage_2JOF", "2JOF.pdb", "Trp-cage TC10b, NMR model 1"),
    ("bba_1FME", "1FME.pdb", "BBA FSD-EY, NMR model 1"),
    ("villin_2F4K", "2F4K.pdb", "villin HP35 (Nle65/Nle70 replaced by Leu by PDBFixer), X-ray"),
    ("ntl9_2HBB", "2HBB.pdb", "NTL9 (residues 1-51), X-ray"),
]
SIMULATE_ARGS = ["--temperatures", "300", "360", "--length", "100", "--save-every", "1", "--equilibrate", "10",
                 "--save-atoms", "heavy", "--seed", "0", "--checkpoint-minutes", "2", "--no-progress"]


def simulate(runs: Path, shared: Path, minutes: float, rounds: int) -> None:
    for _ in range(rounds):
        for name, pdb, _note in SYSTEMS:
            command = ["mdllm", "--threads", "1", "simulate", str(shared / "pdb_experimental" / pdb),
                       "-o", str(runs / name), *SIMULATE_ARGS, "--max-minutes", str(minutes)]
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


def collect(runs: Path) -> None:
    index = []
    for name, _pdb, note in SYSTEMS:
        for manifest_path in sorted((runs / name).glob("T*K_rep*/manifest.json")):
            manifest = json.loads(manifest_path.read_text())
            if manifest["progress"]["frames"] == 0:
                continue
            run_dir = manifest_path.parent
            dest = OUT / name / run_dir.name
            dest.mkdir(parents=True, exist_ok=True)
            for file in (manifest["trajectory"], manifest["topology"]):
                shutil.copy2(run_dir / file, dest / file)
            (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            index.append({"system": name, "run": run_dir.name, "note": note,
                          "sequence": manifest["system"]["sequence"], "temperature_k": manifest["temperature_k"],
                          "seed": manifest["seed"], "frames": manifest["progress"]["frames"],
                          "length_ns": manifest["length_ns"], "save_every_ps": manifest["save_every_ps"],
                          "path": f"{name}/{run_dir.name}/{manifest['trajectory']}"})
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (OUT / "README.md").write_text(readme(index))
    for row in index:
        print(f"{row['path']}: {row['frames']} frames, {row['length_ns']} ns at {row['temperature_k']:g} K")


def readme(index) -> str:
    rows = "\n".join(f"| `{r['path']}` | {r['note']} | `{r['sequence']}` | {r['temperature_k']:g} | {r['seed']} | "
                     f"{r['frames']} | {r['length_ns']:g} |" for r in index)
    sources = "\n".join(f"| `{name}` | `pdb_experimental/{pdb}` | {note} |" for name, pdb, note in SYSTEMS)
    args = " ".join(SIMULATE_ARGS)
    return f"""# MD of small fast-folding proteins (pretraining data)

Made with `mdllm simulate` by `python data/make_md.py simulate RUNS --minutes M --rounds R` and copied
here by `python data/make_md.py collect RUNS` (this file and `index.json` are written by it). Each run
folder holds `trajectory.xtc` (protein heavy atoms, 0.001 nm precision, one frame per ps of
production, time in ps from the end of equilibration), `trajectory.pdb` (its topology: the first
frame) and `manifest.json` (system and its preparation, force field, temperature, seed, length,
platform, OpenMM version and the exact commands).

Every system: `mdllm --threads 1 simulate pdb_experimental/FILE -o RUNS/NAME {args} --max-minutes M`,
i.e. PDBFixer preparation (first model, waters and ions removed, hydrogens at pH 7), amber14 + GBn2
implicit solvent (0.15 M salt screening), 4 fs steps with hydrogen mass repartitioning (4 amu),
Langevin middle integrator (1/ps), minimization, 10 ps equilibration at the run's temperature, then
production at 300 K and 360 K (seed 0; each run derives its own seed, listed below).

These are short (CPU only, one thread at low priority on a shared 2-core machine: about 3 ns/day
for NTL9 to 55 ns/day for chignolin): one picosecond to a few hundred picoseconds per run, far from
folding and unfolding timescales; they sample the start structure's basin and its thermal
fluctuations, more widely at 360 K. The runs resume: the same command extends them (`--length 100` ns is the goal, not what is
here). The length below is what exists.

| trajectory | system | sequence | T (K) | seed | frames | length (ns) |
|---|---|---|---|---|---|---|
{rows}

## Sources

Start structures from the project's shared data folder (`pdb_experimental/`, see its PROVENANCE.md);
PDB entries are CC0 (wwPDB). The trajectories are new data made by this project (MIT, like mdllm).

| name | start structure | note |
|---|---|---|
{sources}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["simulate", "collect"])
    parser.add_argument("runs", type=Path, help="folder of the full runs (checkpoints, chunks); outside the repo")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = parser.parse_args()
    if args.action == "simulate":
        simulate(args.runs, args.shared, args.minutes, args.rounds)
    else:
        collect(args.runs)


if __name__ == "__main__":
    sys.exit(main())
