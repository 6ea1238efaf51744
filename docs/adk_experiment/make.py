"""The seed paper's experiment on adenylate kinase: train on one state only, generate, and see whether
the other state appears. Run from the repository root:

    python docs/adk_experiment/make.py            # both directions, then docs/adk_experiment.md

Training frames: frames of the three closed->open transitions in data/adk whose CA RMSD to the
starting state is below THRESHOLD_A. The shipped base is fine-tuned on them (mdllm run, preset quick,
no all-atom rebuild), generation starts from the state's crystal-derived structure, and the evaluation
compares with both states.
"""

import json
import shutil
import sys
from pathlib import Path

import mdtraj as md
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADK = ROOT / "data" / "adk"
TRANSITIONS = ["adk_dims", "adk_dims2", "adk_gbis_tmd-fast1_NAMD"]
THRESHOLD_A = 2.5
RUNS = ROOT / "runs" / "adk_experiment"


def ca_rmsd_A(traj, ref):
    ca = traj.topology.select("name CA")
    return md.rmsd(traj.atom_slice(ca), ref.atom_slice(ref.topology.select("name CA")), 0) * 10


def select_frames(state: str) -> tuple[Path, Path, dict]:
    """Frames within THRESHOLD_A of the state, from all transitions, as one XTC + topology PDB."""
    ref = md.load(str(ADK / f"adk_{state}.pdb"))
    other = md.load(str(ADK / f"adk_{'open' if state == 'closed' else 'closed'}.pdb"))
    kept, stats = [], {}
    for name in TRANSITIONS:
        traj = md.load(str(ADK / f"{name}.xtc"), top=str(ADK / f"{name}.pdb"))
        traj = traj.atom_slice(traj.topology.select("backbone"))
        near = ca_rmsd_A(traj, ref) < THRESHOLD_A
        kept.append(traj[np.flatnonzero(near)])
        stats[name] = int(near.sum())
    frames = md.join(kept, check_topology=False) if len(kept) > 1 else kept[0]
    out = RUNS / f"train_{state}.xtc"
    out.parent.mkdir(parents=True, exist_ok=True)
    frames.save_xtc(str(out))
    frames[0].save_pdb(str(out.with_suffix(".pdb")))
    to_other = ca_rmsd_A(frames, other)
    stats.update(frames=int(frames.n_frames), rmsd_to_other_min_A=float(to_other.min()),
                 rmsd_to_other_median_A=float(np.median(to_other)))
    return out, out.with_suffix(".pdb"), stats


def generated_stats(run_dir: Path, other: str) -> dict:
    gen = md.load(str(run_dir / "generate" / "generated.xtc"), top=str(run_dir / "generate" / "generated.pdb"))
    ref = md.load(str(ADK / f"adk_{other}.pdb"))
    to_other = ca_rmsd_A(gen, ref)
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    return {"frames": int(gen.n_frames), "rmsd_to_other_min_A": float(to_other.min()),
            "rmsd_to_other_median_A": float(np.median(to_other)),
            "rmsd_to_other_p5_p95_A": [float(np.percentile(to_other, 5)), float(np.percentile(to_other, 95))],
            "valid_frames": metrics["validity"]["valid_frames"],
            "invalid_by_reason": metrics["validity"]["invalid_frames_by_reason"]}


def main():
    from mdllm.pipeline import run

    results = {}
    for state, other in [("closed", "open"), ("open", "closed")]:
        xtc, top, train = select_frames(state)
        out = RUNS / f"from_{state}"
        run(ADK / f"adk_{state}.pdb", out, trajectories=[xtc], top=top, preset="quick", seed=0, rebuild=0,
            states={"closed": str(ADK / "adk_closed.pdb"), "open": str(ADK / "adk_open.pdb")})
        results[state] = {"train": train, "generated": generated_stats(out, other)}
        for plot in ("rmsd_traces.png", "validity.png", "fes_states.png"):
            if (out / "evaluate" / plot).exists():
                shutil.copyfile(out / "evaluate" / plot, HERE / f"from_{state}_{plot}")
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
