"""Training the torsion-codebook tokenizer: k-means (Lloyd) of residue torsions in PyTorch, with empty
codes re-seeded from the worst-fitted samples, and the mean bond geometry measured on the same chains.
Torsions, bonds and angles come from the compiled core's ``mdllm.geometry.internal_coordinates``."""

from __future__ import annotations

import time

import numpy as np
import torch

from mdllm.errors import MdllmError
from mdllm.geometry import internal_coordinates
from mdllm.tokenizer.config import GEOMETRY_NAMES, TorsionConfig
from mdllm.tokenizer.weights import save_tokenizer

_BREAK_NM = 0.2  # a C-N distance above this is a chain break: the torsions across it mean nothing


def residue_torsions(xyz) -> np.ndarray:
    """(F, L, 4, 3) nm -> (F, L, 3) radians in the codebook's layout: omega of the peptide bond before
    each residue, its phi and its psi. Residue 0 has no omega or phi (NaN); the last residue's psi is
    the torsion N-CA-C-O - pi, which is what places its O in the decoder."""
    return _codebook_layout(internal_coordinates(xyz).torsions)


def _codebook_layout(torsions) -> np.ndarray:
    """internal_coordinates' torsions (F, L, 4: phi, psi, omega after i, N-CA-C-O) -> residue_torsions."""
    t = torsions.astype(np.float64)
    out = np.full(t.shape[:2] + (3,), np.nan)
    out[:, 1:, 0] = t[:, :-1, 2]
    out[:, :, 1] = t[:, :, 0]
    out[:, :-1, 2] = t[:, :-1, 1]
    out[:, -1, 2] = np.angle(np.exp(1j * (t[:, -1, 3] - np.pi)))
    return out


def torsion_samples(segments, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) (omega, phi, psi) of the residues of ``segments`` (list of (L, 4, 3) nm), at most
    ``max_samples`` drawn at random. Residue 0 (no omega, phi) and residues at chain breaks are left out."""
    rows = []
    for xyz in segments:
        if len(xyz) < 2:
            continue
        ic = internal_coordinates(np.asarray(xyz)[None])
        t = _codebook_layout(ic.torsions)[0]
        gap = ic.bonds[0, :-1, 2] > _BREAK_NM
        ok = np.ones(len(xyz), bool)
        ok[0] = False
        ok[1:] &= ~gap
        ok[:-1] &= ~gap
        rows.append(t[ok])
    samples = np.concatenate(rows)
    if len(samples) > max_samples:
        samples = samples[rng.choice(len(samples), max_samples, replace=False)]
    return samples


def measure_geometry(segments) -> np.ndarray:
    """Mean bond lengths (Angstrom) and angles (radians) of real backbones (list of (L, 4, 3) nm), in
    GEOMETRY_NAMES order. Peptide bonds longer than 2 A (chain breaks) are left out of the means of the
    bond and the two angles that span them."""
    bonds, angles = [], []
    for xyz in segments:
        ic = internal_coordinates(np.asarray(xyz)[None])
        b, a = ic.bonds[0].astype(np.float64), ic.angles[0].astype(np.float64)
        broken = ~(b[:, 2] <= _BREAK_NM)  # the last residue's C-N is NaN: nothing follows it
        b[broken, 2] = np.nan
        a[broken, 1:3] = np.nan
        bonds.append(b * 10.0)
        angles.append(a)
    # columns: N-CA, CA-C, C-N(i+1), C=O and N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1), CA-C-O
    means = [np.nanmean(np.concatenate(bonds), 0), np.nanmean(np.concatenate(angles), 0)]
    return np.concatenate(means).astype(np.float32)


def _features(angles):
    return torch.cat([torch.cos(angles), torch.sin(angles)], -1)


def _assign(feat, centres, chunk: int = 65536):
    """Nearest centre of every sample and its squared distance."""
    idx, dist = [], []
    c2 = (centres * centres).sum(-1)
    for i in range(0, len(feat), chunk):
        f = feat[i : i + chunk]
        d = (f * f).sum(-1, keepdim=True) - 2 * f @ centres.T + c2
        best = d.min(-1)
        idx.append(best.indices)
        dist.append(best.values.clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


def kmeans_codebook(
    samples: np.ndarray, k: int, iters: int, seed: int, progress: bool = True, device: str = "cpu"
) -> tuple[np.ndarray, dict]:
    """K codes (omega, phi, psi) radians by Lloyd's algorithm on (cos, sin) of the angles."""
    from mdllm.progress import bar as progress_bar

    if len(samples) < k:
        raise MdllmError(f"{len(samples)} residues cannot make {k} codes: give more structures or a smaller --codebook")
    gen = torch.Generator().manual_seed(seed)
    feat = _features(torch.as_tensor(samples, dtype=torch.float32))
    centres = feat[torch.randperm(len(feat), generator=gen)[:k]].clone().to(device)
    feat = feat.to(device)
    reseeded = 0
    bar = progress_bar(range(iters), enabled=progress, desc=f"k-means K={k}")
    for _ in bar:
        idx, dist = _assign(feat, centres)
        counts = torch.bincount(idx, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, idx, feat)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # an unused code moves to one of the samples its neighbours fit worst
            worst = torch.topk(dist, int(empty.sum()) * 4).indices
            pick = worst[torch.randperm(len(worst), generator=gen)[: int(empty.sum())].to(device)]
            centres[empty] = feat[pick]
            reseeded += int(empty.sum())
        bar.set_postfix(rms=f"{float(dist.mean().sqrt()):.4f}", empty=int(empty.sum()))
    idx, dist = _assign(feat, centres)
    codes = torch.atan2(centres[:, 3:], centres[:, :3]).cpu().numpy().astype(np.float32)
    stats = {
        "samples": int(len(feat)),
        "iterations": iters,
        "codes_reseeded": reseeded,
        "codes_used": float((torch.bincount(idx, minlength=k) > 0).float().mean()),
        "rms_feature_distance": float(dist.mean().sqrt()),
    }
    return codes, stats


def train_torsion_tokenizer(
    segments,
    cfg: TorsionConfig,
    out_dir,
    iters: int = 30,
    max_samples: int = 400_000,
    seed: int = 0,
    progress: bool = True,
    val_segments=(),
    device: str = "cpu",
) -> dict:
    """Fit the codebook and the geometry on ``segments`` and write the tokenizer to ``out_dir``; with
    ``val_segments`` (held-out chains), also measure their round trip and record it in config.json."""
    start = time.time()
    rng = np.random.default_rng(seed)
    samples = torsion_samples(segments, max_samples, rng)
    codes, stats = kmeans_codebook(samples, cfg.codebook_size, iters, seed, progress, device)
    geometry = measure_geometry(segments)
    stats.update(
        seed=seed, minutes=(time.time() - start) / 60, geometry={n: float(v) for n, v in zip(GEOMETRY_NAMES, geometry)}
    )
    tensors = {"codebook": codes, "geometry": geometry}
    save_tokenizer(out_dir, cfg, tensors, extra_config={"_training": stats})
    if len(val_segments):
        stats.update(held_out_round_trip(out_dir, val_segments, progress))
        save_tokenizer(out_dir, cfg, tensors, extra_config={"_training": stats})
    return stats


def held_out_round_trip(tokenizer_dir, segments, progress: bool = True) -> dict:
    """Median and 95th percentile of the round-trip RMSD (Angstrom) of each segment."""
    from mdllm.progress import bar as progress_bar

    from mdllm.tokenizer.metrics import backbone_rmsd_angstrom
    from mdllm.tokenizer.torsion import TorsionTokenizer

    tok = TorsionTokenizer.load(tokenizer_dir)
    rmsd = [
        backbone_rmsd_angstrom(tok.decode(tok.encode(x[None])), x[None])[0]
        for x in progress_bar(segments, enabled=progress, desc="held-out round trip")
    ]
    return {
        "val_chains": len(rmsd),
        "val_rmsd_median_A": float(np.median(rmsd)),
        "val_rmsd_p95_A": float(np.percentile(rmsd, 95)),
    }


def training_device(name: str):
    """The torch device of a --device option: cpu, cuda or auto (a GPU when PyTorch sees one)."""
    from mdllm.errors import MdllmError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MdllmError(f"device '{name}' asked for, but PyTorch sees no GPU")
        torch.backends.cuda.matmul.allow_tf32 = True
    return torch.device(name)
