"""Refinement speed and agreement on adenylate kinase (214 residues): the compiled kernel
(mdllm.geometry.refine, backend 'cpp') against the scipy reference it replaces, on frames as generation
leaves them: MD frames encoded with the shipped motion tokenizer, a fraction of the tokens replaced by
random codes (a language model's wrong draws), decoded and projected as ``mdllm generate`` does.

Agreement: the energy both minimise (restraint_energy) at each result, the RMSD between the two results,
and the validity checks before and after. Speed: frames/s (wall) on all cores, and per core (CPU time).

Usage: python bench/refine.py [--frames 200] [--reference-frames 10] [--noise 0.1] [--threads 0]
"""

import argparse
import time

import numpy as np
from common import ADK, load_adk_transitions, machine, report

from mdllm import _core
from mdllm.encoding import decode_tokens, encode_backbone
from mdllm.evaluate import check_backbone
from mdllm.geometry.refine import refine_backbones, restraint_energy
from mdllm.io import load_backbone


def decoded_frames(n_frames: int, noise: float, seed: int = 0):
    """AdK transition frames, encoded against the closed structure, ``noise`` of the tokens redrawn at
    random, decoded."""
    traj = load_adk_transitions()
    pick = np.linspace(0, traj.n_frames - 1, n_frames).astype(int)
    bb = traj.__class__(traj.xyz[pick], traj.sequence, traj.residue_ids, traj.chain_ids, traj.time[pick])
    enc = encode_backbone(bb, key=load_backbone(ADK / "adk_closed.pdb"))
    rng = np.random.default_rng(seed)
    tokens = enc.tokens.copy()
    wrong = rng.random(tokens.shape) < noise
    tokens[wrong] = rng.integers(0, enc.tokenizer.codebook_size, wrong.sum())
    return decode_tokens(enc.tokenizer, tokens, enc.key_xyz), bb.sequence


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="frames refined by the C++ kernel")
    parser.add_argument("--reference-frames", type=int, default=10, help="of those, refined by the reference too")
    parser.add_argument("--noise", type=float, default=0.1, help="fraction of tokens replaced at random")
    parser.add_argument("--threads", type=int, default=0, help="threads of the compiled core (0 = all cores)")
    args = parser.parse_args()
    if args.threads:
        _core.set_num_threads(args.threads)
    xyz, seq = decoded_frames(args.frames, args.noise)
    refine_backbones(xyz[:1], seq)  # warm-up: the Ramachandran fields are built once per process
    rows, result = (
        [],
        {
            "bench": "refine",
            "residues": len(seq),
            "frames": args.frames,
            "noise": args.noise,
            "threads": _core.num_threads(),
            **machine(),
        },
    )

    stats = {}
    cpp, wall, cpu = timed(lambda: refine_backbones(xyz, seq, stats=stats))
    result["cpp"] = {
        "frames_per_s": args.frames / wall,
        "frames_per_cpu_s": args.frames / cpu,
        "iterations_mean": float(stats["iterations"].mean()),
        "evaluations_mean": float(stats["evaluations"].mean()),
    }
    rows.append(
        [
            f"C++, {args.frames} frames, {_core.num_threads()} threads",
            args.frames / wall,
            args.frames / cpu,
            float(stats["iterations"].mean()),
        ]
    )

    n = args.reference_frames
    ref, wall_ref, cpu_ref = timed(lambda: refine_backbones(xyz[:n], seq, backend="reference"))
    result["reference"] = {"frames": n, "frames_per_s": n / wall_ref, "frames_per_cpu_s": n / cpu_ref}
    rows.append([f"reference (scipy, all {n} frames as one problem)", n / wall_ref, n / cpu_ref, float("nan")])
    result["speedup_wall"] = result["cpp"]["frames_per_s"] / result["reference"]["frames_per_s"]

    e_in, _ = restraint_energy(xyz[:n], xyz[:n], seq)
    e_cpp, _ = restraint_energy(cpp[:n], xyz[:n], seq)
    e_ref, _ = restraint_energy(ref, xyz[:n], seq)
    ratio = e_cpp / e_ref
    rmsd = np.sqrt(((cpp[:n] - ref) ** 2).sum(-1).mean(axis=(1, 2))) * 10
    worst_atom = np.sqrt(((cpp[:n] - ref) ** 2).sum(-1)).max() * 10
    checks = {name: check_backbone(x, seq) for name, x in (("input", xyz), ("cpp", cpp), ("reference", ref))}
    result["agreement"] = {
        "energy_input_median": float(np.median(e_in)),
        "energy_cpp_median": float(np.median(e_cpp)),
        "energy_reference_median": float(np.median(e_ref)),
        "energy_ratio_median": float(np.median(ratio)),
        "energy_ratio_min": float(ratio.min()),
        "energy_ratio_max": float(ratio.max()),
        "energy_difference_over_input_max": float((np.abs(e_cpp - e_ref) / e_in).max()),
        "rmsd_A_median": float(np.median(rmsd)),
        "rmsd_A_max": float(rmsd.max()),
        "worst_atom_A": float(worst_atom),
    }
    result["valid_fraction"] = {
        "input": float(checks["input"].valid.mean()),
        "cpp": float(checks["cpp"].valid.mean()),
        "cpp_on_reference_frames": float(checks["cpp"].valid[:n].mean()),
        "reference": float(checks["reference"].valid.mean()),
    }
    result["rama_outlier_fraction_mean"] = {k: float(c.rama_outlier_fraction.mean()) for k, c in checks.items()}
    a = result["agreement"]
    rows.append(
        [
            f"energy C++ / reference, {n} frames (median, range)",
            f"{a['energy_ratio_median']:.3f}",
            f"{a['energy_ratio_min']:.3f}-{a['energy_ratio_max']:.3f}",
            "",
        ]
    )
    rows.append(["RMSD C++ vs reference, A (median, max)", f"{a['rmsd_A_median']:.3f}", f"{a['rmsd_A_max']:.3f}", ""])
    v = result["valid_fraction"]
    rows.append(
        ["valid frames: input, C++, reference", f"{v['input']:.2f}", f"{v['cpp']:.2f}", f"{v['reference']:.2f}"]
    )
    report(
        f"Refinement, AdK {len(seq)} residues, decoded frames with {100 * args.noise:.0f} % random tokens",
        ["setting", "frames/s (wall)", "frames/s per CPU s", "iterations"],
        rows,
        result,
    )


if __name__ == "__main__":
    main()
