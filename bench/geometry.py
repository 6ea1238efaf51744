"""Frames per second of the C++ geometry kernels against the numpy reference, on the three AdK
closed->open transitions (300 frames, 214 residues). Usage: python bench/geometry.py [--threads N]"""

import argparse

from common import best_time, load_adk_transitions, machine, report

from mdllm import geometry
from mdllm.geometry import _numpy_ref as numpy_ref


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="C++ threads (0 = all cores)")
    args = parser.parse_args()
    geometry.set_num_threads(args.threads)
    bb = load_adk_transitions()
    xyz = bb.xyz
    points = xyz.reshape(len(xyz), -1, 3)
    ref = points[0]
    ic = geometry.internal_coordinates(xyz)
    rot, trans = geometry.rigid_frames(xyz)
    n = len(xyz)

    cases = {  # name: (C++ call, numpy call, frames processed per call)
        "dihedrals": (lambda: geometry.dihedrals(xyz), lambda: numpy_ref.dihedrals(xyz), n),
        "internal_coordinates": (
            lambda: geometry.internal_coordinates(xyz),
            lambda: numpy_ref.internal_coordinates(xyz),
            n,
        ),
        "nerf": (lambda: geometry.nerf(*ic), lambda: numpy_ref.nerf(*ic), n),
        "rigid_frames": (lambda: geometry.rigid_frames(xyz), lambda: numpy_ref.rigid_frames(xyz), n),
        "to_local": (lambda: geometry.to_local(rot, trans, xyz), lambda: numpy_ref.to_local(rot, trans, xyz), n),
        "rmsd_to_reference": (lambda: geometry.rmsd(points, ref), lambda: numpy_ref.rmsd_to_reference(points, ref), n),
        "pairwise_rmsd": (
            lambda: geometry.pairwise_rmsd(points),
            lambda: numpy_ref.pairwise_rmsd(points),
            n * (n - 1) // 2,
        ),
    }
    rows, result = (
        [],
        {"bench": "geometry", "frames": n, "residues": bb.n_residues, "threads": geometry.num_threads(), **machine()},
    )
    for name, (cpp, ref_fn, units) in cases.items():
        t_cpp, t_np = best_time(cpp), best_time(ref_fn, repeats=3)
        unit = "pairs/s" if name == "pairwise_rmsd" else "frames/s"
        rows.append([name, unit, units / t_cpp, units / t_np, t_np / t_cpp])
        result[name] = {
            "cpp_per_s": round(units / t_cpp, 1),
            "numpy_per_s": round(units / t_np, 1),
            "speedup": round(t_np / t_cpp, 2),
        }
    report(
        f"C++ vs numpy geometry, AdK {n} frames x {bb.n_residues} residues, {geometry.num_threads()} threads",
        ["kernel", "unit", "C++", "numpy", "speedup"],
        rows,
        result,
    )


if __name__ == "__main__":
    main()
