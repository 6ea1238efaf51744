"""Round-trip quality in numpy: aligned backbone RMSD, TM-score, codebook use."""

from __future__ import annotations

import numpy as np


def _kabsch_fit(mobile, ref):
    """mobile, ref (N, 3) -> mobile superposed on ref."""
    mc, rc = mobile.mean(0), ref.mean(0)
    h = (mobile - mc).T @ (ref - rc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return (mobile - mc) @ rot.T + rc


def backbone_rmsd_angstrom(decoded, original):
    """Per frame RMSD (Angstrom) over all N, CA, C, O after optimal superposition; inputs (F, L, 4, 3) nm."""
    out = []
    for a, b in zip(np.asarray(decoded, np.float64), np.asarray(original, np.float64)):
        p, q = a.reshape(-1, 3), b.reshape(-1, 3)
        out.append(np.sqrt(((_kabsch_fit(p, q) - q) ** 2).sum(-1).mean()) * 10.0)
    return np.array(out)


def tm_score(decoded, original):
    """TM-score on CA atoms with the superposition that maximises it, approximated by a few rounds of
    re-weighted fitting from the RMSD superposition (TM-align style without sequence alignment)."""
    out = []
    for a, b in zip(np.asarray(decoded, np.float64), np.asarray(original, np.float64)):
        p, q = a[:, 1] * 10.0, b[:, 1] * 10.0
        n = len(q)
        d0 = max(1.24 * np.cbrt(max(n - 15, 1)) - 1.8, 0.5)
        best = 0.0
        w = np.ones(n)
        for _ in range(5):
            mc, rc = (p * w[:, None]).sum(0) / w.sum(), (q * w[:, None]).sum(0) / w.sum()
            h = ((p - mc) * w[:, None]).T @ (q - rc)
            u, _, vt = np.linalg.svd(h)
            d = np.sign(np.linalg.det(vt.T @ u.T))
            rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
            dist = np.linalg.norm((p - mc) @ rot.T + rc - q, axis=1)
            score = (1.0 / (1.0 + (dist / d0) ** 2)).sum() / n
            best = max(best, score)
            w = 1.0 / (1.0 + (dist / d0) ** 2)
        out.append(best)
    return np.array(out)


def codebook_usage(tokens, codebook_size):
    """(perplexity, fraction of codes used) of a token array."""
    counts = np.bincount(np.asarray(tokens).ravel(), minlength=codebook_size).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    return float(np.exp(-(nz * np.log(nz)).sum())), float((counts > 0).mean())
