"""Round-trip quality in numpy: aligned backbone RMSD, TM-score, codebook use."""

from __future__ import annotations

import numpy as np

from mdllm.geometry.vectors import kabsch, superpose


def backbone_rmsd_angstrom(decoded, original):
    """Per frame RMSD (Angstrom) over all N, CA, C, O after optimal superposition; inputs (F, L, 4, 3) nm."""
    p = np.asarray(decoded, np.float64).reshape(len(decoded), -1, 3)
    q = np.asarray(original, np.float64).reshape(len(original), -1, 3)
    return np.sqrt(((superpose(p, q) - q) ** 2).sum(-1).mean(-1)) * 10.0


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
            rot, mc, rc = kabsch(p, q, w)
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
