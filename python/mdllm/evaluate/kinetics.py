"""Slow collective motions and kinetics with deeptime: CA-distance features, TICA fitted on the
reference and applied to both trajectories, k-means states in TICA space, Markov state models and
their implied timescales."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def torsion_features(phi_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """(F, 4K) sin and cos of phi and psi for the residues where both are defined in all frames."""
    phi, psi = np.radians(phi_deg), np.radians(psi_deg)
    keep_phi = np.isfinite(phi).all(0)
    keep_psi = np.isfinite(psi).all(0)
    return np.concatenate(
        [np.sin(phi[:, keep_phi]), np.cos(phi[:, keep_phi]), np.sin(psi[:, keep_psi]), np.cos(psi[:, keep_psi])], axis=1
    ).astype(np.float64)


def ca_distance_features(ca: np.ndarray, max_residues: int = 60) -> np.ndarray:
    """(F, P) distances (nm) between the CAs of evenly spaced residues (at most ``max_residues``),
    skipping sequence neighbours closer than 3 (their distances barely move). Distances describe
    global motions such as domain closure and transfer between trajectories of one protein."""
    ca = np.asarray(ca, np.float64)
    n_res = ca.shape[1]
    picked = np.unique(np.linspace(0, n_res - 1, min(n_res, max_residues)).round().astype(int))
    i, j = np.triu_indices(len(picked), k=1)
    keep = picked[j] - picked[i] >= 3
    i, j = picked[i[keep]], picked[j[keep]]
    return np.linalg.norm(ca[:, i] - ca[:, j], axis=-1)


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


def fit_tica(reference_features, generated_features, lagtime: int = 1, dim: int = 2, max_pcs: int = 20) -> TicaResult:
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
    return TicaResult(
        model.transform(ref), model.transform(gen), lagtime, np.asarray(model.singular_values[:dim], np.float64), n_pcs
    )


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
    return (
        KMeans(n_clusters=n_clusters, init_strategy="kmeans++", fixed_seed=seed, max_iter=200, n_jobs=1)
        .fit(reference_tica)
        .fetch_model()
    )


def needs_symmetrized_counts(dtraj: np.ndarray, lagtimes) -> bool:
    """True when, at some lag, the largest strongly connected set holds under half of the
    transitions (a trajectory that crosses once and never returns)."""
    from deeptime.markov import TransitionCountEstimator

    for lag in lagtimes:
        if lag >= len(dtraj) - 1:
            continue
        counts = TransitionCountEstimator(int(lag), "sliding").fit(np.asarray(dtraj, np.int32)).fetch_model()
        active = counts.submodel_largest(directed=True)
        if active.count_matrix.sum() < 0.5 * counts.count_matrix.sum():
            return True
    return False


def implied_timescales(dtraj: np.ndarray, lagtimes, n_its: int = 3, symmetrize: bool = False) -> MsmResult:
    """MSM implied timescales (frames) at each lag: a reversible maximum-likelihood MSM on the
    largest strongly connected set. With ``symmetrize`` the counts are replaced by C + C^T first
    (equilibrium assumed; for trajectories that cross once and never return), and ``counts`` in
    the result says which was used."""
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    dtraj = np.asarray(dtraj, np.int32)
    results, fractions = [], []
    mode = "symmetrized" if symmetrize else "reversible MLE"
    lagtimes = [int(t) for t in lagtimes if t < len(dtraj) - 1]
    for lag in lagtimes:
        counts = TransitionCountEstimator(lag, "sliding").fit(dtraj).fetch_model()
        active = counts.submodel_largest(directed=True)
        fraction = float(active.count_matrix.sum() / max(counts.count_matrix.sum(), 1))
        if symmetrize:
            c = counts.count_matrix
            c = c + c.T
            from deeptime.markov import TransitionCountModel

            counted = TransitionCountModel(c, lagtime=lag).submodel_largest(directed=True)
            fraction = float(counted.count_matrix.sum() / max(c.sum(), 1))
        else:
            counted = active
        try:
            msm = MaximumLikelihoodMSM(reversible=True).fit(counted).fetch_model()
        except ValueError:  # no state is ever re-entered at this lag (a short run): no timescale to give
            msm = None
        ts = list(np.asarray(msm.timescales(), np.float64)[:n_its]) if msm is not None and msm.n_states > 1 else []
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
