"""Constrained decoding (mdllm.sampling.constraint) on the held-out proteins' fine-tuned motion models:
raw validity (decode_tokens + check_backbone, no guard, no refinement) and the realism numbers of
bench/realism.py with and without the constraint, same seed.

    python bench/constrained.py [--out runs/realism] [--walkers 4] [--frames 100] [--tolerance 0.03 ...] [--previous-rule]
                                [--mask-only] [--repair] [--proteins ...] [--seed 0 [1 2 3]] [--sampling-temperature 0.8]

With the shipped causal context decoder each draw is also judged as decoded (``decoded_tries``);
``--mask-only`` adds rows without that check (the session-15 rule). ``--repair`` adds rows of frame
repair (mdllm.sampling.repair: unconstrained draws, then residues with a validity fault redrawn among the
model's likely codes), "codes_repaired" the fraction of codes it changed.

Several generation seeds (``--seed 0 1 2 3``) give one row per seed and a summary per protein and
setting: the mean and the worst seed of each number (one seed's RMSF r on 4 x 100 frames moves by up
to 0.2 on NTL9).

--out is a bench/realism.py output folder (its fine-tuned models OUT/<protein>/motion/export/model.gguf).

Held-out = the second half of data/md/<protein>/T300K_rep1/trajectory.xtc; key/reference = its frame 0.
Prints a table and one final JSON line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import report, table  # noqa: E402
from realism import compare  # noqa: E402

PROTEINS = ["trpcage_2JOF", "bba_1FME", "villin_2F4K"]


def measure(
    out: Path,
    protein: str,
    walkers: int,
    frames: int,
    tolerances: list[float],
    seed: int = 0,
    threads: int = 0,
    previous_rule: bool = False,
    mask_only: bool = False,
    temperature: float | None = None,  # None: the model's default
    repair: bool = False,
) -> list[dict]:
    from mdllm.encoding import decode_tokens
    from mdllm.evaluate import check_backbone
    from mdllm.generate import Generator
    from mdllm.io import load_backbone
    from mdllm.sampling import SamplingParams
    from mdllm.sampling.constraint import ConstraintLimits

    md_dir = ROOT / "data/md" / protein / "T300K_rep1"
    md = load_backbone(md_dir / "trajectory.xtc", top=md_dir / "trajectory.pdb")
    held, ref = md.xyz[md.n_frames // 2 :], md.xyz[0]
    run = out / protein
    gen = Generator(run / "motion/export/model.gguf", threads=threads)
    rows = []
    # the rule before 2026-12-06 (session 15): links by C-N and CA-CA only, overlap as the check, no relaxation
    previous = dict(link_angles=False, relax_when_empty=False, clash_overlap_nm=0.07)
    settings = [(None, {})] + [(t, {}) for t in tolerances] + [(t, previous) for t in tolerances if previous_rule]
    # the session-15 mask without the decoded check (which needs a causal context decoder)
    settings += [(t, dict(decoded_tries=0)) for t in tolerances if mask_only]
    settings += [(None, dict(repair=True))] if repair else []  # frame repair instead of the constraint
    for tol, rule in settings:
        t0 = time.perf_counter()
        rule = dict(rule)
        repaired = rule.pop("repair", False)
        ens = gen.generate(
            run / "start.pdb",
            frames=frames,
            walkers=walkers,
            seed=seed,
            progress=False,
            guard=False,
            refine=False,
            constrain=tol is not None,
            constraint_limits=ConstraintLimits(tolerance_nm=tol or 0.03, **rule),
            repair=repaired,
            params=None if temperature is None else SamplingParams(temperature=temperature),
        )
        wall = time.perf_counter() - t0
        raw = decode_tokens(
            gen.tokenizer, ens.tokens.reshape(-1, ens.tokens.shape[-1]), ens.key_xyz, sequence=md.sequence
        )
        rep = check_backbone(raw, md.sequence)
        c = ens.info["constraint"] or {}
        rows.append(
            dict(
                protein=protein,
                seed=seed,
                constraint="repair" if repaired else "off" if tol is None else f"tol {tol:g} nm" + _rule_name(rule),
                valid_raw=float(rep.valid.mean()),
                rama_outlier_fraction=float(rep.rama_outlier_fraction.mean()),
                clashes_per_frame=float(rep.n_clashes.mean()),
                bond_angle_outliers_per_frame=float((rep.n_bond_outliers + rep.n_angle_outliers).mean()),
                **compare(raw, held, ref),
                mean_frame_loglik=float(ens.frame_loglik.mean()),
                empty_mask_fraction=c.get("empty_masks", 0) / max(c.get("constrained_draws", 0), 1) if c else None,
                decoded_kept_fraction=c.get("decoded_kept", 0) / max(c.get("constrained_draws", 0), 1) if c else None,
                codes_repaired=(ens.info.get("repair") or {}).get("code_fraction_changed"),
                mean_allowed_codes=c.get("mean_allowed_codes"),
                frames_per_second=float(ens.info["frames_per_second"]),
                wall_seconds=wall,
            )
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _rule_name(rule: dict) -> str:
    if "decoded_tries" in rule:
        return ", mask only"
    return ", previous rule" if rule else ""


def main(argv=None) -> None:
    from mdllm.generate import MOTION_SAMPLING_TEMPERATURE

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--walkers", type=int, default=4)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument(
        "--tolerance",
        type=float,
        nargs="*",
        default=[0.03],
        help="constraint tolerances (nm; none: no constrained rows)",
    )
    p.add_argument("--out", default=str(ROOT / "runs" / "realism"), help="output folder of bench/realism.py")
    p.add_argument("--proteins", nargs="+", default=PROTEINS)
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="generation seeds (one row each, then a summary)")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores; 1 on a busy machine)")
    p.add_argument(
        "--previous-rule", action="store_true", help="also each tolerance by the rule before session 15 (links only)"
    )
    p.add_argument("--mask-only", action="store_true", help="also each tolerance without the decoded check")
    p.add_argument(
        "--repair", action="store_true", help="also frame repair of unconstrained draws (mdllm generate --repair)"
    )
    p.add_argument(
        "--sampling-temperature",
        type=float,
        default=MOTION_SAMPLING_TEMPERATURE,
        help=f"of every row's draws (default {MOTION_SAMPLING_TEMPERATURE:g}, as mdllm generate's for motion tokens)",
    )
    args = p.parse_args(argv)
    rows = [
        r
        for protein in args.proteins
        for seed in args.seed
        for r in measure(
            Path(args.out),
            protein,
            args.walkers,
            args.frames,
            args.tolerance,
            seed,
            args.threads,
            args.previous_rule,
            args.mask_only,
            args.sampling_temperature,
            args.repair,
        )
    ]
    columns = [
        "protein",
        "seed",
        "constraint",
        "valid_raw",
        "rama_outlier_fraction",
        "clashes_per_frame",
        "bond_angle_outliers_per_frame",
        "in_basin",
        "rg_ratio",
        "rmsf_r",
        "rmsf_ratio",
        "mean_frame_loglik",
        "empty_mask_fraction",
        "decoded_kept_fraction",
        "codes_repaired",
        "frames_per_second",
    ]
    title = (
        f"constrained decoding: {args.walkers} walkers x {args.frames} frames, guard off, refine off, "
        f"seeds {' '.join(map(str, args.seed))}, sampling temperature {args.sampling_temperature:g}"
    )
    rows_table = [[r[c] if r[c] is not None else "-" for c in columns] for r in rows]
    summary = summarize(rows)
    if len(args.seed) > 1:
        table(title, columns, rows_table)
        print()
        title += ": mean over seeds; *_min and *_worst: the worst seed"
        columns = list(summary[0])
        rows_table = [list(r.values()) for r in summary]
    report(
        title,
        columns,
        rows_table,
        {
            "bench": "constrained",
            "walkers": args.walkers,
            "frames": args.frames,
            "seeds": args.seed,
            "sampling_temperature": args.sampling_temperature,
            "rows": rows,
            "summary": summary,
        },
    )


def summarize(rows: list[dict]) -> list[dict]:
    """Per protein and constraint setting: the seeds' mean of each number and the worst seed's value
    (lowest valid fraction, basin fraction and RMSF r; Rg ratio furthest from 1)."""
    import numpy as np

    out = []
    for key in dict.fromkeys((r["protein"], r["constraint"]) for r in rows):
        group = [r for r in rows if (r["protein"], r["constraint"]) == key]
        col = {
            name: np.array([r[name] for r in group], float)
            for name in (
                "valid_raw",
                "in_basin",
                "rg_ratio",
                "rmsf_r",
                "rmsf_ratio",
                "js_pairwise",
                "frames_per_second",
            )
        }
        rg = col["rg_ratio"]
        out.append(
            {
                "protein": key[0],
                "constraint": key[1],
                "seeds": len(group),
                "valid_raw": float(col["valid_raw"].mean()),
                "valid_raw_min": float(col["valid_raw"].min()),
                "in_basin": float(col["in_basin"].mean()),
                "in_basin_min": float(col["in_basin"].min()),
                "rg_ratio": float(rg.mean()),
                "rg_ratio_worst": float(rg[np.abs(rg - 1).argmax()]),
                "rmsf_r": float(col["rmsf_r"].mean()),
                "rmsf_r_min": float(col["rmsf_r"].min()),
                "rmsf_ratio": float(col["rmsf_ratio"].mean()),
                "js_pairwise": float(col["js_pairwise"].mean()),
                "frames_per_second": float(col["frames_per_second"].mean()),
            }
        )
    return out


if __name__ == "__main__":
    main()
