"""Linear surrogate trajectories: more frames like the user's MD, for fine-tuning the motion model.

A fine-tune sees a few hundred frames of one protein. That is too few for a language model over
thousands of motion codes to learn how neighbouring residues move together: fine-tuned on them alone,
it draws each residue about as a per-residue marginal would, and its raw frames break and clash
(bench/realism.py). A linear model learns the coupling from few frames. Here: the frames, superposed
on the key frame by CA, as a mean plus principal components, each component's score an AR(1) process
with its own lag-1 autocorrelation (an Ornstein-Uhlenbeck process per component, sampled at the MD's
save interval). Its frames keep the MD's mean, covariance and per-component lag-1 correlation; their
bonds are brought back to the key's (mdllm.geometry.projection), since a linear model bends them.

The fine-tune then learns from the real frames and these together: the surrogate teaches the coupling,
the real frames what a linear model misses. A surrogate cannot leave the basin it was fitted to, and
the language model learns that too; say so when a run is meant to find other states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm.errors import MdllmError

MIN_FRAMES = 3  # a lag-1 correlation needs two pairs
RELATIVE_CUTOFF = 1e-3  # components with a singular value below this fraction of the largest are noise
MAX_AUTOCORRELATION = 0.99  # keeps every component's process stationary


@dataclass(frozen=True)
class LinearSurrogate:
    """Mean (L, 4, 3) nm, components (K, L * 12), their standard deviations and lag-1 correlations (K,)."""

    key: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    autocorrelation: np.ndarray

    @classmethod
    def fit(cls, trajectories, key) -> "LinearSurrogate":
        """Fit to trajectories (each (F, L, 4, 3) nm, consecutive frames) superposed on ``key`` (L, 4, 3)."""
        from mdllm.tokenizer.motion import superpose_on_key

        key = np.asarray(key, np.float64)
        trajectories = [np.asarray(t) for t in trajectories if len(t)]
        if any(t.shape[1:] != key.shape for t in trajectories):
            raise MdllmError(f"trajectories and key frame differ in size ({key.shape[0]} residues in the key)")
        n_frames = sum(len(t) for t in trajectories)
        if n_frames < MIN_FRAMES:
            raise MdllmError(f"a linear surrogate needs at least {MIN_FRAMES} frames, got {n_frames}")
        runs = [superpose_on_key(t, key).reshape(len(t), -1) for t in trajectories]
        mean = np.concatenate(runs).mean(axis=0)
        centred = [r - mean for r in runs]
        _, s, vt = np.linalg.svd(np.concatenate(centred), full_matrices=False)
        keep = s > s[0] * RELATIVE_CUTOFF if s[0] > 0 else np.zeros(len(s), bool)
        components = vt[keep]
        scores = [c @ components.T for c in centred]
        scale = np.sqrt(np.concatenate(scores).var(axis=0))
        lagged = sum((sc[1:] * sc[:-1]).sum(axis=0) for sc in scores)
        pairs = sum(len(sc) - 1 for sc in scores)
        rho = lagged / max(pairs, 1) / np.maximum(scale**2, 1e-30)
        return cls(
            key=key,
            mean=mean.reshape(key.shape),
            components=components,
            scale=scale,
            autocorrelation=np.clip(rho, 0.0, MAX_AUTOCORRELATION),
        )

    def sample(self, n_frames: int, seed: int = 0) -> np.ndarray:
        """(n_frames, L, 4, 3) float32 nm: one stationary run of the process, bonds restored to the key's."""
        from mdllm.geometry.projection import project_to_key_geometry

        if n_frames < 1:
            raise MdllmError(f"n_frames must be positive, got {n_frames}")
        rng = np.random.default_rng(seed)
        rho, scale = self.autocorrelation, self.scale
        kick = np.sqrt(1.0 - rho**2) * scale
        scores = np.empty((n_frames, len(scale)))
        current = rng.standard_normal(len(scale)) * scale  # start in the stationary distribution
        for t in range(n_frames):
            current = rho * current + kick * rng.standard_normal(len(scale))
            scores[t] = current
        frames = self.mean.reshape(1, -1) + scores @ self.components
        return project_to_key_geometry(frames.reshape(n_frames, *self.key.shape), self.key)
