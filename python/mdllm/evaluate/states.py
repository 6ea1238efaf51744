"""Named reference states (e.g. closed and open): residue mapping by sequence alignment, CA RMSD of
every frame to each state, state assignment, populations and transitions between states."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdllm.errors import MdllmError

INTERMEDIATE = -1  # label of a frame in no named state
NONE_LABEL = "none of the named states"  # its name in populations, reports and plots


@dataclass
class State:
    """A named structure and the residues it shares with the trajectory.

    ca: (M, 3) nm CA positions of the state's mapped residues; traj_residues: (M,) the matching
    residue indices of the trajectory."""

    name: str
    ca: np.ndarray
    traj_residues: np.ndarray
    source: str = ""


def align_sequences(a: str, b: str, match: float = 2.0, mismatch: float = -1.0, gap: float = -2.0):
    """Global (Needleman-Wunsch) alignment; returns index arrays (ia, ib) of aligned residue pairs
    (matches and mismatches, not gaps)."""
    if a == b:
        index = np.arange(len(a))
        return index, index.copy()
    n, m = len(a), len(b)
    score = np.zeros((n + 1, m + 1))
    score[:, 0] = gap * np.arange(n + 1)
    score[0, :] = gap * np.arange(m + 1)
    bv = np.array(list(b))
    for i in range(1, n + 1):  # one row at a time; the within-row gap term needs a running scan
        diag = score[i - 1, :-1] + np.where(bv == a[i - 1], match, mismatch)
        up = score[i - 1, 1:] + gap
        row = np.maximum(diag, up)
        for j in range(1, m + 1):
            row[j - 1] = max(row[j - 1], score[i, j - 1] + gap)
            score[i, j] = row[j - 1]
    ia, ib = [], []
    i, j = n, m
    while i > 0 and j > 0:
        s = score[i, j]
        if s == score[i - 1, j - 1] + (match if a[i - 1] == b[j - 1] else mismatch):
            ia.append(i - 1), ib.append(j - 1)
            i, j = i - 1, j - 1
        elif s == score[i - 1, j] + gap:
            i -= 1
        else:
            j -= 1
    return np.array(ia[::-1], np.int64), np.array(ib[::-1], np.int64)


def load_state(name: str, path, sequence: str, min_identity: float = 0.9) -> State:
    """Read a state structure (first frame, all protein chains) and map its residues onto the
    trajectory ``sequence`` by alignment; the aligned identical residues are used."""
    from mdllm.io import load_backbone

    state = load_backbone(path, check=False)  # crystal structures may miss loops: gaps are fine here
    if not np.isfinite(state.xyz[0]).all():
        raise MdllmError(f"{path}: state '{name}' has non-finite coordinates")
    ia, ib = align_sequences(sequence, state.sequence)
    same = np.array([sequence[i] == state.sequence[j] for i, j in zip(ia, ib)], bool)
    ia, ib = ia[same], ib[same]
    # Most of the state must match, and contiguously: scattered single-letter matches of an
    # unrelated protein fill a long span of the trajectory sparsely.
    span = ia[-1] - ia[0] + 1 if len(ia) else 0
    if len(ia) < 3 or len(ia) < min_identity * state.n_residues or len(ia) < min_identity * span:
        raise MdllmError(
            f"{path}: state '{name}' ({state.n_residues} residues) matches only {len(ia)} residues of "
            f"the trajectory's sequence ({len(sequence)} residues); is it the same protein?"
        )
    return State(name, state.xyz[0, ib, 1].copy(), ia, str(path))


def rmsd_to_states(xyz, states: list[State]) -> np.ndarray:
    """(S, F) CA RMSD in Å of every frame to every state after optimal superposition."""
    from mdllm.geometry import rmsd

    xyz = np.asarray(getattr(xyz, "xyz", xyz))
    return (
        np.stack([rmsd(np.ascontiguousarray(xyz[:, s.traj_residues, 1]), s.ca) * 10.0 for s in states])
        if states
        else np.zeros((0, len(xyz)), np.float32)
    )


def assign(rmsd_A: np.ndarray, cutoff_A: float) -> np.ndarray:
    """(F,) index of the nearest state if within ``cutoff_A``, else INTERMEDIATE."""
    if rmsd_A.shape[0] == 0:
        return np.full(rmsd_A.shape[1], INTERMEDIATE)
    nearest = rmsd_A.argmin(axis=0)
    return np.where(rmsd_A.min(axis=0) <= cutoff_A, nearest, INTERMEDIATE)


def populations(labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """Fraction of frames in each named state and in none (key :data:`NONE_LABEL`)."""
    out = {name: float(np.mean(labels == k)) for k, name in enumerate(names)}
    out[NONE_LABEL] = float(np.mean(labels == INTERMEDIATE))
    return out


def transition_counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    """Transitions between named states as core sets: a transition A->B is counted when the
    trajectory, last seen in A, next enters B (frames in no state keep the last state)."""
    counts: dict[str, int] = {}
    last = INTERMEDIATE
    for label in labels:
        if label == INTERMEDIATE:
            continue
        if last != INTERMEDIATE and label != last:
            key = f"{names[last]}->{names[label]}"
            counts[key] = counts.get(key, 0) + 1
        last = label
    return counts


def first_arrival(labels: np.ndarray, state: int) -> int | None:
    """Index of the first frame in ``state`` or None."""
    hits = np.flatnonzero(labels == state)
    return int(hits[0]) if hits.size else None


def parse_state_specs(specs) -> dict[str, str]:
    """``NAME=PDB`` strings (``--state`` of mdllm evaluate and mdllm run) -> {name: path}."""
    states: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise MdllmError(f"--state expects NAME=PDB, got '{spec}'")
        if name in states:
            raise MdllmError(f"--state '{name}' given twice")
        if name == NONE_LABEL:
            raise MdllmError(f"--state name '{name}' is reserved for frames in no named state")
        states[name] = path
    return states
