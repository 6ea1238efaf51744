"""Throughput of the evaluation's hot steps: backbone validity checks (compiled kernels vs numpy
twins) on real AdK frames (214 residues), and the all-atom rebuild + minimisation, in seconds per
rebuilt frame, for MD frames of villin (35 residues, data/md), cobrotoxin (62, data/cobrotoxin; the
nearest to 100 residues among the MD trajectories at hand) and AdK (214, data/adk); trpzip2
(12, tests/data) on request.

    python bench/evaluate.py [--threads 2] [--rebuild-frames 10] [--rebuild-proteins villin,cobrotoxin,adk]
                             [--repeats 3]

The first rebuilt frame of a protein runs PDBFixer and makes the side-chain template; the table gives
its time, the median time of the later frames, and the mean over all frames (what an evaluation of N
frames costs per frame). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADK = ROOT / "data" / "adk"
# name -> (trajectory, topology) of backbone frames for the rebuild
REBUILD_PROTEINS = {
    "tz2": (ROOT / "tests" / "data" / "tz2.truncoct.nc", ROOT / "tests" / "data" / "tz2.truncoct.parm7"),
    "villin": (
        ROOT / "data" / "md" / "villin_2F4K" / "T300K_rep0" / "trajectory.xtc",
        ROOT / "data" / "md" / "villin_2F4K" / "T300K_rep0" / "trajectory.pdb",
    ),
    "cobrotoxin": (
        ROOT / "data" / "cobrotoxin" / "cobrotoxin_bb.xtc",
        ROOT / "data" / "cobrotoxin" / "cobrotoxin_bb.pdb",
    ),
    "adk": (ADK / "adk_dims.xtc", ADK / "adk_dims.pdb"),
}


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for the compiled core and OpenMM")
    parser.add_argument(
        "--rebuild-frames",
        type=int,
        default=10,
        help="frames per protein to rebuild and minimise, evenly spaced (0 = skip)",
    )
    parser.add_argument(
        "--rebuild-proteins", default="villin,cobrotoxin,adk", help=f"comma-separated, of {', '.join(REBUILD_PROTEINS)}"
    )
    parser.add_argument(
        "--max-iterations", type=int, default=None, help="vacuum L-BFGS iterations (default: rebuild's)"
    )
    parser.add_argument(
        "--solvent-iterations", type=int, default=None, help="GBn2 polish iterations (default: rebuild's)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mdllm import _core
    from mdllm.evaluate import check_backbone
    from mdllm.evaluate import kernels, kernels_numpy
    from mdllm.evaluate.validity import VDW_RADII_NM, ValidityLimits, _chain_layout, _ideal_table
    from mdllm.io import load_backbone

    _core.set_num_threads(args.threads)
    frames = [
        load_backbone(ADK / f"{n}.xtc", top=ADK / f"{n}.pdb")
        for n in ("adk_dims", "adk_dims2", "adk_gbis_tmd-fast1_NAMD")
    ]
    xyz = np.concatenate([f.xyz for f in frames])
    sequence = frames[0].sequence
    n_frames, n_res = xyz.shape[:2]
    chain_index, chain_ends = _chain_layout(n_res, None)
    limits = ValidityLimits()
    ideal = _ideal_table()

    rows = []
    for name, backend in (("compiled", kernels), ("numpy", kernels_numpy)):
        t_bonds = best_time(lambda: backend.check_bonds(xyz, chain_ends, ideal, limits.max_z, 0.2), args.repeats)
        t_clash = best_time(lambda: backend.find_clashes(xyz, chain_index, VDW_RADII_NM, 0.07, 0.3, 2), args.repeats)
        t_full = best_time(
            lambda: check_backbone(xyz, sequence, backend="cpp" if backend is kernels else "numpy"), args.repeats
        )
        rows.append(
            {
                "backend": name,
                "bond_check_fps": n_frames / t_bonds,
                "clash_search_fps": n_frames / t_clash,
                "check_backbone_fps": n_frames / t_full,
            }
        )

    rebuilds = []
    if args.rebuild_frames > 0:
        from mdllm.evaluate import rebuild as rb

        for name in args.rebuild_proteins.split(","):
            if name not in REBUILD_PROTEINS:
                parser.error(f"unknown protein {name!r}; choose from {', '.join(REBUILD_PROTEINS)}")
            bb = load_backbone(*REBUILD_PROTEINS[name])
            picks = np.unique(np.linspace(0, bb.n_frames - 1, args.rebuild_frames).astype(int))
            rebuilder = rb.Rebuilder(
                bb.sequence,
                bb.chain_ids,
                threads=args.threads,
                max_iterations=args.max_iterations or rb.MAX_ITERATIONS,
                solvent_iterations=rb.SOLVENT_ITERATIONS
                if args.solvent_iterations is None
                else args.solvent_iterations,
            )
            result = rb.rebuild_frames(
                bb.xyz, bb.sequence, bb.chain_ids, picks, progress=True, label=f"rebuild {name}", rebuilder=rebuilder
            )
            summary = result.summary()
            seconds = result.frame_seconds
            rebuilds.append(
                {
                    "protein": name,
                    "residues": bb.n_residues,
                    "atoms": int(result.trajectory.n_atoms) if result.trajectory is not None else None,
                    "frames": len(picks),
                    "seconds": float(sum(seconds)),
                    "seconds_per_frame": float(np.mean(seconds)),
                    "first_frame_seconds": seconds[0],
                    "later_frame_seconds_median": float(np.median(seconds[1:])) if len(seconds) > 1 else None,
                    "sane_fraction": summary["sane_fraction"],
                    "sane_fraction_ci95": summary["sane_fraction_ci95"],
                    "median_energy_after_kj_mol": (summary["energy_after_kj_mol"] or {}).get("median"),
                    "median_drift_A": (summary["backbone_drift_A"] or {}).get("median"),
                    "max_iterations": rebuilder.max_iterations,
                    "solvent_iterations": rebuilder.solvent_iterations,
                    "protocol": summary["minimisation"],
                    "per_frame": [
                        {
                            "frame": int(f),
                            "seconds": t,
                            "energy_before_kj_mol": b,
                            "energy_after_kj_mol": a,
                            "drift_A": d,
                            "max_displacement_A": x,
                            "sane": ok,
                            "error": e or None,
                        }
                        for f, t, b, a, d, x, ok, e in zip(
                            result.frames,
                            seconds,
                            result.energy_before,
                            result.energy_after,
                            result.drift_A,
                            result.max_displacement_A,
                            result.sane,
                            result.errors,
                        )
                    ],
                }
            )

    print(
        f"AdK, {n_res} residues, {n_frames} frames; {args.threads} threads; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs"
    )
    print(f"{'backend':<10} {'bond check':>14} {'clash search':>14} {'check_backbone':>16}   (frames/s)")
    for r in rows:
        print(
            f"{r['backend']:<10} {r['bond_check_fps']:>14.0f} {r['clash_search_fps']:>14.0f} {r['check_backbone_fps']:>16.0f}"
        )
    speedup = rows[0]["check_backbone_fps"] / rows[1]["check_backbone_fps"]
    print(f"check_backbone speed-up compiled / numpy: {speedup:.1f}x")
    if rebuilds:
        print(f"\nall-atom rebuild + minimisation, OpenMM CPU, {args.threads} threads; {rebuilds[0]['protocol']}")
        print(
            f"{'protein':<11} {'res':>4} {'atoms':>6} {'frames':>6} {'first s':>8} {'later s':>8} {'s/frame':>8} "
            f"{'sane':>5} {'95 % CI':>10} {'E after':>9} {'drift A':>8}"
        )
        for r in rebuilds:
            later = r["later_frame_seconds_median"]
            energy = r["median_energy_after_kj_mol"]
            print(
                f"{r['protein']:<11} {r['residues']:>4} {r['atoms'] or 0:>6} {r['frames']:>6} "
                f"{r['first_frame_seconds']:>8.1f} {later if later is not None else float('nan'):>8.1f} "
                f"{r['seconds_per_frame']:>8.1f} {r['sane_fraction']:>5.0%} "
                f"{r['sane_fraction_ci95'][0]:>4.0%}-{r['sane_fraction_ci95'][1]:<4.0%} "
                f"{energy if energy is not None else float('nan'):>9.0f} {r['median_drift_A'] or float('nan'):>8.2f}"
            )
    print(
        json.dumps(
            {
                "bench": "evaluate",
                "residues": n_res,
                "frames": n_frames,
                "threads": args.threads,
                "validity": rows,
                "check_backbone_speedup": speedup,
                "rebuild": rebuilds,
            }
        )
    )


if __name__ == "__main__":
    main()
