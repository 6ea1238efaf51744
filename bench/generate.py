"""Generation speed on 2 cores for a GGUF model and adenylate kinase (214 residues): frames/s and
tokens/s against window size (KV shift vs naive re-evaluation) and against walkers; the sampler alone
(C++ vs numpy); and llama.cpp's raw decode speed for the same model, so the loop's overhead shows.
First, the shipped motion-token model against the torsion-token baseline in the same run: the
language model alone and end to end (decode, geometry projection and the guard included), and the
motion model with constrained decoding (``--constrain``, guard off). Then what a
user sees: ``mdllm generate`` in a fresh process, 4 walkers x 100 frames, with and without refinement
(``--refine``, the default for motion tokens, refines every draw the guard judges) and the guard, its
wall time beside the model's own (prompt and sampling; the guard's decoding, refinement and checks
excluded).

Usage: python bench/generate.py [--model models/motion-lm/motion-lm.f16.gguf] [--tokenizer DIR]
           [--compare-only | --end-to-end-only] [--e2e-frames 100] [--e2e-walkers 4]
           [--e2e-guard on|off|both] [--e2e-refine none,cpp,reference]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ADK, best_time, machine, report

from mdllm.generate import Generator
from mdllm.io import load_backbone
from mdllm.paths import model_path
from mdllm.sampling import SamplingParams, numpy_ref, sample


def timed_generation(gen, start, frames, walkers, window, kv_shift):
    ens = gen.generate(
        start,
        frames=frames,
        walkers=walkers,
        window=window,
        seed=1,
        kv_shift=kv_shift,
        params=SamplingParams(1.0),
        progress=False,
    )
    t = ens.info["timing"]["generate_seconds"]
    n_frames = walkers * frames
    return n_frames / t, n_frames * (start.n_residues + 1) / t


# `mdllm generate` in a fresh process; a refine backend other than the default is patched in first, as
# generation calls refine_backbones with its defaults.
_CLI = """import sys
import mdllm.geometry.refine as refine
backend = sys.argv.pop(1)
if backend != "cpp":
    default = refine.refine_backbones
    refine.refine_backbones = lambda *a, **k: default(*a, **k, backend=backend)
from mdllm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def end_to_end(model, start, frames, walkers, guard, refine, refine_backend="cpp", threads=0) -> dict:
    """Wall time of one `mdllm generate` run and its breakdown (from OUT.json): the model's share is the
    prompt plus sampling, without the guard's checks; everything else (start-up, model load, guard,
    decode, refinement, validity, writing) is outside the model."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gen.dcd"
        argv = ["--threads", str(threads)] if threads else []
        argv += [
            "generate",
            str(model),
            "--start",
            str(start),
            "--frames",
            str(frames),
            "--walkers",
            str(walkers),
            "-o",
            str(out),
            "--refine" if refine else "--no-refine",
        ] + ([] if guard else ["--no-guard"])
        load = os.getloadavg()[0]  # other work on the machine slows every figure here
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _CLI, refine_backend, *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        info = json.loads(out.with_suffix(".json").read_text())
    timing, guard_info = info["timing"], info.get("guard") or {}
    model_s = timing["prompt_seconds"] + timing["generate_seconds"] - timing.get("guard_check_seconds", 0.0)
    n = frames * walkers
    return {
        "wall_seconds": wall,
        "end_to_end_frames_per_s": n / wall,
        "model_seconds": model_s,
        "model_only_frames_per_s": n / model_s,
        "outside_model_share": 1 - model_s / wall,
        "guard_check_seconds": timing.get("guard_check_seconds", 0.0),
        "decode_seconds": timing.get("decode_seconds", 0.0),
        "refine_seconds": timing.get("refine_seconds", 0.0),
        "guard_redraw_fraction": guard_info.get("redraw_fraction"),
        "load_average_at_start": load,
    }


def end_to_end_rows(model, args, rows, result):
    start = ADK / "adk_closed.pdb"
    modes = [m.strip() for m in args.e2e_refine.split(",")]
    if not set(modes) <= {"none", "cpp", "reference"}:
        raise SystemExit(f"--e2e-refine: expected none, cpp or reference, got {args.e2e_refine}")
    runs = {}
    for guard in {"on": (True,), "off": (False,), "both": (True, False)}[args.e2e_guard]:
        for refine in [None if m == "none" else m for m in modes]:
            r = end_to_end(
                model,
                start,
                args.e2e_frames,
                args.e2e_walkers,
                guard,
                refine is not None,
                refine or "cpp",
                args.threads,
            )
            name = f"guard {'on' if guard else 'off'}, " + (f"--refine ({refine})" if refine else "no refine")
            runs[name] = r
            label = f"mdllm generate {args.e2e_walkers}x{args.e2e_frames}, {name}"
            rows.append([label, "end to end", r["end_to_end_frames_per_s"], float("nan")])
            rows.append([label, "model only", r["model_only_frames_per_s"], float("nan")])
            rows.append(
                [
                    label,
                    f"wall {r['wall_seconds']:.1f} s, outside model "
                    f"{100 * r['outside_model_share']:.0f} %, refine {r['refine_seconds']:.1f} s",
                    float("nan"),
                    float("nan"),
                ]
            )
    result["end_to_end"] = {"frames": args.e2e_frames, "walkers": args.e2e_walkers, "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF model (default: the shipped structure LM)")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the shipped one)")
    parser.add_argument("--extra-frames", type=int, default=3, help="frames generated beyond the window")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores)")
    parser.add_argument("--compare-only", action="store_true", help="only the motion vs torsion comparison")
    parser.add_argument("--end-to-end-only", action="store_true", help="only the `mdllm generate` runs")
    parser.add_argument("--e2e-frames", type=int, default=100, help="frames per walker of the `mdllm generate` runs")
    parser.add_argument("--e2e-walkers", type=int, default=4, help="walkers of the `mdllm generate` runs")
    parser.add_argument(
        "--e2e-guard", choices=["on", "off", "both"], default="both", help="the guard in the `mdllm generate` runs"
    )
    parser.add_argument(
        "--e2e-refine",
        default="none,cpp",
        help="refinement of the `mdllm generate` runs, comma-separated: none (--no-refine), cpp, "
        "reference (--refine with the scipy reference, as before the compiled kernel; slow)",
    )
    args = parser.parse_args()
    model = args.model or model_path("motion-lm", "motion-lm.f16.gguf")
    start = load_backbone(ADK / "adk_closed.pdb")
    rows, result = (
        [],
        {
            "bench": "generate",
            "model": str(model),
            "residues": start.n_residues,
            "llama_threads": args.threads or "all",
            **machine(),
        },
    )
    if args.end_to_end_only:
        end_to_end_rows(model, args, rows, result)
        report(
            f"mdllm generate end to end, AdK {start.n_residues} residues, threads {args.threads or 'all'}",
            ["setting", "mode", "frames/s", "tokens/s"],
            rows,
            result,
        )
        return

    # The shipped models side by side: 4 walkers x 8 frames, window 4.
    compare = {}
    torsion_model = model_path("structure-lm", "structure-lm.f16.gguf")
    for name, path, guard, constrain, repair in (
        ("motion", model, True, False, False),
        ("motion, guard off", model, False, False, False),
        ("motion, constrained, guard off", model, False, True, False),  # mdllm generate --constrain --no-guard
        ("motion, repaired, guard off", model, False, False, True),  # mdllm generate --repair --no-guard
        ("torsion", torsion_model, False, False, False),
    ):
        g = Generator(path, threads=args.threads)
        t0 = time.perf_counter()
        ens = g.generate(
            start,
            frames=8,
            walkers=4,
            window=4,
            seed=1,
            progress=False,
            guard=guard,
            constrain=constrain,
            repair=repair,
        )
        total = time.perf_counter() - t0
        n = ens.tokens.shape[0] * ens.tokens.shape[1]
        compare[name] = {
            "model_frames_per_s": ens.info["frames_per_second"],
            "end_to_end_frames_per_s": n / total,
            "guard": ens.info.get("guard"),
            "constraint": ens.info.get("constraint"),
            "repair": ens.info.get("repair"),
        }
        rows.append([f"{name} tokens, 4 walkers, window 4", "model only", ens.info["frames_per_second"], float("nan")])
        rows.append([f"{name} tokens, 4 walkers, window 4", "end to end", n / total, float("nan")])
    compare["motion_over_torsion_model_only"] = (
        compare["motion, guard off"]["model_frames_per_s"] / compare["torsion"]["model_frames_per_s"]
    )
    result["compare"] = compare
    if args.compare_only:
        report(
            f"Generation, AdK {start.n_residues} residues, llama.cpp threads {args.threads or 'all'}",
            ["setting", "mode", "frames/s", "tokens/s"],
            rows,
            result,
        )
        return
    gen = Generator(model, args.tokenizer, threads=args.threads)

    per_window = {}
    for window in (2, 4, 8, 16):
        frames = window + args.extra_frames
        shift = timed_generation(gen, start, frames, 1, window, True)
        naive = timed_generation(gen, start, frames, 1, window, False)
        per_window[window] = {"kv_shift_frames_per_s": shift[0], "naive_frames_per_s": naive[0]}
        rows.append([f"window {window}, 1 walker", "KV shift", shift[0], shift[1]])
        rows.append([f"window {window}, 1 walker", "naive", naive[0], naive[1]])
    result["window"] = per_window
    result["kv_shift_time_per_frame_ratio_w16_w2"] = (
        per_window[2]["kv_shift_frames_per_s"] / per_window[16]["kv_shift_frames_per_s"]
    )
    result["naive_time_per_frame_ratio_w16_w2"] = (
        per_window[2]["naive_frames_per_s"] / per_window[16]["naive_frames_per_s"]
    )

    per_walkers = {}
    for walkers in (1, 4, 16):
        fps, tps = timed_generation(gen, start, 4 + args.extra_frames, walkers, 4, True)
        per_walkers[walkers] = {"frames_per_s": fps, "tokens_per_s": tps}
        rows.append([f"window 4, {walkers} walkers", "KV shift", fps, tps])
    result["walkers"] = per_walkers
    result["walkers16_over_1"] = per_walkers[16]["frames_per_s"] / per_walkers[1]["frames_per_s"]

    # llama.cpp alone: one token per sequence per decode call, same context length as window 4.
    key = np.zeros(start.n_residues, np.int64) if gen.vocab.key_codebook_size else None
    context = len(gen.vocab.prefix(start.sequence, key_tokens=key)) + 4 * (start.n_residues + 1)
    for batch in (1, 16):
        raw = gen.llama.raw_decode_tokens_per_second(batch, 200, context)
        ours = per_walkers[batch]["tokens_per_s"]
        result[f"raw_decode_tokens_per_s_batch{batch}"] = raw
        result[f"loop_over_raw_batch{batch}"] = ours / raw
        rows.append([f"llama.cpp raw decode, batch {batch}", "-", float("nan"), raw])

    # The sampler alone, per token, on this model's vocabulary.
    logits = np.random.default_rng(0).normal(size=(1, gen.vocab.size)).astype(np.float32) * 3
    allowed = [gen.vocab.structure_offset, gen.vocab.structure_offset + gen.vocab.codebook_size]
    params = SamplingParams(1.0, 0, 0.95)
    t_cpp = best_time(lambda: sample(logits, allowed, params, seed=1))
    t_np = best_time(lambda: numpy_ref.sample(logits, allowed, params, seed=1))
    result["sampler_us_per_token"] = {"cpp": t_cpp * 1e6, "numpy": t_np * 1e6}
    rows.append(["sampler alone (top-p 0.95), per token", "C++ us", t_cpp * 1e6, float("nan")])
    rows.append(["sampler alone (top-p 0.95), per token", "numpy us", t_np * 1e6, float("nan")])
    end_to_end_rows(model, args, rows, result)
    report(
        f"Generation, AdK {start.n_residues} residues, llama.cpp threads {args.threads or 'all'}, model {model}",
        ["setting", "mode", "frames/s", "tokens/s"],
        rows,
        result,
    )


if __name__ == "__main__":
    main()
