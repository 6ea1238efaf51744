"""Motion codes: one code per residue vs a coarse + fine (residual) pair, at tokenizer level.

Experiment (numpy only, not wired into the product). For each variant and trajectory: median backbone
RMSD of the round trip (exact placement, and after mdllm.geometry.projection), robustness (CA-RMSD
moved by replacing 5 % of one frame's tokens -- of EACH stage for a two-code variant -- by their
nearest other code, median of 20 tries), flicker (tokens that change between neighbouring frames, per
stage), the valid fraction of the decoded + projected frames (mdllm.evaluate.check_backbone) and the MD
frames' own valid fraction (the ceiling); validity also after 300 projection iterations instead of the
product's 60 (what is left once the projection has converged). Key = first frame of every trajectory (as in RECIPE.md).

Variants (codebooks cached under runs/motion-codes/, trained on the shipped tokenizer's exact training
samples: models/motiontoken/config.json "_training.sources", 8 keys, seed 0 -> 311,912 vectors):
  1x4096        the shipped codebook (models/motiontoken)
  2x4096+256    shipped codebook, then k-means (K2 = 256) of the residuals d - c1[t1]
  2x4096+1024   same, K2 = 1024
  1x8192        one code per residue, k-means K = 8192 of the same samples
  2x1024+1024   new K1 = 1024, then K2 = 1024 of its residuals (same bits per residue as 4096+256)
  1x4096-big    one code, K = 4096, samples with RMS displacement > 2 A counted 4 times
  3x4096+1024+1024  a third stage on the residuals of 2x4096+1024 (how fine must codes be?)
  ...           see VARIANTS

Usage: nice -n 5 python bench/motion_codes.py [--variants 1x4096,2x4096+256] [--iters 20]
Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "motion-codes"

HELD_OUT = [  # (name, traj, top)
    (
        "Trp-cage 300K rep1",
        "data/md/trpcage_2JOF/T300K_rep1/trajectory.xtc",
        "data/md/trpcage_2JOF/T300K_rep1/trajectory.pdb",
    ),
    ("BBA 300K rep1", "data/md/bba_1FME/T300K_rep1/trajectory.xtc", "data/md/bba_1FME/T300K_rep1/trajectory.pdb"),
    (
        "villin 300K rep1",
        "data/md/villin_2F4K/T300K_rep1/trajectory.xtc",
        "data/md/villin_2F4K/T300K_rep1/trajectory.pdb",
    ),
    ("NTL9 300K", "data/md/ntl9_2HBB/T300K_rep0/trajectory.xtc", "data/md/ntl9_2HBB/T300K_rep0/trajectory.pdb"),
    ("NTL9 360K", "data/md/ntl9_2HBB/T360K_rep0/trajectory.xtc", "data/md/ntl9_2HBB/T360K_rep0/trajectory.pdb"),
    ("AdK DIMS2 (held out)", "data/adk/adk_dims2.xtc", "data/adk/adk_dims2.pdb"),
    ("AdK GBIS TMD (held out)", "data/adk/adk_gbis_tmd-fast1_NAMD.xtc", "data/adk/adk_gbis_tmd-fast1_NAMD.pdb"),
    ("AdK DIMS (trained on)", "data/adk/adk_dims.xtc", "data/adk/adk_dims.pdb"),
]

# variant -> list of codebook names (stages); codebook names are built by `codebook()`
VARIANTS = {
    "1x4096": ["shipped"],
    "2x4096+256": ["shipped", "res256@shipped"],
    "2x4096+1024": ["shipped", "res1024@shipped"],
    "1x8192": ["km8192"],
    "2x1024+1024": ["km1024", "res1024@km1024"],
    "1x4096-big": ["km4096big"],
    "3x4096+1024+1024": ["shipped", "res1024@shipped", "res1024@shipped+res1024@shipped"],
}


# --- training ----------------------------------------------------------------------------------------
def training_samples() -> np.ndarray:
    """The shipped tokenizer's training vectors, exactly (same sources, order, keys and seed)."""
    path = CACHE / "samples.npy"
    if path.exists():
        return np.load(path)
    from mdllm.tokenizer.data import load_md_frames
    from mdllm.tokenizer.motion_train import displacement_samples

    cfg = json.loads((ROOT / "models/motiontoken/config.json").read_text())["_training"]
    trajs = [load_md_frames(str(ROOT / s.split(":")[0]) + ":" + str(ROOT / s.split(":")[1])) for s in cfg["sources"]]
    samples = displacement_samples(trajs, cfg["keys_per_trajectory"], 400_000, np.random.default_rng(cfg["seed"]))
    assert len(samples) == cfg["samples"], (len(samples), cfg["samples"])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, samples)
    return samples


def nearest(x, cb, chunk: int = 8192):
    """Nearest code (float64, squared Euclidean) of every row of x (N, 12)."""
    x = np.asarray(x, np.float64)
    cb = np.asarray(cb, np.float64)
    cc = (cb * cb).sum(1)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = (cc[None] - 2.0 * x[s : s + chunk] @ cb.T).argmin(1)
    return out


def _kmeans(x, k, iters, seed):
    """motion_train.kmeans (Lloyd, random start, empty codes re-seeded) on float32 for speed; codes
    ordered by size as train_motion does."""
    from mdllm.tokenizer.motion_train import kmeans

    t0 = time.perf_counter()
    centres, stats = kmeans(np.ascontiguousarray(x, np.float32), k, iters, np.random.default_rng(seed), progress=False)
    centres = centres.astype(np.float64)
    centres = centres[np.argsort((centres**2).sum(1), kind="stable")]
    print(
        f"  k-means K={k}: {len(x)} samples, {iters} iterations, {(time.perf_counter() - t0) / 60:.1f} min, "
        f"RMS atom error {stats['rms_atom_error_A']:.3f} A",
        flush=True,
    )
    return centres


def codebook(name: str, iters: int) -> np.ndarray:
    """'shipped' | 'km<K>' | 'km<K>big' | 'res<K>@<stage names joined by +>' (the residuals left by those
    stages; cached under runs/motion-codes/)."""
    if name == "shipped":
        from mdllm.tokenizer.motion import MotionTokenizer

        return MotionTokenizer.load(ROOT / "models/motiontoken", backend="numpy").codebook.astype(np.float64)
    path = CACHE / f"{name.replace('@', '_at_').replace('+', '_then_')}-it{iters}.npy"
    if path.exists():
        return np.load(path)
    x = training_samples()
    if name.startswith("res"):
        k, _, base = name[3:].partition("@")
        x = x - quantise(x, [codebook(b, iters) for b in base.split("+")])[1]
        cb = _kmeans(x, int(k), iters, 1)
    elif name.endswith("big"):
        # one code per residue, codes moved towards large displacements: every sample whose RMS atom
        # displacement exceeds 2 A is counted 4 times (i.e. the k-means is weighted by magnitude)
        rms_a = np.sqrt((x**2).sum(1) / 4) * 10
        x = np.concatenate([x] + [x[rms_a > 2.0]] * 3)
        print(f"  {int((rms_a > 2.0).sum())} of {len(rms_a)} samples > 2 A repeated 3 more times", flush=True)
        cb = _kmeans(x, int(name[2:-3]), iters, 0)
    else:
        cb = _kmeans(x, int(name[2:]), iters, 0)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, cb)
    return cb


# --- evaluation --------------------------------------------------------------------------------------
def quantise(d, books):
    """Residual quantisation of d (N, 12): tokens per stage and the decoded displacement."""
    rec = np.zeros_like(d)
    toks = []
    for cb in books:
        t = nearest(d - rec, cb)
        rec = rec + cb[t]
        toks.append(t)
    return toks, rec


def place(disp, key, rot):
    """Key (L, 4, 3) + displacements (F, L, 12) in the key residues' frames -> (F, L, 4, 3)."""
    f, l = disp.shape[:2]
    return key[None] + np.einsum("lij,flaj->flai", rot, disp.reshape(f, l, 4, 3))


def nearest_other(cb):
    sq = (cb**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * cb @ cb.T
    np.fill_diagonal(dist, np.inf)
    return dist.argmin(1)


def perplexity(tokens, k):
    p = np.bincount(np.concatenate(tokens), minlength=k).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def evaluate(books, trajs, tries: int = 20, seed: int = 0):
    from mdllm.evaluate.validity import check_backbone
    from mdllm.geometry.projection import project_to_key_geometry
    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom
    from mdllm.tokenizer.motion import displacements, key_frames, superpose_on_key

    others = [nearest_other(cb) for cb in books]
    rng = np.random.default_rng(seed)
    rows, all_toks = {}, [[] for _ in books]
    for name, bb in trajs.items():
        key = bb.xyz[0].astype(np.float64)
        rot = key_frames(key)
        d = displacements(bb.xyz, key)  # (F, L, 12)
        f, l = d.shape[:2]
        toks, rec = quantise(d.reshape(-1, 12), books)
        toks = [t.reshape(f, l) for t in toks]
        placed = place(rec.reshape(f, l, 12), key, rot)
        # 60 Jacobi iterations (the product's projection when these codebooks were compared); 300, the
        # product's now, show what is left once it has converged
        projected = project_to_key_geometry(placed.astype(np.float32), key.astype(np.float32), iterations=60)
        truth = superpose_on_key(bb.xyz, key)
        rep = check_backbone(projected, bb.sequence, bb.chain_ids)
        rep300 = check_backbone(
            project_to_key_geometry(placed.astype(np.float32), key.astype(np.float32), iterations=300),
            bb.sequence,
            bb.chain_ids,
        )
        moved = []
        for _ in range(tries):
            fr = rng.integers(f)
            disp = np.zeros((1, l, 12))
            for t, cb, oth in zip(toks, books, others):
                s = t[fr].copy()
                picks = rng.choice(l, size=max(1, round(0.05 * l)), replace=False)
                s[picks] = oth[s[picks]]
                disp[0] += cb[s]
            b = place(disp, key, rot)[0, :, 1]
            moved.append(float(np.sqrt(((placed[fr, :, 1] - b) ** 2).sum(-1).mean()) * 10))
        for i, t in enumerate(toks):
            all_toks[i].append(t.ravel())
        reasons = rep.summary()["invalid_frames_by_reason"]
        rows[name] = {
            "frames": f,
            "residues": l,
            "rmsd_placed_A": float(np.median(backbone_rmsd_angstrom(placed, truth))),
            "rmsd_projected_A": float(np.median(backbone_rmsd_angstrom(projected, truth))),
            "robustness_ca_A": float(np.median(moved)),
            "flicker": [float((t[1:] != t[:-1]).mean()) for t in toks],
            "valid": float(rep.valid.mean()),
            "invalid_by_reason": reasons,
            "valid_proj300": float(rep300.valid.mean()),
            "invalid_by_reason_proj300": rep300.summary()["invalid_frames_by_reason"],
        }
    ppl = [perplexity(t, len(cb)) for t, cb in zip(all_toks, books)]
    return rows, ppl


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    ap.add_argument("--iters", type=int, default=20, help="k-means iterations of new codebooks")
    ap.add_argument("--only", default=None, help="comma-separated substrings of trajectory names to keep")
    args = ap.parse_args()

    from mdllm.evaluate.validity import check_backbone
    from mdllm.io import load_backbone
    from mdllm.tokenizer.motion import MotionTokenizer

    t_start = time.perf_counter()
    trajs = {}
    for name, xtc, top in HELD_OUT:
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        trajs[name] = load_backbone(ROOT / xtc, top=ROOT / top)
    ceiling = {n: float(check_backbone(bb).valid.mean()) for n, bb in trajs.items()}

    # sanity: the numpy stage-1 tokens of the shipped codebook are the product tokenizer's
    tok = MotionTokenizer.load(ROOT / "models/motiontoken")
    from mdllm.tokenizer.motion import displacements

    bb = next(iter(trajs.values()))
    mine = nearest(displacements(bb.xyz, bb.xyz[0]).reshape(-1, 12), codebook("shipped", args.iters))
    agree = float((tok.encode(bb.xyz, bb.xyz[0]).ravel() == mine).mean())
    print(f"shipped codebook: numpy tokens = product tokens on {agree:.2%} of residues ({tok.backend})")

    results = {}
    for v in args.variants.split(","):
        t0 = time.perf_counter()
        books = [codebook(n, args.iters) for n in VARIANTS[v]]
        rows, ppl = evaluate(books, trajs)
        results[v] = {
            "stages": VARIANTS[v],
            "K": [len(b) for b in books],
            "perplexity": ppl,
            "rows": rows,
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"\n## {v}  (K per stage {[len(b) for b in books]}, perplexity on these frames "
            f"{', '.join(f'{p:.0f}' for p in ppl)})"
        )
        print(
            "| trajectory | frames x res | placed Å | projected Å | robust 5 % CA Å | flicker per stage | "
            "valid decoded | invalid frames by reason | valid, 300 proj. it. | invalid by reason (300 it.) | valid MD |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for n, r in rows.items():
            print(
                f"| {n} | {r['frames']} x {r['residues']} | {r['rmsd_placed_A']:.2f} | {r['rmsd_projected_A']:.2f} | "
                f"{r['robustness_ca_A']:.2f} | {' / '.join(f'{x:.0%}' for x in r['flicker'])} | {r['valid']:.0%} | "
                f"{', '.join(f'{k} {c}' for k, c in r['invalid_by_reason'].items())} | {r['valid_proj300']:.0%} | "
                f"{', '.join(f'{k} {c}' for k, c in r['invalid_by_reason_proj300'].items())} | {ceiling[n]:.0%} |",
                flush=True,
            )
    import os

    print(f"\ntotal {(time.perf_counter() - t_start) / 60:.1f} min, load average {os.getloadavg()}")
    print(json.dumps({"ceiling_valid": ceiling, "variants": results}))


if __name__ == "__main__":
    main()
