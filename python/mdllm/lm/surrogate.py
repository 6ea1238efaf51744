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

``LinearSurrogate.elastic_network`` builds the same kind of process without MD, from one structure:
the normal modes of an anisotropic network model of its backbone atoms, each mode's variance kT / k
and its lag-1 correlation falling with its stiffness. Base models pretrain on these for structures
of many proteins, so that they learn how a fold moves from frame to frame before any MD of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm.errors import MdllmError

MIN_FRAMES = 3  # a lag-1 correlation needs two pairs
RELATIVE_CUTOFF = 1e-3  # components with a singular value below this fraction of the largest are noise
MAX_AUTOCORRELATION = 0.99  # keeps every component's process stationary
ENM_CUTOFF_NM = 0.75  # backbone atoms closer than this are joined by a spring
ENM_LOCAL_NM = 0.26  # bonded and 1-3 pairs (shorter than this) get stiffer springs, keeping bonds and angles
ENM_LOCAL_STIFFNESS = 10.0


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

    @classmethod
    def elastic_network(
        cls, key, rmsf_A: float = 0.7, slowest_autocorrelation: float = 0.95, max_atoms: int = 2000
    ) -> "LinearSurrogate":
        """An anisotropic network model of the backbone atoms of ``key`` (L, 4, 3) nm as a surrogate:
        springs between atoms within ``ENM_CUTOFF_NM`` (stiffer within 1-3 neighbours), its non-rigid
        normal modes as components, variances proportional to 1 / eigenvalue scaled so the mean CA
        RMSF is ``rmsf_A``, and lag-1 correlations rho_k = rho_1 ** (lambda_k / lambda_1) (an
        overdamped mode relaxes at a rate proportional to its stiffness) with rho_1
        ``slowest_autocorrelation``."""
        key = np.asarray(key, np.float64)
        if key.ndim != 3 or key.shape[1:] != (4, 3):
            raise MdllmError(f"the key frame must have shape (L, 4, 3), got {key.shape}")
        atoms = key.reshape(-1, 3)
        n = len(atoms)
        if n > max_atoms:
            raise MdllmError(f"{n} atoms: an elastic network of more than {max_atoms} atoms is too slow here")
        if not 0.0 < slowest_autocorrelation < 1.0 or rmsf_A <= 0:
            raise MdllmError("rmsf_A must be positive and slowest_autocorrelation in (0, 1)")
        delta = atoms[:, None] - atoms[None]
        dist = np.linalg.norm(delta, axis=-1)
        stiffness = np.where(dist < ENM_CUTOFF_NM, 1.0, 0.0)
        stiffness[dist < ENM_LOCAL_NM] = ENM_LOCAL_STIFFNESS
        np.fill_diagonal(stiffness, 0.0)
        unit = delta / np.where(dist > 0, dist, 1.0)[..., None]
        blocks = -stiffness[..., None, None] * unit[..., :, None] * unit[..., None, :]  # (n, n, 3, 3)
        blocks[np.arange(n), np.arange(n)] = -blocks.sum(axis=1)
        hessian = blocks.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
        eigenvalues, vectors = np.linalg.eigh(hessian)
        modes = eigenvalues > eigenvalues[-1] * 1e-8  # drops the six rigid-body modes
        if modes.sum() < 1:
            raise MdllmError("the elastic network has no internal modes (too few atoms within the cutoff)")
        eigenvalues, components = eigenvalues[modes], vectors[:, modes].T
        variance = 1.0 / eigenvalues
        ca = components.reshape(len(variance), -1, 4, 3)[:, :, 1]  # (K, L, 3)
        ca_msf = (variance[:, None] * (ca**2).sum(-1)).sum(0)  # nm^2 per residue, at unit temperature
        scale = np.sqrt(variance) * (rmsf_A / 10.0) / np.sqrt(ca_msf).mean()
        rho = slowest_autocorrelation ** (eigenvalues / eigenvalues[0])
        return cls(key=key, mean=key.copy(), components=components, scale=scale, autocorrelation=rho)

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
