"""The seed paper's experiment on adenylate kinase: train on one state only, generate, and see whether
the other state appears. Run from the repository root, after docs/adk_experiment/base_noadk.sh has
trained the base model that has never seen adenylate kinase:

    python docs/adk_experiment/make.py [--base build/motion-lm-noadk] [--rebuild 1] [--threads 2]

Training frames: frames of the three closed->open transitions in data/adk whose CA RMSD to the
starting state is below THRESHOLD_A. The base (by default build/motion-lm-noadk, trained without any
adenylate kinase frame) is fine-tuned on them with motion tokens, the shipped default tokenizer
(models/motiontoken; key frame = the state's crystal-derived structure) through ``mdllm.pipeline.run``
(preset quick, REBUILD frames rebuilt all-atom and minimised); generation starts from the same
structure, and the evaluation compares with both states and with the training frames. Measured beside
the pipeline's own report: the motion tokenizer's round trip of both states' frames against the start
structure as key frame (can the codes express the other state at all?), whether the guard would let
the other crystal state through, validity before and after refinement, radius of gyration, the
guard's redraws and each stage's wall time. Results: docs/adk_experiment/results.json.
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import mdtraj as md
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ADK = ROOT / "data" / "adk"
TRANSITIONS = ["adk_dims", "adk_dims2", "adk_gbis_tmd-fast1_NAMD"]
THRESHOLD_A = 2.5
REBUILD = 1
BASE = ROOT / "build" / "motion-lm-noadk"
RUNS = ROOT / "runs" / "adk_experiment"
STAGES = ("encode", "finetune", "export", "generate", "evaluate")


def ca_rmsd_A(traj, ref):
    ca = traj.topology.select("name CA")
    return md.rmsd(traj.atom_slice(ca), ref.atom_slice(ref.topology.select("name CA")), 0) * 10


def ca_rg_A(xyz) -> np.ndarray:
    """Radius of gyration (Angstrom) of the CA atoms of backbones (F, L, 4, 3) nm."""
    ca = np.asarray(xyz, np.float64)[:, :, 1] * 10
    return np.sqrt(((ca - ca.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1))


def transitions():
    """name -> (mdtraj backbone trajectory, mdllm backbone array (F, L, 4, 3) nm) of every transition."""
    from mdllm import load_backbone

    out = {}
    for name in TRANSITIONS:
        traj = md.load(str(ADK / f"{name}.xtc"), top=str(ADK / f"{name}.pdb"))
        out[name] = (
            traj.atom_slice(traj.topology.select("backbone")),
            load_backbone(ADK / f"{name}.xtc", top=ADK / f"{name}.pdb").xyz,
        )
    return out


def decoder_stats(state: str, other: str) -> dict:
    """The shipped motion tokenizer, key frame = the state's structure (as in the run): round-trip RMSD
    (Angstrom, all backbone atoms) of the transition frames near each state and of the other crystal
    state, and state fidelity |RMSD(decoded, other) - RMSD(original, other)| over every transition frame.
    Also: would the guard (and the global checks without a reference) accept the other crystal state?"""
    from mdllm import geometry, load_backbone
    from mdllm.encoding import load_tokenizers
    from mdllm.evaluate.plausibility import GlobalCheck
    from mdllm.generate import FrameGuard
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom

    tok, _ = load_tokenizers(None)
    key = load_backbone(ADK / f"adk_{state}.pdb").xyz[0]
    frames = transitions()
    out = {"tokenizer": str(tok.path), "key": f"adk_{state}.pdb"}
    for label, which in (("own_state_frames", state), ("other_state_frames", other)):
        ref = md.load(str(ADK / f"adk_{which}.pdb"))
        xyz = np.concatenate([x[ca_rmsd_A(t, ref) < THRESHOLD_A] for t, x in frames.values()])
        r = backbone_rmsd_angstrom(tok.decode(tok.encode(xyz, key), key), xyz)
        out[label] = {"frames": len(r), "median_A": float(np.median(r)), "p95_A": float(np.percentile(r, 95))}
    other_xyz = load_backbone(ADK / f"adk_{other}.pdb").xyz
    out["other_crystal_A"] = float(backbone_rmsd_angstrom(tok.decode(tok.encode(other_xyz, key), key), other_xyz)[0])
    every = np.concatenate([x for _, x in frames.values()])
    decoded = tok.decode(tok.encode(every, key), key)
    fidelity = np.abs(geometry.rmsd(decoded, other_xyz[0]) - geometry.rmsd(every, other_xyz[0])) * 10
    out["state_fidelity_median_A"] = float(np.median(fidelity))
    guard = FrameGuard(key)
    out["guard_accepts_other_crystal"] = bool(guard.check(other_xyz)[0])
    out["guard_rejects_other_crystal_for"] = [k for k, v in guard.reasons.items() if v]
    plausible, reasons, _ = GlobalCheck(key).check(other_xyz)
    out["global_check_accepts_other_crystal"] = bool(plausible[0])
    out["global_check_reasons"] = reasons[0]
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
    from mdllm import load_backbone

    rg = ca_rg_A(load_backbone(out, top=out.with_suffix(".pdb")).xyz)
    stats.update(
        frames=int(frames.n_frames),
        rmsd_to_other_min_A=float(to_other.min()),
        rmsd_to_other_median_A=float(np.median(to_other)),
        rg_ca_A={"min": float(rg.min()), "mean": float(rg.mean()), "max": float(rg.max())},
    )
    return out, out.with_suffix(".pdb"), stats


def generated_stats(run_dir: Path, state: str, other: str) -> dict:
    from mdllm import load_backbone
    from mdllm.encoding import decode_tokens, load_tokenizers
    from mdllm.evaluate import check_backbone

    gen_dir = run_dir / "generate"
    gen = md.load(str(gen_dir / "generated.xtc"), top=str(gen_dir / "generated.pdb"))
    to_other = ca_rmsd_A(gen, md.load(str(ADK / f"adk_{other}.pdb")))
    to_start = ca_rmsd_A(gen, md.load(str(ADK / f"adk_{state}.pdb")))
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    info = json.loads((gen_dir / "generated.json").read_text())
    saved = np.load(gen_dir / "generated.tokens.npz")
    tokens = saved["tokens"]  # (walkers, frames, L)
    walkers, per_walker = tokens.shape[:2]
    # validity before refinement: decode the saved tokens on the saved key frame as generation does
    # (placement and projection onto the key's local geometry), as bench/realism.py's "valid raw"
    tok, _ = load_tokenizers(None)
    sequence = str(saved["sequence"])
    raw = decode_tokens(tok, tokens.reshape(-1, tokens.shape[-1]), saved["key_xyz"], sequence=sequence)
    refined = load_backbone(gen_dir / "generated.xtc", top=gen_dir / "generated.pdb").xyz
    raw_report, refined_report = check_backbone(raw, sequence), check_backbone(refined, sequence)

    def reasons(report):
        out = {}
        for frame in report.reasons:
            for kind in {r.split(":", 1)[0] for r in frame}:
                out[kind] = out.get(kind, 0) + 1
        return out

    rg = ca_rg_A(refined)
    walker_first = to_start.reshape(walkers, per_walker)[:, 0]
    states = metrics.get("states", {})
    seconds = {}
    for stage in STAGES:
        marker = run_dir / stage / "stage.json"
        if marker.exists():
            seconds[stage] = json.loads(marker.read_text()).get("seconds")
    return {
        "frames": int(gen.n_frames),
        "walkers": int(walkers),
        "rmsd_to_other_min_A": float(to_other.min()),
        "rmsd_to_other_median_A": float(np.median(to_other)),
        "rmsd_to_other_p5_p95_A": [float(np.percentile(to_other, 5)), float(np.percentile(to_other, 95))],
        "rmsd_to_start_min_median_max_A": [float(to_start.min()), float(np.median(to_start)), float(to_start.max())],
        "rmsd_to_start_first_frame_per_walker_A": [float(x) for x in walker_first],
        "rmsd_to_start_last_frame_per_walker_A": [float(x) for x in to_start.reshape(walkers, per_walker)[:, -1]],
        "rg_ca_A": {"min": float(rg.min()), "mean": float(rg.mean()), "max": float(rg.max())},
        "valid_before_refinement": int(raw_report.valid.sum()),
        "invalid_before_refinement_by_reason": reasons(raw_report),
        "valid_after_refinement": int(refined_report.valid.sum()),
        "valid_frames": metrics["validity"]["valid_frames"],
        "acceptable_frames": metrics["validity"].get("acceptable_frames"),
        "invalid_by_reason": metrics["validity"]["invalid_frames_by_reason"],
        "rama_favoured_fraction_mean": metrics["validity"]["rama_favoured_fraction"]["mean"],
        "refinement": info.get("refine"),
        "guard": info.get("guard"),
        "frames_per_second": info.get("frames_per_second"),
        "generation_timing_s": info.get("timing"),
        "states_generated": states.get("generated", {}).get("per_state"),
        "states_training_min_rmsd_A": (states.get("training") or {}).get("min_rmsd_A"),
        "verdict": (metrics.get("verdict") or {}).get("sentence"),
        "rebuild": metrics.get("rebuild"),
        "stage_seconds": seconds,
    }


def base_record(base: Path) -> dict:
    """What the base model is and how it was trained (from its config.json / history.json)."""
    out = {"path": str(base.relative_to(ROOT) if base.is_relative_to(ROOT) else base)}
    history = base / "history.json"
    if history.exists():
        h = json.loads(history.read_text())
        out.update(
            steps=len(h["train"]),
            last_val=h["val"][-1] if h["val"] else None,
            best_val=h.get("best_val"),
            data=h.get("record", {}).get("data"),
            command=h.get("record", {}).get("command"),
        )
        if any("adk" in d for d in out["data"] or []):
            raise SystemExit(f"{base}: was trained on adenylate kinase frames ({out['data']}); use a base without them")
    return out


def main():
    from mdllm.pipeline import PRESETS, run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=str(BASE), help="base model directory (must not have seen AdK frames)")
    p.add_argument("--rebuild", type=int, default=REBUILD, help="generated frames rebuilt all-atom and minimised")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--states", nargs="+", default=["closed", "open"], choices=["closed", "open"])
    p.add_argument(
        "--train-steps",
        type=int,
        help="fine-tuning steps (default: the quick preset's); results then go under '<state>, N steps'",
    )
    args = p.parse_args()
    base = Path(args.base).resolve()
    results = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").exists() else {}
    results = {k: v for k, v in results.items() if k != "base" and v.get("tokenizer") == "motion"}
    preset = PRESETS["quick"] if args.train_steps is None else replace(PRESETS["quick"], train_steps=args.train_steps)
    results["base"] = base_record(base)
    for state in args.states:
        other = "open" if state == "closed" else "closed"
        xtc, top, train = select_frames(state)
        tag = state if args.train_steps is None else f"{state}, {args.train_steps} steps"
        out = RUNS / ("from_" + tag.replace(", ", "_").replace(" ", ""))
        t0 = time.perf_counter()
        run(
            ADK / f"adk_{state}.pdb",
            out,
            trajectories=[xtc],
            top=top,
            preset=preset,
            base=base,
            tokenizer=None,
            seed=0,
            threads=args.threads,
            rebuild=args.rebuild,
            states={"closed": str(ADK / "adk_closed.pdb"), "open": str(ADK / "adk_open.pdb")},
        )
        wall = time.perf_counter() - t0
        results[tag] = {
            "tokenizer": "motion",
            "train_steps": preset.train_steps,
            "lora_rank": preset.lora_rank,
            "train": train,
            "generated": generated_stats(out, state, other),
            "decoder": decoder_stats(state, other),
            "run_wall_seconds": wall,
        }
        for plot in ("rmsd_traces.png", "validity.png", "fes_states.png"):
            if (out / "evaluate" / plot).exists():
                shutil.copyfile(out / "evaluate" / plot, HERE / f"{out.name}_{plot}")
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
