"""What each step of the README tutorial costs, for a 56-residue protein (GB1) and a 214-residue one
(adenylate kinase, the heavy atoms of the first DIMS frame, data/adk/adk_dims.pdb): the tutorial's own commands, each run small in a fresh process and timed, then
scaled to the tutorial's sizes (2 ns at two temperatures saved every 10 ps, 3 epochs of fine-tuning on
those 400 frames with window 4, 8 walkers x 500 frames, evaluation with 10 rebuilt frames).

Measured per protein: MD speed (ns/day, from the run's manifest), encoding (s), fine-tuning (s per
optimizer step of 4 windows: the difference between a 1-step and a (1 + N)-step run, so start-up is
counted once), export (s), generation (frames/s of ``mdllm generate`` with the guard and refinement,
start-up included), evaluation (s without rebuild, s per rebuilt frame).

Usage: python bench/steps.py [--proteins gb1 adk] [--md-ps 10] [--train-steps 5] [--frames 25]
                             [--rebuild 2] [--work runs/bench-steps]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, machine, report

PROTEINS = {"gb1": ROOT / "data" / "examples" / "1GB1_model1.pdb", "adk": ROOT / "data" / "adk" / "adk_dims.pdb"}

# The tutorial's sizes (README, "Tutorial: your own protein").
TUTORIAL = dict(
    md_ns=2.0,
    temperatures=2,
    save_every_ps=10,
    epochs=3,
    window=4,
    val_fraction=0.1,
    batch=4,
    walkers=8,
    frames=500,
    rebuild=10,
)


def timed(cmd: list[str]) -> float:
    """Seconds of one mdllm command in a fresh process (as a user runs it)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mdllm", *map(str, cmd)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: mdllm {' '.join(map(str, cmd))}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def measure(name: str, pdb: Path, work: Path, args) -> dict:
    w = work / name
    md_dir = w / "md"
    kept = args.keep_md and (md_dir / "T300K_rep0" / "manifest.json").exists()
    if kept:  # everything but the MD run is made again
        for old in w.iterdir():
            if old != md_dir:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
        print(f"[{name}] simulate {args.md_ps} ps", file=sys.stderr)
    t_md = (
        float("nan")
        if kept
        else timed(
            [
                "--threads",
                args.threads,
                "simulate",
                pdb,
                "-o",
                md_dir,
                "--temperatures",
                "300",
                "--length",
                args.md_ps / 1000,
                "--save-every",
                1,
                "--equilibrate",
                2,
                "--no-progress",
                "--seed",
                1,
            ]
        )
    )
    run_dir = md_dir / "T300K_rep0"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ns_per_day = manifest["last_ns_per_day"]
    traj, top = run_dir / "trajectory.xtc", run_dir / "trajectory.pdb"

    print(f"[{name}] encode", file=sys.stderr)
    t_encode = timed(["encode", traj, "--top", top, "--key", pdb, "-o", w / "tok.npz"])

    print(f"[{name}] train", file=sys.stderr)
    train = [
        "train",
        w / "tok.npz",
        "--base",
        ROOT / "models" / "motion-lm",
        "--window",
        TUTORIAL["window"],
        "--val-fraction",
        0,
        "--warmup",
        0,
        "--epochs",
        1000,  # --max-steps decides the run length
        "--no-progress",
        "--seed",
        0,
    ]
    t_one = timed([*train, "--max-steps", 1, "-o", w / "lm1"])
    t_many = timed([*train, "--max-steps", 1 + args.train_steps, "-o", w / "lm"])
    s_per_step = max(t_many - t_one, 0.0) / args.train_steps

    print(f"[{name}] export", file=sys.stderr)
    t_export = timed(["export", w / "lm", "-o", w / "lm.gguf", "--type", "f16"])

    print(f"[{name}] generate", file=sys.stderr)
    walkers = TUTORIAL["walkers"]
    t_generate = timed(
        [
            "--threads",
            args.threads,
            "generate",
            w / "lm.gguf",
            "--start",
            pdb,
            "--frames",
            args.frames,
            "--walkers",
            walkers,
            "--window",
            TUTORIAL["window"],
            "--seed",
            1,
            "-o",
            w / "gen" / "out.xtc",
        ]
    )
    gen_fps = walkers * args.frames / t_generate

    print(f"[{name}] evaluate", file=sys.stderr)
    evaluate = [
        "--threads",
        args.threads,
        "evaluate",
        w / "gen" / "out.xtc",
        "--top",
        w / "gen" / "out.pdb",
        "--reference",
        traj,
        "--reference-top",
        top,
        "--state",
        f"start={pdb}",
        "--no-plots",
    ]
    t_eval = timed([*evaluate, "--rebuild", 0, "-o", w / "ev0"])
    t_eval_rebuild = timed([*evaluate, "--rebuild", args.rebuild, "-o", w / "ev"])
    s_per_rebuild = max(t_eval_rebuild - t_eval, 0.0) / args.rebuild

    residues = manifest["system"]["residues"]
    return dict(
        protein=name,
        residues=residues,
        simulate_seconds=t_md,
        md_ns_per_day=ns_per_day,
        encode_seconds=t_encode,
        train_seconds_per_step=s_per_step,
        train_startup_seconds=t_one,
        export_seconds=t_export,
        generate_frames_per_s=gen_fps,
        generate_seconds=t_generate,
        evaluate_seconds=t_eval,
        rebuild_seconds_per_frame=s_per_rebuild,
    )


def tutorial_costs(m: dict) -> dict:
    """The tutorial's sizes at the measured rates, in minutes."""
    t = TUTORIAL
    frames = int(t["md_ns"] * 1000 / t["save_every_ps"])
    windows = t["temperatures"] * int((frames - t["window"] + 1) * (1 - t["val_fraction"]))
    steps = t["epochs"] * -(-windows // t["batch"])
    return {
        "simulate_min": t["temperatures"] * t["md_ns"] / m["md_ns_per_day"] * 24 * 60,
        "train_steps": steps,
        "train_min": (m["train_startup_seconds"] + steps * m["train_seconds_per_step"]) / 60,
        "generate_min": t["walkers"] * t["frames"] / m["generate_frames_per_s"] / 60,
        "evaluate_min": (m["evaluate_seconds"] + t["rebuild"] * m["rebuild_seconds_per_frame"]) / 60,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proteins", nargs="+", default=list(PROTEINS), choices=list(PROTEINS))
    parser.add_argument("--md-ps", type=float, default=10.0, help="ps of MD to time (after 2 ps equilibration)")
    parser.add_argument("--train-steps", type=int, default=5, help="optimizer steps timed beyond the first")
    parser.add_argument("--frames", type=int, default=25, help="frames per walker (8 walkers)")
    parser.add_argument("--rebuild", type=int, default=2, help="frames rebuilt all-atom")
    parser.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-steps"))
    parser.add_argument("--keep-md", action="store_true", help="reuse a finished MD run of an earlier call")
    args = parser.parse_args()

    results = []
    for name in args.proteins:  # each protein's figures are kept as soon as they exist
        results.append(measure(name, PROTEINS[name], Path(args.work), args))
        (Path(args.work) / f"{name}.json").write_text(json.dumps(results[-1], indent=1))
    rows = []
    for m in results:
        c = m["tutorial"] = tutorial_costs(m)
        label = f"{m['protein']} ({m['residues']} res)"
        rows += [
            [label, "simulate", f"{m['md_ns_per_day']:.1f} ns/day", f"{c['simulate_min']:.0f}"],
            [label, "encode", f"{m['encode_seconds']:.1f} s", f"{m['encode_seconds'] / 60:.1f}"],
            [
                label,
                "train",
                f"{m['train_seconds_per_step']:.2f} s/step",
                f"{c['train_min']:.1f} ({c['train_steps']} steps)",
            ],
            [label, "export", f"{m['export_seconds']:.1f} s", f"{m['export_seconds'] / 60:.1f}"],
            [label, "generate", f"{m['generate_frames_per_s']:.2f} frames/s", f"{c['generate_min']:.1f}"],
            [
                label,
                "evaluate",
                f"{m['evaluate_seconds']:.0f} s + {m['rebuild_seconds_per_frame']:.0f} s/rebuilt frame",
                f"{c['evaluate_min']:.1f}",
            ],
        ]
    load = os.getloadavg()[0]
    report(
        f"README tutorial, cost per step (load average {load:.1f}); last column: minutes at the tutorial's sizes",
        ["protein", "step", "measured", "tutorial, min"],
        rows,
        {"bench": "steps", **machine(), "load_average": load, "tutorial": TUTORIAL, "proteins": results},
    )


if __name__ == "__main__":
    main()
