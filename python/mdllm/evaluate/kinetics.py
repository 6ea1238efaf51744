"""Slow collective motions and kinetics with deeptime: backbone-torsion features, TICA fitted on
the reference and applied to both trajectories, k-means states in TICA space, Markov state models
and their implied timescales."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def torsion_features(phi_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """(F, 4K) sin and cos of phi and psi for the residues where both are defined in all frames."""
    phi, psi = np.radians(phi_deg), np.radians(psi_deg)
    keep_phi = np.isfinite(phi).all(0)
    keep_psi = np.isfinite(psi).all(0)
    return np.concatenate([np.sin(phi[:, keep_phi]), np.cos(phi[:, keep_phi]),
                           np.sin(psi[:, keep_psi]), np.cos(psi[:, keep_psi])], axis=1).astype(np.float64)


@dataclass
class TicaResult:
    reference: np.ndarray  # (F_ref, dim) projections
    generated: np.ndarray  # (F_gen, dim)
    lagtime: int
    eigenvalues: np.ndarray
    n_pcs: int  # principal components of the features that TICA saw


def principal_components(reference_features, n_components: int):
    """Mean and (D, n) projection onto the leading principal components of the reference."""
    mean = reference_features.mean(axis=0)
    _, _, vt = np.linalg.svd(reference_features - mean, full_matrices=False)
    return mean, vt[:n_components].T


def fit_tica(reference_features, generated_features, lagtime: int = 1, dim: int = 2,
             max_pcs: int = 20) -> TicaResult:
    """TICA (deeptime, kinetic-map scaling) fitted on the reference, the generated frames projected
    on it. Features are first reduced to their leading principal components on the reference (at
    most ``max_pcs``, and at most a tenth of the reference frames): with hundreds of torsion
    features and few frames, TICA's lagged covariances would otherwise fit noise."""
    from deeptime.decomposition import TICA

    n_pcs = int(max(dim, min(max_pcs, len(reference_features) // 10, reference_features.shape[1])))
    mean, basis = principal_components(reference_features, n_pcs)
    ref = (reference_features - mean) @ basis
    gen = (generated_features - mean) @ basis
    model = TICA(lagtime=lagtime, dim=dim, scaling="kinetic_map").fit(ref).fetch_model()
    return TicaResult(model.transform(ref), model.transform(gen), lagtime,
                      np.asarray(model.singular_values[:dim], np.float64), n_pcs)


@dataclass
class MsmResult:
    lagtimes: list[int]  # frames
    timescales: list[list[float]]  # per lag, slowest first, in frames (NaN where none)
    active_fraction: list[float]  # fraction of frames in the largest connected set, per lag
    counts: str  # 'reversible MLE' or 'symmetrized' (used when the trajectory does not return)


def cluster(reference_tica, n_clusters: int, seed: int = 0):
    """k-means centres fitted on the reference TICA projection."""
    from deeptime.clustering import KMeans

    n_clusters = max(2, min(n_clusters, len(reference_tica) // 5))
    return KMeans(n_clusters=n_clusters, init_strategy="kmeans++", fixed_seed=seed, max_iter=200,
                  n_jobs=1).fit(reference_tica).fetch_model()


def implied_timescales(dtraj: np.ndarray, lagtimes, n_its: int = 3) -> MsmResult:
    """MSM implied timescales (frames) at each lag. A reversible maximum-likelihood MSM on the
    largest strongly connected set; if that holds under half of the frames (a trajectory that
    crosses once and never returns), counts are symmetrized instead (equilibrium assumed), and
    ``counts`` says so."""
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    dtraj = np.asarray(dtraj, np.int32)
    results, fractions, mode = [], [], "reversible MLE"
    lagtimes = [int(t) for t in lagtimes if t < len(dtraj) - 1]
    for lag in lagtimes:
        counts = TransitionCountEstimator(lag, "sliding").fit(dtraj).fetch_model()
        active = counts.submodel_largest(directed=True)
        fraction = float(active.count_matrix.sum() / max(counts.count_matrix.sum(), 1))
        if fraction < 0.5 or mode == "symmetrized":
            mode = "symmetrized"
            c = counts.count_matrix
            c = c + c.T
            from deeptime.markov import TransitionCountModel

            sym = TransitionCountModel(c).submodel_largest(directed=True)
            fraction = float(sym.count_matrix.sum() / max(c.sum(), 1))
            msm = MaximumLikelihoodMSM(reversible=True).fit(sym).fetch_model()
        else:
            msm = MaximumLikelihoodMSM(reversible=True).fit(active).fetch_model()
        ts = list(np.asarray(msm.timescales(), np.float64)[:n_its]) if msm.n_states > 1 else []
        results.append(ts + [float("nan")] * (n_its - len(ts)))
        fractions.append(fraction)
    return MsmResult(lagtimes, results, fractions, mode)


def lag_grid(n_frames: int) -> list[int]:
    """Lag times in frames for implied-timescale plots: 1, 2, 3, 5, 8, ... up to n_frames / 4."""
    lags, a, b = [], 1, 2
    while a <= max(1, n_frames // 4):
        lags.append(a)
        a, b = b, a + b
    return lags
