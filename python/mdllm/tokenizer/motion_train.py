"""Training the motion codebook: k-means (Lloyd) of per-residue displacements from key frames.

Samples are the 12-vectors of ``mdllm.tokenizer.motion.displacements``: every frame of an MD trajectory
against a key frame of the same trajectory. Each trajectory is seen from several key frames (its first
frame and frames drawn at random), so the codebook covers the displacements that a user's start
structure will meet, small thermal jitter and large moves alike. Squared Euclidean distance in this
space is the squared backbone error of the residue, so k-means minimises the round-trip error directly.
"""

from __future__ import annotations

import time

import numpy as np

from mdllm.errors import MdllmError
from mdllm.tokenizer.config import MotionConfig
from mdllm.tokenizer.motion import displacements
from mdllm.tokenizer.weights import save_tokenizer


def displacement_samples(
    trajectories, keys_per_trajectory: int, max_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """(N, 12) displacement vectors (nm) of ``trajectories`` (list of (F, L, 4, 3) nm): every frame
    against the first frame and ``keys_per_trajectory - 1`` random frames, at most ``max_samples``."""
    rows = []
    for xyz in trajectories:
        xyz = np.asarray(xyz)
        if len(xyz) < 2:
            continue
        for k in key_frame_indices(len(xyz), keys_per_trajectory, rng):
            rows.append(displacements(xyz, xyz[k]).reshape(-1, 12))
    if not rows:
        raise MdllmError("no trajectory with at least two frames to learn motion from")
    samples = np.concatenate(rows)
    if len(samples) > max_samples:
        samples = samples[rng.choice(len(samples), max_samples, replace=False)]
    return samples.astype(np.float64)


def key_frame_indices(n_frames: int, keys_per_trajectory: int, rng: np.random.Generator) -> list[int]:
    """A trajectory's key frames for training: its first frame and up to ``keys_per_trajectory - 1``
    other frames drawn at random (n_frames >= 2)."""
    return [0] + list(rng.choice(n_frames, size=min(keys_per_trajectory - 1, n_frames - 1), replace=False))


def _assign(x, centres, chunk: int = 16384):
    """Nearest centre of every row and the squared distance to it."""
    cc = (centres * centres).sum(1)
    idx = np.empty(len(x), np.int64)
    dist = np.empty(len(x))
    for s in range(0, len(x), chunk):
        d = cc[None] - 2.0 * x[s : s + chunk] @ centres.T
        idx[s : s + chunk] = d.argmin(1)
        dist[s : s + chunk] = d[np.arange(len(d)), idx[s : s + chunk]] + (x[s : s + chunk] ** 2).sum(1)
    return idx, np.maximum(dist, 0.0)


def kmeans(x, k: int, iterations: int, rng: np.random.Generator, progress: bool = True):
    """Lloyd's k-means from a random start; an empty code is re-seeded at the worst-fitted sample."""
    if len(x) < k:
        raise MdllmError(f"{len(x)} displacement samples cannot fill a codebook of {k} codes")
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    reseeded = 0
    bar = None
    if progress:
        from mdllm.progress import bar as progress_bar

        bar = progress_bar(total=iterations, desc="k-means", unit="it")
    for _ in range(iterations):
        idx, dist = _assign(x, centres)
        counts = np.bincount(idx, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, idx, x)
        used = counts > 0
        centres[used] = sums[used] / counts[used, None]
        empty = np.flatnonzero(~used)
        if len(empty):
            worst = np.argsort(dist)[::-1][: len(empty)]
            centres[empty] = x[worst]
            reseeded += len(empty)
        if bar:
            bar.update(1)
            bar.set_postfix(rms_A=f"{np.sqrt(dist.mean() / 4) * 10:.3f}")
    if bar:
        bar.close()
    idx, dist = _assign(x, centres)
    return centres, {
        "reseeded": int(reseeded),
        "codes_used": float((np.bincount(idx, minlength=k) > 0).mean()),
        "rms_atom_error_A": float(np.sqrt(dist.mean() / 4) * 10),
    }


def by_size(centres) -> np.ndarray:
    """Codes ordered by size (code 0 is the smallest motion): ids then read from still to large moves."""
    return centres[np.argsort((centres**2).sum(1), kind="stable")]


def train_motion(
    trajectories,
    out,
    codebook_size: int = 4096,
    keys_per_trajectory: int = 4,
    max_samples: int = 400_000,
    iterations: int = 25,
    seed: int = 0,
    sources=None,
    progress: bool = True,
) -> dict:
    """Fit the codebook on ``trajectories`` (list of (F, L, 4, 3) nm) and write a tokenizer to ``out``."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = displacement_samples(trajectories, keys_per_trajectory, max_samples, rng)
    centres, stats = kmeans(samples, codebook_size, iterations, rng, progress)
    centres = by_size(centres)
    cfg = MotionConfig(codebook_size=codebook_size)
    training = {
        "samples": int(len(samples)),
        "trajectories": len(trajectories),
        "keys_per_trajectory": keys_per_trajectory,
        "iterations": iterations,
        "seed": seed,
        "minutes": (time.perf_counter() - t0) / 60,
        **stats,
    }
    if sources:
        training["sources"] = list(sources)
    save_tokenizer(out, cfg, {"codebook": centres.astype(np.float32)}, extra_config={"_training": training})
    return training
