"""Throughput of the evaluation's hot steps: backbone validity checks (compiled kernels vs numpy
twins) on real AdK frames (214 residues), and all-atom rebuild + minimisation on trpzip2 MD frames
(12 residues, tests/data) or AdK.

    python bench/evaluate.py [--threads 2] [--rebuild-frames 10] [--rebuild-protein tz2|adk] [--repeats 3]

Prints a table and, last, one JSON line.
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
    parser.add_argument("--rebuild-frames", type=int, default=10, help="frames to rebuild and minimise (0 = skip)")
    parser.add_argument("--rebuild-protein", choices=("tz2", "adk"), default="tz2",
                        help="trpzip2 MD frames (tests/data) or AdK transition frames (data/adk)")
    parser.add_argument("--solvent-iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mdllm import _core
    from mdllm.evaluate import check_backbone
    from mdllm.evaluate import kernels, kernels_numpy
    from mdllm.evaluate.validity import VDW_RADII_NM, ValidityLimits, _chain_layout, _ideal_table
    from mdllm.io import load_backbone

    _core.set_num_threads(args.threads)
    frames = [load_backbone(ADK / f"{n}.xtc", top=ADK / f"{n}.pdb")
              for n in ("adk_dims", "adk_dims2", "adk_gbis_tmd-fast1_NAMD")]
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
        t_full = best_time(lambda: check_backbone(xyz, sequence, backend="cpp" if backend is kernels else "numpy"),
                           args.repeats)
        rows.append({"backend": name, "bond_check_fps": n_frames / t_bonds, "clash_search_fps": n_frames / t_clash,
                     "check_backbone_fps": n_frames / t_full})

    rebuild = None
    if args.rebuild_frames > 0:
        from mdllm.evaluate.rebuild import rebuild_frames

        if args.rebuild_protein == "tz2":
            tz2 = load_backbone(ROOT / "tests" / "data" / "tz2.truncoct.nc", top=ROOT / "tests" / "data" / "tz2.truncoct.parm7")
            rxyz, rseq = tz2.xyz, tz2.sequence
        else:
            rxyz, rseq = xyz, sequence
        picks = np.unique(np.linspace(0, len(rxyz) - 1, args.rebuild_frames).astype(int))
        start = time.perf_counter()
        result = rebuild_frames(rxyz, rseq, frames=picks, threads=args.threads,
                                solvent_iterations=args.solvent_iterations, progress=True)
        elapsed = time.perf_counter() - start
        rebuild = {"protein": args.rebuild_protein, "residues": len(rseq), "atoms": int(result.trajectory.n_atoms),
                   "frames": len(picks), "seconds": elapsed, "fps": len(picks) / elapsed,
                   "sane_fraction": result.summary()["sane_fraction"],
                   "median_energy_after_kj_mol": result.summary()["energy_after_kj_mol"]["median"],
                   "median_drift_A": result.summary()["backbone_drift_A"]["median"],
                   "solvent_iterations": args.solvent_iterations,
                   "per_frame": [{"frame": int(f), "energy_before_kj_mol": b, "energy_after_kj_mol": a, "drift_A": d,
                                  "max_displacement_A": x, "sane": ok, "error": e or None}
                                 for f, b, a, d, x, ok, e in zip(result.frames, result.energy_before, result.energy_after,
                                                                 result.drift_A, result.max_displacement_A, result.sane,
                                                                 result.errors)]}

    print(f"AdK, {n_res} residues, {n_frames} frames; {args.threads} threads; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs")
    print(f"{'backend':<10} {'bond check':>14} {'clash search':>14} {'check_backbone':>16}   (frames/s)")
    for r in rows:
        print(f"{r['backend']:<10} {r['bond_check_fps']:>14.0f} {r['clash_search_fps']:>14.0f} {r['check_backbone_fps']:>16.0f}")
    speedup = rows[0]["check_backbone_fps"] / rows[1]["check_backbone_fps"]
    print(f"check_backbone speed-up compiled / numpy: {speedup:.1f}x")
    if rebuild:
        print(f"rebuild + minimise of {rebuild['protein']} ({rebuild['residues']} residues, {rebuild['atoms']} atoms; "
              f"PDBFixer, OpenMM CPU, amber14 vacuum then GBn2 {rebuild['solvent_iterations']} steps): "
              f"{rebuild['frames']} frames in {rebuild['seconds']:.1f} s = {rebuild['fps']:.3f} frames/s; "
              f"sane {rebuild['sane_fraction']:.0%}, median energy {rebuild['median_energy_after_kj_mol']:.0f} kJ/mol, "
              f"median backbone drift {rebuild['median_drift_A']:.2f} A")
    print(json.dumps({"bench": "evaluate", "residues": n_res, "frames": n_frames, "threads": args.threads,
                      "validity": rows, "check_backbone_speedup": speedup, "rebuild": rebuild}))


if __name__ == "__main__":
    main()
