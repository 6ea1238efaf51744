"""Generation speed on 2 cores for a GGUF model and adenylate kinase (214 residues): frames/s and
tokens/s against window size (KV shift vs naive re-evaluation) and against walkers; the sampler alone
(C++ vs numpy); and llama.cpp's raw decode speed for the same model, so the loop's overhead shows.
First, the shipped motion-token model against the torsion-token baseline in the same run: the
language model alone and end to end (decode, geometry projection and the guard included).

Usage: python bench/generate.py [--model models/motion-lm/motion-lm.f16.gguf] [--tokenizer DIR] [--compare-only]
"""

import argparse
import time

import numpy as np
from common import ADK, best_time, machine, report

from mdllm.generate import Generator
from mdllm.io import load_backbone
from mdllm.paths import model_path
from mdllm.sampling import SamplingParams, numpy_ref, sample


def timed_generation(gen, start, frames, walkers, window, kv_shift):
    ens = gen.generate(start, frames=frames, walkers=walkers, window=window, seed=1, kv_shift=kv_shift,
                       params=SamplingParams(1.0), progress=False)
    t = ens.info["timing"]["generate_seconds"]
    n_frames = walkers * frames
    return n_frames / t, n_frames * (start.n_residues + 1) / t


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF model (default: the shipped structure LM)")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the shipped one)")
    parser.add_argument("--extra-frames", type=int, default=3, help="frames generated beyond the window")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores)")
    parser.add_argument("--compare-only", action="store_true", help="only the motion vs torsion comparison")
    args = parser.parse_args()
    model = args.model or model_path("motion-lm", "motion-lm.f16.gguf")
    start = load_backbone(ADK / "adk_closed.pdb")
    rows, result = [], {"bench": "generate", "model": str(model), "residues": start.n_residues,
                        "llama_threads": args.threads or "all", **machine()}

    # The shipped models side by side: 4 walkers x 8 frames, window 4.
    compare = {}
    torsion_model = model_path("structure-lm", "structure-lm.f16.gguf")
    for name, path, guard in (("motion", model, True), ("motion, guard off", model, False),
                              ("torsion", torsion_model, False)):
        g = Generator(path, threads=args.threads)
        t0 = time.perf_counter()
        ens = g.generate(start, frames=8, walkers=4, window=4, seed=1, progress=False, guard=guard)
        total = time.perf_counter() - t0
        n = ens.tokens.shape[0] * ens.tokens.shape[1]
        compare[name] = {"model_frames_per_s": ens.info["frames_per_second"], "end_to_end_frames_per_s": n / total,
                         "guard": ens.info.get("guard")}
        rows.append([f"{name} tokens, 4 walkers, window 4", "model only", ens.info["frames_per_second"], float("nan")])
        rows.append([f"{name} tokens, 4 walkers, window 4", "end to end", n / total, float("nan")])
    compare["motion_over_torsion_model_only"] = (compare["motion, guard off"]["model_frames_per_s"]
                                                 / compare["torsion"]["model_frames_per_s"])
    result["compare"] = compare
    if args.compare_only:
        report(f"Generation, AdK {start.n_residues} residues, llama.cpp threads {args.threads or 'all'}",
               ["setting", "mode", "frames/s", "tokens/s"], rows, result)
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
    result["kv_shift_time_per_frame_ratio_w16_w2"] = per_window[2]["kv_shift_frames_per_s"] / per_window[16]["kv_shift_frames_per_s"]
    result["naive_time_per_frame_ratio_w16_w2"] = per_window[2]["naive_frames_per_s"] / per_window[16]["naive_frames_per_s"]

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
    report(f"Generation, AdK {start.n_residues} residues, llama.cpp threads {args.threads or 'all'}, model {model}",
           ["setting", "mode", "frames/s", "tokens/s"], rows, result)


if __name__ == "__main__":
    main()
