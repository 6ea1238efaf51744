"""Do generated ensembles look like the protein's own MD? Fine-tune on the first half of an MD
trajectory (``mdllm run --trajectory``, the library's ``mdllm.pipeline.run``), generate from its first
frame, and compare with the held-out second half.

For every protein and model kind (motion tokens, the new default, and torsion tokens, the baseline),
with the guard off and on:

- in basin: fraction of generated frames whose CA-RMSD to the start is at most the largest held-out
  frame's CA-RMSD to the start + 1 Å;
- Rg ratio: mean CA radius of gyration of the generated frames / of the held-out frames;
- RMSF r: Pearson correlation of per-residue CA RMSF (frames superposed on the start);
- RMSF ratio: mean per-residue CA RMSF of the generated frames / of the held-out frames (how much they
  move, where RMSF r says which residues move);
- JS: Jensen-Shannon distance (base 2) between the distributions of pairwise CA-RMSD within each set;
- valid raw / refined: fraction of frames passing mdllm.evaluate.check_backbone as decoded from the
  tokens, and as mdllm run writes them (refined, mdllm.geometry.refine; the guard judges these);
- links > 2 A: fraction of bonded residue pairs whose CA-CA distance, residues placed by their codes
  before projection, is more than 2 Å off the key frame's (the guard's residue rule): the raw model's
  broken links (after the guard, for guard-on rows);
- redrawn: fraction of frames the guard drew again; residues redrawn: fraction of residue draws the
  guard drew again at once because they broke the chain (the raw model's broken links);
- frames/s: generation speed of the language model (llama.cpp loop, guard included).

Two rows per protein and tokenizer kind say what the numbers are worth:
- "round trip": the held-out frames themselves encoded and decoded by the kind's tokenizer (the
  same decoding as generation, before refinement): what a perfect language model could reach at most,
  so "valid raw" there is the tokenizer's ceiling for the generated frames' "valid raw";
- "marginal": a baseline without a language model: each residue's token drawn on its own from that
  residue's tokens in the training half (its marginal), frames decoded and refined as generation does.
  It knows which residues move and how much, nothing about how neighbours or frames move together, and
  it cannot leave the training basin; a language model that does not beat it has learnt no more.
- "surrogate": a second baseline without a language model: frames of a linear model of the training
  half (mdllm.lm.surrogate: principal components, one AR(1) process each), encoded, decoded and refined
  as generation does. It knows how residues move together, as far as a Gaussian can, and nothing
  beyond the training basin. With --surrogate-frames N its frames also join the fine-tune.
- "base, no fine-tune" (motion kind): the base model itself, which has never seen the protein, generating
  from the start structure alone (guard off, refined as generation does): what a user with one
  structure and no MD gets; its "valid raw" is before refinement.
- "elastic network": a physics baseline that needs no MD but the amount of motion: an anisotropic
  network model of the start structure (LinearSurrogate.elastic_network), its mean CA RMSF set to the
  training half's, frames through the tokens as above.
The "MD 1st half" row (the training half against the held-out half) is the reference; its "valid raw"
is the MD's own validity.

Usage: python bench/realism.py [--proteins villin_2F4K ntl9_2HBB gb1_1GB1] [--frames 100 --walkers 4]
                               [--train-steps 200] [--surrogate-frames 0] [--code-smoothing 0]
                               [--motion-base models/motion-lm]
                               [--kinds motion torsion] [--constrain] [--repair] [--sampling-temperature T]
                               [--out runs/realism]
Proteins are data/md/<name>/T300K_gpu0 (or the run given by --run). Runs are cached by mdllm run's stages;
the guard-off and guard-on rows of a kind generate from the same fine-tuned model. ``--constrain``:
motion tokens drawn with constrained decoding (``mdllm run --constrain``, each residue judged as it will
be decoded; the "base, no fine-tune" row too); the rows say "constrained". ``--repair``: frame repair
(``mdllm run --repair``: residues with a validity fault redrawn among the model's likely codes once each
frame is drawn); the rows say "repaired" and "codes repaired" is the fraction of codes it changed.
``--sampling-temperature``:
of every generated row (``mdllm run --sampling-temperature``; default: the model's, 0.8 for motion and
1 for torsion tokens; each row records the one it used).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, report

from mdllm import tokenfile
from mdllm.evaluate.validity import radius_of_gyration_A as rg
from mdllm.io import load_backbone, save
from mdllm.pipeline import PRESETS, run
from dataclasses import replace

KINDS = {"motion": {"tokenizer": None, "base": None}, "torsion": {"tokenizer": "torsiontoken", "base": "structure-lm"}}


def ca_rmsd_to(xyz, ref) -> np.ndarray:
    from mdllm.geometry import rmsd

    return rmsd(np.ascontiguousarray(xyz[:, :, 1]), np.ascontiguousarray(ref[:, 1])) * 10.0


def rmsf(xyz, ref) -> np.ndarray:
    from mdllm.geometry import superpose

    ca = superpose(np.ascontiguousarray(xyz[:, :, 1]), np.ascontiguousarray(ref[:, 1]))[0].astype(np.float64) * 10.0
    return np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean(0))


def pairwise_js(a, b, bins: int = 40) -> float:
    from mdllm.geometry import pairwise_rmsd

    def values(x):
        x = x[np.random.default_rng(0).choice(len(x), min(len(x), 300), replace=False)]
        m = pairwise_rmsd(np.ascontiguousarray(x[:, :, 1])) * 10.0
        return m[np.triu_indices(len(x), 1)]

    va, vb = values(a), values(b)
    edges = np.linspace(0, max(va.max(), vb.max()) + 1e-6, bins + 1)
    p = np.histogram(va, edges)[0] + 1e-12
    q = np.histogram(vb, edges)[0] + 1e-12
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    js = 0.5 * (p * np.log2(p / m)).sum() + 0.5 * (q * np.log2(q / m)).sum()
    return float(np.sqrt(max(js, 0.0)))


def rmsf_ratio(xyz, held, ref) -> float:
    return float(rmsf(xyz, ref).mean() / rmsf(held, ref).mean())


def _encode(tok, xyz, ref, fine: bool = False):
    """(codes, fine codes or None): with ``fine`` (a model with fine codes) the tokenizer's fine stage too."""
    if not tok.needs_key_frame:
        return tok.encode(xyz), None
    if fine:
        return tok.encode_fine(xyz, ref[None])
    return tok.encode(xyz, ref[None]), None


def _decode(tok, coded, ref, sequence: str) -> np.ndarray:
    """(codes, fine codes or None) decoded as generation decodes them (motion: key = ``ref``)."""
    from mdllm.encoding import decode_tokens

    codes, fine = coded
    return decode_tokens(tok, codes, ref if tok.needs_key_frame else None, sequence=sequence, fine=fine)


def marginal_baseline(tok, first, ref, sequence: str, n_frames: int, seed: int, fine: bool = False):
    """(raw, refined) frames whose residues each take a token (with its fine token) drawn from that
    residue's tokens in ``first`` (the training half), independently of every other residue and frame."""
    from mdllm.geometry.refine import refine_backbones

    tokens, fine_codes = _encode(tok, first, ref, fine)
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.integers(0, len(tokens), n_frames) for _ in range(tokens.shape[1])], axis=1)
    columns = np.arange(tokens.shape[1])[None]
    drawn = (tokens[rows, columns], None if fine_codes is None else fine_codes[rows, columns])
    raw = _decode(tok, drawn, ref, sequence)
    return raw, refine_backbones(raw, sequence)


def surrogate_baseline(tok, first, ref, sequence: str, n_frames: int, seed: int, fine: bool = False):
    """(raw, refined) frames of a linear surrogate of ``first`` (the training half), through the tokens."""
    from mdllm.geometry.refine import refine_backbones
    from mdllm.lm.surrogate import LinearSurrogate

    frames = LinearSurrogate.fit([first], ref).sample(n_frames, seed=seed)
    raw = _decode(tok, _encode(tok, frames, ref, fine), ref, sequence)
    return raw, refine_backbones(raw, sequence)


def elastic_baseline(tok, first, ref, sequence: str, n_frames: int, seed: int, fine: bool = False):
    """(raw, refined) frames of an elastic network model of ``ref`` moving as much as ``first``."""
    from mdllm.geometry.refine import refine_backbones
    from mdllm.lm.surrogate import LinearSurrogate

    frames = LinearSurrogate.elastic_network(ref, rmsf_A=float(rmsf(first, ref).mean())).sample(n_frames, seed=seed)
    raw = _decode(tok, _encode(tok, frames, ref, fine), ref, sequence)
    return raw, refine_backbones(raw, sequence)


def sampling_temperature(args, kind: str) -> float:
    """The temperature a row of ``kind`` draws at: ``--sampling-temperature`` or the model's default."""
    from mdllm.generate import default_temperature

    if args.sampling_temperature is not None:
        return args.sampling_temperature
    return default_temperature(kind == "motion")


def zero_shot(base, start, args, guard: bool) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """(raw, refined) frames, info and codes of the base model generating from ``start`` without fine-tuning."""
    from mdllm.encoding import decode_tokens
    from mdllm.generate import Generator
    from mdllm.sampling import SamplingParams

    gen = Generator(base, threads=args.threads)
    ens = gen.generate(
        start,
        frames=args.frames,
        walkers=args.walkers,
        window=4,
        seed=args.seed,
        guard=guard,
        progress=False,
        constrain=args.constrain,
        repair=args.repair,
        params=SamplingParams(temperature=sampling_temperature(args, "motion")),
    )
    generated = ens.backbone()
    xyz = generated.xyz  # walker-major, as the pipeline writes them
    raw = decode_tokens(gen.tokenizer, ens.tokens, ens.key_xyz, sequence=generated.sequence, fine=ens.fine)
    return raw.reshape(xyz.shape), xyz, ens.info, ens.tokens


def broken_links(tok, codes, key, sequence: str):
    """Fraction of linked residue pairs whose CA-CA distance, residues placed by their codes (before
    projection), is more than the guard's residue tolerance off the key's (mdllm.generate.GuardLimits):
    the links the guard would draw again. None for tokens without a key frame."""
    if not tok.needs_key_frame:
        return None
    from mdllm.generate import GuardLimits

    link = GuardLimits().link_constraint(tok.codebook, key, sequence)
    codes = np.asarray(codes).reshape(-1, len(sequence))
    pairs = [j for j in range(1, len(sequence)) if link.core.linked(j - 1)]
    kept = [link.allows(j, c, c[j]) for c in codes for j in pairs]
    return 1.0 - float(np.mean(kept)) if kept else 0.0


def compare(frames, held, ref) -> dict:
    """The realism numbers of ``frames`` against the held-out frames ``held`` (both superposed on ``ref``)."""
    held_rmsd = ca_rmsd_to(held, ref)
    return {
        "in_basin": float((ca_rmsd_to(frames, ref) <= held_rmsd.max() + 1.0).mean()),
        "rg_ratio": float(rg(frames).mean() / rg(held).mean()),
        "rmsf_r": float(np.corrcoef(rmsf(frames, ref), rmsf(held, ref))[0, 1]),
        "rmsf_ratio": rmsf_ratio(frames, held, ref),
        "js_pairwise": pairwise_js(frames, held),
    }


def valid_fraction(xyz, sequence) -> float:
    from mdllm.evaluate import check_backbone

    return float(check_backbone(xyz, sequence).valid.mean())


def measure(protein: str, run_name: str, kind: str, guard: bool, args) -> dict:
    from mdllm.encoding import load_tokenizers

    folder = ROOT / "data" / "md" / protein / run_name
    md = load_backbone(folder / "trajectory.xtc", top=folder / "trajectory.pdb")
    half = md.n_frames // 2
    work = Path(args.out) / protein
    work.mkdir(parents=True, exist_ok=True)
    start, train = work / "start.pdb", work / "train.xtc"
    if not start.exists():
        save(md[0:1], start)
        save(md[:half], train)
    held = md.xyz[half:]
    preset = replace(
        PRESETS["quick"],
        train_steps=args.train_steps,
        frames=args.frames,
        walkers=args.walkers,
        refine=True,
        rebuild=0,
        guard=guard,
        constrain=args.constrain and kind == "motion",
        repair=args.repair and kind == "motion",
        sampling_temperature=args.sampling_temperature,
        train_window=4,
        window=4,
        lora_rank=PRESETS["quick"].lora_rank if args.lora_rank is None else args.lora_rank,
        surrogate_frames=args.surrogate_frames,
        code_smoothing_A=args.code_smoothing,
    )
    t0 = time.perf_counter()
    summary = run(
        start,
        work / kind,  # guard off and on: one fine-tune, generated again (the stages' cache redoes what differs)
        trajectories=[train],
        top=work / "train.pdb",
        preset=preset,
        base=(args.motion_base if kind == "motion" else None)
        or (KINDS[kind]["base"] and ROOT / "models" / KINDS[kind]["base"]),
        tokenizer=KINDS[kind]["tokenizer"],
        seed=args.seed,
        threads=args.threads,
    )
    gen_dir = Path(summary["generated"]).parent
    gen = load_backbone(summary["generated"], top=Path(summary["generated"]).with_suffix(".pdb"))
    info = json.loads(Path(summary["generated"]).with_suffix(".json").read_text())
    xyz = gen.xyz
    ref = md.xyz[0]
    held_rmsd = ca_rmsd_to(held, ref)
    gen_rmsd = ca_rmsd_to(xyz, ref)
    # the pipeline writes refined frames (the guard judged them so); the raw frames are the decoded tokens
    generated = tokenfile.load(Path(summary["generated"]).with_name("generated.tokens.npz"))
    tokens, key = generated.tokens, generated.key_xyz
    fine = generated.fine is not None  # a model with fine codes: every row below goes through them too
    tok = load_tokenizers(KINDS[kind]["tokenizer"])[0]
    raw = _decode(tok, (tokens, generated.fine), key, md.sequence).reshape(xyz.shape)
    g = info.get("guard") or {}
    first = md.xyz[:half]

    held_codes = _encode(tok, held, ref, fine)
    trip = _decode(tok, held_codes, ref, md.sequence)  # the round trip
    marginal_raw, marginal = marginal_baseline(tok, first, ref, md.sequence, len(xyz), args.seed, fine)
    surrogate_raw, surrogate = surrogate_baseline(tok, first, ref, md.sequence, len(xyz), args.seed, fine)
    elastic_raw, elastic = elastic_baseline(tok, first, ref, md.sequence, len(xyz), args.seed, fine)
    extra = {}
    if kind == "motion":
        base_dir = Path(args.motion_base) if args.motion_base else ROOT / "models" / "motion-lm"
        base_raw, base_xyz, base_info, base_codes = zero_shot(base_dir / "motion-lm.f16.gguf", start, args, guard)
        extra["zero_shot"] = {
            **compare(base_xyz, held, ref),
            "valid_raw": valid_fraction(base_raw, md.sequence),
            "broken_links": broken_links(tok, base_codes, ref, md.sequence),
            "valid_refined": valid_fraction(base_xyz, md.sequence),
            "redrawn": (base_info.get("guard") or {}).get("redraw_fraction"),
            "residues_redrawn": (base_info.get("guard") or {}).get("residue_redraw_fraction"),
            "codes_repaired": (base_info.get("repair") or {}).get("code_fraction_changed"),
            "frames_per_second": base_info["frames_per_second"],
        }
    return {
        **extra,
        "elastic_network": {
            **compare(elastic, held, ref),
            "valid_raw": valid_fraction(elastic_raw, md.sequence),
            "valid_refined": valid_fraction(elastic, md.sequence),
        },
        "surrogate": {
            **compare(surrogate, held, ref),
            "valid_raw": valid_fraction(surrogate_raw, md.sequence),
            "valid_refined": valid_fraction(surrogate, md.sequence),
        },
        "marginal": {
            **compare(marginal, held, ref),
            "valid_raw": valid_fraction(marginal_raw, md.sequence),
            "valid_refined": valid_fraction(marginal, md.sequence),
        },
        "round_trip": {
            **compare(trip, held, ref),
            "valid_raw": valid_fraction(trip, md.sequence),
            "broken_links": broken_links(tok, held_codes[0], ref, md.sequence),
        },
        # the ceiling: the training half itself compared with the held-out half in the same way
        "md_first_half": {**compare(first, held, ref), "valid": valid_fraction(first, md.sequence)},
        "protein": protein,
        "residues": md.n_residues,
        "md_frames": md.n_frames,
        "kind": kind,
        "guard": guard,
        "constrain": args.constrain and kind == "motion",
        "repair": args.repair and kind == "motion",
        "sampling_temperature": sampling_temperature(args, kind),
        **compare(xyz, held, ref),
        "gen_rmsd_median_A": float(np.median(gen_rmsd)),
        "held_rmsd_median_A": float(np.median(held_rmsd)),
        "valid_raw": valid_fraction(raw, md.sequence),
        "broken_links": broken_links(tok, tokens, key, md.sequence),
        "valid_refined": valid_fraction(xyz, md.sequence),
        "redrawn": g.get("redraw_fraction"),
        "residues_redrawn": g.get("residue_redraw_fraction"),
        "codes_repaired": (info.get("repair") or {}).get("code_fraction_changed"),
        "frames_per_second": info["frames_per_second"],
        "wall_seconds": time.perf_counter() - t0,
        "generated": str(gen_dir),
    }


def _or_dash(value):
    return "-" if value is None else value


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proteins", nargs="+", default=["villin_2F4K", "ntl9_2HBB", "gb1_1GB1"])
    p.add_argument("--run", default="T300K_gpu0", help="run folder of data/md/<protein>/")
    p.add_argument("--kinds", nargs="+", default=["motion", "torsion"], choices=sorted(KINDS))
    p.add_argument("--guard", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--walkers", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument(
        "--lora-rank", type=int, help="LoRA rank of the fine-tune (0: all weights; default: the quick preset's)"
    )
    p.add_argument(
        "--surrogate-frames", type=int, default=0, help="frames of the linear surrogate added to the fine-tune"
    )
    p.add_argument(
        "--code-smoothing", type=float, default=0.0, help="width (Å) of the soft fine-tuning targets over codes"
    )
    p.add_argument("--motion-base", help="base model folder of the motion kind (default: models/motion-lm)")
    p.add_argument(
        "--constrain", action="store_true", help="motion tokens: constrained decoding (mdllm run --constrain)"
    )
    p.add_argument(
        "--repair", action="store_true", help="motion tokens: frame repair of each drawn frame (mdllm run --repair)"
    )
    p.add_argument(
        "--sampling-temperature",
        type=float,
        help="of the language models' draws (mdllm run; default: the model's, 0.8 motion, 1 torsion)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "realism"))
    args = p.parse_args()
    rows, results = [], []
    for protein in args.proteins:
        reference_done, trips_done = False, set()
        for kind in args.kinds:
            for guard in args.guard:
                if kind == "torsion" and guard == "on":
                    continue  # the guard needs a key frame: motion tokens only
                r = measure(protein, args.run, kind, guard == "on", args)
                label = kind + (", constrained" if r["constrain"] else "") + (", repaired" if r["repair"] else "")
                results.append(r)
                if not reference_done:
                    m = r["md_first_half"]
                    rows.append(
                        [protein, r["residues"], "MD 1st half", "-", m["in_basin"], m["rg_ratio"], m["rmsf_r"]]
                        + [m["rmsf_ratio"], m["js_pairwise"], m["valid"], "-", "-", "-", "-", "-", "-"]
                    )
                    reference_done = True
                if kind not in trips_done:
                    t = r["round_trip"]
                    rows.append(
                        [protein, r["residues"], f"{kind} round trip", "-", t["in_basin"], t["rg_ratio"], t["rmsf_r"]]
                        + [t["rmsf_ratio"], t["js_pairwise"], t["valid_raw"], _or_dash(t.get("broken_links"))]
                        + ["-", "-", "-", "-", "-"]
                    )
                    for baseline in ("marginal", "surrogate", "elastic_network"):
                        b = r[baseline]
                        rows.append(
                            [
                                protein,
                                r["residues"],
                                f"{kind} {baseline.replace('_', ' ')}",
                                "-",
                                b["in_basin"],
                                b["rg_ratio"],
                            ]
                            + [b["rmsf_r"], b["rmsf_ratio"], b["js_pairwise"], b["valid_raw"], "-"]
                            + [b["valid_refined"], "-", "-", "-", "-"]
                        )
                    trips_done.add(kind)
                if "zero_shot" in r:
                    z = r["zero_shot"]
                    rows.append(
                        [protein, r["residues"], f"{label} base, no fine-tune", guard, z["in_basin"], z["rg_ratio"]]
                        + [
                            z["rmsf_r"],
                            z["rmsf_ratio"],
                            z["js_pairwise"],
                            z["valid_raw"],
                            _or_dash(z.get("broken_links")),
                        ]
                        + [z["valid_refined"]]
                        + [_or_dash(z["redrawn"]), _or_dash(z.get("residues_redrawn"))]
                        + [_or_dash(z.get("codes_repaired")), z["frames_per_second"]]
                    )
                rows.append(
                    [protein, r["residues"], label, guard, r["in_basin"], r["rg_ratio"], r["rmsf_r"], r["rmsf_ratio"]]
                    + [r["js_pairwise"], r["valid_raw"], _or_dash(r.get("broken_links")), r["valid_refined"]]
                    + [_or_dash(r["redrawn"]), _or_dash(r.get("residues_redrawn"))]
                    + [_or_dash(r.get("codes_repaired")), r["frames_per_second"]]
                )
    report(
        "Generated ensembles against held-out MD (second half of each trajectory)",
        [
            "protein",
            "L",
            "tokens",
            "guard",
            "in basin",
            "Rg ratio",
            "RMSF r",
            "RMSF ratio",
            "JS",
            "valid raw",
            "links > 2 A",
            "valid refined",
            "redrawn",
            "residues redrawn",
            "codes repaired",
            "frames/s",
        ],
        rows,
        {
            "bench": "realism",
            "results": results,
            "frames": args.frames,
            "walkers": args.walkers,
            "train_steps": args.train_steps,
            "lora_rank": args.lora_rank,
            "surrogate_frames": args.surrogate_frames,
            "code_smoothing_A": args.code_smoothing,
            **machine(),
        },
    )


if __name__ == "__main__":
    main()
