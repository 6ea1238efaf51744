"""Training and evaluation data: chain segments from a backbone npz (Angstrom) plus MD/NMR frames, held
out by chain."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from mdllm.errors import MdllmError, in_file

A_TO_NM = 0.1


@dataclass
class Dataset:
    train: list = field(default_factory=list)  # (L, 4, 3) float32 nm arrays
    val: list = field(default_factory=list)
    val_ids: list = field(default_factory=list)
    md: list = field(default_factory=list)  # frames of MD trajectories / NMR ensembles (train only)


def held_out(chain_key: str, val_percent: float) -> bool:
    """Deterministic split by chain: the same chain is always on the same side."""
    h = int(hashlib.sha256(chain_key.encode()).hexdigest()[:8], 16)
    return (h % 10000) < val_percent * 100


def read_segments(npz_path):
    """A backbone npz -> [(id, (L, 4, 3) float32 nm)], skipping segments with NaN or < 2 residues."""
    try:
        data = np.load(npz_path)
        coords, offsets, ids = data["coords"], data["offsets"], data["ids"]
    except (OSError, KeyError, ValueError) as exc:
        raise in_file(npz_path, f"cannot read a backbone npz (coords, offsets, ids): {exc}") from None
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise in_file(npz_path, f"coords must be (residues, 4, 3), got {coords.shape}")
    segments = []
    for i, seg_id in enumerate(ids):
        xyz = (coords[offsets[i] : offsets[i + 1]] * A_TO_NM).astype(np.float32)
        if np.isfinite(xyz).all() and len(xyz) >= 2:
            segments.append((str(seg_id), xyz))
    return segments


def write_segments(npz_path, segments):
    """[(id, (L, 4, 3) nm)] -> a backbone npz that ``read_segments`` reads back (written atomically)."""
    from mdllm.files import atomic_output

    xyz = [x for _, x in segments]
    coords_A = (np.concatenate(xyz) * 10.0).astype(np.float32)
    offsets = np.cumsum([0] + [len(x) for x in xyz])
    with atomic_output(npz_path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, coords=coords_A, offsets=offsets, ids=np.array([i for i, _ in segments]))


def load_md_backbone(spec: str):
    """The Backbone of a 'TRAJ' or 'TRAJ:TOP' spec (any format mdtraj reads)."""
    from mdllm.io import load_backbone

    path, _, top = spec.partition(":")
    return load_backbone(path, top=top or None)


def load_md_frames(spec: str) -> np.ndarray:
    """(F, L, 4, 3) nm frames of a 'TRAJ' or 'TRAJ:TOP' spec (any format mdtraj reads)."""
    return load_md_backbone(spec).xyz


def load_dataset(npz_path, md_specs=(), val_percent=3.0) -> Dataset:
    """npz_path: arrays coords (Angstrom), offsets, ids ('source:chain:segment'); md_specs: list of
    'TRAJ' or 'TRAJ:TOP' strings whose every frame becomes a training example (a '.npz' in the same
    format as npz_path counts each segment as a frame: MD frames packed for a machine without mdtraj)."""
    ds = Dataset()
    for seg_id, xyz in read_segments(npz_path):
        chain_key = seg_id.rsplit(":", 1)[0]
        if held_out(chain_key, val_percent):
            ds.val.append(xyz)
            ds.val_ids.append(seg_id)
        else:
            ds.train.append(xyz)
    for spec in md_specs:
        if spec.endswith(".npz"):
            ds.md.extend(xyz for _, xyz in read_segments(spec))
            continue
        ds.md.extend(frame for frame in load_md_frames(spec))
    if not ds.train:
        raise MdllmError(f"{npz_path}: no training segments")
    return ds
