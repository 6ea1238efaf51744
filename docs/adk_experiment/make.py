"""The seed paper's experiment on adenylate kinase: train on one state only, generate, and see whether
the other state appears. Run from the repository root:

    python docs/adk_experiment/make.py            # both directions, then docs/adk_experiment.md

Training frames: frames of the three closed->open transitions in data/adk whose CA RMSD to the
starting state is below THRESHOLD_A. The shipped base is fine-tuned on them (mdllm run, preset quick,
REBUILD frames rebuilt all-atom and minimized), generation starts from the state's crystal-derived
structure, and the evaluation compares with both states. The shipped tokenizer's round trip of both
states' frames is measured too. A transformer tokenizer's decoder is also adapted to the training frames
(ADAPT_STEPS steps); because the adapted decoder has seen only one state, its round trip of the *other*
state's frames is then measured as well. A torsion tokenizer (the shipped default) has no learned
decoder, the pipeline runs no adapt stage for it, and only the shipped decoder is measured.
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
ADAPT_STEPS = 1000
REBUILD = 1
RUNS = ROOT / "runs" / "adk_experiment"


def ca_rmsd_A(traj, ref):
    ca = traj.topology.select("name CA")
    return md.rmsd(traj.atom_slice(ca), ref.atom_slice(ref.topology.select("name CA")), 0) * 10


def transitions():
    """name -> (mdtraj backbone trajectory, mdllm backbone array (F, L, 4, 3) nm) of every transition."""
    from mdllm import load_backbone

    out = {}
    for name in TRANSITIONS:
        traj = md.load(str(ADK / f"{name}.xtc"), top=str(ADK / f"{name}.pdb"))
        out[name] = (traj.atom_slice(traj.topology.select("backbone")),
                     load_backbone(ADK / f"{name}.xtc", top=ADK / f"{name}.pdb").xyz)
    return out


def decoder_stats(tokenizer_dir, state: str, other: str) -> dict:
    """Round-trip RMSD (Angstrom, all backbone atoms) of the transition frames near each state and of
    the other crystal state, and state fidelity |RMSD(decoded, other) - RMSD(original, other)| over
    every transition frame."""
    from mdllm import geometry, load_backbone
    from mdllm.tokenizer import FoldTokenizer
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

    tok = FoldTokenizer.load(tokenizer_dir)
    frames = transitions()
    out = {}
    for label, which in (("own_state_frames", state), ("other_state_frames", other)):
        ref = md.load(str(ADK / f"adk_{which}.pdb"))
        xyz = np.concatenate([x[ca_rmsd_A(t, ref) < THRESHOLD_A] for t, x in frames.values()])
        r = backbone_rmsd_angstrom(tok.decode(tok.encode(xyz)), xyz)
        out[label] = {"frames": len(r), "median_A": float(np.median(r)), "p95_A": float(np.percentile(r, 95))}
    other_xyz = load_backbone(ADK / f"adk_{other}.pdb").xyz
    out["other_crystal_A"] = float(backbone_rmsd_angstrom(tok.decode(tok.encode(other_xyz)), other_xyz)[0])
    every = np.concatenate([x for _, x in frames.values()])
    decoded = tok.decode(tok.encode(every))
    fidelity = np.abs(geometry.rmsd(decoded, other_xyz[0]) - geometry.rmsd(every, other_xyz[0])) * 10
    out["state_fidelity_median_A"] = float(np.median(fidelity))
    return out


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
            "invalid_by_reason": metrics["validity"]["invalid_frames_by_reason"],
            "rebuild": metrics.get("rebuild")}


def main():
    from mdllm.pipeline import run

    results = {}
    for state, other in [("closed", "open"), ("open", "closed")]:
        xtc, top, train = select_frames(state)
        out = RUNS / f"from_{state}"
        run(ADK / f"adk_{state}.pdb", out, trajectories=[xtc], top=top, preset="quick", seed=0, rebuild=REBUILD,
            adapt_steps=ADAPT_STEPS, states={"closed": str(ADK / "adk_closed.pdb"), "open": str(ADK / "adk_open.pdb")})
        results[state] = {"train": train, "generated": generated_stats(out, other)}
        if (out / "adapt" / "tokenizer").exists():  # a torsion tokenizer has no decoder to adapt: no adapt stage
            results[state]["adapted_decoder"] = decoder_stats(out / "adapt" / "tokenizer", state, other)
        results[state]["general_decoder"] = decoder_stats(None, state, other)
        for plot in ("rmsd_traces.png", "validity.png", "fes_states.png"):
            if (out / "evaluate" / plot).exists():
                shutil.copyfile(out / "evaluate" / plot, HERE / f"from_{state}_{plot}")
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
