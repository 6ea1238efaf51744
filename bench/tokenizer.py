"""Tokenizer speed and accuracy: encode/decode frames per second on adenylate kinase (214 residues),
C++ core vs the PyTorch model on CPU, at batch 1 and batch 256; round-trip accuracy on the AdK
transition trajectories. Prints a table and one final JSON line.

Usage: python bench/tokenizer.py [--tokenizer DIR] [--threads 2] [--repeats 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def frames_per_second(fn, batch, repeats, min_seconds):
    """Median over at least `repeats` calls and `min_seconds` of calls: a single frame takes a few
    milliseconds, so many calls are needed for a median that does not move from run to run."""
    fn(batch[:1])  # warm-up (lazy model construction, caches)
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        t0 = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t0)
    return len(batch) / float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="tokenizer directory (default: shipped models/torsiontoken)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both C++ and PyTorch")
    ap.add_argument("--repeats", type=int, default=5, help="least timed repeats at batch 1 (batch 256 runs once)")
    ap.add_argument("--seconds", type=float, default=3.0, help="least seconds of timed calls at batch 1")
    args = ap.parse_args()

    import torch

    from mdllm import _core, load_backbone
    from mdllm.tokenizer import TorsionTokenizer
    from mdllm.tokenizer.evaluate import adk_transitions

    torch.set_num_threads(args.threads)
    _core.set_num_threads(args.threads)
    cpp = TorsionTokenizer.load(args.tokenizer, backend="cpp")
    ref = TorsionTokenizer.load(args.tokenizer, backend="torch")
    adk = ROOT / "data" / "adk"
    xyz = np.concatenate([load_backbone(x, top=x.with_suffix(".pdb")).xyz for x in sorted(adk.glob("*.xtc"))])
    batch256 = xyz[:256]
    tokens256 = cpp.encode(batch256)

    rows, result = [], {}
    for name, tok in (("cpp", cpp), ("torch", ref)):
        for bs, reps, secs in ((1, args.repeats, args.seconds), (256, 1, 0.0)):
            enc = frames_per_second(
                lambda b: tok.encode(b, batch_size=256) if name == "torch" else tok.encode(b), batch256[:bs], reps, secs
            )
            dec = frames_per_second(
                lambda t: tok.decode(t, batch_size=256) if name == "torch" else tok.decode(t),
                tokens256[:bs],
                reps,
                secs,
            )
            both = 1.0 / (1.0 / enc + 1.0 / dec)
            rows.append((name, bs, enc, dec, both))
            result[f"{name}_b{bs}"] = {"encode_fps": enc, "decode_fps": dec, "encode_decode_fps": both}
    print(f"tokenizer {cpp.path} (codebook {cpp.codebook_size}), AdK 214 residues, {args.threads} threads")
    print(f"{'backend':<8}{'batch':>6}{'encode f/s':>12}{'decode f/s':>12}{'enc+dec f/s':>13}")
    for name, bs, enc, dec, both in rows:
        print(f"{name:<8}{bs:>6}{enc:>12.1f}{dec:>12.1f}{both:>13.1f}")
    for bs in (1, 256):
        ratio = result[f"cpp_b{bs}"]["encode_decode_fps"] / result[f"torch_b{bs}"]["encode_decode_fps"]
        result[f"speedup_b{bs}"] = ratio
        print(f"C++ / PyTorch encode+decode at batch {bs}: {ratio:.2f}x")

    # parity of the two backends on every AdK frame: identical tokens, decoded coordinates
    tok_c, tok_t = cpp.encode(xyz), ref.encode(xyz, batch_size=256)
    max_diff = float(np.abs(cpp.decode(tok_t) - ref.decode(tok_t, batch_size=256)).max())
    result["parity"] = {
        "frames": len(xyz),
        "token_agreement": float((tok_c == tok_t).mean()),
        "max_decode_diff_nm": max_diff,
    }
    print(
        f"parity on {len(xyz)} AdK frames: tokens identical {result['parity']['token_agreement']:.6f}, "
        f"max decoded difference {max_diff:.2e} nm"
    )

    acc = adk_transitions(cpp, adk)
    print(
        f"\n{'trajectory':<30}{'frames':>7}{'RMSD med A':>11}{'RMSD p95 A':>11}{'TM med':>8}"
        f"{'fidelity med A':>15}{'re-encode kept':>15}"
    )
    for traj, r in acc.items():
        if isinstance(r, dict):
            print(
                f"{traj:<30}{r['frames']:>7}{r['rmsd_A']['median']:>11.2f}{r['rmsd_A']['p95']:>11.2f}"
                f"{r['tm']['median']:>8.3f}{r['state_fidelity_A']['median']:>15.2f}"
                f"{r['reencoded_tokens_kept']:>15.1%}"
            )
    print(f"closed vs open: {acc['closed_vs_open_tokens_differ']:.1%} of residues get different tokens")
    result["adk_round_trip"] = acc
    result["tokenizer_hash"] = cpp.hash
    print(json.dumps(result))


if __name__ == "__main__":
    main()
